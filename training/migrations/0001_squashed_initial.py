# training's first migration without the run -> correction relation, which now lives
# on recognition's Correction (recognition 0006): training's migrations need none of
# recognition's, so the apps' migrations no longer depend on each other both ways.
# A database that applied the old 0001_initial (tests/migration_history/) counts
# this as applied.

import django.db.models.deletion
import training.models
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    replaces = [("training", "0001_initial")]

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="ModelVersion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("number", models.PositiveIntegerField(unique=True)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("candidate", "Candidate"),
                            ("active", "Active"),
                            ("rejected", "Rejected"),
                            ("retired", "Retired"),
                        ],
                        default="candidate",
                        max_length=16,
                    ),
                ),
                (
                    "weights",
                    models.FileField(max_length=255, upload_to="model_versions/"),
                ),
                ("sha256", models.CharField(max_length=64)),
                (
                    "anchors",
                    models.FileField(
                        blank=True, max_length=255, upload_to="model_versions/"
                    ),
                ),
                ("architecture", models.CharField(max_length=64)),
                ("classes", models.JSONField(default=training.models._default_classes)),
                ("metrics", models.JSONField(blank=True, default=dict)),
                (
                    "training_info",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text="How it was trained: command, data, settings.",
                    ),
                ),
                ("trained_sample_ids", models.JSONField(blank=True, default=list)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("activated_at", models.DateTimeField(blank=True, null=True)),
                (
                    "parent",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="children",
                        to="training.modelversion",
                    ),
                ),
            ],
            options={
                "ordering": ["-number"],
            },
        ),
        migrations.CreateModel(
            name="TrainingRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("rejected", "Rejected"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("task_id", models.CharField(blank=True, max_length=64)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("progress", models.FloatField(default=0.0)),
                ("metrics", models.JSONField(blank=True, default=dict)),
                (
                    "reason",
                    models.TextField(
                        blank=True, help_text="Why the gate rejected the candidate."
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "parent_version",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="training.modelversion",
                    ),
                ),
                (
                    "result_version",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="training_run",
                        to="training.modelversion",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "active")),
                fields=("status",),
                name="single_active_model_version",
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "queued")),
                fields=("status",),
                name="single_queued_training_run",
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "running")),
                fields=("status",),
                name="single_running_training_run",
            ),
        ),
    ]
