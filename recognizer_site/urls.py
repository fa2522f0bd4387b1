from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from recognition.health import healthz
from recognition.metrics import metrics

urlpatterns = [
    path("", include("recognition.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("api/writers/", include("writers.urls")),
    path("api/", include("recognition.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="swagger-ui",
    ),
    path("admin/", admin.site.urls),
]

# Errors outside any API view (an unknown /api/ URL) keep the API's error shape.
handler400 = "recognition.api.errors.api_bad_request"
handler404 = "recognition.api.errors.api_not_found"
handler500 = "recognition.api.errors.api_server_error"
