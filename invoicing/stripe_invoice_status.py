"""The statuses a Stripe invoice can have, as ``PurchaseOrder.stripe_invoice_status`` stores them.

A ``StrEnum``: members compare equal to the strings Stripe sends and the column holds, so payloads
and stored rows need no conversion. The groups name the questions the code asks of a status.
"""

from __future__ import annotations

import enum
from typing import Final


class StripeInvoiceStatus(enum.StrEnum):
    """Stripe's invoice statuses, plus ``deleted`` (ours: a draft deleted at Stripe)."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"
    DELETED = "deleted"


# What Stripe itself may report in an invoice's ``status``.
STRIPE_REPORTED_STATUSES: Final = frozenset(
    {
        StripeInvoiceStatus.DRAFT,
        StripeInvoiceStatus.OPEN,
        StripeInvoiceStatus.PAID,
        StripeInvoiceStatus.UNCOLLECTIBLE,
        StripeInvoiceStatus.VOID,
    }
)
# The invoice can never take money again and was not paid: void, or a deleted draft.
VOIDED_STATUSES: Final = frozenset({StripeInvoiceStatus.VOID, StripeInvoiceStatus.DELETED})
# Finalized and not settled: it can still be paid, so voiding it is what stops payments.
PAYABLE_STATUSES: Final = frozenset({StripeInvoiceStatus.OPEN, StripeInvoiceStatus.UNCOLLECTIBLE})
# The invoice left draft and open: its life at Stripe went on whether or not we sent it.
PAST_OPEN_STATUSES: Final = frozenset(
    {
        StripeInvoiceStatus.PAID,
        StripeInvoiceStatus.UNCOLLECTIBLE,
        StripeInvoiceStatus.VOID,
        StripeInvoiceStatus.DELETED,
    }
)
