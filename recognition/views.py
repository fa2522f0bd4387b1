"""The drawing page."""

from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from training.classes import CLASSES, DIGITS, LETTERS


@ensure_csrf_cookie
def index(request):
    """Serve the canvas; the page talks to the API with the session's CSRF token."""
    return render(
        request,
        "recognition/index.html",
        {"classes": CLASSES, "digits": DIGITS, "letters": LETTERS},
    )
