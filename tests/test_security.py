"""Who may do what, CSRF for the page, throttles, upload names and untrusted weights.

tests/test_api.py already checks anonymous and permission-less access to the
samples, activation, CSRF on a signed-in prediction and the anonymous
prediction throttle; these tests cover the rest.
"""

import base64
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
import torch
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bench.server import Deployment
from recognition.models import Correction, Sample
from recognition.services import moderator_create
from training import nn, registry
from training.models import ModelVersion

from .conftest import (
    ONE,
    SEVEN,
    TEST_CACHE_URL,
    TEST_REDIS_URL,
    _database_url,
    copy_of,
    draw_png,
)
from .test_scale_out import call

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    """A moderator: staff in the Moderators group."""
    return moderator_create(username="moderator", password="pw-for-tests-only")


@pytest.fixture
def member(db):
    return User.objects.create_user("member", password="pw-for-tests-only")


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def predict(client, png: bytes, **extra):
    return client.post(
        "/api/predictions/",
        {"image": "data:image/png;base64," + base64.b64encode(png).decode()},
        format="json",
        **extra,
    )


# --- The admin and the samples ----------------------------------------------


def test_the_admin_is_for_staff_only(staff, member):
    browser = Client()
    assert browser.get("/admin/").url.startswith("/admin/login/")
    browser.force_login(member)
    assert browser.get("/admin/").url.startswith("/admin/login/")
    # An API token is not an admin login, even a staff member's.
    tokened = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=staff)[0].key}")
    assert tokened.get("/admin/").url.startswith("/admin/login/")
    browser.force_login(staff)
    assert browser.get("/admin/").status_code == 200


def test_sample_detail_needs_the_view_permission(default_model, staff, member):
    sample = predict(APIClient(), draw_png(ONE)).json()["sample"]
    url = f"/api/samples/{sample}/"
    session = APIClient()
    session.force_login(member)
    assert session.get(url).status_code == 403
    assert session.get("/api/samples/").status_code == 403
    assert token_client(member).get(url).status_code == 403
    assert token_client(staff).get(url).json()["id"] == sample
    # Being staff opens the admin's door, nothing more: drawings need the permission.
    bare_staff = User.objects.create_user("support", is_staff=True)
    assert token_client(bare_staff).get(url).status_code == 403
    assert token_client(bare_staff).get("/api/samples/").status_code == 403
    member.user_permissions.add(Permission.objects.get(codename="view_sample"))
    member = User.objects.get(pk=member.pk)  # permissions are cached on the instance
    assert token_client(member).get(url).json()["id"] == sample


def test_activation_needs_staff_and_the_model_permission(default_model, staff, member):
    second = copy_of(default_model)
    url = f"/api/model-versions/{second.pk}/activate/"
    member.user_permissions.add(*Permission.objects.filter(codename__endswith="_modelversion"))
    assert token_client(member).post(url).status_code == 403
    assert token_client(staff).post(url).status_code == 403
    assert ModelVersion.objects.get(status="active") == default_model
    staff.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    assert token_client(staff).post(url).json()["status"] == "active"


# --- CSRF for session users ---------------------------------------------------


def signed_in_page(user) -> tuple[APIClient, str]:
    """A browser signed in as ``user`` that has loaded the page, and the CSRF token it got."""
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    return browser, browser.get("/").cookies["csrftoken"].value


def test_session_users_need_the_pages_csrf_token_to_correct(default_model, staff, member):
    for user in (member, staff):
        browser, token = signed_in_page(user)
        made = predict(browser, draw_png(SEVEN), HTTP_X_CSRFTOKEN=token)
        assert made.status_code == 201, made.content
        url = f"/api/samples/{made.json()['sample']}/corrections/"
        refused = browser.post(url, {"label": "t"}, format="json")
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
        assert not Correction.objects.exists()
        corrected = browser.post(url, {"label": "t"}, format="json", HTTP_X_CSRFTOKEN=token)
        assert corrected.status_code == 201, corrected.content
        Correction.objects.all().delete()


def test_only_the_drawer_and_moderators_may_label_an_anonymous_drawing(default_model, staff):
    drawer, stranger = APIClient(), APIClient()
    page_drawing = {"image": base64.b64encode(draw_png(SEVEN)).decode(), "source": "page"}
    made = drawer.post("/api/predictions/", page_drawing, format="json")
    assert made.status_code == 201 and made.cookies.get("sessionid"), made.content
    url = f"/api/samples/{made.json()['sample']}/corrections/"
    # A client that kept no cookie is a stranger too: ids are sequential.
    refused = stranger.post(url, {"label": "x"}, format="json")
    assert refused.status_code == 404, refused.content
    assert not Correction.objects.exists()
    bare_staff = token_client(User.objects.create_user("support", is_staff=True))
    assert bare_staff.post(url, {"label": "x"}, format="json").status_code == 404
    assert drawer.post(url, {"label": "t"}, format="json").status_code == 201
    staffed = token_client(staff).post(url, {"label": "7"}, format="json")
    assert staffed.status_code == 201, staffed.content
    assert list(Correction.objects.order_by("pk").values_list("label", flat=True)) == ["t", "7"]
    # An anonymous program keeps no session: its drawings are nobody's to label.
    program = predict(APIClient(), draw_png(SEVEN)).json()["sample"]
    assert "sessionid" not in predict(APIClient(), draw_png(SEVEN)).cookies
    refused = APIClient().post(
        f"/api/samples/{program}/corrections/", {"label": "x"}, format="json"
    )
    assert refused.status_code == 404 and "only its drawer" in refused.json()["error"]["message"]


def test_staff_sessions_need_the_csrf_token_to_activate(default_model, staff):
    staff.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    browser, token = signed_in_page(staff)
    second = copy_of(default_model)
    activate = f"/api/model-versions/{second.pk}/activate/"
    assert browser.post(activate).status_code == 403
    assert ModelVersion.objects.get(status="active") == default_model
    assert browser.post(activate, HTTP_X_CSRFTOKEN=token).status_code == 200
    assert ModelVersion.objects.get(status="active") == second


# --- Throttles ----------------------------------------------------------------


def _rates_in_a_fresh_process(**env) -> str:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "recognizer_site.settings", **env},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_throttle_rates_come_from_the_environment():
    assert _rates_in_a_fresh_process(
        THROTTLE_ANON="7/hour", THROTTLE_USER="9/min", THROTTLE_CORRECTIONS="4/min"
    ) == str({"anon": "7/hour", "user": "9/min", "corrections": "4/min"})
    assert _rates_in_a_fresh_process(THROTTLE_ANON="off", THROTTLE_CORRECTIONS="off") == str(
        {"anon": None, "user": "600/min", "corrections": None}
    )


def test_anonymous_corrections_are_throttled(default_model, settings, redis_cache):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min", "user": None},
    }
    client = APIClient()
    drawing = {"image": base64.b64encode(draw_png(ONE)).decode(), "source": "page"}
    sample = client.post("/api/predictions/", drawing, format="json").json()["sample"]  # counts
    url = f"/api/samples/{sample}/corrections/"
    codes = [client.post(url, {"label": label}, format="json").status_code for label in "lt7"]
    assert codes == [201, 201, 429]
    assert list(Correction.objects.values_list("label", flat=True).order_by("pk")) == ["l", "t"]
    assert redis_cache.keys() == [b"recognizer:1:throttle_anon_127.0.0.1"]


class HeldPost:
    """A JSON POST whose first bytes are sent and the rest only on ``finish()``.

    A gunicorn sync worker that accepts it waits in the read, so it cannot take
    another request until then.
    """

    def __init__(self, url: str, path: str, body: dict):
        address = urllib.parse.urlsplit(url)
        data = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + data
        self.sock = socket.create_connection((address.hostname, address.port), timeout=60)
        self.sock.sendall(request[:8])
        self.rest = request[8:]

    def finish(self) -> tuple[int, dict]:
        try:
            self.sock.sendall(self.rest)
            response = http.client.HTTPResponse(self.sock)
            response.begin()
            return response.status, json.loads(response.read())
        finally:
            self.sock.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_share_one_anonymous_throttle_budget(redis_cache, settings):
    """Two workers of one gunicorn, one Redis: 3/min is three requests, not three per worker."""
    with Deployment(
        DATABASE_URL=_database_url(),
        MEDIA_ROOT=settings.MEDIA_ROOT,
        REDIS_URL=TEST_REDIS_URL,
        CACHE_URL=TEST_CACHE_URL,
        THROTTLE_ANON="3/min",
    ) as site:
        url = site.start_web(workers=2, access_log=True)
        body = {"image": base64.b64encode(draw_png(ONE)).decode()}
        answers = {}
        # One request at a time (DRF reads then writes the count, so simultaneous ones
        # can slip through), each pair on both workers: the held request is first in
        # the accept queue, so one worker takes it and waits, and the other must answer
        # the free one; then the held one finishes. Per-worker counts would allow all six.
        for pair in range(3):
            held = HeldPost(url, f"/api/predictions/?held{pair}", body)
            answers[f"free{pair}"] = call(url, f"/api/predictions/?free{pair}", body)
            answers[f"held{pair}"] = held.finish()
        assert [status for status, _ in answers.values()] == [201] * 3 + [429] * 3, answers
        for status, answer in answers.values():
            if status == 429:
                assert answer["error"]["code"] == "throttled", answer
                assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}

        # Which worker answered which request: gunicorn logs it after each response.
        def served_by() -> dict[str, str]:
            log = (site.dir / "web.log").read_text()
            pattern = r'^<(\d+)> "POST /api/predictions/\?(\w+) '
            return {tag: pid for pid, tag in re.findall(pattern, log, re.M)}

        deadline = time.monotonic() + 10
        while len(workers := served_by()) < len(answers):
            assert time.monotonic() < deadline, (site.dir / "web.log").read_text()
            time.sleep(0.1)
    assert all(workers[f"free{pair}"] != workers[f"held{pair}"] for pair in range(3)), workers
    pids_by_status: dict[int, set[str]] = {}
    for tag, (status, _) in answers.items():
        pids_by_status.setdefault(status, set()).add(workers[tag])
    # Both workers let requests in, and both turned requests away.
    assert len(pids_by_status[201]) == 2 and pids_by_status[429] == pids_by_status[201], workers
    # The one count is in the test Redis, readable through the settings' own cache.
    assert len(cache.get("throttle_anon_127.0.0.1")) == 3


# --- Uploads and weights ------------------------------------------------------


@pytest.mark.parametrize("name", ["../../evil.png", "/tmp/evil.png", "..\\..\\evil.png"])
def test_uploaded_file_names_never_reach_the_filesystem(default_model, settings, tmp_path, name):
    upload = SimpleUploadedFile(name, draw_png(ONE), content_type="image/png")
    response = APIClient().post("/api/predictions/", {"image": upload}, format="multipart")
    assert response.status_code == 201, response.content
    stored = Sample.objects.get().image
    assert stored.name.startswith("samples/") and "evil" not in stored.name
    path = settings.MEDIA_ROOT / stored.name
    assert path.resolve().is_relative_to((settings.MEDIA_ROOT / "samples").resolve())
    assert path.read_bytes() == draw_png(ONE)
    assert not list(tmp_path.rglob("evil*"))
    bases = [settings.MEDIA_ROOT, settings.MEDIA_ROOT / "samples", django_settings.BASE_DIR]
    assert not [base / name for base in bases if (base / name).exists()]


class Payload:
    """A pickle that, when unpickled, runs code: here it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_pickled_code_in_weights_is_refused_not_run(default_model, settings, tmp_path, caplog):
    settings.MODEL_RELOAD_INTERVAL = 0
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"conv.weight": Payload(marker)}, buffer)
    weights = buffer.getvalue()
    # The payload is live: a plain pickle load would run it.
    torch.load(io.BytesIO(weights), weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    client = APIClient()
    assert predict(client, draw_png(ONE)).json()["model_version"] == default_model.number

    with pytest.raises(Exception, match=r"(?i)weights only|unpickl"):
        nn.deserialize_state(weights, default_model.architecture)
    hostile = registry.version_create(
        weights=weights,  # its sha256 matches: only the loader stands in the way
        architecture=default_model.architecture,
        metrics={},
        training_info={"kind": "hostile"},
        parent=default_model,
        activate=True,
    )
    with pytest.raises(registry.WeightsIntegrityError, match="cannot load"):
        registry.version_load_model(hostile)
    # This process keeps serving the last good model; a new process would answer 503.
    assert predict(client, draw_png(ONE)).json()["model_version"] == default_model.number
    assert "Refusing model" in caplog.text
    assert not marker.exists()
