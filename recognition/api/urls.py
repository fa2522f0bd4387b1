from django.urls import path
from rest_framework.routers import DefaultRouter

from . import samples, versions, views

router = DefaultRouter()
router.register("samples", samples.SampleViewSet, basename="sample")
router.register("model-versions", versions.ModelVersionViewSet, basename="model-version")
router.register("training-runs", versions.TrainingRunViewSet, basename="training-run")

urlpatterns = [
    path("predictions/", views.PredictionCreateApi.as_view(), name="prediction-create"),
    path(
        "samples/<int:sample_id>/corrections/",
        views.CorrectionCreateApi.as_view(),
        name="correction-create",
    ),
    *router.urls,
]
