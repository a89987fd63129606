"""The Stripe event types we act on, by what their ``data.object`` is (constants only)."""

from __future__ import annotations

from typing import Final

# Invoice events whose ``data.object`` is the invoice itself.
INVOICE_SNAPSHOT_EVENTS: Final = frozenset(
    {
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.finalized",
        "invoice.sent",
        "invoice.updated",
        "invoice.deleted",
    }
)
INVOICE_PAYMENT_EVENTS: Final = frozenset({"invoice_payment.paid"})
INVOICE_EVENTS: Final = INVOICE_SNAPSHOT_EVENTS | INVOICE_PAYMENT_EVENTS

# Money going back and amounts owed changing (services/money_events.py).
REFUND_EVENTS: Final = frozenset({"refund.created", "refund.updated", "refund.failed"})
CHARGE_REFUNDED_EVENTS: Final = frozenset({"charge.refunded"})  # data.object: the charge
DISPUTE_EVENTS: Final = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    }
)
CREDIT_NOTE_EVENTS: Final = frozenset(
    {"credit_note.created", "credit_note.updated", "credit_note.voided"}
)
MONEY_EVENTS: Final = REFUND_EVENTS | CHARGE_REFUNDED_EVENTS | DISPUTE_EVENTS | CREDIT_NOTE_EVENTS

HANDLED_EVENT_TYPES: Final = INVOICE_EVENTS | MONEY_EVENTS
