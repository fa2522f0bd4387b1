"""Every API error has one shape: ``{"error": {"code": ..., "message": ...}}``."""

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from recognition.images import DrawingError
from training.registry import NoActiveModel


def error_response(code: str, message: str, http_status: int, headers=None) -> Response:
    return Response(
        {"error": {"code": code, "message": message}},
        status=http_status,
        headers=headers,
    )


def _flatten(detail, prefix="") -> list[str]:
    """Turn DRF's nested error details into 'field: message' lines."""
    if isinstance(detail, dict):
        lines = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else f"{prefix}{key}"
            lines += _flatten(value, f"{name}." if name else "")
        return lines
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    field = prefix.rstrip(".")
    return [f"{field}: {detail}" if field else str(detail)]


def _first_code(detail) -> str:
    if isinstance(detail, dict):
        detail = next(iter(detail.values()), "invalid")
    if isinstance(detail, list):
        return _first_code(detail[0]) if detail else "invalid"
    return getattr(detail, "code", "invalid")


def exception_handler(exc, context):
    if isinstance(exc, DrawingError):
        http_status = (
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
            if exc.code == "too_large"
            else status.HTTP_400_BAD_REQUEST
        )
        return error_response(exc.code, exc.message, http_status)
    if isinstance(exc, RequestDataTooBig):
        return error_response(
            "too_large", "The request body is too large.", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if isinstance(exc, NoActiveModel):
        return error_response("no_model", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code = _first_code(exc.detail)
        message = "; ".join(_flatten(exc.detail))
    else:
        code = getattr(exc.detail, "code", exc.default_code)
        message = str(exc.detail)
    response.data = {"error": {"code": code, "message": message}}
    return response
