"""Personal models' rows now hold the hidden layer's values before its bias, tied to the
network's hidden weights: existing models, whose ``hidden_weights`` is empty, are rebuilt
from their samples on their writer's next drawing or label."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('writers', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='personalmodel',
            name='hidden_weights',
            field=models.CharField(blank=True, help_text='nn.hidden_weights_digest of the network the rows were computed with.', max_length=64),
        ),
    ]
