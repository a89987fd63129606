"""The ledger's credit notes: reductions of what a PO owes (the rules: :mod:`.ledger_adjustments`).

A credit note is a :class:`PurchaseOrderCredit` (not money received) keyed by its id, written only
if absent; voided, it stops counting, and a stale "issued" view after that changes nothing.
``purpose=reissue`` notes are recorded but do not lower what is owed. The part of a credit note on
a paid invoice that Stripe credits to the customer's balance or that is paid back outside Stripe
leaves the PO's money too (:mod:`.ledger_balance`); a refunded part arrives as a refund.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from invoicing import money
from invoicing.errors import EventRejected
from invoicing.logging import log_state_change
from invoicing.models import ZERO, PurchaseOrder, PurchaseOrderCredit, PurchaseOrderPayment
from invoicing.services import ledger_balance
from invoicing.services.ledger_adjustments import check_fits, stripe_datetime
from invoicing.services.ledger_core import (
    LockedPurchaseOrder,
    lock_purchase_order,
    seen_via,
    update_po_status_locked,
)
from invoicing.services.ledger_objects import CreditNoteFacts, StripeLike

logger = logging.getLogger(__name__)


# --- Credit notes --------------------------------------------------------------------------------


def apply_credit_note(
    *,
    purchase_order: PurchaseOrder,
    credit_note: StripeLike,
    source: str,
    event_id: str = "",
) -> Decimal:
    """Bring one view of a Stripe credit note into the PO (see the module docstring).

    Raises:
        EventRejected: malformed, another currency or mode, or not on one of the PO's invoices.
    """
    facts = CreditNoteFacts.parse(credit_note)
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        change = apply_credit_note_locked(locked, facts, source=source, event_id=event_id)
        update_po_status_locked(locked, stripe_event_id=event_id)
    purchase_order.refresh_from_db()
    return change


def _invoice_is_the_pos(locked: LockedPurchaseOrder, facts: CreditNoteFacts) -> bool:
    if facts.invoice == locked.stripe_invoice_id:
        return True
    if facts.metadata.get("purchase_order") == locked.reference:
        return True
    return (
        PurchaseOrderPayment.objects.filter(
            purchase_order=locked, stripe_invoice_id=facts.invoice
        ).exists()
        or PurchaseOrderCredit.objects.filter(
            purchase_order=locked, stripe_invoice_id=facts.invoice
        ).exists()
    )


def apply_credit_note_locked(
    locked: LockedPurchaseOrder, facts: CreditNoteFacts, *, source: str, event_id: str = ""
) -> Decimal:
    """:func:`apply_credit_note` for a caller holding the lock (it derives the status itself)."""
    what = f"Credit note {facts.id}"
    check_fits(
        locked, what=what, currency=facts.currency, livemode=facts.livemode, metadata=facts.metadata
    )
    if not _invoice_is_the_pos(locked, facts):
        raise EventRejected(
            f"{what} is on invoice {facts.invoice}, not one of PO {locked.reference}'s."
        )
    amount = money.from_minor_units(facts.amount, locked.currency)
    voided_at = (stripe_datetime(facts.voided_at) or timezone.now()) if facts.voided else None
    row = PurchaseOrderCredit.objects.filter(stripe_credit_note_id=facts.id).first()
    if row is not None and row.purchase_order_id != locked.pk:
        raise EventRejected(f"{what} is recorded on another purchase order.")
    ledger_balance.apply_post_payment(locked, facts, seen_via=seen_via(source, event_id))
    if row is None:
        row = PurchaseOrderCredit(
            purchase_order=locked,
            stripe_credit_note_id=facts.id,
            stripe_invoice_id=facts.invoice,
            number=facts.number,
            amount=amount,
            purpose=facts.purpose,
            reason=facts.reason,
            memo=facts.memo,
            issued_at=stripe_datetime(facts.created),
            voided_at=voided_at,
        )
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            raise EventRejected(f"{what} is recorded on another purchase order.") from None
        change = amount if row.counted else ZERO
        event = "credit_recorded"
    elif voided_at is not None and row.voided_at is None:
        counted_before = row.counted
        row.voided_at = voided_at
        row.save(update_fields=["voided_at"])
        change = -amount if counted_before else ZERO
        event = "credit_voided"
    else:
        return ZERO
    log_state_change(
        logger,
        event=event,
        po_reference=locked.reference,
        invoice_id=facts.invoice,
        stripe_event_id=event_id or None,
        credit_note=facts.id,
        amount=money.format_amount(amount, locked.currency),
        purpose=row.purpose,
        voided=row.voided_at is not None,
        via=source or None,
    )
    return change
