"""Thin API views: validate, call a service or a selector, shape the answer."""

import django_filters
from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAcceptable, NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from recognition import selectors, services
from recognition.context import DEFAULT_CONTEXT
from recognition.models import Correction, Sample
from recognition.views import drawing_response
from training import services as training_services
from training.models import ModelVersion, TrainingRun
from writers.identity import WRITER_NAME_MAX_LENGTH, writer_of

from .parsers import JSONParser
from .serializers import (
    ContextField,
    CorrectionSerializer,
    DrawingField,
    ErrorSerializer,
    LabelField,
    ModelVersionSerializer,
    SampleDetailSerializer,
    SampleListSerializer,
    StrokesField,
    TopLabelSerializer,
    TrainingRunBriefSerializer,
    TrainingRunPublicSerializer,
    TrainingRunSerializer,
)
from .throttles import AnonThrottle, CorrectionThrottle, UserThrottle

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Bad input, with a code and a reason"),
    404: OpenApiResponse(ErrorSerializer, description="No such object"),
    429: OpenApiResponse(ErrorSerializer, description="Throttled"),
}
UNAVAILABLE = OpenApiResponse(ErrorSerializer, description="The request counter is unreachable")


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
            "too close to call (0 or o); empty otherwise.",
        )
        personal = serializers.BooleanField(
            help_text="Whether the writer's personal model shaped this answer."
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
            raise NotFound(f"No sample {sample_id} that you may label.")
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


class CanViewSamples(BasePermission):
    """Drawings belong to the people who made them: staff, or a user allowed to view samples."""

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated) and (
            user.is_staff or user.has_perm("recognition.view_sample")
        )


class SampleFilter(django_filters.FilterSet):
    label = django_filters.ChoiceFilter(choices=Sample._meta.get_field("label").choices)
    predicted_label = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=Sample.Status.choices)
    corrected = django_filters.BooleanFilter()
    model_version = django_filters.NumberFilter(field_name="model_version_number")
    min_confidence = django_filters.NumberFilter(field_name="confidence", lookup_expr="gte")
    max_confidence = django_filters.NumberFilter(field_name="confidence", lookup_expr="lte")
    source = django_filters.ChoiceFilter(choices=Sample.Source.choices)

    class Meta:
        model = Sample
        fields: list = []


class ErrorsAsJsonNegotiation(DefaultContentNegotiation):
    """A client that accepts only the file still gets its errors, as JSON, not a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class SampleViewSet(viewsets.ReadOnlyModelViewSet):
    """Samples with their latest prediction; the detail has every prediction and correction."""

    permission_classes = [CanViewSamples]
    filterset_class = SampleFilter

    def get_queryset(self):
        return selectors.sample_list()

    def get_serializer_class(self):
        return SampleDetailSerializer if self.action == "retrieve" else SampleListSerializer

    def get_object(self):
        try:
            sample_id = int(self.kwargs["pk"])
            if self.action == "drawing":  # the file's name is all it needs
                return Sample.objects.get(pk=sample_id)
            return selectors.sample_detail(sample_id=sample_id)
        except (Sample.DoesNotExist, ValueError, OverflowError):
            raise NotFound(f"No sample {self.kwargs['pk']}.") from None

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The PNG"),
            404: ERRORS[404],
        }
    )
    @action(detail=True, content_negotiation_class=ErrorsAsJsonNegotiation)
    def drawing(self, request, pk=None):
        """The stored drawing as a PNG, streamed; browsers may cache it privately."""
        sample = self.get_object()
        try:
            return drawing_response(sample)
        except Http404 as missing:  # the file is gone from storage
            raise NotFound(str(missing)) from None


class CanActivateModelVersions(BasePermission):
    """Staff with ``training.change_modelversion`` (checked again by the service)."""

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff) and user.has_perm(
            "training.change_modelversion"
        )


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions, newest first; staff activate one to roll back or forward."""

    queryset = ModelVersion.objects.select_related("parent")
    serializer_class = ModelVersionSerializer
    permission_classes = [AllowAny]

    @extend_schema(responses={200: ModelVersionSerializer, 404: ERRORS[404]})
    @action(detail=False)
    def active(self, request):
        version = self.get_queryset().filter(status=ModelVersion.Status.ACTIVE).first()
        if version is None:
            raise NotFound("No model version is active.")
        return Response(self.get_serializer(version).data)

    @extend_schema(request=None, responses={200: ModelVersionSerializer, **ERRORS})
    @action(detail=True, methods=["post"], permission_classes=[CanActivateModelVersions])
    def activate(self, request, pk=None):
        version = self.get_object()
        training_services.model_version_activate(version=version, user=request.user)
        return Response(self.get_serializer(version).data)


class TrainingRunViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Fine-tunes and their progress; anyone may follow a run, staff may list them."""

    queryset = TrainingRun.objects.select_related(
        "parent_version", "result_version"
    ).prefetch_related(Prefetch("corrections", queryset=Correction.objects.only("pk")))
    serializer_class = TrainingRunSerializer

    def get_serializer_class(self):
        if self.request is not None and self.request.user.is_staff:
            return TrainingRunSerializer
        return TrainingRunPublicSerializer

    @extend_schema(responses={200: TrainingRunPublicSerializer, 404: ERRORS[404]})
    def retrieve(self, request, *args, **kwargs):
        """Anyone may follow a run's status and progress; staff get its figures too."""
        return super().retrieve(request, *args, **kwargs)

    def get_permissions(self):
        return [AllowAny()] if self.action == "retrieve" else [IsAdminUser()]
