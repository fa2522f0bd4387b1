"""Help text only: a personal model's version is the one its rows were last stored under
(the rows are tied to ``hidden_weights``, not to the version)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('writers', '0002_personal_rows_before_bias'),
    ]

    operations = [
        migrations.AlterField(
            model_name='personalmodel',
            name='model_version',
            field=models.ForeignKey(blank=True, help_text='The shared version the rows were last stored under.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='training.modelversion'),
        ),
    ]
