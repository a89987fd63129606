"""What an organizer asked Stripe to do with a PO's money: refund it, or reduce what it owes.

The row is saved before any Stripe call, and every Stripe write it leads to carries an idempotency
key derived from the row's ``uid`` (never its database id alone, which a reset database reuses):
a task that runs twice, or is retried after a crash between Stripe's answer and our write, finds
the same refund or credit note instead of making a second one.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoicing import money
from invoicing.models.amounts import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS
from invoicing.models.purchase_orders import PurchaseOrder


class StripeWriteRequest(models.Model):
    """One organizer request that becomes Stripe refunds or a Stripe credit note."""

    class Kind(models.TextChoices):
        REFUND = "refund", "Refund"
        REDUCE = "reduce", "Reduce amount owed"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        # Stripe accepted it; an ACH refund waits for the bank (the webhook settles the ledger).
        PENDING = "pending", "Sent, waiting for the bank"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="stripe_write_requests"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES)
    reason = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Moves when Stripe cached a server error under a key and the write provably did not happen.
    key_epoch = models.PositiveIntegerField(default=0)
    # Refund: which charges give back how much (minor units), fixed before the first Stripe call
    # so a retry sends the same parameters under the same keys: [{"charge", "payment_intent",
    # "invoice", "amount", "refund"}]; "refund" is the Stripe refund id once known.
    # Reduce by line (empty: by amount): what was asked per PO line, [{"po_line" (its position),
    # "description", "quantity", "billed", "unit_amount", "invoice_line_item"}]; the Stripe
    # invoice line's id is stored before the credit note is asked for.
    plan = models.JSONField(default=list, blank=True)
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_credit_note_id = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-requested_at", "-pk")
        constraints: ClassVar = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="stripe_write_amount_positive"),
            models.CheckConstraint(
                condition=Q(kind__in=["refund", "reduce"]), name="stripe_write_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["queued", "pending", "succeeded", "failed"]),
                name="stripe_write_state_valid",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="stripe_write_reason_required"),
        ]

    def __str__(self) -> str:
        # The inline row's title: the amount as money and the words of the State column.
        amount = money.format_display(self.amount, self.purchase_order.currency)
        return f"{self.get_kind_display()} of {amount} ({self.state_words})"

    @property
    def state_words(self) -> str:
        """Where the request stands, for the organizer (the row follows its refunds at the bank;
        the error says why one failed)."""
        if self.state == self.State.FAILED and any(
            item.get("status") in {"failed", "canceled"} for item in self.plan
        ):
            return "Failed at the bank"
        return self.get_state_display()

    @property
    def refund_ids(self) -> list[str]:
        return [str(item["refund"]) for item in self.plan if item.get("refund")]

    @property
    def credited_lines(self) -> list[dict[str, Any]]:
        """A reduction by line: what it credits per PO line (empty for one by amount)."""
        return list(self.plan) if self.kind == self.Kind.REDUCE else []

    @property
    def is_open(self) -> bool:
        """Still to run or waiting for the bank: its amount is spoken for."""
        return self.state in {self.State.QUEUED, self.State.PENDING}

    def idempotency_key(self, step: str) -> str:
        suffix = f"-e{self.key_epoch}" if self.key_epoch else ""
        return f"{self.kind}-{self.uid}-{step}{suffix}"

    def stripe_metadata(self, **extra: Any) -> dict[str, str]:
        """Metadata on what we create at Stripe, so it finds its way back to the PO and the row."""
        key = "refund_request" if self.kind == self.Kind.REFUND else "credit_note_request"
        return {
            "purchase_order": self.purchase_order.reference,
            key: str(self.pk),
            **{name: str(value) for name, value in extra.items()},
        }
