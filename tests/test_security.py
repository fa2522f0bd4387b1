"""Who may do what, CSRF for the page, throttles, upload names and untrusted weights.

tests/test_api.py already checks anonymous and permission-less access to the
samples, staff-only activation, CSRF on a signed-in prediction and the anonymous
prediction throttle; these tests cover the rest.
"""

import base64
import io
import os
import subprocess
import sys

import pytest
import torch
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition.models import Correction, Sample
from training import nn, registry
from training.models import ModelVersion

from .conftest import ONE, SEVEN, copy_of, draw_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return User.objects.create_user("moderator", password="pw-for-tests-only", is_staff=True)


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


def test_sample_detail_needs_staff_or_permission(default_model, staff, member):
    sample = predict(APIClient(), draw_png(ONE)).json()["sample"]
    url = f"/api/samples/{sample}/"
    session = APIClient()
    session.force_login(member)
    assert session.get(url).status_code == 403
    assert session.get("/api/samples/").status_code == 403
    assert token_client(member).get(url).status_code == 403
    assert token_client(staff).get(url).json()["id"] == sample
    member.user_permissions.add(Permission.objects.get(codename="view_sample"))
    member = User.objects.get(pk=member.pk)  # permissions are cached on the instance
    assert token_client(member).get(url).json()["id"] == sample


def test_activation_is_staff_only_whatever_the_permissions(default_model, staff, member):
    second = copy_of(default_model)
    url = f"/api/model-versions/{second.pk}/activate/"
    member.user_permissions.add(*Permission.objects.filter(codename__endswith="_modelversion"))
    assert token_client(member).post(url).status_code == 403
    assert ModelVersion.objects.get(status="active") == default_model
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


def test_staff_sessions_need_the_csrf_token_to_activate(default_model, staff):
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
    assert _rates_in_a_fresh_process(THROTTLE_ANON="7/hour", THROTTLE_USER="9/min") == str(
        {"anon": "7/hour", "user": "9/min"}
    )
    assert _rates_in_a_fresh_process(THROTTLE_ANON="off") == str({"anon": None, "user": "600/min"})


def test_anonymous_corrections_are_throttled(default_model, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min", "user": None},
    }
    client = APIClient()
    sample = predict(client, draw_png(ONE)).json()["sample"]  # predictions count too
    url = f"/api/samples/{sample}/corrections/"
    codes = [client.post(url, {"label": label}, format="json").status_code for label in "lt7"]
    assert codes == [201, 201, 429]
    assert list(Correction.objects.values_list("label", flat=True).order_by("pk")) == ["l", "t"]


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
