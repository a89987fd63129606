"""A key epoch per off-Stripe payment: its report and attach move past a key poisoned by a 5xx."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0011_off_stripe_payments")]

    operations = [
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="key_epoch",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
