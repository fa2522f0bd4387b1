"""A fine-tune run against the sweep: real runs, in this process, on the real database.

A slow phase is played by setting the running run's heartbeat back past
FINE_TUNE_STALE_SECONDS at the end of a real phase; the real sweep then runs
where a periodic one could have.
"""

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from recognition import services as recognition_services
from recognition.models import Correction, Sample
from training import registry, replay, runs, services
from training.models import ModelVersion, TrainingRun
from training.services import fine_tuning

from .conftest import ONE, SEVEN, ZERO, copy_of, draw_png, misread_handwriting, teacher

pytestmark = pytest.mark.slow  # real (short) fine-tunes


@pytest.fixture
def quick(settings):
    # The product's steps: a candidate that learns nothing publishes no version.
    settings.FINE_TUNE = {**settings.FINE_TUNE, "THREADS": 1}
    return settings.FINE_TUNE


def corrected(png: bytes, label: str):
    """A drawing predicted and corrected through the services, as the API does."""
    sample = recognition_services.predict_drawing(image_data=png, source="api").sample
    outcome = recognition_services.correct_sample(
        sample=sample, label=label, source="api", author=teacher()
    )
    return sample, outcome


def fall_silent():
    """The running run's last heartbeat is as old as if the phase had taken a minute."""
    minute_ago = timezone.now() - timedelta(seconds=60)
    assert TrainingRun.objects.filter(status="running").update(heartbeat_at=minute_ago) == 1


def test_a_run_the_sweep_failed_while_it_ran_publishes_nothing(default_model, quick, monkeypatch):
    sample, outcome = corrected(*misread_handwriting(1)[0])
    real_gate = fine_tuning.gate
    sweeps = []

    def gate_then_sweep(**kwargs):
        decision = real_gate(**kwargs)
        fall_silent()
        sweeps.append(runs.training_runs_sweep())
        return decision

    monkeypatch.setattr(fine_tuning, "gate", gate_then_sweep)
    returned = services.training_run_execute(run_id=outcome.training_run.pk)
    monkeypatch.undo()

    assert sweeps[0]["failed_stale"] == 1
    run = TrainingRun.objects.get(pk=outcome.training_run.pk)
    assert run.status == returned.status == "failed" and "worker lost" in run.error
    assert run.failure_kind == TrainingRun.FailureKind.WORKER_LOST
    assert run.result_version is None
    assert list(ModelVersion.objects.values_list("pk", "status")) == [(default_model.pk, "active")]
    correction = Correction.objects.get()
    assert correction.training_state == "pending"

    # The run the sweep queued takes the correction and settles it.
    retry = TrainingRun.objects.get(status="queued")
    retry = services.training_run_execute(run_id=retry.pk)
    assert list(retry.corrections.all()) == [correction]
    correction.refresh_from_db()
    settled = {"succeeded": "trained", "rejected": "rejected"}[retry.status]
    assert correction.training_state == settled, retry.error
    assert retry.result_version.trained_sample_ids == [sample.pk]


def test_a_sweep_during_a_live_run_queues_no_second_run_for_its_corrections(
    default_model, quick, monkeypatch
):
    _, outcome = corrected(*misread_handwriting(1)[0])
    real_gate = fine_tuning.gate
    sweeps = []

    def gate_then_sweep(**kwargs):
        sweeps.append(runs.training_runs_sweep())
        return real_gate(**kwargs)

    monkeypatch.setattr(fine_tuning, "gate", gate_then_sweep)
    run = services.training_run_execute(run_id=outcome.training_run.pk)

    assert sweeps == [{"failed_stale": 0, "dispatched": None}]
    assert list(TrainingRun.objects.values_list("pk", flat=True)) == [run.pk]
    assert Correction.objects.get().training_state != "pending"


def test_slow_phases_between_steps_do_not_lose_a_live_run(
    default_model, quick, settings, monkeypatch
):
    # No candidate passes, so the run goes through two fine-tunes and two gates.
    settings.FINE_TUNE = {**quick, "MAX_FORGETTING": -1}
    _, outcome = corrected(*misread_handwriting(1)[0])
    real_loading, real_gate, real_fine_tune = (
        replay.heldout_user_set,
        fine_tuning.gate,
        fine_tuning.fine_tune,
    )
    sweeps = []

    def slow_loading(**kwargs):
        glyphs = real_loading(**kwargs)
        fall_silent()
        return glyphs

    def slow_gate(**kwargs):
        decision = real_gate(**kwargs)
        fall_silent()
        return decision

    def fine_tune_after_a_sweep(*args, **kwargs):
        sweeps.append(runs.training_runs_sweep())
        return real_fine_tune(*args, **kwargs)

    monkeypatch.setattr(replay, "heldout_user_set", slow_loading)
    monkeypatch.setattr(fine_tuning, "gate", slow_gate)
    monkeypatch.setattr(fine_tuning, "fine_tune", fine_tune_after_a_sweep)
    run = services.training_run_execute(run_id=outcome.training_run.pk)

    assert [sweep["failed_stale"] for sweep in sweeps] == [0, 0]
    assert run.status == "rejected" and "forgetting" in run.reason, run.error
    run.refresh_from_db()
    assert run.status == "rejected" and run.metrics["candidates_tried"] == 2
    assert Correction.objects.get().training_state == "rejected"


def test_a_version_records_the_replayed_samples_it_trained_on(default_model, quick):
    earlier = [corrected(draw_png(strokes), label)[0] for strokes, label in
               [(ONE, "1"), (SEVEN, "7"), (ZERO, "0")] * 3]  # fmt: skip
    # An earlier run learned these: they are labelled samples to replay, not new ones.
    Correction.objects.filter(training_state="pending").update(training_state="trained")
    new, outcome = corrected(*misread_handwriting(1)[0])
    run = services.training_run_execute(run_id=outcome.training_run.pk)

    version = run.result_version
    every = quick["HELDOUT_EVERY"]
    # One in `every`, by a keyed hash, is held out.
    replayed = sorted(s.pk for s in earlier if s.heldout_bucket % every)
    assert replayed and len(replayed) <= replay.REPLAY_PER_CLASS  # so all of them are drawn
    assert version.training_info["replayed_sample_ids"] == replayed
    assert version.metrics["trained_on"]["user_replay"] == len(replayed)
    # trained_sample_ids keeps its meaning: the corrected samples.
    assert version.trained_sample_ids == [new.pk]


def test_the_sweep_stops_requeueing_runs_that_cannot_load_the_active_version(
    default_model, quick, caplog
):
    corrected(*misread_handwriting(1)[0])
    good_copy = copy_of(default_model)
    Path(default_model.weights.path).write_bytes(b"not the weights it was published with")

    requeued = []
    for _ in range(3):
        run = services.training_run_execute(run_id=TrainingRun.objects.get(status="queued").pk)
        assert run.status == "failed" and run.failure_kind == "unloadable_weights", run.error
        assert run.error.startswith("WeightsIntegrityError")
        sweep = runs.training_runs_sweep()
        requeued.append(TrainingRun.objects.filter(status="queued").exists())
    assert requeued == [True, True, False]
    assert sweep["dispatched"] is None
    assert "could not load v1's weights" in caplog.text
    assert TrainingRun.objects.count() == 3
    assert Correction.objects.get().training_state == "pending"

    # Another active version gives the pending correction a run again.
    registry.version_activate(version=good_copy)
    assert runs.training_runs_sweep()["dispatched"] is not None
    assert TrainingRun.objects.filter(status="queued").exists()


def test_the_sweep_stops_requeueing_runs_that_a_sample_breaks_until_a_new_correction(
    default_model, quick, caplog
):
    broken, _ = corrected(*misread_handwriting(1)[0])
    # A damaged glyph: every fine-tune that reads it fails.
    Sample.objects.filter(pk=broken.pk).update(glyph=b"damaged")
    requeued = []
    for _ in range(3):
        run = services.training_run_execute(run_id=TrainingRun.objects.get(status="queued").pk)
        assert run.status == "failed" and run.failure_kind == "error", run.error
        runs.training_runs_sweep()
        requeued.append(TrainingRun.objects.filter(status="queued").exists())
    assert requeued == [True, True, False]
    assert "the last 3 runs on v1 failed (the last: ValueError" in caplog.text
    assert Correction.objects.get().training_state == "pending"

    # A new correction still gets a run.
    corrected(draw_png(SEVEN), "1")
    assert TrainingRun.objects.filter(status="queued").exists()


def test_the_sweep_keeps_working_with_no_active_version(default_model, quick):
    corrected(*misread_handwriting(1)[0])
    ModelVersion.objects.update(status="retired")
    for _ in range(4):
        run = services.training_run_execute(run_id=TrainingRun.objects.get(status="queued").pk)
        assert run.status == "failed" and "no active model version" in run.error
        assert runs.training_runs_sweep()["dispatched"] is not None


def test_a_claim_that_waited_for_the_running_run_starts_after_it_finished(transactional_db):
    """As in a publish: the running run's transaction beats, then finishes; a claim made
    between the two waits for its commit and must not date its start before that finish."""
    earlier = TrainingRun.objects.create(
        status="running", started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    queued = TrainingRun.objects.create(status="queued")
    holding, claiming = threading.Event(), threading.Event()

    def publish():
        try:
            with transaction.atomic():
                assert runs.training_run_heartbeat(earlier)
                holding.set()
                claiming.wait(5)
                time.sleep(0.3)  # the claim is blocked on this transaction by now
                assert runs.training_run_finish(earlier, status="succeeded")
        finally:
            connection.close()

    publisher = threading.Thread(target=publish)
    publisher.start()
    assert holding.wait(5)
    claiming.set()
    claimed = runs.training_run_claim(run_id=queued.pk)
    publisher.join()

    earlier.refresh_from_db()
    claimed.refresh_from_db()
    assert earlier.status == "succeeded" and claimed.status == "running"
    assert earlier.finished_at <= claimed.started_at
