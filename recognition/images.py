"""Decoding untrusted drawings: every way an upload can be bad gets its own error code."""

import io
import warnings

from django.conf import settings
from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MAX_SIDE = 4096
# Larger drawings are decoded straight to this size (JPEGs at a reduced scale):
# preprocessing makes 28x28 of them, so more pixels only cost time.
DECODED_SIDE = 1024


class DrawingError(ValueError):
    """An upload that cannot become a sample; ``code`` is what the API reports."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode_drawing(data: bytes) -> Image.Image:
    """Return the decoded single-frame image, or raise DrawingError saying why not."""
    if not data:
        raise DrawingError("invalid_image", "The image is empty.")
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise DrawingError(
            "too_large",
            f"The image is {len(data)} bytes; the limit is {settings.MAX_UPLOAD_BYTES} bytes.",
        )
    with warnings.catch_warnings():
        # A decompression bomb must fail, not merely warn.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError:
            raise _unreadable(data) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DrawingError(
                "too_many_pixels", f"The image is over {MAX_SIDE}x{MAX_SIDE} pixels."
            ) from None
        except (OSError, SyntaxError, ValueError) as error:
            raise DrawingError("invalid_image", f"The image cannot be read: {error}") from None
        _check_dimensions(image)
        if getattr(image, "n_frames", 1) > 1:
            raise DrawingError("invalid_image", "Animated or multi-page images are not accepted.")
        try:
            image.verify()
            image = Image.open(io.BytesIO(data), formats=[image.format])
            if max(image.size) > DECODED_SIDE:
                image.thumbnail((DECODED_SIDE, DECODED_SIDE), Image.Resampling.BOX)
            else:
                image.load()
        except (
            OSError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as error:
            raise DrawingError("invalid_image", f"The image is corrupt: {error}") from None
    return image


def _check_dimensions(image: Image.Image):
    width, height = image.size
    if width < 1 or height < 1:
        raise DrawingError("invalid_image", "The image has no pixels.")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > settings.MAX_IMAGE_PIXELS:
        raise DrawingError(
            "too_many_pixels",
            f"The image is {width}x{height}; the limit is {MAX_SIDE} pixels a side "
            f"and {settings.MAX_IMAGE_PIXELS} in all.",
        )


def _unreadable(data: bytes) -> DrawingError:
    """Tell an image in a format we do not take from bytes that are no image at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = Image.open(io.BytesIO(data))
            other_format = other.format
    except Exception:
        other_format = None
    if other_format:
        return DrawingError(
            "unsupported_format",
            f"{other_format} images are not accepted; send one of {', '.join(ACCEPTED_FORMATS)}.",
        )
    return DrawingError("invalid_image", "The data is not an image.")


def encode_png(image: Image.Image) -> bytes:
    if image.mode == "CMYK":
        # PNG has no CMYK; JPEGs from print workflows carry it.
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
