"""What changes a PO's money besides payments: credit notes and disputes (``services/ledger*``).

A credit note is not money received: it lowers what the PO owes (unless it only moved an unpaid
remainder to a replacement invoice, ``purpose=reissue``). A dispute row says where a chargeback
stands; the money it withdrew or reinstated is in the payment ledger, keyed by the dispute id.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q

from invoicing.models.amounts import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS
from invoicing.models.money_kinds import (
    CLOSED_DISPUTE_STATUSES,
    COUNTED_CREDIT_PURPOSES,
    CreditPurpose,
)
from invoicing.models.purchase_orders import PurchaseOrder


class PurchaseOrderCredit(models.Model):
    """A Stripe credit note on one of the PO's invoices; voiding it restores what is owed."""

    Purpose = CreditPurpose

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="credits"
    )
    stripe_credit_note_id = models.CharField(max_length=255)
    stripe_invoice_id = models.CharField(max_length=255)
    number = models.CharField(max_length=255, blank=True, default="")
    amount = models.DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    reason = models.CharField(max_length=64, blank=True, default="")
    memo = models.TextField(blank=True, default="")
    issued_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("recorded_at", "pk")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("stripe_credit_note_id",), name="credit_unique_stripe_credit_note"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_amount_positive"),
            models.CheckConstraint(
                condition=Q(purpose__in=CreditPurpose.values), name="credit_purpose_valid"
            ),
            models.CheckConstraint(
                condition=~Q(stripe_credit_note_id="") & ~Q(stripe_invoice_id=""),
                name="credit_stripe_ids_present",
            ),
        ]

    def __str__(self) -> str:
        return f"Credit note {self.number or self.stripe_credit_note_id}: {self.amount}"

    @property
    def counted(self) -> bool:
        """Whether it lowers what the PO owes now (issued, and not a re-issue's remainder)."""
        return self.voided_at is None and self.purpose in COUNTED_CREDIT_PURPOSES


class PurchaseOrderDispute(models.Model):
    """A chargeback on a payment of one of the PO's invoices, as last seen at Stripe."""

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="disputes"
    )
    stripe_dispute_id = models.CharField(max_length=255)
    stripe_charge_id = models.CharField(max_length=255, blank=True, default="")
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    amount = models.DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES)
    reason = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=32)
    # How far the dispute has moved (ledger_objects.DisputeFacts.rank): never backwards.
    stage = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("opened_at", "pk")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("stripe_dispute_id",), name="dispute_unique_stripe_dispute"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            models.CheckConstraint(
                condition=~Q(stripe_dispute_id="") & ~Q(status=""),
                name="dispute_id_and_status_present",
            ),
        ]

    def __str__(self) -> str:
        return f"Dispute {self.stripe_dispute_id} ({self.status}): {self.amount}"

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED_DISPUTE_STATUSES
