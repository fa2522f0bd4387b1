"""The REST API with real PNGs: shapes, stored rows, and every kind of bad input."""

import base64
import io
import re

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition.models import Correction, Prediction, Sample
from recognition.services import moderator_create
from training.classes import CLASSES
from training.models import ModelVersion, TrainingRun

from .conftest import ONE, SEVEN, ZERO, draw_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def staff(db):
    """A moderator: staff in the Moderators group."""
    return moderator_create(username="moderator", password="pw-for-tests-only")


def predict(client, png: bytes, **extra):
    return client.post(
        "/api/predictions/",
        {"image": "data:image/png;base64," + base64.b64encode(png).decode(), **extra},
        format="json",
    )


def media_files(settings) -> list:
    root = settings.MEDIA_ROOT / "samples"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_prediction_multipart_stores_sample_and_prediction(client, default_model, settings):
    png = draw_png(ONE)
    response = client.post("/api/predictions/", {"image": io.BytesIO(png)}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {
        "sample",
        "label",
        "confidence",
        "top",
        "model_version",
        "preview",
    }
    assert body["label"] == "1"
    assert body["model_version"] == default_model.number
    assert next(entry["label"] for entry in body["top"]) == body["label"]
    probabilities = [entry["probability"] for entry in body["top"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert body["confidence"] == pytest.approx(probabilities[0])

    sample = Sample.objects.get(pk=body["sample"])
    prediction = Prediction.objects.get(sample=sample)
    assert sample.source == "api" and sample.strokes is None
    assert (sample.width, sample.height) == (280, 280)
    assert sample.glyph_array().shape == (28, 28)
    assert sample.image.read() == png  # a PNG is kept byte for byte
    assert prediction.label == "1" and len(prediction.probabilities) == len(CLASSES)
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-3)
    assert prediction.model_version == default_model and prediction.latency_ms > 0

    preview = Image.open(io.BytesIO(base64.b64decode(body["preview"].split(",", 1)[1])))
    assert preview.size == (28, 28)
    assert np.array_equal(np.asarray(preview), sample.glyph_array())


def test_prediction_json_keeps_strokes_and_recognizes(client, default_model):
    strokes = [[[80, 60, 0], [200, 60, 40], [120, 230, 90]]]
    response = predict(client, draw_png(SEVEN), strokes=strokes, source="page")
    assert response.status_code == 201, response.content
    sample = Sample.objects.get(pk=response.json()["sample"])
    assert sample.strokes == strokes and sample.source == "page"
    assert sample.session_key  # page drawings belong to the browser session
    assert response.json()["label"] == "7"
    zero = predict(client, draw_png(ZERO)).json()
    assert zero["label"] in {"0", "o"}


def test_prediction_accepts_plain_base64_and_jpeg(client, default_model):
    jpeg = draw_png(ONE, mode="RGB", image_format="JPEG")
    response = client.post(
        "/api/predictions/", {"image": base64.b64encode(jpeg).decode()}, format="json"
    )
    assert response.status_code == 201, response.content
    stored = Sample.objects.get().image.read()
    assert stored.startswith(b"\x89PNG")  # normalised to PNG


def _png_of(size, mode="L", color=0) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(draw_png(ONE))).save(buffer, format="TIFF")
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.open(io.BytesIO(draw_png(stroke))).convert("P") for stroke in (ONE, SEVEN)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


BAD_JSON_IMAGES = {
    "bad base64": ("!!!not base64!!!", 400, "invalid_base64"),
    "not an image": (
        base64.b64encode(b"hello, I am text").decode(),
        400,
        "invalid_image",
    ),
    "truncated png": (
        base64.b64encode(draw_png(ONE)[:200]).decode(),
        400,
        "invalid_image",
    ),
    "unsupported format": (
        base64.b64encode(_tiff()).decode(),
        400,
        "unsupported_format",
    ),
    "too many pixels": (
        base64.b64encode(_png_of((5000, 20))).decode(),
        400,
        "too_many_pixels",
    ),
    "decompression bomb": (
        base64.b64encode(_png_of((20000, 20000), mode="1")).decode(),
        400,
        "too_many_pixels",
    ),
    "animated": (base64.b64encode(_animated_gif()).decode(), 400, "invalid_image"),
    "blank": (base64.b64encode(draw_png([])).decode(), 400, "blank"),
    # A tap: scaled up, it once read as a confident "t".
    "a dot": (base64.b64encode(draw_png([[(140, 140)]], width=18)).decode(), 400, "blank"),
    "a number": (12345, 400, "invalid_type"),
    "over 2 MB": ("A" * (3 * 1024 * 1024), 413, "too_large"),
}


@pytest.mark.parametrize("case", BAD_JSON_IMAGES, ids=list(BAD_JSON_IMAGES))
def test_bad_images_get_a_reason_and_store_nothing(client, default_model, settings, case):
    image, status, code = BAD_JSON_IMAGES[case]
    response = client.post("/api/predictions/", {"image": image}, format="json")
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert Sample.objects.count() == 0 and Prediction.objects.count() == 0
    assert media_files(settings) == []


def test_oversized_multipart_file_is_refused(client, default_model, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    big = buffer.getvalue()
    assert len(big) > 10_000
    response = client.post("/api/predictions/", {"image": io.BytesIO(big)}, format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert Sample.objects.count() == 0 and media_files(settings) == []


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{not json", "application/json"),
        (b'{"strokes": []}', "application/json"),
        (b'{"image": "x", "strokes": [[["a", 1, 2]]]}', "application/json"),
        (b'{"image": "x", "strokes": "nope"}', "application/json"),
        (b"image=abc", "text/plain"),
    ],
)
def test_malformed_requests_are_4xx_json(client, default_model, body, content_type):
    response = client.generic("POST", "/api/predictions/", body, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"]
    assert Sample.objects.count() == 0


def test_no_active_model_is_503_not_500(client, db):
    response = predict(client, draw_png(ONE))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_model"
    assert Sample.objects.count() == 0


def test_correction_updates_label_and_queues_a_run(client, default_model, settings):
    settings.LEARN_FROM = "everyone"  # the open loop: anyone's correction trains
    sample_id = predict(client, draw_png(ONE), source="page").json()["sample"]
    response = client.post(
        f"/api/samples/{sample_id}/corrections/",
        {"label": "l", "source": "page"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["label"] == "l" and body["previous_label"] == "1"
    assert body["training_state"] == "pending"
    run = TrainingRun.objects.get()
    assert body["training_run"] == {"id": run.pk, "status": "queued"}
    sample = Sample.objects.get(pk=sample_id)
    assert sample.label == "l"
    assert Correction.objects.get().sample == sample


def test_confirming_the_prediction_needs_no_training(client, default_model):
    predicted = predict(client, draw_png(ONE), source="page").json()
    response = client.post(
        f"/api/samples/{predicted['sample']}/corrections/",
        {"label": predicted["label"]},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["training_state"] == "not_needed"
    assert response.json()["training_run"] is None
    assert TrainingRun.objects.count() == 0


def test_label_outside_the_classes_lists_them(client, default_model):
    sample_id = predict(client, draw_png(ONE), source="page").json()["sample"]
    for label in ["A", "10", "", "é", None]:
        response = client.post(
            f"/api/samples/{sample_id}/corrections/", {"label": label}, format="json"
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] in {"invalid_label", "null", "blank"}
    assert (
        "0 1 2 3 4 5 6 7 8 9 a b"
        in client.post(
            f"/api/samples/{sample_id}/corrections/", {"label": "A"}, format="json"
        ).json()["error"]["message"]
    )
    assert Correction.objects.count() == 0


def test_missing_or_foreign_sample_is_404(client, default_model):
    assert client.post("/api/samples/999/corrections/", {"label": "a"}).status_code == 404
    sample_id = predict(client, draw_png(ONE), source="page").json()["sample"]
    stranger = APIClient()
    response = stranger.post(f"/api/samples/{sample_id}/corrections/", {"label": "a"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Correction.objects.count() == 0


def test_samples_need_staff_or_permission(client, default_model, staff):
    predict(client, draw_png(ONE))
    assert client.get("/api/samples/").status_code in {401, 403}
    reader = User.objects.create_user("reader")
    token = Token.objects.create(user=reader)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/samples/").status_code == 403
    reader.user_permissions.add(Permission.objects.get(codename="view_sample"))
    assert client.get("/api/samples/").status_code == 200


def test_sample_list_filters_and_detail(client, default_model, staff):
    one = predict(client, draw_png(ONE)).json()["sample"]
    seven = predict(client, draw_png(SEVEN), source="page").json()["sample"]
    client.post(f"/api/samples/{seven}/corrections/", {"label": "t"}, format="json")
    client.force_authenticate(staff)
    ids = lambda query: [row["id"] for row in client.get(f"/api/samples/{query}").json()["results"]]  # noqa: E731
    assert set(ids("")) == {one, seven}
    assert ids("?corrected=true") == [seven]
    assert ids("?label=t") == [seven]
    assert ids("?predicted_label=1") == [one]
    assert set(ids(f"?model_version={default_model.number}")) == {one, seven}
    assert ids("?min_confidence=1.01") == []
    detail = client.get(f"/api/samples/{seven}/").json()
    assert detail["predictions"][0]["label"] == "7"
    assert detail["corrections"][0]["label"] == "t"
    assert client.get("/api/samples/424242/").status_code == 404


def drawing_bytes(response) -> bytes:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=3600"
    return b"".join(response.streaming_content)


def test_sample_image_links_to_its_drawing(client, default_model, staff):
    png = draw_png(SEVEN)
    sample_id = predict(client, png).json()["sample"]
    client.force_authenticate(staff)
    url = f"http://testserver/api/samples/{sample_id}/drawing/"
    assert client.get("/api/samples/").json()["results"][0]["image"] == url
    assert client.get(f"/api/samples/{sample_id}/").json()["image"] == url
    assert drawing_bytes(client.get(url)) == png  # the stored bytes, as posted
    assert drawing_bytes(client.get(url, HTTP_ACCEPT="image/png")) == png


def test_sample_drawing_needs_staff_or_permission(client, default_model):
    png = draw_png(ONE)
    url = f"/api/samples/{predict(client, png).json()['sample']}/drawing/"
    response = client.get(url)
    assert response.status_code in {401, 403}
    assert response.json()["error"]["code"] == "not_authenticated"
    reader = User.objects.create_user("reader")
    token = Token.objects.create(user=reader)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get(url)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    reader.user_permissions.add(Permission.objects.get(codename="view_sample"))
    assert drawing_bytes(client.get(url)) == png


def test_missing_sample_or_drawing_file_is_json_404(client, default_model, staff):
    sample_id = predict(client, draw_png(ONE)).json()["sample"]
    client.force_authenticate(staff)
    for missing in ("424242", "x"):
        response = client.get(f"/api/samples/{missing}/drawing/", HTTP_ACCEPT="image/png")
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "not_found", "message": f"No sample {missing}."}
    sample = Sample.objects.get(pk=sample_id)
    sample.image.storage.delete(sample.image.name)
    response = client.get(f"/api/samples/{sample_id}/drawing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "no stored drawing" in response.json()["error"]["message"]


def test_model_versions_active_and_staff_only_activation(client, default_model, staff):
    call_command("install_default_model", verbosity=0)  # idempotent: still one version
    assert client.get("/api/model-versions/").json()["count"] == 1
    active = client.get("/api/model-versions/active/").json()
    assert active["number"] == default_model.number and active["status"] == "active"
    headline = ("overall", "digits", "letters", "forgetting")
    expected = {key: default_model.metrics[key] for key in headline if key in default_model.metrics}
    assert expected and active["accuracy"] == expected
    second = ModelVersion.objects.create(
        number=2,
        parent=default_model,
        weights=default_model.weights.name,
        sha256=default_model.sha256,
        architecture=default_model.architecture,
    )
    url = f"/api/model-versions/{second.pk}/activate/"
    assert client.post(url).status_code in {401, 403}
    client.force_authenticate(staff)
    assert client.post(url).status_code == 403  # staff alone may not choose the model
    staff.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    client.force_authenticate(User.objects.get(pk=staff.pk))
    assert client.post(url).json()["status"] == "active"
    default_model.refresh_from_db()
    assert default_model.status == "retired"
    assert client.post(f"/api/model-versions/{default_model.pk}/activate/").status_code == 200
    assert ModelVersion.objects.get(status="active") == default_model


def test_no_active_version_is_404(client, db):
    response = client.get("/api/model-versions/active/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_anonymous_predictions_are_throttled_from_settings(
    client, default_model, settings, redis_cache
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/min", "user": None},
    }
    png = draw_png(ONE)
    codes = [predict(client, png).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert predict(client, png).json()["error"]["code"] == "throttled"
    assert Sample.objects.count() == 2
    # The count lives in Redis under the settings' key prefix, where every process sees it.
    assert redis_cache.keys() == [b"recognizer:1:throttle_anon_127.0.0.1"]


def test_session_users_need_csrf(default_model, staff):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    response = predict(browser, draw_png(ONE))
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


def test_schema_and_offline_swagger(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/predictions/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # Swagger UI from this server's static files, none from a CDN (this machine has no
    # internet); the page's random CSRF token may spell anything, so read its URLs only.
    urls = re.findall(r'(?:src|href)="([^"]+)"', docs.content.decode())
    assert urls and all(url.startswith("/static/drf_spectacular_sidecar/") for url in urls), urls
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
