"""Hostile input, generated: every bad request is a 4xx in the API's error shape and stores nothing.

Hypothesis runs many examples inside one test function, so the function-scoped
fixtures (database, media folder, model) are shared by the examples of a test:
that is why the health check is suppressed, and why every example takes its own
snapshot of what is stored and compares against it rather than against zero.
"""

import base64
import io
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition.models import Correction, Prediction, Sample
from recognition.services import moderator_create
from training.classes import CLASSES
from training.models import ModelVersion, TrainingRun

from .conftest import ONE, draw_png

pytestmark = pytest.mark.django_db

EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
PNG = draw_png(ONE)
# The IEND chunk is the last 12 bytes; a file cut anywhere before it lacks image data.
IEND = 12


@pytest.fixture(autouse=True)
def no_throttling(settings):
    # A 429 is a 4xx too, and would hide what the examples are meant to reach.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None},
    }


@pytest.fixture
def client():
    return APIClient(raise_request_exception=False)


@pytest.fixture
def sample(client, default_model) -> Sample:
    """A sample the client drew on the page (its session), so that it may correct it."""
    body = {"image": base64.b64encode(PNG).decode(), "source": "page"}
    response = client.post("/api/predictions/", body, format="json")
    assert response.status_code == 201, response.content
    return Sample.objects.get(pk=response.json()["sample"])


@pytest.fixture
def staff_client(db) -> APIClient:
    user = moderator_create(username="hostile-staff")
    user.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def stored() -> tuple:
    files = sorted(
        str(path) for path in Path(django_settings.MEDIA_ROOT).rglob("*") if path.is_file()
    )
    return (
        Sample.objects.count(),
        Prediction.objects.count(),
        Correction.objects.count(),
        TrainingRun.objects.count(),
        ModelVersion.objects.filter(status="active").values_list("pk", flat=True).first(),
        files,
    )


def assert_refused(response, before, *, codes=None) -> dict:
    """A 4xx in the error shape, and the database and media folder as they were."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if codes is not None:
        assert error["code"] in codes, error
    assert stored() == before
    return error


def post_image(client, data: bytes, *, as_json: bool):
    if as_json:
        body = {"image": base64.b64encode(data).decode()}
        return client.post("/api/predictions/", body, format="json")
    upload = io.BytesIO(data)
    upload.name = "drawing.png"
    return client.post("/api/predictions/", {"image": upload}, format="multipart")


# --- Images -------------------------------------------------------------------


@EXAMPLES
@given(data=st.binary(max_size=4096), as_json=st.booleans())
def test_random_bytes(client, default_model, data, as_json):
    before = stored()
    assert_refused(
        post_image(client, data, as_json=as_json),
        before,
        codes={"invalid_image", "unsupported_format", "too_many_pixels"},
    )


@EXAMPLES
@given(cut=st.integers(0, len(PNG) - IEND - 1), as_json=st.booleans())
def test_truncated_png(client, default_model, cut, as_json):
    before = stored()
    assert_refused(post_image(client, PNG[:cut], as_json=as_json), before, codes={"invalid_image"})


@EXAMPLES
@given(
    # Inside IHDR and IDAT, whose CRCs Pillow checks. Damage to the trailing IEND
    # chunk is tolerated: every pixel has been read by then.
    position=st.integers(8, len(PNG) - IEND - 1),
    flip=st.integers(1, 255),
    as_json=st.booleans(),
)
def test_corrupted_png(client, default_model, position, flip, as_json):
    corrupted = bytearray(PNG)
    corrupted[position] ^= flip
    before = stored()
    assert_refused(post_image(client, bytes(corrupted), as_json=as_json), before)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming the size, followed by a few bytes of pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def bmp_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return (
        b"BM"
        + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info))
        + info
        + (b"\x00" * 64)
    )


too_big = st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).filter(
    lambda size: max(size) > 4096 or size[0] * size[1] > django_settings.MAX_IMAGE_PIXELS
)


@EXAMPLES
@given(size=too_big, make=st.sampled_from([png_claiming, bmp_claiming]), as_json=st.booleans())
def test_enormous_dimensions(client, default_model, size, make, as_json):
    before = stored()
    assert_refused(
        post_image(client, make(*size), as_json=as_json),
        before,
        codes={"too_many_pixels", "invalid_image"},
    )


# --- Requests -----------------------------------------------------------------

JSON_BODY = json.dumps({"image": base64.b64encode(PNG).decode()}).encode()
media_types = st.sampled_from(
    ["text/plain", "application/xml", "image/png", "application/octet-stream",
     "application/x-www-form-urlencoded", "text/html; charset=utf-8", "application/jsonx"]
) | st.from_regex(r"\A[a-z]{1,12}/[a-z0-9.+-]{1,20}\Z").filter(
    lambda media: media not in {"application/json", "multipart/form-data"}
)  # fmt: skip


@EXAMPLES
@given(media_type=media_types, path=st.sampled_from(["predictions", "corrections"]))
def test_wrong_content_types(client, sample, media_type, path):
    url = "/api/predictions/" if path == "predictions" else f"/api/samples/{sample.pk}/corrections/"
    before = stored()
    assert_refused(client.generic("POST", url, JSON_BODY, content_type=media_type), before)


@EXAMPLES
@given(
    body=st.sampled_from([JSON_BODY, PNG, b"--x\r\n\r\n--x--"]),
    media_type=st.sampled_from(
        ["application/json", "multipart/form-data", "multipart/form-data; boundary=zzz",
         "application/json; charset=utf-16", "application/json; charset=no-such-codec"]
    ),
)  # fmt: skip
def test_bodies_that_lie_about_their_type(client, default_model, body, media_type):
    assume(not (body is JSON_BODY and media_type.startswith("application/json")))
    before = stored()
    response = client.generic("POST", "/api/predictions/", body, content_type=media_type)
    assert_refused(response, before)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@EXAMPLES
@given(image=json_values, strokes=json_values, extra=st.dictionaries(st.text(), json_values))
def test_arbitrary_json_documents(client, default_model, image, strokes, extra):
    before = stored()
    body = {**extra, "image": image, "strokes": strokes}
    assert_refused(client.post("/api/predictions/", body, format="json"), before)


@EXAMPLES
@given(
    depth=st.integers(33, 200_000),
    opener=st.sampled_from(["[", '{"a":']),
    where=st.sampled_from(["body", "image", "strokes", "label"]),
)
def test_deeply_nested_json(client, sample, depth, opener, where):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    if where == "body":
        url, body = "/api/predictions/", nested
    elif where == "label":
        url, body = f"/api/samples/{sample.pk}/corrections/", '{"label": ' + nested + "}"
    else:
        url, body = "/api/predictions/", '{"image": "AAAA", "' + where + '": ' + nested + "}"
    before = stored()
    assert_refused(
        client.generic("POST", url, body, content_type="application/json"),
        before,
        codes={"parse_error"},
    )


@settings(max_examples=5, deadline=None, suppress_health_check=list(EXAMPLES.suppress_health_check))
@given(extra=st.integers(1, 1_000_000), path=st.sampled_from(["predictions", "corrections"]))
def test_huge_json_bodies(client, sample, extra, path):
    url = "/api/predictions/" if path == "predictions" else f"/api/samples/{sample.pk}/corrections/"
    padding = "A" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + extra)
    before = stored()
    response = client.post(url, {"image": padding, "label": "a"}, format="json")
    assert_refused(response, before, codes={"too_large"})
    assert response.status_code == 413


@EXAMPLES
@given(fields=st.integers(1001, 3000), files=st.booleans())
def test_too_many_multipart_parts(client, sample, fields, files):
    disposition = b'form-data; name="f%d"' + (b'; filename="x.png"' if files else b"")
    part = b"--b\r\nContent-Disposition: " + disposition + b"\r\n\r\nx\r\n"
    body = b"".join(part % index for index in range(fields)) + b"--b--\r\n"
    before = stored()
    for url in ("/api/predictions/", f"/api/samples/{sample.pk}/corrections/"):
        response = client.generic("POST", url, body, content_type="multipart/form-data; boundary=b")
        assert_refused(response, before, codes={"bad_request"})


# --- Labels and ids -----------------------------------------------------------


@EXAMPLES
@given(label=st.text(max_size=20).filter(lambda text: text not in CLASSES))
def test_odd_unicode_labels(client, sample, label):
    before = stored()
    response = client.post(
        f"/api/samples/{sample.pk}/corrections/", {"label": label}, format="json"
    )
    assert_refused(response, before, codes={"invalid_label"})
    response = client.post(f"/api/samples/{sample.pk}/corrections/", {"label": label})
    assert_refused(response, before, codes={"invalid_label"})


ids = st.integers(-(2**80), 2**80) | st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/?#%"), min_size=1
)


@EXAMPLES
@given(missing=ids)
def test_negative_huge_or_odd_ids_in_paths(client, staff_client, sample, missing):
    taken = {str(pk) for pk in ModelVersion.objects.values_list("pk", flat=True)}
    assume(str(missing) not in {str(sample.pk), "active", ".", "..", *taken})
    before = stored()
    requests = [
        (client.post, f"/api/samples/{missing}/corrections/", {"label": "a"}),
        (staff_client.post, f"/api/samples/{missing}/corrections/", {"label": "a"}),
        (staff_client.get, f"/api/samples/{missing}/", None),
        (client.get, f"/api/model-versions/{missing}/", None),
        (staff_client.post, f"/api/model-versions/{missing}/activate/", None),
        (client.get, f"/api/training-runs/{missing}/", None),
    ]
    for send, url, body in requests:
        response = send(url, body, format="json") if body is not None else send(url)
        assert_refused(response, before, codes={"not_found"})


# --- The whole schema, through a live server ------------------------------------


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(
    live_server, transactional_db, moderators_group, default_model, sample, tmp_path
):
    """Schemathesis generates requests for every operation in /api/schema/, as a moderator."""
    staff = moderator_create(username="schemathesis")
    token = Token.objects.create(user=staff).key
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run",
        f"{live_server.url}/api/schema/", "--url", live_server.url,
        "--checks", "not_a_server_error", "--max-examples", "15", "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
        "--header", f"Authorization: Token {token}", "--suppress-health-check", "all",
    ]  # fmt: skip
    # In a temporary folder: schemathesis keeps its example database in the working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # It did test every operation, with cases of its own making.
    tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
    assert tested and len(set(tested.groups())) == 1, result.stdout
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases and int(cases[1]) == int(cases[2]) > 100, result.stdout
