"""A JSON parser that answers pathological nesting with a 400 instead of a crash."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# The API's deepest document is strokes: body -> strokes -> stroke -> point.
MAX_DEPTH = 32


def _deeper_than(data, limit: int) -> bool:
    """Walk iteratively: a recursive walk would hit the very limit it guards against."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            if depth > limit:
                return True
            stack.extend((item, depth + 1) for item in value)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # json.loads recurses per level; DRF only turns ValueError into a 400.
            raise ParseError("JSON parse error - nested too deeply.") from None
        # Shallow enough to parse can still be deep enough to overflow later
        # (json.dumps in JSONField, repr in error messages).
        if _deeper_than(data, MAX_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")
        return data
