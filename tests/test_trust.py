"""Who teaches the shared model: trusted corrections train it, everyone else's wait for review."""

import base64
import time

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition import selectors, services
from recognition.models import Correction, Prediction, Sample, heldout_bucket_of
from training import replay
from training.classes import CLASS_INDEX
from training.models import ModelVersion, TrainingRun

from .conftest import ONE, SEVEN, ZERO, draw_png, misread_handwriting
from .test_admin import SAMPLES, act, changelist_ids

pytestmark = pytest.mark.django_db

PROPOSED = Correction.TrainingState.PROPOSED
PENDING = Correction.TrainingState.PENDING
NOT_NEEDED = Correction.TrainingState.NOT_NEEDED


@pytest.fixture(autouse=True)
def no_throttling(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "corrections": None},
    }


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def trusted_writer(db):
    user = User.objects.create_user("writer", password="pw-for-tests-only")
    user.groups.add(Group.objects.get(name="Trusted writers"))
    return user


def predict(client, drawing=SEVEN) -> int:
    """As the page draws (an anonymous client's session may then label it) or a token's."""
    png = base64.b64encode(draw_png(drawing)).decode()
    response = client.post("/api/predictions/", {"image": png, "source": "page"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["sample"]


def correct(client, sample_id: int, label: str) -> dict:
    response = client.post(
        f"/api/samples/{sample_id}/corrections/", {"label": label}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_the_trusted_writers_group_grants_the_permission(trusted_writer):
    assert trusted_writer.has_perm("recognition.train_shared_model")
    assert not User.objects.create_user("other").has_perm("recognition.train_shared_model")


def test_an_anonymous_correction_is_proposed_and_teaches_the_shared_model_nothing(default_model):
    client = APIClient()
    sample_id = predict(client)
    body = correct(client, sample_id, "t")
    assert body["training_state"] == PROPOSED and body["training_run"] is None
    assert not TrainingRun.objects.exists()
    sample = Sample.objects.get(pk=sample_id)
    assert sample.label == "t"  # shown to moderators as the writer's label...
    # ... but neither trained, replayed nor used to judge a fine-tune.
    assert not list(selectors.corrections_pending())
    assert len(replay.new_corrections_set(Correction.objects.all())) == 0
    assert len(replay.replay_set(exclude_ids=(), per_class=100, every=10**9, seed=0)) == 0
    assert len(replay.heldout_user_set(exclude_ids=(), every=1, limit=100)) == 0


def test_confirming_what_a_vandals_own_model_taught_still_waits_for_review(default_model):
    vandal = APIClient()
    correct(vandal, predict(vandal), "x")
    # The vandal's personal model now reads their 7s as "x"; "Right" on that answer is
    # a label the shared model does not read, and must wait for a moderator like one.
    second = vandal.post(
        "/api/predictions/",
        {"image": base64.b64encode(draw_png(SEVEN)).decode(), "source": "page"},
        format="json",
    ).json()
    assert (second["label"], second["personal"]) == ("x", True)
    assert Prediction.objects.get(sample_id=second["sample"]).personal
    assert correct(vandal, second["sample"], "x")["training_state"] == PROPOSED
    # Moderators' figures of the shared model leave out what a personal model answered.
    third = vandal.post(
        "/api/predictions/",
        {"image": base64.b64encode(draw_png(SEVEN)).decode(), "source": "page"},
        format="json",
    ).json()
    correct(vandal, third["sample"], "7")
    assert selectors.samples_confused_pairs() == [{"predicted": "7", "true": "x", "count": 1}]
    # And a moderator's exclusion lifted, repeating a declined label is no trusted one.
    Sample.objects.filter(pk=second["sample"]).update(status=Sample.Status.UNREVIEWED)
    Correction.objects.update(training_state=Correction.TrainingState.DECLINED)
    assert correct(vandal, second["sample"], "x")["training_state"] == PROPOSED
    assert len(replay.replay_set(exclude_ids=(), per_class=100, every=10**9, seed=0)) == 0
    assert len(replay.heldout_user_set(exclude_ids=(), every=1, limit=100)) == 0


@pytest.mark.parametrize("who", ["trusted_writer", "moderator"])
def test_trusted_corrections_train_the_shared_model(default_model, trusted_writer, who):
    user = trusted_writer
    if who == "moderator":
        user = services.moderator_create(username="staffer")
    client = token_client(user)
    sample_id = predict(client)
    body = correct(client, sample_id, "t")
    assert body["training_state"] == PENDING
    assert body["training_run"] == {"id": TrainingRun.objects.get().pk, "status": "queued"}
    assert replay.new_corrections_set(list(selectors.corrections_pending())).sample_ids == (
        sample_id,
    )


def test_staff_alone_only_propose(default_model):
    client = token_client(User.objects.create_user("support", is_staff=True))
    body = correct(client, predict(client), "t")
    assert body["training_state"] == PROPOSED and body["training_run"] is None


def test_learn_from_everyone_keeps_the_open_loop(default_model, settings):
    settings.LEARN_FROM = "everyone"
    client = APIClient()
    body = correct(client, predict(client), "t")
    assert body["training_state"] == PENDING and body["training_run"] is not None


def test_repeats_and_labels_the_model_reads_queue_nothing(default_model, trusted_writer):
    client = token_client(trusted_writer)
    sample_id = predict(client)
    states = [correct(client, sample_id, "t")["training_state"] for _ in range(6)]
    assert states == [PENDING] + [NOT_NEEDED] * 5
    assert TrainingRun.objects.count() == 1
    assert Correction.objects.filter(sample_id=sample_id).count() == 6  # stored and counted

    # A label the active model already reads on the sample teaches it nothing.
    other = predict(client, ONE)
    assert correct(client, other, "1")["training_state"] == NOT_NEEDED
    assert TrainingRun.objects.count() == 1


def test_a_moderator_confirm_sends_a_proposed_correction_to_training(default_model):
    client = APIClient()
    sample = Sample.objects.get(pk=predict(client))
    proposed = Correction.objects.get(pk=correct(client, sample.pk, "t")["id"])
    moderator = services.moderator_create(username="mod")
    outcome = services.sample_confirm(sample=sample, moderator=moderator)
    proposed.refresh_from_db()
    assert proposed.training_state == PENDING
    assert outcome.correction.training_state == PENDING and outcome.correction.label == "t"
    assert outcome.training_run is not None
    assert {c.pk for c in list(selectors.corrections_pending())} == {
        proposed.pk,
        outcome.correction.pk,
    }
    assert replay.new_corrections_set(list(selectors.corrections_pending())).sample_ids == (
        sample.pk,
    )


def test_a_moderator_relabel_declines_proposals_of_other_labels(default_model):
    client = APIClient()
    sample = Sample.objects.get(pk=predict(client))
    proposed = Correction.objects.get(pk=correct(client, sample.pk, "1")["id"])
    moderator = services.moderator_create(username="mod")
    services.sample_relabel(sample=sample, label="t", moderator=moderator)
    proposed.refresh_from_db()
    assert proposed.training_state == Correction.TrainingState.DECLINED
    sample.refresh_from_db()
    assert sample.label == "t"
    assert replay.new_corrections_set(list(selectors.corrections_pending())).labels.tolist() == [
        CLASS_INDEX["t"]
    ]


@pytest.fixture
def mod_client(db):
    client = Client()
    client.force_login(services.moderator_create(username="mod"))
    return client


def test_proposals_come_first_and_bulk_approval_queues_one_run(default_model, mod_client):
    anonymous = APIClient()
    ids = [predict(anonymous, drawing) for drawing in (SEVEN, ONE, ZERO)]
    untouched = predict(anonymous, SEVEN)
    for sample_id, label in zip(ids, "t7x", strict=True):
        correct(anonymous, sample_id, label)
    queue = changelist_ids(mod_client.get(SAMPLES))
    assert set(queue[:3]) == set(ids) and queue[3] == untouched
    assert changelist_ids(mod_client.get(f"{SAMPLES}?proposed=yes")) == queue[:3]
    assert not TrainingRun.objects.exists()

    response = act(mod_client, SAMPLES, "confirm", Sample.objects.filter(pk__in=ids))
    run = TrainingRun.objects.get()  # one run for the whole selection
    assert f"Training run {run.pk} will learn it" in response.content.decode()
    assert not Correction.objects.filter(training_state=PROPOSED).exists()
    users = Correction.objects.exclude(source=Correction.Source.ADMIN)
    assert set(users.values_list("training_state", flat=True)) == {PENDING}
    assert set(replay.new_corrections_set(list(selectors.corrections_pending())).sample_ids) == set(
        ids
    )


def test_excluding_a_proposed_sample_declines_its_proposal_and_leaves_the_queue(
    default_model, mod_client
):
    anonymous = APIClient()
    spam, honest = predict(anonymous, SEVEN), predict(anonymous, ONE)
    correct(anonymous, spam, "x")
    correct(anonymous, honest, "7")
    act(mod_client, SAMPLES, "exclude_from_training", Sample.objects.filter(pk=spam))
    assert changelist_ids(mod_client.get(f"{SAMPLES}?proposed=yes")) == [honest]
    assert Correction.objects.get(sample_id=spam).training_state == (
        Correction.TrainingState.DECLINED
    )
    assert Correction.objects.get(sample_id=honest).training_state == PROPOSED


def test_the_held_out_share_is_chosen_by_a_secret_not_by_ids(default_model, settings):
    client = APIClient()
    ids = [predict(client, drawing) for drawing in (SEVEN, ONE, ZERO) * 10]
    every = 3
    share = set(
        selectors.samples_annotate_heldout(Sample.objects.all(), every=every)
        .filter(in_heldout_share=True)
        .values_list("pk", flat=True)
    )
    samples = Sample.objects.filter(pk__in=ids)
    assert share == {s.pk for s in samples if s.heldout_bucket % every == 0}
    assert share != {pk for pk in ids if pk % every == 0}
    # The bucket is a keyed hash of the stored file's name: another key, another share.
    name = samples[0].image.name
    assert samples[0].heldout_bucket == heldout_bucket_of(name)
    settings.SECRET_KEY = "another-secret-key-" * 3
    assert heldout_bucket_of(name) != samples[0].heldout_bucket


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_learns_a_proposed_correction_only_once_approved(
    default_model, start_worker, moderators_group, settings
):
    settings.MODEL_RELOAD_INTERVAL = 0
    start_worker(beat=True, TRAINING_SWEEP_INTERVAL=1)
    client = APIClient()
    png, label = misread_handwriting(1)[0]
    sample_id = predict_png(client, png)
    proposed = correct(client, sample_id, label)
    assert proposed["training_state"] == PROPOSED and proposed["training_run"] is None
    time.sleep(4)  # several sweeps: none of them finds anything to train
    assert not TrainingRun.objects.exists()
    assert ModelVersion.objects.count() == 1

    moderator = services.moderator_create(username="mod")
    outcome = services.sample_confirm(sample=Sample.objects.get(pk=sample_id), moderator=moderator)
    run = wait_for_finish(outcome.training_run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.reason, run.error)
    assert proposed["id"] in set(run.corrections.values_list("pk", flat=True))
    assert Correction.objects.get(pk=proposed["id"]).training_state == "trained"
    assert predict_png(client, png, field="label") == label  # the shared model learned it


def predict_png(client, png: bytes, field: str = "sample"):
    body = {"image": base64.b64encode(png).decode(), "source": "page"}
    response = client.post("/api/predictions/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()[field]


def wait_for_finish(run_id: int, timeout: float = 120) -> TrainingRun:
    deadline = time.monotonic() + timeout
    while (run := TrainingRun.objects.get(pk=run_id)).status not in TrainingRun.FINISHED:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    return run
