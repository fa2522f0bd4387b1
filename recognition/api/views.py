"""The page's two API calls: recognize a drawing, correct its label.

Thin views: validate, call a service or a selector, shape the answer.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from recognition import selectors, services
from recognition.context import DEFAULT_CONTEXT
from recognition.models import Correction, Sample
from recognizer_site.api_errors import ERRORS, UNAVAILABLE
from recognizer_site.throttles import AnonThrottle, CorrectionThrottle, UserThrottle
from writers.identity import WRITER_NAME_MAX_LENGTH, writer_of

from .fields import ContextField, DrawingField, LabelField, StrokesField
from .parsers import JSONParser
from .serializers import (
    CorrectionSerializer,
    TopLabelSerializer,
    TrainingRunBriefSerializer,
)


def _session_key(request, *, create: bool) -> str:
    """The browser session's key; the page's drawings belong to it, so later it may correct them."""
    if create and not request.session.session_key:
        request.session.save()
        request.session.modified = True  # so that the response sets the session cookie
    return request.session.session_key or ""


class PredictionCreateApi(APIView):
    """Recognize a drawing: the top-5 labels, the model version, and what the model saw."""

    permission_classes = [AllowAny]
    throttle_classes = [AnonThrottle, UserThrottle]
    parser_classes = [JSONParser, MultiPartParser]

    class PredictionInputSerializer(serializers.Serializer):
        image = DrawingField()
        strokes = StrokesField()
        source = serializers.ChoiceField(choices=Sample.Source.choices, default=Sample.Source.API)
        classes = ContextField(required=False)
        writer = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=WRITER_NAME_MAX_LENGTH,
            help_text="A token client's own end user: each gets a personal model. "
            "Ignored for other clients (their writer is the user or the browser session).",
        )

    class PredictionOutputSerializer(serializers.Serializer):
        sample = serializers.IntegerField(source="sample.pk")
        label = serializers.CharField(source="prediction.label")
        confidence = serializers.FloatField(source="prediction.confidence")
        top = TopLabelSerializer(many=True)
        model_version = serializers.IntegerField(source="model_version_number")
        preview = serializers.CharField(source="preview_data_url")
        latency_ms = serializers.FloatField(source="prediction.latency_ms")
        lookalikes = serializers.ListField(
            child=serializers.CharField(),
            help_text="The leading guesses, most probable first, when they are look-alikes "
            "too close to call (0 or o), or the answer is one this writer has corrected to "
            "another label that is still in the running; empty otherwise.",
        )
        personal = serializers.BooleanField(
            help_text="Whether the writer's personal model shaped this answer or its look-alikes."
        )

    # Built once: binding a serializer's fields deep-copies them, which cost more
    # than the answer's representation itself. ``to_representation`` keeps no state.
    prediction_output = PredictionOutputSerializer()

    @extend_schema(
        request={
            "application/json": PredictionInputSerializer,
            "multipart/form-data": PredictionInputSerializer,
        },
        responses={201: PredictionOutputSerializer, 413: ERRORS[400], **ERRORS},
    )
    def post(self, request):
        serializer = self.PredictionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The page's drawings belong to its session, so that their drawer may label them. A
        # program's belong to its token; an anonymous program's to nobody (a session row
        # for each of its requests would cost a third of its throughput).
        session_key = _session_key(request, create=data["source"] == Sample.Source.PAGE)
        outcome = services.predict_drawing(
            image_data=data["image"],
            strokes=data.get("strokes"),
            source=data["source"],
            user=request.user,
            session_key=session_key,
            writer=writer_of(
                user=request.user,
                by_token=request.auth is not None,
                name=data.get("writer", ""),
                session_key=session_key,
            ),
            classes=data.get("classes", DEFAULT_CONTEXT),
        )
        return Response(
            self.prediction_output.to_representation(outcome), status=status.HTTP_201_CREATED
        )


class CorrectionCreateApi(APIView):
    """Give a sample its right label; the answer names the fine-tune that will learn it."""

    permission_classes = [AllowAny]
    # The correction throttle first: it refuses when the counter is down.
    throttle_classes = [CorrectionThrottle, AnonThrottle, UserThrottle]

    class CorrectionInputSerializer(serializers.Serializer):
        label = LabelField()
        source = serializers.ChoiceField(
            choices=[Correction.Source.PAGE, Correction.Source.API],
            default=Correction.Source.API,
        )

    class CorrectionOutputSerializer(CorrectionSerializer):
        training_run = TrainingRunBriefSerializer(allow_null=True)

        class Meta(CorrectionSerializer.Meta):
            fields = [*CorrectionSerializer.Meta.fields, "training_run"]

    @extend_schema(
        request=CorrectionInputSerializer,
        responses={201: CorrectionOutputSerializer, 503: UNAVAILABLE, **ERRORS},
    )
    def post(self, request, sample_id: int):
        serializer = self.CorrectionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        sample = selectors.sample_for_correction(
            sample_id=sample_id,
            user=request.user,
            session_key=request.session.session_key,
        )
        if sample is None:
            raise NotFound(
                f"No sample {sample_id} that you may label: only its drawer (the page's "
                "session, or the token it was sent with) and moderators may."
            )
        outcome = services.correct_sample(
            sample=sample,
            label=serializer.validated_data["label"],
            source=serializer.validated_data["source"],
            author=request.user,
            session_key=request.session.session_key or "",
        )
        correction = outcome.correction
        correction.training_run = outcome.training_run
        return Response(
            self.CorrectionOutputSerializer(correction).data,
            status=status.HTTP_201_CREATED,
        )
