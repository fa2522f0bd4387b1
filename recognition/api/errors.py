"""Every API error has one shape: ``{"error": {"code": ..., "message": ...}}``.

``exception_handler`` shapes errors raised inside API views; the ``api_*`` views
are Django's 400/404/500 handlers, which shape errors that never reach a view
(an unknown URL under ``/api/``) and leave the rest of the site's pages alone.
"""

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from recognition.images import DrawingError
from training.registry import NoActiveModel
from training.services import VersionPruned


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
            "too_large",
            str(exc) or "The request body is too large.",
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        # Too many form fields or files, a malformed multipart: the request's fault.
        return error_response("bad_request", str(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, VersionPruned):
        return error_response("pruned", str(exc), status.HTTP_409_CONFLICT)
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


API_PREFIX = "/api/"


def _json_error(code: str, message: str, http_status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=http_status)


def api_bad_request(request, exception):
    if request.path_info.startswith(API_PREFIX):
        return _json_error("bad_request", "The request is malformed.", 400)
    return defaults.bad_request(request, exception)


def api_not_found(request, exception):
    if request.path_info.startswith(API_PREFIX):
        return _json_error("not_found", f"No endpoint at {request.path_info}.", 404)
    return defaults.page_not_found(request, exception)


def api_server_error(request):
    if request.path_info.startswith(API_PREFIX):
        return _json_error("server_error", "Internal error; it has been logged.", 500)
    return defaults.server_error(request)
