"""The retention purge stamps when it emptied an inbox payload (services/event_retention.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0004_conference_teams"),
    ]

    operations = [
        migrations.AddField(
            model_name="stripeevent",
            name="payload_purged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
