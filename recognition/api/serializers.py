"""Response shapes of the REST API (its input fields are in ``fields``)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from recognition.models import Correction, Prediction, Sample
from training.models import ModelVersion, TrainingRun
from training.selectors import HEADLINE_METRICS


class TopLabelSerializer(serializers.Serializer):
    label = serializers.CharField()
    probability = serializers.FloatField()


class TrainingRunBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["id", "status"]


class TrainingRunPublicSerializer(serializers.ModelSerializer):
    """What anyone following a run sees: the gate's figures and reasons are for staff."""

    class Meta:
        model = TrainingRun
        fields = ["id", "status", "progress"]


class TrainingRunSerializer(serializers.ModelSerializer):
    parent_version = serializers.IntegerField(source="parent_version.number", allow_null=True)
    result_version = serializers.IntegerField(source="result_version.number", allow_null=True)
    corrections = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "progress",
            "parent_version",
            "result_version",
            "corrections",
            "attempts",
            "metrics",
            "reason",
            "error",
            "failure_kind",
            "created_at",
            "started_at",
            "finished_at",
        ]


class ModelVersionSerializer(serializers.ModelSerializer):
    parent = serializers.IntegerField(source="parent.number", allow_null=True)
    accuracy = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "status",
            "parent",
            "architecture",
            "classes",
            "sha256",
            "accuracy",
            "created_at",
            "activated_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_accuracy(self, version) -> dict:
        """The headline accuracies (``training_selectors.versions_listed``); the full
        metrics are in the admin."""
        headline = {name: getattr(version, f"headline_{name}") for name in HEADLINE_METRICS}
        return {name: value for name, value in headline.items() if value is not None}


class PredictionSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.number")

    class Meta:
        model = Prediction
        fields = [
            "id",
            "label",
            "confidence",
            "probabilities",
            "model_version",
            "latency_ms",
            "created_at",
        ]


class CorrectionSerializer(serializers.ModelSerializer):
    training_runs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Correction
        fields = [
            "id",
            "sample",
            "label",
            "previous_label",
            "source",
            "training_state",
            "training_runs",
            "created_at",
        ]


class SampleListSerializer(serializers.ModelSerializer):
    image = serializers.HyperlinkedIdentityField(view_name="sample-drawing")
    predicted_label = serializers.CharField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    model_version = serializers.IntegerField(source="model_version_number", allow_null=True)
    corrected = serializers.BooleanField()

    class Meta:
        model = Sample
        fields = [
            "id",
            "image",
            "label",
            "predicted_label",
            "confidence",
            "model_version",
            "corrected",
            "status",
            "source",
            "classes",
            "width",
            "height",
            "created_at",
        ]


class SampleDetailSerializer(SampleListSerializer):
    predictions = PredictionSerializer(many=True, read_only=True)
    corrections = CorrectionSerializer(many=True, read_only=True)

    class Meta(SampleListSerializer.Meta):
        fields = [*SampleListSerializer.Meta.fields, "strokes", "predictions", "corrections"]
