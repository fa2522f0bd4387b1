from django.db import migrations, models


class AddFieldOverExistingTable(migrations.AddField):
    """AddField whose many-to-many table may already exist, made by training's 0001_initial.

    A database migrated before the relation moved here has the table with the same
    columns; a fresh database does not, and gets it made.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        field = to_state.apps.get_model(app_label, self.model_name)._meta.get_field(self.name)
        table = field.remote_field.through._meta.db_table
        if table not in schema_editor.connection.introspection.table_names():
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("recognition", "0005_sample_classes_sample_writer"),
        ("training", "0001_squashed_initial"),
    ]

    operations = [
        AddFieldOverExistingTable(
            model_name="correction",
            name="training_runs",
            field=models.ManyToManyField(
                blank=True,
                db_table="training_trainingrun_corrections",
                related_name="corrections",
                to="training.trainingrun",
            ),
        ),
    ]
