"""The API's input fields: drawings, pen strokes, labels and contexts, validated with a reason."""

import base64
import binascii
import json
import re

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from recognition.context import UnknownContext, context_parse
from recognition.images import DrawingError
from training.classes import CLASSES

DATA_URL_PREFIX = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,")
MAX_STROKES = 500
MAX_POINTS = 20_000


@extend_schema_field(
    {
        "type": "string",
        "description": "A PNG/JPEG/WebP/GIF/BMP file, or its base64 or data URL",
    }
)
class DrawingField(serializers.Field):
    """Accepts an uploaded file (multipart) or base64 text (JSON); yields the raw bytes."""

    default_error_messages = {
        "invalid_base64": "The image is not valid base64 (a data URL or plain base64).",
        "invalid_type": "Send the image as a file (multipart) or as base64 text (JSON).",
    }

    def to_internal_value(self, data) -> bytes:
        limit = settings.MAX_UPLOAD_BYTES
        if isinstance(data, UploadedFile):
            if data.size > limit:
                raise DrawingError(
                    "too_large",
                    f"The image is {data.size} bytes; the limit is {limit} bytes.",
                )
            return data.read()
        if not isinstance(data, str):
            self.fail("invalid_type")
        text = DATA_URL_PREFIX.sub("", data.strip(), count=1)
        if len(text) * 3 // 4 > limit:
            raise DrawingError("too_large", f"The image is over the limit of {limit} bytes.")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.fail("invalid_base64")

    def to_representation(self, value):
        return None


# Strokes are in the page's CSS pixels and milliseconds: far below this on any screen.
MAX_COORDINATE = 1e7
# A number's digits as sent; anything longer is no coordinate.
MAX_NUMBER_CHARS = 24


def _bounded_number(text: str):
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("a number with too many digits")
    return float(text)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "description": "[[[x, y, t], ...], ...]: JSON, or JSON text in a multipart field",
    }
)
class StrokesField(serializers.Field):
    """The drawing's strokes: at most MAX_STROKES lists of [x, y, t] points, MAX_POINTS in all,
    each a finite number within MAX_COORDINATE. Multipart sends them as JSON text."""

    default_error_messages = {
        "invalid_json": "Strokes must be JSON: {reason}.",
        "shape": "Send at most {strokes} strokes, each a list of [x, y, t] points.",
        "points": "Send at most {points} points in all.",
        "number": "Each point is [x, y, t] with finite numbers of at most {limit:g}.",
    }

    def __init__(self, **kwargs):
        super().__init__(**{"required": False, "allow_null": True, **kwargs})

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = self._parse(data)
        if not isinstance(data, list) or len(data) > MAX_STROKES:
            self.fail("shape", strokes=MAX_STROKES)
        points = 0
        for stroke in data:
            if not isinstance(stroke, list):
                self.fail("shape", strokes=MAX_STROKES)
            points += len(stroke)
            if points > MAX_POINTS:
                self.fail("points", points=MAX_POINTS)
            if not all(_is_point(point) for point in stroke):
                self.fail("number", limit=MAX_COORDINATE)
        return data

    def _parse(self, text: str):
        if len(text) > MAX_POINTS * 3 * (MAX_NUMBER_CHARS + 1):
            self.fail("points", points=MAX_POINTS)
        try:
            # Integers too: a 400-digit one would overflow later, as a float.
            return json.loads(
                text,
                parse_int=_bounded_number,
                parse_float=_bounded_number,
                parse_constant=lambda name: _bounded_number("x" * (MAX_NUMBER_CHARS + 1)),
            )
        except RecursionError:
            self.fail("invalid_json", reason="nested too deeply")
        except ValueError as error:
            self.fail("invalid_json", reason=str(error)[:100])

    def to_representation(self, value):
        return value


def _is_point(point) -> bool:
    """[x, y, t], finite and bounded; big integers compare exactly, without overflow."""
    return (
        isinstance(point, list)
        and len(point) == 3
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and abs(v) <= MAX_COORDINATE
            for v in point
        )
    )


class LabelField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=CLASSES, **kwargs)
        self.error_messages["invalid_choice"] = (
            '"{input}" is not a label: use one of ' + " ".join(CLASSES) + "."
        )

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            messages = [str(detail) for detail in error.detail]
            raise serializers.ValidationError(messages, code="invalid_label") from None


@extend_schema_field(
    {
        "type": "string",
        "default": "all",
        "description": "Which labels the answer may be: all, digits, letters, "
        'or a string of the allowed labels (e.g. "0123456789abcdef")',
    }
)
class ContextField(serializers.CharField):
    """A drawing's context, in its stored form (``recognition.context``)."""

    def to_internal_value(self, data):
        try:
            return context_parse(super().to_internal_value(data))
        except UnknownContext as error:
            raise serializers.ValidationError(str(error), code="invalid_classes") from None
