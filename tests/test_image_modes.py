"""Every pixel mode the accepted formats decode to is predicted and stored as a PNG."""

import base64
import io

import pytest
from PIL import Image
from rest_framework.test import APIClient

from recognition.models import Prediction, Sample

from .conftest import ONE, draw_png

pytestmark = pytest.mark.django_db

FORMAT_MODES = [
    ("JPEG", "L"),
    ("JPEG", "RGB"),
    ("JPEG", "CMYK"),
    ("WEBP", "RGB"),
    ("WEBP", "RGBA"),
    ("GIF", "P"),
    ("BMP", "1"),
    ("BMP", "L"),
    ("BMP", "P"),
    ("BMP", "RGB"),
    ("PNG", "1"),
    ("PNG", "LA"),
    ("PNG", "I;16"),
    ("PNG", "P"),
    ("PNG", "RGB"),
]


@pytest.mark.parametrize(("image_format", "mode"), FORMAT_MODES)
def test_every_accepted_mode_is_predicted_and_stored_as_png(default_model, image_format, mode):
    drawing = draw_png(ONE, mode=mode, image_format=image_format)
    assert Image.open(io.BytesIO(drawing)).mode in {mode, "RGB", "P"}
    response = APIClient().post(
        "/api/predictions/", {"image": base64.b64encode(drawing).decode()}, format="json"
    )
    assert response.status_code == 201, response.content
    sample = Sample.objects.get(pk=response.json()["sample"])
    stored = Image.open(io.BytesIO(sample.image.read()))
    assert stored.format == "PNG"
    assert stored.size == (280, 280)
    assert Prediction.objects.filter(sample=sample).count() == 1
    assert response.json()["label"] == "1"
