"""Migrate a database as it was before training's migrations stopped depending on
recognition's, or a fresh one, to today's schema, and report what it holds.

Run by tests/test_migrations.py in its own process: ``python -m
tests.migration_history.upgrade before|fresh`` with ``DATABASE_URL`` naming an
empty database. Prints a JSON report.
"""

import importlib
import json
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402

LINKS = "training_trainingrun_corrections"


class LoaderBefore(MigrationLoader):
    """The migration files as they were: training's 0001_initial with the run -> correction
    relation (and a dependency on recognition's 0001), recognition up to 0004."""

    def load_disk(self):
        super().load_disk()
        for app, name in list(self.disk_migrations):
            if app == "training" or (app == "recognition" and name > "0004"):
                del self.disk_migrations[app, name]
        old = importlib.import_module("tests.migration_history.training_0001_initial")
        self.disk_migrations["training", "0001_initial"] = old.Migration("0001_initial", "training")


def migrate_as_before() -> dict:
    """Apply the old migrations and write rows through their historical models."""
    executor = MigrationExecutor(connection)
    executor.loader = LoaderBefore(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    apps = executor.loader.project_state().apps
    version = apps.get_model("training", "ModelVersion").objects.create(
        number=1, status="active", weights="v1.pt", sha256="0" * 64, architecture="test"
    )
    sample = apps.get_model("recognition", "Sample").objects.create(
        image="samples/a.png", width=28, height=28, glyph=bytes(784), source="api", label="a"
    )
    apps.get_model("recognition", "Prediction").objects.create(
        sample=sample,
        model_version=version,
        label="o",
        confidence=0.5,
        probabilities=[],
        latency_ms=1.0,
    )
    correction = apps.get_model("recognition", "Correction").objects.create(
        sample=sample, label="a", previous_label="o", source="api"
    )
    TrainingRun = apps.get_model("training", "TrainingRun")
    TrainingRun.objects.create(status="failed", error="worker lost: no heartbeat")
    unloadable = TrainingRun.objects.create(
        status="failed", error="WeightsIntegrityError: v1.pt does not match its sha256"
    )
    unloadable.corrections.add(correction)
    return {"correction": correction.pk, "run": unloadable.pk}


def report(before: dict | None) -> dict:
    from recognition.models import Correction
    from training.models import TrainingRun

    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, LINKS)
    added = None
    if before:
        # A correction made today joins the old run through the moved relation.
        added = Correction.objects.create(
            sample_id=Correction.objects.get(pk=before["correction"]).sample_id,
            label="b",
            source="api",
        )
        added.training_runs.add(before["run"])
        before = {**before, "added": added.pk}
    return {
        "link_columns": sorted(column.name for column in columns),
        "links": sorted(
            [run.pk, correction.pk]
            for run in TrainingRun.objects.all()
            for correction in run.corrections.all()
        ),
        "failure_kinds": sorted(TrainingRun.objects.values_list("error", "failure_kind")),
        "recorded": sorted(
            name
            for app, name in MigrationLoader(connection).applied_migrations
            if app == "training"
        ),
        "before": before,
    }


def main(mode: str):
    before = migrate_as_before() if mode == "before" else None
    call_command("migrate", verbosity=0)
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)
    print(json.dumps(report(before)))


if __name__ == "__main__":
    main(sys.argv[1])
