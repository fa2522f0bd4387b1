"""Context, look-alikes and personal models through the real API, with real PNGs."""

import base64
import time

import numpy as np
import pytest
import torch
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition.lookalikes import TAUGHT_FLOOR
from recognition.models import Sample
from training import nn, registry
from training.classes import DIGITS, LETTERS
from training.serving import active_model
from writers import services as writers_services
from writers.identity import writer_shown
from writers.models import PersonalModel
from writers.prototypes import MAX_PROTOTYPES, Prototypes, drawn

from .conftest import ONE, SEVEN, ZERO, draw_png, misread_handwriting

pytestmark = pytest.mark.django_db


def predict(client, png: bytes, **fields):
    response = client.post(
        "/api/predictions/",
        {"image": "data:image/png;base64," + base64.b64encode(png).decode(), **fields},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def correct(client, sample_id: int, label: str, **fields):
    response = client.post(
        f"/api/samples/{sample_id}/corrections/", {"label": label, **fields}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def page_client() -> APIClient:
    """A browser without login: its page drawings belong to its session."""
    return APIClient()


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# --- Context -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("classes", "allowed"),
    [("digits", DIGITS), ("letters", LETTERS), ("0123456789abcdef", tuple("0123456789abcdef"))],
)
def test_classes_restricts_the_answer_and_renormalises(default_model, classes, allowed):
    client = APIClient()
    shared = predict(client, draw_png(ZERO))
    body = predict(client, draw_png(ZERO), classes=classes)
    assert body["label"] in allowed
    assert all(entry["label"] in allowed for entry in body["top"])
    assert len(body["top"]) == 5
    sample = Sample.objects.get(pk=body["sample"])
    assert sample.classes == classes
    probabilities = np.asarray(sample.predictions.get().probabilities)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-3)
    # Renormalised: the allowed labels keep their ratios to one another.
    before = {entry["label"]: entry["probability"] for entry in shared["top"]}
    common = [entry for entry in body["top"] if entry["label"] in before]
    if len(common) >= 2:
        a, b = common[:2]
        assert a["probability"] / b["probability"] == pytest.approx(
            before[a["label"]] / before[b["label"]], rel=1e-3
        )


def test_classes_with_fewer_labels_than_the_top_list(default_model):
    body = predict(APIClient(), draw_png(SEVEN), classes="17", source="page")
    assert [entry["label"] for entry in body["top"]] in (["7", "1"], ["1", "7"])
    assert sum(entry["probability"] for entry in body["top"]) == pytest.approx(1.0, abs=1e-4)
    assert body["label"] == "7"


def test_classes_multipart_and_default(default_model):
    client = APIClient()
    response = client.post(
        "/api/predictions/",
        {"image": _upload(draw_png(ONE)), "classes": "letters"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["label"] in LETTERS
    assert Sample.objects.get(pk=response.json()["sample"]).classes == "letters"
    plain = predict(client, draw_png(ONE))
    assert plain["label"] == "1"
    assert Sample.objects.get(pk=plain["sample"]).classes == "all"


@pytest.mark.parametrize("classes", ["HEX", "0123X", "", "digits ", "!", "all digits"])
def test_unknown_classes_is_a_400_that_stores_nothing(default_model, classes):
    response = APIClient().post(
        "/api/predictions/",
        {"image": base64.b64encode(draw_png(ONE)).decode(), "classes": classes},
        format="json",
    )
    if classes == "digits ":  # surrounding blanks are trimmed, as for any text field
        assert response.status_code == 201
        return
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] in ("invalid_classes", "blank") and "classes" in error["message"]
    assert not Sample.objects.exists()


def test_samples_api_shows_the_context(default_model):
    from recognition.services import moderator_create

    staff = moderator_create(username="mod")
    body = predict(APIClient(), draw_png(SEVEN), classes="digits")
    client = APIClient()
    client.force_authenticate(staff)
    detail = client.get(f"/api/samples/{body['sample']}/").json()
    assert detail["classes"] == "digits"
    listed = client.get("/api/samples/").json()["results"]
    assert listed[0]["classes"] == "digits"


# --- Look-alikes --------------------------------------------------------------


def round_drawing(squash: float) -> bytes:
    """A closed loop, squashed sideways by ``squash``: round is 0 and o, narrow a 0."""
    t = np.linspace(0, 2 * np.pi, 60)
    return draw_png([[(140 + 90 * squash * np.sin(a), 140 - 90 * np.cos(a)) for a in t]])


def test_lookalikes_offer_both_shapes_when_close(default_model):
    client = APIClient()
    answers = [predict(client, round_drawing(squash)) for squash in (1.0, 0.9, 0.8, 0.7)]
    offered = [body for body in answers if body["lookalikes"]]
    assert offered, [body["top"][:2] for body in answers]
    for body in offered:
        assert body["lookalikes"][0] == body["label"]
        assert {"0", "o"} <= set(body["lookalikes"])  # and any pair the data adds
        probabilities = {entry["label"]: entry["probability"] for entry in body["top"]}
        ordered = [probabilities[label] for label in body["lookalikes"]]
        assert ordered == sorted(ordered, reverse=True)
    assert predict(client, draw_png(SEVEN))["lookalikes"] == []
    # Within digits there is nothing to choose between.
    assert predict(client, round_drawing(1.0), classes="digits")["lookalikes"] == []


# --- Personal models ------------------------------------------------------------


def test_session_writer_corrections_reshape_only_their_answers(default_model):
    png, true_label = misread_handwriting(1)[0]
    writer, stranger = page_client(), page_client()
    first = predict(writer, png, source="page")
    assert first["label"] != true_label and first["personal"] is False
    stranger_before = predict(stranger, png, source="page")

    correct(writer, first["sample"], true_label, source="page")
    again = predict(writer, png, source="page")
    assert again["label"] == true_label and again["personal"] is True

    stranger_after = predict(stranger, png, source="page")
    assert stranger_after["personal"] is False
    assert stranger_after["top"] == stranger_before["top"]
    anonymous = predict(APIClient(), png)  # no session, no writer: the shared model
    assert anonymous["top"] == stranger_before["top"] and anonymous["personal"] is False

    personal = PersonalModel.objects.get()
    assert personal.writer.startswith("session:") and personal.corrections == 1
    assert personal.model_version == default_model
    assert personal.size_bytes < 4096


def test_a_drawing_the_writer_labelled_reads_as_their_label_when_sent_again(default_model):
    # A confident shared answer, and the writer's own close drawing of that answer,
    # both pull against the label they gave this very drawing: their label wins.
    page = page_client()
    near = predict(page, draw_png(SEVEN, width=16), source="page")
    assert near["label"] == "7"
    correct(page, near["sample"], "7", source="page")
    seven = draw_png(SEVEN)
    first = predict(page, seven, source="page")
    assert first["label"] == "7" and first["top"][0]["probability"] > 0.9
    correct(page, first["sample"], "1", source="page")

    again = predict(page, seven, source="page")
    assert again["label"] == "1" and again["personal"] is True
    assert predict(page, draw_png(SEVEN, width=16), source="page")["label"] == "7"


def test_an_answer_the_writer_corrected_before_offers_their_label_beside_it(default_model):
    # The writer labels a drawing the shared model reads as 7 as their 1. A drawing
    # unlike it, read as 7 with 1 behind, then asks them "7 or 1?"; not a stranger.
    page, stranger = page_client(), page_client()
    first = predict(page, draw_png(SEVEN), source="page")
    assert first["label"] == "7"
    correct(page, first["sample"], "1", source="page")

    short_bar = draw_png([[(110, 60), (160, 60), (130, 230)]], width=10)
    theirs = predict(stranger, short_bar, source="page")
    probabilities = {entry["label"]: entry["probability"] for entry in theirs["top"]}
    assert theirs["label"] == "7" and probabilities.get("1", 0) >= TAUGHT_FLOOR, theirs["top"]
    assert theirs["lookalikes"] == [] and theirs["personal"] is False

    mine = predict(page, short_bar, source="page")
    # Their drawing of a 1 is too unlike this one to move the probabilities.
    assert [entry["label"] for entry in mine["top"]] == [entry["label"] for entry in theirs["top"]]
    assert mine["confidence"] == pytest.approx(theirs["confidence"], abs=1e-6)
    assert mine["lookalikes"] == ["7", "1"] and mine["personal"] is True


def test_logged_in_user_is_one_writer_across_sessions(default_model):
    png, true_label = misread_handwriting(1)[0]
    user = User.objects.create_user("writer", password="pw-for-tests-only")
    laptop, phone = APIClient(), APIClient()
    laptop.force_login(user)
    phone.force_login(user)
    first = predict(laptop, png, source="page")
    correct(laptop, first["sample"], true_label, source="page")
    on_phone = predict(phone, png, source="page")
    assert on_phone["label"] == true_label and on_phone["personal"] is True
    assert PersonalModel.objects.get().writer == f"user:{user.pk}"
    assert PersonalModel.objects.get().user == user


def test_token_client_keeps_one_personal_model_per_writer_field(default_model):
    png, true_label = misread_handwriting(1)[0]
    app = token_client(User.objects.create_user("app"))
    shared = predict(app, png)
    first = predict(app, png, writer="alice")
    correct(app, first["sample"], true_label)

    alice = predict(app, png, writer="alice")
    assert alice["label"] == true_label and alice["personal"] is True
    bob = predict(app, png, writer="bob")
    assert bob["top"] == shared["top"] and bob["personal"] is False
    assert predict(app, png)["top"] == shared["top"]  # the app itself is a writer of its own
    other_app = token_client(User.objects.create_user("other-app"))
    assert predict(other_app, png, writer="alice")["top"] == shared["top"]

    too_long = app.post(
        "/api/predictions/",
        {"image": base64.b64encode(png).decode(), "writer": "x" * 65},
        format="json",
    )
    assert too_long.status_code == 400 and "writer" in too_long.json()["error"]["message"]


def test_delete_me_forgets_the_writers_handwriting(default_model):
    png, true_label = misread_handwriting(1)[0]
    app = token_client(User.objects.create_user("app"))
    first = predict(app, png, writer="alice")
    correct(app, first["sample"], true_label)
    other = predict(app, png, writer="carol")
    correct(app, other["sample"], true_label)
    assert predict(app, png, writer="alice")["personal"] is True

    response = app.delete("/api/writers/me/?writer=alice")
    assert response.status_code == 200 and response.json() == {"forgotten": True}
    after = predict(app, png, writer="alice")
    assert after["personal"] is False and after["label"] == first["label"]
    assert predict(app, png, writer="carol")["personal"] is True  # another writer keeps theirs
    assert app.delete("/api/writers/me/?writer=alice").json() == {"forgotten": False}

    page = page_client()
    drawn = predict(page, png, source="page")
    correct(page, drawn["sample"], true_label, source="page")
    assert page.delete("/api/writers/me/").json() == {"forgotten": True}
    assert predict(page, png, source="page")["personal"] is False
    assert APIClient().delete("/api/writers/me/").json() == {"forgotten": False}


def session_writer_who_taught() -> tuple[APIClient, str]:
    """A page writer with a personal model, and their session key."""
    page = page_client()
    answer = predict(page, draw_png(SEVEN), source="page")
    correct(page, answer["sample"], "7", source="page")
    return page, Sample.objects.get(pk=answer["sample"]).session_key


def test_ended_sessions_lose_their_personal_models(default_model):
    (_, expired), (_, gone), (live_page, live) = (session_writer_who_taught() for _ in range(3))
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now())
    Session.objects.filter(session_key=gone).delete()  # logged out, or replaced at login
    app = token_client(User.objects.create_user("app"))
    correct(app, predict(app, draw_png(ONE), writer="w1")["sample"], "1")

    assert writers_services.sessions_expire() == 2
    assert set(PersonalModel.objects.values_list("writer", flat=True)) == {
        f"session:{live}",
        f"token:{User.objects.get().pk}:w1",
    }
    assert not Session.objects.filter(session_key=expired).exists()  # clearsessions too
    assert predict(live_page, draw_png(SEVEN), source="page")["personal"] is True
    assert writers_services.sessions_expire() == 0


def test_sessions_kept_elsewhere_cannot_be_looked_up_so_no_model_goes(default_model, settings):
    _, key = session_writer_who_taught()
    Session.objects.filter(session_key=key).delete()
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert writers_services.sessions_expire() == 0
    assert PersonalModel.objects.filter(writer=f"session:{key}").exists()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_expires_ended_sessions_on_its_schedule(default_model, start_worker):
    _, expired = session_writer_who_taught()
    _, live = session_writer_who_taught()
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now())
    start_worker(beat=True, SESSION_EXPIRY_INTERVAL=1)
    deadline = time.monotonic() + 30
    while PersonalModel.objects.filter(writer=f"session:{expired}").exists():
        assert time.monotonic() < deadline, "the ended session's personal model is still there"
        time.sleep(0.2)
    assert PersonalModel.objects.filter(writer=f"session:{live}").exists()


def test_confirmations_and_recorrections_replace_the_samples_row(default_model):
    png, true_label = misread_handwriting(1)[0]
    page = page_client()
    first = predict(page, png, source="page")
    correct(page, first["sample"], "x", source="page")
    correct(page, first["sample"], true_label, source="page")
    personal = PersonalModel.objects.get()
    assert personal.labels == true_label and personal.corrections == 2
    assert personal.sample_ids == [first["sample"]]


def test_the_newest_labels_are_kept(default_model):
    page = page_client()
    samples = [predict(page, draw_png(SEVEN), source="page")["sample"] for _ in range(3)]
    for sample_id in samples:
        correct(page, sample_id, "7", source="page")
    personal = PersonalModel.objects.get()
    assert personal.labels == "777" and personal.sample_ids == samples
    assert MAX_PROTOTYPES * 256 * 2 <= 64 * 1024  # the cap keeps a model in kilobytes


def _version_with_other_hidden_weights(parent):
    """A whole network whose hidden layer differs a little: personal rows need rebuilding."""
    model = registry.version_load_model(parent)
    with torch.no_grad():
        model.classifier[1].weight.mul_(1.01)
    return registry.version_create(
        weights=nn.serialize_state(model), architecture=parent.architecture, metrics={},
        training_info={"kind": "test"}, parent=parent, activate=True,
    )  # fmt: skip


def writer_who_corrected_a_misread():
    """A page writer, the misread drawing, its true label, and the first answer to it."""
    png, true_label = misread_handwriting(1)[0]
    page = page_client()
    first = predict(page, png, source="page")
    correct(page, first["sample"], true_label, source="page")
    return page, png, true_label, first


def test_new_hidden_weights_rebuild_the_personal_model(default_model, settings):
    settings.MODEL_RELOAD_INTERVAL = 0
    page, png, true_label, first = writer_who_corrected_a_misread()
    newer = _version_with_other_hidden_weights(default_model)

    again = predict(page, png, source="page")
    assert again["model_version"] == newer.number
    assert again["label"] == true_label and again["personal"] is True
    personal = PersonalModel.objects.get()
    assert personal.model_version == newer and personal.sample_ids == [first["sample"]]

    # A writer whose samples are gone keeps an empty model: the shared answer.
    Sample.objects.filter(pk=first["sample"]).delete()
    _version_with_other_hidden_weights(newer)
    assert predict(page, png, source="page")["personal"] is False


def test_a_last_layer_version_serves_the_kept_rows_unchanged(default_model, settings):
    settings.MODEL_RELOAD_INTERVAL = 0
    page, png, true_label, first = writer_who_corrected_a_misread()
    stored = PersonalModel.objects.get()
    # What the default fine-tune publishes: a new last layer and hidden bias, stored as a delta.
    candidate = registry.version_load_model(default_model)
    with torch.no_grad():
        candidate.classifier[1].bias.add_(0.05)
    weights, base = registry.candidate_weights(candidate, parent=default_model, scope="last")
    tuned = registry.version_create(
        weights=weights, metrics={}, training_info={}, parent=default_model, base=base,
        activate=True,
    )  # fmt: skip

    again = predict(page, png, source="page")
    assert again["model_version"] == tuned.number
    assert again["label"] == true_label and again["personal"] is True
    kept = PersonalModel.objects.get()
    assert kept.model_version == default_model  # not rebuilt
    assert bytes(kept.features) == bytes(stored.features)
    # The rows do not depend on the bias: the new network computes the same ones.
    glyph = Sample.objects.get(pk=first["sample"]).glyph_array()
    np.testing.assert_allclose(
        Prototypes.from_stored(kept.features, kept.labels).rows,
        drawn(active_model.get().model, glyph).rows,
        atol=0.02,  # stored at half precision
    )


def test_moderator_labels_do_not_teach_a_personal_model(default_model):
    png, true_label = misread_handwriting(1)[0]
    staff = User.objects.create_user("mod", password="pw-for-tests-only", is_staff=True)
    drawn = predict(page_client(), png, source="page")
    from recognition import services

    services.sample_relabel(
        sample=Sample.objects.get(pk=drawn["sample"]), label=true_label, moderator=staff
    )
    assert not PersonalModel.objects.exists()


def test_schema_documents_the_new_fields(default_model):
    schema = APIClient().get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    request = next(v for k, v in components.items() if k.startswith("PredictionInput"))
    assert {"classes", "writer"} <= set(request["properties"])
    response = next(v for k, v in components.items() if k.startswith("PredictionOutput"))
    assert {"lookalikes", "personal"} <= set(response["properties"])
    assert "delete" in schema["paths"]["/api/writers/me/"]
    sample = next(v for k, v in components.items() if k == "SampleList")
    assert "classes" in sample["properties"]


def _upload(png: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("drawing.png", png, content_type="image/png")


def test_admin_lists_personal_models_read_only_and_resets_them(default_model):
    png, true_label = misread_handwriting(1)[0]
    page = page_client()
    drawn = predict(page, png, source="page")
    correct(page, drawn["sample"], true_label, source="page")
    personal = PersonalModel.objects.get()
    from recognition.services import moderator_create

    client = APIClient()
    client.force_login(moderator_create(username="mod"))  # how a vandal's own model is undone

    listing = client.get("/admin/writers/personalmodel/")
    assert listing.status_code == 200
    page_text = listing.content.decode()
    assert writer_shown(personal.writer) in page_text
    assert f"{personal.size_bytes / 1024:.1f} KiB" in page_text  # counted by the database
    assert f"?drawer_of={drawn['sample']}" in page_text  # all their drawings, for review
    assert client.get("/admin/writers/personalmodel/add/").status_code == 403
    detail = client.get(f"/admin/writers/personalmodel/{personal.pk}/change/").content.decode()
    assert 'name="labels"' not in detail  # read-only
    # A session key works as a login cookie: staff see a digest, and find it by the key only.
    session_key = personal.writer.removeprefix("session:")
    assert session_key not in page_text and session_key not in detail
    search = "/admin/writers/personalmodel/?q="
    assert writer_shown(personal.writer) in client.get(search + personal.writer).content.decode()
    partial = client.get(search + personal.writer[:12]).content.decode()
    assert writer_shown(personal.writer) not in partial

    response = client.post(
        "/admin/writers/personalmodel/",
        {"action": "reset", "_selected_action": [personal.pk]},
    )
    assert response.status_code == 302
    assert not PersonalModel.objects.exists()
    assert predict(page, png, source="page")["personal"] is False

    sample_page = client.get(f"/admin/recognition/sample/{drawn['sample']}/change/")
    assert "context" in sample_page.content.decode().lower()


def test_a_context_without_the_label_a_writer_taught_still_reads_the_drawing(default_model):
    """The writer's label lifts its class so far that the others' probabilities underflow:
    a context that excludes it must still rank the rest, not give them equal odds."""
    page = page_client()
    png = draw_png(ZERO)
    shared = predict(page, png, source="page", classes="digits")
    correct(page, predict(page, png, source="page")["sample"], "o", source="page")
    assert predict(page, png, source="page")["label"] == "o"

    digits = predict(page, png, source="page", classes="digits")
    assert digits["label"] == shared["label"] == "0"
    probabilities = [entry["probability"] for entry in digits["top"]]
    assert probabilities[0] > 0.5 and probabilities == sorted(probabilities, reverse=True)
    assert len(set(probabilities)) == len(probabilities)
