"""Samples through the API: listed, filtered and read (with their drawing) by staff."""

import django_filters
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAcceptable, NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import BasePermission

from recognition import selectors
from recognition.models import Sample
from recognition.views import drawing_response
from recognizer_site.api_errors import ERRORS

from .serializers import SampleDetailSerializer, SampleListSerializer


class CanViewSamples(BasePermission):
    """Drawings belong to the people who made them: only users allowed to view samples
    (moderators) list them, as in the admin."""

    def has_permission(self, request, view):
        return request.user.has_perm("recognition.view_sample")


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
