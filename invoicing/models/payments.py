"""The payment ledger of a purchase order (written by ``services/ledger.py`` only)."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoicing import money
from invoicing.models.amounts import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS
from invoicing.models.purchase_orders import PurchaseOrder


class PurchaseOrderPayment(models.Model):
    """One entry of a PO's ledger.

    ``stripe`` rows are written only by the invoice-snapshot code: each one is the growth of a
    Stripe invoice's ``amount_paid`` up to ``stripe_amount_paid_after`` (minor units, as Stripe
    reports it), so the pair ``(stripe_invoice_id, stripe_amount_paid_after)`` identifies it.
    """

    class Method(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        WIRE = "wire", "Wire transfer"
        CHECK = "check", "Check"
        OTHER = "other", "Other"

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
    )
    method = models.CharField(max_length=16, choices=Method.choices)
    reference = models.CharField(max_length=255, blank=True, default="")
    payment_date = models.DateField()
    note = models.TextField(blank=True, default="")
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_amount_paid_after = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The invoice's amount_paid (minor units) after this payment.",
    )
    recorded_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("recorded_at", "pk")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("stripe_invoice_id", "stripe_amount_paid_after"),
                condition=Q(method="stripe"),
                name="payment_unique_stripe_snapshot",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(method__in=["stripe", "wire", "check", "other"]),
                name="payment_method_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(method="stripe", stripe_amount_paid_after__gt=0) & ~Q(stripe_invoice_id="")
                )
                | (
                    ~Q(method="stripe")
                    & Q(stripe_invoice_id="", stripe_amount_paid_after__isnull=True)
                ),
                name="payment_stripe_fields_iff_stripe",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=("stripe_invoice_id",), name="payment_stripe_invoice"),
        ]

    def __str__(self) -> str:
        amount = money.format_display(self.amount, self.purchase_order.currency)
        return f"{amount} by {self.get_method_display()} on {self.payment_date}"
