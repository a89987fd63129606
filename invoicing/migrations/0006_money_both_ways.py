"""Money both ways (issue 15): refund and dispute entries with per-kind signs, credit
notes, disputes, and the PO status ``refunded``."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0005_stripe_event_payload_purged_at"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PurchaseOrderCredit",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("stripe_credit_note_id", models.CharField(max_length=255)),
                ("stripe_invoice_id", models.CharField(max_length=255)),
                ("number", models.CharField(blank=True, default="", max_length=255)),
                ("amount", models.DecimalField(decimal_places=3, max_digits=14)),
                (
                    "purpose",
                    models.CharField(
                        choices=[
                            ("reduce", "Amount owed reduced"),
                            ("cancel", "Unpaid remainder of a cancelled PO"),
                            ("reissue", "Unpaid remainder moved to the replacement invoice"),
                            ("external", "Issued at Stripe (Dashboard or another app)"),
                        ],
                        max_length=16,
                    ),
                ),
                ("reason", models.CharField(blank=True, default="", max_length=64)),
                ("memo", models.TextField(blank=True, default="")),
                ("issued_at", models.DateTimeField(blank=True, null=True)),
                ("voided_at", models.DateTimeField(blank=True, null=True)),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ("recorded_at", "pk"),
            },
        ),
        migrations.CreateModel(
            name="PurchaseOrderDispute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("stripe_dispute_id", models.CharField(max_length=255)),
                ("stripe_charge_id", models.CharField(blank=True, default="", max_length=255)),
                ("stripe_invoice_id", models.CharField(blank=True, default="", max_length=255)),
                ("amount", models.DecimalField(decimal_places=3, max_digits=14)),
                ("reason", models.CharField(blank=True, default="", max_length=64)),
                ("status", models.CharField(max_length=32)),
                ("stage", models.PositiveIntegerField(default=0)),
                ("opened_at", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ("opened_at", "pk"),
            },
        ),
        migrations.RemoveConstraint(
            model_name="purchaseorder",
            name="purchase_order_status_valid",
        ),
        migrations.RemoveConstraint(
            model_name="purchaseorderpayment",
            name="payment_unique_stripe_snapshot",
        ),
        migrations.RemoveConstraint(
            model_name="purchaseorderpayment",
            name="payment_amount_positive",
        ),
        migrations.RemoveConstraint(
            model_name="purchaseorderpayment",
            name="payment_stripe_fields_iff_stripe",
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="kind",
            field=models.CharField(
                choices=[
                    ("payment", "Payment"),
                    ("refund", "Refund"),
                    ("refund_reversal", "Refund failed (money back)"),
                    ("dispute", "Dispute: funds withdrawn"),
                    ("dispute_reinstatement", "Dispute won: funds reinstated"),
                ],
                default="payment",
                max_length=32,
            ),
        ),
        migrations.AddField(
            model_name="purchaseorderpayment",
            name="stripe_object_id",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The Stripe refund or dispute behind a refund or dispute entry.",
                max_length=255,
            ),
        ),
        migrations.AlterField(
            model_name="purchaseorder",
            name="status",
            field=models.CharField(
                choices=[
                    ("draft", "Draft"),
                    ("approved", "Approved (invoice being created)"),
                    ("invoiced", "Invoiced"),
                    ("partially_paid", "Partially paid"),
                    ("paid", "Paid"),
                    ("overpaid", "Overpaid"),
                    ("refunded", "Refunded"),
                    ("invoice_voided", "Invoice voided: re-issue or cancel"),
                    ("invoice_uncollectible", "Invoice uncollectible: re-issue or cancel"),
                    ("cancelled", "Cancelled"),
                ],
                default="draft",
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorder",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "status__in",
                        [
                            "draft",
                            "approved",
                            "invoiced",
                            "partially_paid",
                            "paid",
                            "overpaid",
                            "refunded",
                            "invoice_voided",
                            "invoice_uncollectible",
                            "cancelled",
                        ],
                    )
                ),
                name="purchase_order_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "payment"), ("method", "stripe")),
                fields=("stripe_invoice_id", "stripe_amount_paid_after"),
                name="payment_unique_stripe_snapshot",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "payment"), _negated=True),
                fields=("kind", "stripe_object_id"),
                name="payment_unique_stripe_object_per_kind",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "kind__in",
                        [
                            "payment",
                            "refund",
                            "refund_reversal",
                            "dispute",
                            "dispute_reinstatement",
                        ],
                    )
                ),
                name="payment_kind_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("kind__in", ["payment", "refund_reversal", "dispute_reinstatement"]),
                        ("amount__gt", 0),
                    ),
                    models.Q(("kind__in", ["refund", "dispute"]), ("amount__lt", 0)),
                    _connector="OR",
                ),
                name="payment_amount_sign_per_kind",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderpayment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("kind", "payment"),
                        ("method", "stripe"),
                        ("stripe_amount_paid_after__gt", 0),
                        models.Q(("stripe_invoice_id", ""), _negated=True),
                        ("stripe_object_id", ""),
                    ),
                    models.Q(
                        ("kind", "payment"),
                        models.Q(("method", "stripe"), _negated=True),
                        ("stripe_amount_paid_after__isnull", True),
                        ("stripe_invoice_id", ""),
                        ("stripe_object_id", ""),
                    ),
                    models.Q(
                        models.Q(("kind", "payment"), _negated=True),
                        ("method", "stripe"),
                        ("stripe_amount_paid_after__isnull", True),
                        models.Q(("stripe_object_id", ""), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="payment_stripe_fields_per_kind",
            ),
        ),
        migrations.AddField(
            model_name="purchaseordercredit",
            name="purchase_order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credits",
                to="invoicing.purchaseorder",
            ),
        ),
        migrations.AddField(
            model_name="purchaseorderdispute",
            name="purchase_order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="disputes",
                to="invoicing.purchaseorder",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseordercredit",
            constraint=models.UniqueConstraint(
                fields=("stripe_credit_note_id",), name="credit_unique_stripe_credit_note"
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseordercredit",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="credit_amount_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseordercredit",
            constraint=models.CheckConstraint(
                condition=models.Q(("purpose__in", ["reduce", "cancel", "reissue", "external"])),
                name="credit_purpose_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseordercredit",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("stripe_credit_note_id", ""), _negated=True),
                    models.Q(("stripe_invoice_id", ""), _negated=True),
                ),
                name="credit_stripe_ids_present",
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderdispute",
            constraint=models.UniqueConstraint(
                fields=("stripe_dispute_id",), name="dispute_unique_stripe_dispute"
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderdispute",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="dispute_amount_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="purchaseorderdispute",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("stripe_dispute_id", ""), _negated=True),
                    models.Q(("status", ""), _negated=True),
                ),
                name="dispute_id_and_status_present",
            ),
        ),
    ]
