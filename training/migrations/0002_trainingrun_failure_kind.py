from django.db import migrations, models


def classify_past_failures(apps, schema_editor):
    """Runs failed before the field existed said what failed them at the start of ``error``."""
    TrainingRun = apps.get_model("training", "TrainingRun")
    failed = TrainingRun.objects.filter(status="failed")
    failed.filter(error__startswith="worker lost").update(failure_kind="worker_lost")
    failed.filter(error__startswith="WeightsIntegrityError:").update(
        failure_kind="unloadable_weights"
    )
    failed.filter(failure_kind="").update(failure_kind="error")


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_squashed_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="failure_kind",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "-"),
                    ("worker_lost", "Worker lost (no heartbeat)"),
                    ("unloadable_weights", "The parent's weights failed their check"),
                    ("error", "Error while training"),
                ],
                default="",
                max_length=32,
            ),
        ),
        migrations.RunPython(classify_past_failures, migrations.RunPython.noop),
    ]
