"""Choices the PO and its credit and dispute rows share (no model imports: no cycle)."""

from __future__ import annotations

from typing import Final

from django.db import models


class CreditPurpose(models.TextChoices):
    """Why a credit note was issued: ``metadata[purpose]`` of the ones we create."""

    REDUCE = "reduce", "Amount owed reduced"
    CANCEL = "cancel", "Unpaid remainder of a cancelled PO"
    REISSUE = "reissue", "Unpaid remainder moved to the replacement invoice"
    EXTERNAL = "external", "Issued at Stripe (Dashboard or another app)"


# Purposes whose credit notes lower what the PO owes: a ``reissue`` note's remainder is asked for
# again by the replacement invoice, so counting it would forgive it twice.
COUNTED_CREDIT_PURPOSES: Final = frozenset(
    {CreditPurpose.REDUCE, CreditPurpose.CANCEL, CreditPurpose.EXTERNAL}
)


# Ledger entry kinds (``PurchaseOrderPayment.kind``) whose sum, negated, is what was refunded:
# Stripe's refunds (less those that failed) and money paid back outside Stripe.
REFUND_KINDS: Final = ("refund", "refund_reversal", "refund_off_stripe")


# Dispute statuses after which nothing moves any more (Stripe's ``Dispute.status``).
CLOSED_DISPUTE_STATUSES: Final = frozenset({"won", "lost", "warning_closed", "prevented"})
