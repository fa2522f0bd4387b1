"""Hostile clients: throttles on the real client, corrections fail closed, activation needs the
model permission, strokes and uploads within bounds, nothing leaks from /healthz or /metrics."""

import base64
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition.models import Correction, Sample
from training.models import ModelVersion

from .conftest import SEVEN, copy_of, draw_png

pytestmark = pytest.mark.django_db

PNG = draw_png(SEVEN)


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def rates(settings, **rates):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "corrections": None, **rates},
    }


def predict(client, png=PNG, **extra):
    """As the page draws: its session may then label the drawing."""
    body = {"image": base64.b64encode(png).decode(), "source": "page"}
    return client.post("/api/predictions/", body, format="json", **extra)


# --- Throttles ------------------------------------------------------------------


def test_a_spoofed_forwarded_for_does_not_escape_the_throttle(default_model, settings, redis_cache):
    rates(settings, anon="3/min")
    client = APIClient()
    codes = [predict(client, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    # NUM_PROXIES=0: the key is the socket's address, whatever the header says.
    assert redis_cache.keys() == [b"recognizer:1:throttle_anon_127.0.0.1"]


def test_behind_one_proxy_the_throttle_keys_on_the_address_it_appends(
    default_model, settings, redis_cache
):
    rates(settings, anon="1/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()
    first = predict(client, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7")
    again = predict(client, HTTP_X_FORWARDED_FOR="10.1.1.1, 203.0.113.7")
    other = predict(client, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.8")
    assert [first.status_code, again.status_code, other.status_code] == [201, 429, 201]


def test_corrections_have_their_own_tighter_rate(default_model, settings, redis_cache):
    rates(settings, anon="100/min", corrections="2/min")
    client = APIClient()
    sample = predict(client).json()["sample"]
    url = f"/api/samples/{sample}/corrections/"
    codes = [client.post(url, {"label": label}, format="json").status_code for label in "tl1"]
    assert codes == [201, 201, 429]
    assert predict(client).status_code == 201  # predictions still have room
    assert Correction.objects.count() == 2


def test_corrections_fail_closed_and_predictions_open_while_redis_is_down(
    default_model, settings, redis_cache, redis_server
):
    rates(settings, anon="100/min", corrections="100/min")
    client = APIClient()
    sample = predict(client).json()["sample"]
    redis_server.stop()
    try:
        refused = client.post(f"/api/samples/{sample}/corrections/", {"label": "t"}, format="json")
        assert predict(client).status_code == 201
    finally:
        redis_server.start()
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "throttle_unavailable"
    assert set(refused.json()) == {"error"}
    assert not Correction.objects.exists()


# --- Activation -------------------------------------------------------------------


def test_activation_needs_the_model_permission_and_is_logged(default_model):
    rejected = copy_of(default_model)
    rejected.status = ModelVersion.Status.REJECTED
    rejected.save()
    url = f"/api/model-versions/{rejected.pk}/activate/"
    moderator = User.objects.create_user("moderator", is_staff=True)
    refused = token_client(moderator).post(url)
    assert refused.status_code == 403 and set(refused.json()) == {"error"}
    assert ModelVersion.objects.get(status="active") == default_model
    assert not LogEntry.objects.exists()

    operator = User.objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    assert token_client(operator).post(url).json()["status"] == "active"
    entry = LogEntry.objects.get()
    assert (entry.user, entry.object_id, entry.change_message) == (
        operator,
        str(rejected.pk),
        "Activated",
    )


# --- Strokes ----------------------------------------------------------------------


def multipart_strokes(client, text: str):
    return client.post(
        "/api/predictions/",
        {"image": io.BytesIO(PNG), "strokes": text},
        format="multipart",
    )


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # deeper than json.loads recurses
        "[" * 40 + "]" * 40,  # deep enough to be no strokes
        "[[[" + "9" * 400 + ", 1, 2]]]",  # a 400-digit integer
        "[[[1e308, 1, 2]]]",
        "[[[NaN, 1, 2]]]",
        "[[[1, 2, 3, 4]]]",
        "[[" + ",".join(["[1, 2, 3]"] * 20_001) + "]]",
        "not json",
    ],
    ids=["recursion", "deep", "huge-int", "near-max-float", "nan", "four", "many", "garbage"],
)
def test_bad_multipart_strokes_are_a_400(default_model, text):
    response = APIClient(raise_request_exception=False).post(
        "/api/predictions/", {"image": io.BytesIO(PNG), "strokes": text}, format="multipart"
    )
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error"} and "strokes" in response.json()["error"]["message"]
    assert not Sample.objects.exists()


def test_bounded_strokes_are_kept(default_model):
    response = multipart_strokes(APIClient(), "[[[10, 20, 0], [30.5, 40, 16]]]")
    assert response.status_code == 201, response.content
    assert Sample.objects.get().strokes == [[[10, 20, 0], [30.5, 40, 16]]]


def test_the_admin_draws_whatever_strokes_are_stored(default_model):
    sample_id = predict(APIClient()).json()["sample"]
    browser = Client()
    browser.force_login(User.objects.create_superuser("root"))
    for stored in (
        [[[1e308, -1e308, 0], [5, 5, 1]]],
        [[["x", None], 7, [[1, 2]]], "stroke"],
        {"not": "a list"},
        [[[1, 2, 3], [4, 5, 6]]],
    ):
        Sample.objects.filter(pk=sample_id).update(strokes=stored)
        page = browser.get(f"/admin/recognition/sample/{sample_id}/change/")
        assert page.status_code == 200


# --- Uploads and images -------------------------------------------------------------


def test_an_upload_is_cut_off_while_it_streams(live_server, default_model, settings):
    """The server answers 413 after the limit's worth of a far larger body, never reading it all."""
    settings.MAX_UPLOAD_BYTES = 256 * 1024
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    declared = 1024**3  # a gigabyte that is never sent
    host, port = live_server.thread.host, live_server.thread.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /api/predictions/ HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
            ).encode()
            + head
        )
        sent = 0
        sock.settimeout(0.05)
        response = b""
        while sent < 8 * settings.MAX_UPLOAD_BYTES and not response:
            try:
                sock.sendall(b"\0" * 65536)
                sent += 65536
                response = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    status_line, _, rest = response.partition(b"\r\n")
    assert b" 413 " in status_line, response[:500]
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "too_large"
    assert sent < 8 * settings.MAX_UPLOAD_BYTES
    assert not Sample.objects.exists()


def png_of_size(width: int, height: int) -> bytes:
    image = Image.new("L", (width, height), 255)
    image.paste(0, (width // 3, height // 4, width // 3 + width // 8, height * 3 // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_over_the_pixel_cap_are_refused(default_model, settings):
    response = predict(APIClient(raise_request_exception=False), png_of_size(2100, 2000))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_pixels"
    assert not Sample.objects.exists()


def test_large_drawings_are_downscaled_before_preprocessing(default_model):
    response = predict(APIClient(), png_of_size(1900, 1900))
    assert response.status_code == 201, response.content
    sample = Sample.objects.get()
    assert max(sample.width, sample.height) <= 1024
    assert response.json()["label"] in "1l"


# --- Operations endpoints -------------------------------------------------------------


def test_healthz_reports_failures_without_exception_text(default_model, settings):
    settings.REDIS_URL = "redis://user:hunter2@127.0.0.1:1/0"
    response = Client().get("/healthz")
    body = response.json()
    assert body["redis"] == "error"
    assert "hunter2" not in response.content.decode() and "Error" not in body["redis"]


def test_metrics_need_the_token_when_debug_is_off(db, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    settings.METRICS_TOKEN = "scrape-secret"
    allowed = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert allowed.status_code == 200


def _settings_in_a_fresh_process(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from django.conf import settings; print(settings.DEBUG)"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "recognizer_site.settings", **env},
        cwd=str(Path(__file__).resolve().parent.parent),
        capture_output=True,
        text=True,
    )  # fmt: skip


def test_debug_is_off_unless_set():
    assert _settings_in_a_fresh_process(SECRET_KEY="x" * 60).stdout.strip() == "False"
    unset = _settings_in_a_fresh_process()
    assert unset.returncode != 0 and "SECRET_KEY must be set" in unset.stderr
    assert _settings_in_a_fresh_process(DEBUG="1").stdout.strip() == "True"
