"""The migration that adds the scale columns and indexes runs on a populated database."""

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from recognition.models import PredictionTally, Sample
from training.models import ModelVersion

MIGRATION = ("recognition", "0007_scale_indexes")


def migrate(target: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.mark.django_db(transaction=True)
def test_samples_get_their_latest_prediction_and_predictions_their_tally():
    executor = MigrationExecutor(connection)
    # Recognition goes back to before the migration; other apps stay as they are.
    before = [node.key for node in executor.loader.graph.node_map[MIGRATION].parents]
    old = migrate([key for key in before if key[0] == MIGRATION[0]])
    try:
        Sample_ = old.get_model("recognition", "Sample")
        Prediction = old.get_model("recognition", "Prediction")
        Correction = old.get_model("recognition", "Correction")
        author = User.objects.create(username="labeller")
        v1 = ModelVersion.objects.create(number=1, status="retired", sha256="0", architecture="x")
        v2 = ModelVersion.objects.create(number=2, status="active", sha256="0", architecture="x")
        samples = Sample_.objects.bulk_create(
            Sample_(image=f"s/{i}.png", width=28, height=28, glyph=bytes(784), source="api")
            for i in range(300)
        )
        for i, sample in enumerate(samples):
            # An older prediction by v1, then the latest by v2 (confidence by sample).
            Prediction.objects.create(
                sample=sample, model_version_id=v1.pk, label="0", confidence=0.1,
                probabilities=[], latency_ms=3.0,
            )  # fmt: skip
            Prediction.objects.create(
                sample=sample, model_version_id=v2.pk, label="7", confidence=i / 300,
                probabilities=[], latency_ms=30.0 if i % 2 else 0.5,
            )  # fmt: skip
        relabelled = samples[::10]
        for sample in relabelled:
            Correction.objects.create(sample=sample, label="1", author_id=author.pk, source="admin")
            sample.label, sample.status = "1", "relabeled"
            sample.save()
    finally:
        new = migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    migrated = Sample.objects.order_by("pk")
    assert migrated.count() == 300
    assert set(migrated.values_list("predicted_label", "model_version_number").distinct()) == {
        ("7", 2)
    }
    assert [s.confidence for s in migrated] == pytest.approx([i / 300 for i in range(300)])
    assert set(migrated.filter(corrected=True).values_list("pk", flat=True)) == {
        s.pk for s in relabelled
    }
    # Generated columns: a label that differs from the prediction is disputed and reviewed.
    assert set(migrated.filter(disputed=True).values_list("pk", flat=True)) == {
        s.pk for s in relabelled
    }
    assert migrated.filter(reviewed=True).count() == len(relabelled)
    assert len(set(migrated.values_list("replay_key", flat=True))) == 300  # a random order

    tally = {(t.label, t.bucket): (t.count, t.sum_ms) for t in PredictionTally.objects.all()}
    assert tally == {
        ("0", 2): (300, pytest.approx(900.0)),  # 3 ms: within (2, 5]
        ("7", 0): (150, pytest.approx(75.0)),  # 0.5 ms: within 1 ms
        ("7", 5): (150, pytest.approx(4500.0)),  # 30 ms: within (20, 50]
    }
    assert new.get_model("recognition", "Sample")._meta.get_field("reviewed")
    with connection.cursor() as cursor:  # the later indexes were built on these rows too
        indexes = connection.introspection.get_constraints(cursor, "recognition_sample")
    assert {"sample_review_queue", "sample_replay_moderated"} <= set(indexes)
    call_command("migrate", verbosity=0)  # nothing left to apply
