from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("samples", views.SampleViewSet, basename="sample")
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")
router.register("training-runs", views.TrainingRunViewSet, basename="training-run")

urlpatterns = [
    path("predictions/", views.PredictionCreateApi.as_view(), name="prediction-create"),
    path(
        "samples/<int:sample_id>/corrections/",
        views.CorrectionCreateApi.as_view(),
        name="correction-create",
    ),
    *router.urls,
]
