"""Pages and API lists make as many queries with many rows and versions as with few, and the
dashboard shows figures kept and refreshed apart."""

import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from recognition import dashboard
from recognition.models import Correction, Prediction, Sample
from recognizer_site import paginators
from training import replay
from training.classes import CLASSES
from training.models import ModelVersion, TrainingRun

from .conftest import TEST_CACHE_URL

pytestmark = pytest.mark.django_db

SAMPLES = "/admin/recognition/sample/"


def grow(*, samples: int, versions: int, base: ModelVersion, author: User):
    """Add fine-tuned versions with their runs, and samples with their predictions, a fifth of
    them relabelled by ``author``, all by bulk inserts."""
    newest = ModelVersion.objects.order_by("-number").first().number
    made_versions = ModelVersion.objects.bulk_create(
        ModelVersion(
            number=newest + 1 + i,
            status=ModelVersion.Status.RETIRED,
            parent=base,
            weights=base.weights.name,
            sha256=base.sha256,
            architecture=base.architecture,
            metrics={"overall": 0.9, "digits": 0.95, "letters": 0.88, "parent_overall": 0.9},
            training_info={"kind": "fine-tune"},
            trained_sample_ids=[1, 2, 3],
        )
        for i in range(versions)
    )
    now = timezone.now()
    TrainingRun.objects.bulk_create(
        TrainingRun(
            status=TrainingRun.Status.SUCCEEDED,
            parent_version=base,
            result_version=version,
            started_at=now - timezone.timedelta(seconds=3),
            finished_at=now,
        )
        for version in made_versions
    )
    labels = [CLASSES[i % len(CLASSES)] for i in range(samples)]
    made = Sample.objects.bulk_create(
        Sample(
            image="samples/shared.png",
            width=280,
            height=280,
            glyph=bytes(784),
            source=Sample.Source.API,
            predicted_label=label,
            confidence=(i % 97) / 97,
            model_version_number=base.number,
            heldout_bucket=i,  # as Sample.save gives it
        )
        for i, label in enumerate(labels)
    )
    Prediction.objects.bulk_create(
        Prediction(
            sample=sample,
            model_version=base,
            label=label,
            confidence=sample.confidence,
            probabilities=[1 / 36] * 36,
            latency_ms=5.0,
        )
        for sample, label in zip(made, labels, strict=True)
    )
    relabelled = made[::5]
    Correction.objects.bulk_create(
        Correction(
            sample=sample,
            label="x",
            previous_label=sample.predicted_label,
            author=author,
            source=Correction.Source.ADMIN,
            training_state=Correction.TrainingState.TRAINED,
        )
        for sample in relabelled
    )
    for sample in relabelled:
        sample.label, sample.corrected, sample.status = "x", True, Sample.Status.RELABELED
    Sample.objects.bulk_update(relabelled, ["label", "corrected", "status"])


def queries(client: Client, url: str) -> int:
    """Queries of one warm request (a first one fills the caches)."""
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            if response.streaming:
                b"".join(response.streaming_content)
    return len(captured)


def pages(root: User) -> list[str]:
    newest = ModelVersion.objects.order_by("-number").first()
    sample = Sample.objects.exclude(label="").order_by("-pk").first()
    return [
        SAMPLES,
        f"{SAMPLES}?status__exact=relabeled",
        f"{SAMPLES}?predicted=a",
        f"{SAMPLES}?label__exact=x",
        f"{SAMPLES}?disputed=yes",
        f"{SAMPLES}?confidence=low",
        f"{SAMPLES}?version={newest.number}",
        f"{SAMPLES}?labelled_by={root.pk}",
        f"{SAMPLES}?q=a",
        f"{SAMPLES}{sample.pk}/change/",
        f"{SAMPLES}dashboard/",
        "/admin/training/modelversion/",
        f"/admin/training/modelversion/{newest.pk}/change/",
        "/admin/training/trainingrun/",
        "/admin/recognition/prediction/",
        "/admin/recognition/correction/",
        "/api/samples/",
        "/api/samples/?label=x&status=relabeled",
        "/api/samples/?predicted_label=a&max_confidence=0.5",
        "/api/samples/?model_version=1&page=2",
        "/api/model-versions/",
        "/api/training-runs/",
        "/metrics",
    ]


def test_query_counts_do_not_grow_with_rows_or_versions(default_model, settings):
    settings.MODEL_RELOAD_INTERVAL = 3600  # no re-check of the active version mid-count
    settings.DEBUG = True  # a local server's /metrics answers loopback without a token
    root = User.objects.create_superuser("root", password="pw-for-tests-only")
    client = Client()
    client.force_login(root)
    grow(samples=60, versions=3, base=default_model, author=root)
    few = [queries(client, url) for url in pages(root)]

    grow(samples=600, versions=60, base=default_model, author=root)
    many = {url: queries(client, url) for url in pages(root)}

    assert Sample.objects.count() == 660 and ModelVersion.objects.count() == 64
    grown = {url: (f, n) for (url, n), f in zip(many.items(), few, strict=True) if n > f}
    assert not grown, f"queries grew with the data (few, many): {grown}"


def test_version_filters_and_dashboard_list_only_recent_versions(default_model, settings):
    settings.MODEL_RELOAD_INTERVAL = 3600
    root = User.objects.create_superuser("root", password="pw-for-tests-only")
    client = Client()
    client.force_login(root)
    grow(samples=5, versions=80, base=default_model, author=root)

    changelist = client.get(SAMPLES)
    version_filter = next(
        spec for spec in changelist.context["cl"].filter_specs if spec.title == "model version"
    )
    offered = [value for value, _ in version_filter.lookup_choices]
    assert offered == [str(n) for n in range(81, 61, -1)]  # the 20 newest, newest first
    # An older version is still reachable by its URL.
    assert client.get(f"{SAMPLES}?version=1").status_code == 200

    dashboard = client.get(f"{SAMPLES}dashboard/")
    shown = [row["number"] for row in dashboard.context["versions"]]
    assert shown == list(range(32, 82))
    assert b"the newest 50 versions" in dashboard.content


def test_long_lists_are_estimated_on_postgresql_and_counted_elsewhere(default_model, monkeypatch):
    root = User.objects.create_superuser("root", password="pw-for-tests-only")
    grow(samples=40, versions=1, base=default_model, author=root)
    monkeypatch.setattr(paginators, "EXACT_BELOW", 10)
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        with connection.cursor() as cursor:  # what autovacuum does for a real table
            cursor.execute("ANALYZE recognition_sample")

    def count(samples) -> tuple[int, bool]:
        with CaptureQueriesContext(connection) as captured:
            n = paginators.EstimatedCountPaginator(samples, 10).count
        return n, any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)

    # The whole table: pg_class.reltuples (exact for a table ANALYZE read whole).
    assert count(Sample.objects.order_by("pk")) == (40, not postgresql)
    # A filtered list the planner expects to be short is counted exactly.
    assert count(Sample.objects.filter(label="x")) == (8, True)


def test_a_fine_tunes_selection_makes_as_many_queries_with_many_rows(default_model):
    root = User.objects.create_superuser("root", password="pw-for-tests-only")

    def selection_queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as replayed:
            replay.replay_set(exclude_ids=(), per_class=20, every=3, seed=0)
        with CaptureQueriesContext(connection) as held_out:
            replay.heldout_user_set(exclude_ids=(), every=3, limit=50)
        return len(replayed), len(held_out)

    grow(samples=60, versions=1, base=default_model, author=root)
    few = selection_queries()
    grow(samples=600, versions=1, base=default_model, author=root)
    many = selection_queries()
    # Replay reads a kind of window only for the classes the earlier kinds left short.
    assert many[0] <= few[0] and many[1] == few[1]
    if connection.vendor == "postgresql":  # at most a statement per kind, for every class
        assert few[0] <= 5 and few[1] == 1


def dashboard_figures(client: Client) -> tuple:
    context = client.get(f"{SAMPLES}dashboard/").context
    return context["computed_at"], dict(context["class_counts"])["x"]["labelled"]


@pytest.mark.celery
def test_the_dashboard_shows_kept_figures_and_a_worker_refreshes_stale_ones(
    default_model, start_worker, redis_cache, monkeypatch
):
    start_worker(CACHE_URL=TEST_CACHE_URL)
    root = User.objects.create_superuser("root", password="pw-for-tests-only")
    client = Client()
    client.force_login(root)
    grow(samples=10, versions=1, base=default_model, author=root)
    first, labelled = dashboard_figures(client)  # none kept yet: computed by the page
    assert labelled == 2

    grow(samples=10, versions=1, base=default_model, author=root)
    assert dashboard_figures(client) == (first, 2)  # kept, fresh: not recomputed

    monkeypatch.setattr(dashboard, "REFRESH_SECONDS", 0)
    assert dashboard_figures(client) == (first, 2)  # stale: shown, and a refresh is sent
    deadline = time.monotonic() + 60
    while (figures := dashboard_figures(client))[0] == first:
        assert time.monotonic() < deadline, "the worker did not refresh the dashboard"
        time.sleep(0.2)
    assert figures[1] == 4  # the worker's figures count the newer samples
