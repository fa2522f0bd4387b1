import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """A head-only version's weights build on a base (a full set, or a wider delta), not
    only on a trunk: the same column, renamed."""

    dependencies = [
        ("training", "0003_modelversion_trunk_pinned_pruned"),
    ]

    operations = [
        migrations.RenameField(model_name="modelversion", old_name="trunk", new_name="base"),
        migrations.AlterField(
            model_name="modelversion",
            name="base",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="deltas",
                to="training.modelversion",
            ),
        ),
    ]
