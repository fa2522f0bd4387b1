"""Every version by one measure on the dashboard and in the admin; the sweep sends a run once."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from recognition import dashboard
from recognition import services as recognition_services
from training import registry, runs, services
from training import selectors as training_selectors
from training.models import ModelVersion, TrainingRun

from .conftest import copy_of, misread_handwriting, teacher

VERSIONS = "/admin/training/modelversion/"


@pytest.fixture
def quick(settings):
    # The product's steps: a candidate that learns nothing publishes no version.
    settings.FINE_TUNE = {**settings.FINE_TUNE, "THREADS": 1}
    return settings.FINE_TUNE


@pytest.fixture
def admin_client_(db):
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw-for-tests-only"))
    return client


def corrected(png: bytes, label: str):
    """A drawing predicted and corrected through the services, as the API does."""
    sample = recognition_services.predict_drawing(image_data=png, source="api").sample
    return recognition_services.correct_sample(
        sample=sample, label=label, source="api", author=teacher()
    )


def fine_tune_of(parent: ModelVersion, parent_overall: float) -> ModelVersion:
    """A fine-tune version as a run records it, cut down to the figures compared here."""
    return registry.version_create(
        weights=registry.read_verified_weights(parent),
        architecture=parent.architecture,
        metrics={"overall": 0.5, "parent_overall": parent_overall, "count": 10},
        training_info={"kind": "fine-tune"},
        parent=parent,
        base=parent.base,  # a delta's copy keeps its base
    )


@pytest.mark.slow  # a real (short) fine-tune
@pytest.mark.django_db
def test_the_pretrained_version_is_shown_by_the_gates_score_of_it(
    default_model, quick, admin_client_
):
    pretraining_report = dict(default_model.metrics)
    outcome = corrected(*misread_handwriting(1)[0])
    run = services.training_run_execute(run_id=outcome.training_run.pk)
    child = run.result_version
    assert child is not None, run.error

    # The pretraining report scores v1 on another set than the gate's: the page can tell them apart.
    assert f"{pretraining_report['overall']:.2%}" != f"{child.metrics['parent_overall']:.2%}"
    rows = {row["number"]: row for row in dashboard.dashboard_data()["versions"]}
    assert rows[1]["overall"] == pytest.approx(child.metrics["parent_overall"])
    assert rows[1]["digits"] == pytest.approx(child.metrics["parent_digits"])
    assert rows[1]["letters"] == pytest.approx(child.metrics["parent_letters"])
    assert {key: rows[2][key] for key in training_selectors.MEASURED} == {
        key: child.metrics[key] for key in training_selectors.MEASURED
    }
    # Scored on one set, v1 and its fine-tune differ by what the gate measured.
    assert rows[1]["overall"] - rows[2]["overall"] == pytest.approx(child.metrics["forgetting"])

    page = admin_client_.get(VERSIONS).content.decode()
    assert "Overall, gate&#x27;s fixed set" in page
    assert f"{child.metrics['parent_overall']:.2%}" in page
    assert f"{pretraining_report['overall']:.2%}" not in page
    # The pretraining report itself is kept, and shown on the version's own page.
    default_model.refresh_from_db()
    assert default_model.metrics == pretraining_report
    page = admin_client_.get(f"{VERSIONS}{default_model.pk}/change/").content.decode()
    assert f"{pretraining_report['overall']:.2%} of {pretraining_report['count']} pretraining" in (
        page
    )


@pytest.mark.django_db
def test_a_version_takes_the_score_its_first_fine_tune_recorded(default_model, admin_client_):
    copy_of(default_model)  # a child that is no fine-tune records nothing of its parent
    first = fine_tune_of(default_model, parent_overall=0.9)
    fine_tune_of(default_model, parent_overall=0.8)
    fine_tune_of(first, parent_overall=0.7)

    versions = training_selectors.versions_newest(limit=10)
    overall = [training_selectors.version_gate_scores(v)["overall"] for v in versions]
    # v1 by its first fine-tune's record; the copy never scored; fine-tunes by their own.
    assert overall == [pytest.approx(0.9), None, 0.5, 0.5, 0.5]
    data = dashboard.dashboard_data()
    assert [row["overall"] for row in data["versions"]] == overall
    assert data["measure"] == training_selectors.MEASURE
    page = admin_client_.get(VERSIONS).content.decode()
    assert "90.00%" in page and f"{default_model.metrics['overall']:.2%}" not in page


@pytest.mark.django_db
def test_a_pretrained_version_no_fine_tune_scored_yet_has_no_figure(default_model, admin_client_):
    (row,) = dashboard.dashboard_data()["versions"]
    assert (row["overall"], row["digits"], row["letters"]) == (None, None, None)
    response = admin_client_.get(f"{VERSIONS}{default_model.pk}/change/")
    report = default_model.metrics
    assert f"{report['overall']:.2%} of {report['count']}" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_sends_a_run_it_creates_once(default_model, redis_server):
    redis_server.client.flushall()

    def sent() -> int:
        """Fine-tune messages waiting in the broker's training queue."""
        return redis_server.client.llen("training")

    outcome = corrected(*misread_handwriting(1)[0])
    lost = outcome.training_run
    assert sent() == 1
    # Its worker claimed it and died: the sweep fails it and queues a new run.
    silent_since = timezone.now() - timedelta(minutes=5)
    TrainingRun.objects.filter(pk=lost.pk).update(
        status=TrainingRun.Status.RUNNING, started_at=silent_since, heartbeat_at=silent_since
    )

    sweep = runs.training_runs_sweep()

    requeued = TrainingRun.objects.get(status=TrainingRun.Status.QUEUED)
    assert sweep == {"failed_stale": 1, "dispatched": requeued.pk}
    assert sent() == 2
    assert requeued.task_id
    # A later sweep leaves a run whose message went out alone.
    assert runs.training_runs_sweep()["dispatched"] is None
    assert sent() == 2
