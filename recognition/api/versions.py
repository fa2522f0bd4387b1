"""Model versions and training runs through the API: followed by anyone, activated by staff."""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser
from rest_framework.response import Response

from recognition.models import Correction
from recognizer_site.api_errors import ERRORS
from training import selectors as training_selectors
from training import services as training_services
from training.models import ModelVersion, TrainingRun

from .serializers import (
    ModelVersionSerializer,
    TrainingRunPublicSerializer,
    TrainingRunSerializer,
)


class CanActivateModelVersions(BasePermission):
    """Staff with ``training.change_modelversion`` (checked again by the service)."""

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff) and user.has_perm(
            "training.change_modelversion"
        )


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions, newest first; staff activate one to roll back or forward."""

    queryset = training_selectors.versions_listed()
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

    queryset = TrainingRun.objects.all()
    serializer_class = TrainingRunSerializer

    def _for_staff(self) -> bool:
        return self.request is not None and self.request.user.is_staff

    def get_queryset(self):
        if not self._for_staff():
            return TrainingRun.objects.only("status", "progress")
        return training_selectors.runs_with_versions().prefetch_related(
            Prefetch("corrections", queryset=Correction.objects.only("pk"))
        )

    def get_serializer_class(self):
        return TrainingRunSerializer if self._for_staff() else TrainingRunPublicSerializer

    @extend_schema(responses={200: TrainingRunPublicSerializer, 404: ERRORS[404]})
    def retrieve(self, request, *args, **kwargs):
        """Anyone may follow a run's status and progress; staff get its figures too."""
        return super().retrieve(request, *args, **kwargs)

    def get_permissions(self):
        return [AllowAny()] if self.action == "retrieve" else [IsAdminUser()]
