"""The online-learning loop through a real Redis and real Celery worker processes."""

import base64
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from recognition.models import Correction, Sample
from training.models import ModelVersion, TrainingRun

from .conftest import ONE, draw_png, misread_handwriting, teacher

pytestmark = [pytest.mark.celery, pytest.mark.slow]


def wait_for(predicate, *, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def finished(run_id: int) -> TrainingRun | None:
    run = TrainingRun.objects.get(pk=run_id)
    return run if run.status in TrainingRun.FINISHED else None


@pytest.fixture
def client(db):
    """A writer whose corrections train the shared model."""
    client = APIClient()
    client.force_authenticate(teacher())
    return client


def predict(client, png: bytes) -> dict:
    body = {"image": base64.b64encode(png).decode(), "source": "page"}
    response = client.post("/api/predictions/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def correct(client, sample_id: int, label: str) -> dict:
    response = client.post(
        f"/api/samples/{sample_id}/corrections/",
        {"label": label, "source": "page"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_a_correction_becomes_the_active_version(client, default_model, start_worker, settings):
    settings.MODEL_RELOAD_INTERVAL = 0
    start_worker()
    png, label = misread_handwriting(1)[0]
    first = predict(client, png)
    assert first["label"] != label
    correction = correct(client, first["sample"], label)
    run = wait_for(lambda: finished(correction["training_run"]["id"]), what="the fine-tune")
    assert run.status == "succeeded", (run.reason, run.error)
    new_version = run.result_version
    assert new_version.status == "active" and new_version.parent == default_model
    assert first["sample"] in new_version.trained_sample_ids
    assert new_version.metrics["corrections_after"] == 1.0
    assert new_version.metrics["forgetting"] <= settings.FINE_TUNE["MAX_FORGETTING"]
    since_root = new_version.metrics["forgetting_since_root"]
    assert since_root <= settings.FINE_TUNE["MAX_TOTAL_FORGETTING"]
    assert Correction.objects.get().training_state == "trained"
    # The worker warmed up at start: this run only put the user's glyphs through the trunk.
    assert new_version.metrics["trunk_features_computed"] <= Sample.objects.count()
    assert list(run.corrections.values_list("pk", flat=True)) == [correction["id"]]
    # It stores the tensors it trained, kilobytes over its parent's full set.
    assert new_version.base == default_model
    assert Path(new_version.weights.path).stat().st_size < 200_000
    # The web process now serves the new version, and it learned the correction.
    again = predict(client, png)
    assert again["model_version"] == new_version.number
    assert again["label"] == label
    # Re-running a finished run changes nothing.
    from training.services import training_run_execute

    training_run_execute(run_id=run.pk)
    assert ModelVersion.objects.count() == 2


def test_quick_corrections_are_coalesced_into_one_run(client, default_model, start_worker):
    misread = misread_handwriting(3)
    samples = [predict(client, png)["sample"] for png, _ in misread]
    runs = {
        correct(client, sample, label)["training_run"]["id"]
        for sample, (_, label) in zip(samples, misread, strict=True)
    }
    assert len(runs) == 1  # no worker yet: all three wait in the one queued run
    run_id = runs.pop()
    start_worker()
    run = wait_for(lambda: finished(run_id), what="the fine-tune")
    # Learned or refused by the gate, the three are settled together by the one run.
    assert run.status in ("succeeded", "rejected"), run.error
    assert run.corrections.count() == 3
    assert TrainingRun.objects.count() == 1
    settled = {"succeeded": "trained", "rejected": "rejected"}[run.status]
    assert set(Correction.objects.values_list("training_state", flat=True)) == {settled}


def test_a_rejected_candidate_leaves_the_parent_active(client, default_model, start_worker):
    # A gate no candidate can pass: it must forget less than nothing.
    start_worker(FINE_TUNE_MAX_FORGETTING=-1)
    png, label = misread_handwriting(1)[0]
    run_id = correct(client, predict(client, png)["sample"], label)["training_run"]["id"]
    run = wait_for(lambda: finished(run_id), what="the fine-tune")
    assert run.status == "rejected" and "forgetting" in run.reason
    assert run.metrics["candidates_tried"] == 2  # a second seed could not pass either
    assert run.result_version.status == "rejected"
    assert ModelVersion.objects.get(status="active") == default_model
    assert Correction.objects.get().training_state == "rejected"
    assert predict(client, draw_png(ONE))["model_version"] == default_model.number


def test_a_worker_killed_mid_run_loses_no_correction(client, default_model, start_worker):
    slow = start_worker(FINE_TUNE_STEPS=100000, FINE_TUNE_MAX_SECONDS=600)
    png, label = misread_handwriting(1)[0]
    run_id = correct(client, predict(client, png)["sample"], label)["training_run"]["id"]
    wait_for(
        lambda: TrainingRun.objects.filter(pk=run_id, status="running", progress__gt=0).exists(),
        what="the run to start training",
    )
    slow.kill()
    # A new worker (with its periodic sweep) notices the dead run and retrains its correction.
    start_worker(beat=True, FINE_TUNE_STALE_SECONDS=2, TRAINING_SWEEP_INTERVAL=1)
    lost = wait_for(lambda: finished(run_id), what="the lost run to be failed")
    assert lost.status == "failed" and "worker lost" in lost.error
    assert lost.result_version is None
    # Anyone sees the status; staff also see why it failed.
    assert client.get(f"/api/training-runs/{run_id}/").json() == {
        "id": run_id,
        "status": "failed",
        "progress": lost.progress,
    }
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("operator", is_staff=True))
    shown = staff.get(f"/api/training-runs/{run_id}/").json()
    assert (shown["status"], shown["failure_kind"]) == ("failed", "worker_lost")
    correction = Correction.objects.get()
    retry = wait_for(
        lambda: TrainingRun.objects.filter(
            corrections=correction, status__in=["succeeded", "rejected"]
        ).first(),
        what="a later run to settle the correction",
    )
    assert retry.pk != run_id
    correction.refresh_from_db()
    if retry.status == "succeeded":
        assert ModelVersion.objects.get(status="active") == retry.result_version
        assert correction.training_state == "trained"
    else:  # the gate may refuse a candidate; the correction is still accounted for
        assert correction.training_state == "rejected", retry.reason


def test_redis_down_keeps_predicting_and_keeps_the_correction(
    client, default_model, start_worker, redis_server
):
    redis_server.stop()
    try:
        png, label = misread_handwriting(1)[0]
        sample = predict(client, png)["sample"]  # predictions do not need Redis
        body = correct(client, sample, label)
        assert body["training_state"] == "pending"
        run = TrainingRun.objects.get(pk=body["training_run"]["id"])
        assert run.status == "queued" and run.task_id == ""  # never reached the broker
    finally:
        redis_server.start()
    start_worker()  # its start-up sweep sends what is pending
    run = wait_for(lambda: finished(run.pk), what="the pending run")
    assert run.status == "succeeded", (run.reason, run.error)
    assert Sample.objects.get(pk=sample).corrections.get().training_state == "trained"
