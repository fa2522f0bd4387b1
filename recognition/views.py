"""The drawing page, and the response that serves a stored drawing."""

from django.http import FileResponse, Http404
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import ensure_csrf_cookie

from training.classes import CLASSES, DIGITS, LETTERS

from .models import Sample


@ensure_csrf_cookie
def index(request):
    """Serve the canvas; the page talks to the API with the session's CSRF token."""
    return render(
        request,
        "recognition/index.html",
        {"classes": CLASSES, "digits": DIGITS, "letters": LETTERS},
    )


def drawing_response(sample: Sample) -> FileResponse:
    """Stream a sample's stored PNG, cached only by the viewer's browser: drawings are user data.

    Raises Http404 when the file is gone from storage. The admin and the API serve
    drawings through this, each behind its own permission.
    """
    try:
        file = sample.image.open("rb")
    except FileNotFoundError:
        raise Http404(f"Sample {sample.pk} has no stored drawing.") from None
    response = FileResponse(file, content_type="image/png")
    patch_cache_control(response, private=True, max_age=3600)
    return response
