"""Off-Stripe payments reported to Stripe, entries for Stripe's off-Stripe amounts and credit balance.

Each payment gets its own ``uid`` (the idempotency keys of its Stripe writes): added nullable,
filled row by row, then made unique, since one callable default would give every row one value.
"""

import uuid
from typing import Any

from django.conf import settings
from django.db import migrations, models


def _fill_uids(apps: Any, schema_editor: Any) -> None:
    payments = apps.get_model("invoicing", "PurchaseOrderPayment")
    for payment in payments.objects.filter(uid__isnull=True).only("pk"):
        payment.uid = uuid.uuid4()
        payment.save(update_fields=["uid"])


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0010_purchase_order_activity"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="purchaseorderpayment",
            name="payment_method_valid",
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="applied_invoice_id",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Off-Stripe and credit-balance entries: the Stripe invoice they count toward.",
                max_length=255,
            ),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="off_stripe_paid_after",
            field=models.BigIntegerField(
                blank=True,
                help_text="Marked paid outside Stripe at Stripe: the invoice's amount_paid_off_stripe (minor units) after this entry.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="overpayment_reason",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="stripe_attached_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="report_to_stripe",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="stripe_payment_record_id",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="stripe_report_error",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="uid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(_fill_uids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="purchaseorderpayment",
            name="uid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name="purchaseorderpayment",
            name="method",
            field=models.CharField(
                choices=[
                    ("stripe", "Stripe"),
                    ("wire", "Wire transfer"),
                    ("check", "Check"),
                    ("other", "Other"),
                    ("credit_balance", "Customer credit balance (Stripe)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("method__in", ["stripe", "wire", "check", "other", "credit_balance"])
                ),
                name="payment_method_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("off_stripe_paid_after__isnull", False)),
                fields=("applied_invoice_id", "off_stripe_paid_after"),
                name="payment_unique_off_stripe_snapshot",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("method", "credit_balance")),
                fields=("applied_invoice_id",),
                name="payment_unique_credit_balance_per_invoice",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("off_stripe_paid_after__isnull", True),
                    models.Q(
                        ("method", "other"),
                        ("off_stripe_paid_after__gt", 0),
                        models.Q(("applied_invoice_id", ""), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="payment_off_stripe_snapshot_fields",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("method", "credit_balance"), _negated=True),
                    models.Q(("applied_invoice_id", ""), _negated=True),
                    _connector="OR",
                ),
                name="payment_credit_balance_names_invoice",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("method", "stripe"), _negated=True),
                    models.Q(
                        ("applied_invoice_id", ""),
                        ("off_stripe_paid_after", None),
                        ("stripe_payment_record_id", ""),
                    ),
                    _connector="OR",
                ),
                name="payment_stripe_has_no_off_stripe_fields",
            ),
        ),
    ]
