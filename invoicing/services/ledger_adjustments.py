"""The ledger's side of money going back and amounts owed changing: refunds, disputes, credit notes.

(Credit notes live in :mod:`.ledger_credits`; the rules below hold for all three.)

Same pattern as applying an invoice snapshot: lock the PO row once, write, derive the status once.
Each Stripe object is reduced to facts that only grow (:mod:`.ledger_objects`), and each fact is
one row keyed by the object's id, unique in the database, written only if absent: so duplicated,
stale, reordered or concurrent views (webhooks, reconciliation, our own calls) record it once.

- A refund is recorded when Stripe reports it succeeded: one negative entry keyed by the refund
  id. Failed or canceled, a positive reversal entry keyed by the same id is added (the refund
  entry too, if it was never seen succeeding), so a stale "succeeded" view arriving after the
  failure finds both and changes nothing; pending, nothing yet.
- A dispute's funds withdrawn are a negative entry keyed by the dispute id; reinstated (won), a
  positive one. The dispute row keeps where it stands, so the PO shows an open dispute.
- A credit note is a :class:`PurchaseOrderCredit` (not money received) keyed by its id; voided,
  it stops counting. ``purpose=reissue`` notes are recorded but do not lower what is owed.

Every function returns the change it made (money received for refunds and disputes, credits that
count for credit notes): ``0`` when the view brought nothing new.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from invoicing import money
from invoicing.errors import EventRejected
from invoicing.logging import log_state_change
from invoicing.models import (
    ZERO,
    PurchaseOrder,
    PurchaseOrderDispute,
    PurchaseOrderPayment,
)
from invoicing.services import notifications
from invoicing.services.ledger_core import (
    LockedPurchaseOrder,
    lock_purchase_order,
    seen_via,
    update_po_status_locked,
)
from invoicing.services.ledger_objects import (
    DisputeFacts,
    RefundFacts,
    StripeLike,
)

logger = logging.getLogger(__name__)

Kind = PurchaseOrderPayment.Kind


def _date(created: int | None) -> datetime.date:
    if created is None:
        return timezone.localdate()
    try:
        return datetime.datetime.fromtimestamp(created, tz=datetime.UTC).date()
    except (OverflowError, OSError, ValueError):
        raise EventRejected(f"created={created} is no date.") from None


def stripe_datetime(created: int | None) -> datetime.datetime | None:
    if created is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise EventRejected(f"created={created} is no date.") from None


def check_fits(
    locked: LockedPurchaseOrder,
    *,
    what: str,
    currency: str,
    livemode: bool | None,
    metadata: Any,
) -> None:
    """Refuse an object in another currency or mode, or naming another PO in our metadata."""
    if currency != locked.currency:
        raise EventRejected(
            f"{what} is in {currency!r}, PO {locked.reference} in {locked.currency!r}; refused."
        )
    expected = locked.conference.stripe_livemode
    if livemode is not None and expected is not None and livemode != expected:
        raise EventRejected(
            f"{what} has livemode={livemode}, conference {locked.conference.slug!r} does not."
        )
    claimed = metadata.get("purchase_order")
    if claimed is not None and claimed != locked.reference:
        raise EventRejected(f"{what} names PO {claimed!r}, not {locked.reference!r}; refused.")


@dataclass(frozen=True)
class _Origin:
    """The Stripe object an entry comes from, and how it was seen."""

    object_id: str
    stripe_invoice_id: str
    payment_date: datetime.date
    source: str
    event_id: str

    @property
    def seen_via(self) -> str:
        return seen_via(self.source, self.event_id)


def _ensure_entry(
    locked: LockedPurchaseOrder, origin: _Origin, *, kind: str, amount: Decimal, note: str
) -> Decimal:
    """Insert the entry ``(kind, object_id)`` unless it exists; the amount inserted, or 0."""
    object_id, stripe_invoice_id = origin.object_id, origin.stripe_invoice_id
    source, event_id = origin.source, origin.event_id
    existing = PurchaseOrderPayment.objects.filter(kind=kind, stripe_object_id=object_id).first()
    if existing is None:
        entry = PurchaseOrderPayment(
            purchase_order=locked,
            kind=kind,
            amount=amount,
            method=PurchaseOrderPayment.Method.STRIPE,
            reference=object_id,
            payment_date=origin.payment_date,
            note=note,
            stripe_invoice_id=stripe_invoice_id,
            stripe_object_id=object_id,
        )
        try:
            with transaction.atomic():
                entry.save(force_insert=True)
        except IntegrityError:  # another PO's transaction inserted it meanwhile
            existing = PurchaseOrderPayment.objects.get(kind=kind, stripe_object_id=object_id)
        else:
            log_state_change(
                logger,
                event="ledger_entry_recorded",
                po_reference=locked.reference,
                invoice_id=stripe_invoice_id or None,
                stripe_event_id=event_id or None,
                kind=kind,
                stripe_object=object_id,
                amount=money.format_amount(amount, locked.currency),
                via=source or None,
            )
            # Sent after commit, once per entry (the key is the Stripe object and the entry kind).
            notifications.refund_or_dispute(
                locked,
                key=f"{object_id}-{kind}",
                description=(
                    f"{entry.get_kind_display().lower()} of "
                    f"{money.format_amount(abs(amount), locked.currency)} ({object_id})"
                ),
            )
            return amount
    if existing.purchase_order_id != locked.pk:
        raise EventRejected(
            f"{object_id} is recorded on another purchase order, not {locked.reference}."
        )
    if stripe_invoice_id and not existing.stripe_invoice_id:
        # Recorded by a caller that did not know the invoice (our own refund call); a webhook
        # found it through the payment since.
        existing.stripe_invoice_id = stripe_invoice_id
        existing.save(update_fields=["stripe_invoice_id"])
    return ZERO


# --- Refunds -------------------------------------------------------------------------------------


def apply_refund(
    *,
    purchase_order: PurchaseOrder,
    refund: StripeLike,
    source: str,
    event_id: str = "",
    stripe_invoice_id: str = "",
) -> Decimal:
    """Bring one view of a Stripe refund into the PO's ledger (see the module docstring).

    ``stripe_invoice_id``: the invoice whose payment was refunded, when the caller knows it.

    Raises:
        EventRejected: malformed, another currency, or naming another PO in its metadata.
    """
    facts = RefundFacts.parse(refund)
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        change = apply_refund_locked(
            locked, facts, source=source, event_id=event_id, stripe_invoice_id=stripe_invoice_id
        )
        update_po_status_locked(locked, stripe_event_id=event_id)
    purchase_order.refresh_from_db()
    return change


def apply_refund_locked(
    locked: LockedPurchaseOrder,
    facts: RefundFacts,
    *,
    source: str,
    event_id: str = "",
    stripe_invoice_id: str = "",
) -> Decimal:
    """:func:`apply_refund` for a caller holding the lock (it derives the status itself)."""
    check_fits(
        locked,
        what=f"Refund {facts.id}",
        currency=facts.currency,
        livemode=None,
        metadata=facts.metadata,
    )
    if not facts.gave_money_back:
        return ZERO
    amount = money.from_minor_units(facts.amount, locked.currency)
    origin = _Origin(facts.id, stripe_invoice_id, _date(facts.created), source, event_id)
    change = _ensure_entry(
        locked,
        origin,
        kind=Kind.REFUND,
        amount=-amount,
        note=(
            f"Refund {facts.id} of {facts.charge or facts.payment_intent or 'a payment'}"
            f"{f' ({facts.reason})' if facts.reason else ''} (seen via {origin.seen_via})."
        ),
    )
    if facts.undone:
        change += _ensure_entry(
            locked,
            origin,
            kind=Kind.REFUND_REVERSAL,
            amount=amount,
            note=f"Refund {facts.id} {facts.status}: the money came back ({origin.seen_via}).",
        )
    return change


# --- Disputes ------------------------------------------------------------------------------------


def apply_dispute(
    *,
    purchase_order: PurchaseOrder,
    dispute: StripeLike,
    source: str,
    event_id: str = "",
    stripe_invoice_id: str = "",
) -> Decimal:
    """Bring one view of a Stripe dispute into the PO (see the module docstring).

    Raises:
        EventRejected: malformed, another currency or mode, another PO's dispute.
    """
    facts = DisputeFacts.parse(dispute)
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        change = apply_dispute_locked(
            locked, facts, source=source, event_id=event_id, stripe_invoice_id=stripe_invoice_id
        )
        update_po_status_locked(locked, stripe_event_id=event_id)
    purchase_order.refresh_from_db()
    return change


def _save_dispute(
    locked: LockedPurchaseOrder, facts: DisputeFacts, *, amount: Decimal, stripe_invoice_id: str
) -> None:
    row = PurchaseOrderDispute.objects.filter(stripe_dispute_id=facts.id).first()
    if row is not None and row.purchase_order_id != locked.pk:
        raise EventRejected(
            f"Dispute {facts.id} is recorded on another purchase order, not {locked.reference}."
        )
    if row is None:
        try:
            with transaction.atomic():
                PurchaseOrderDispute.objects.create(
                    purchase_order=locked,
                    stripe_dispute_id=facts.id,
                    stripe_charge_id=facts.charge,
                    stripe_invoice_id=stripe_invoice_id,
                    amount=amount,
                    reason=facts.reason,
                    status=facts.status,
                    stage=facts.stage,
                    opened_at=stripe_datetime(facts.created),
                )
        except IntegrityError:
            raise EventRejected(
                f"Dispute {facts.id} is recorded on another purchase order."
            ) from None
        return
    if facts.stage > row.stage:
        previous = row.status
        row.status, row.stage, row.amount = facts.status, facts.stage, amount
        if stripe_invoice_id and not row.stripe_invoice_id:
            row.stripe_invoice_id = stripe_invoice_id
        row.save(update_fields=["status", "stage", "amount", "stripe_invoice_id", "updated_at"])
        if previous != row.status:
            log_state_change(
                logger,
                event="dispute_status_changed",
                po_reference=locked.reference,
                invoice_id=row.stripe_invoice_id or None,
                dispute=facts.id,
                from_status=previous,
                to_status=row.status,
            )


def apply_dispute_locked(
    locked: LockedPurchaseOrder,
    facts: DisputeFacts,
    *,
    source: str,
    event_id: str = "",
    stripe_invoice_id: str = "",
) -> Decimal:
    """:func:`apply_dispute` for a caller holding the lock (it derives the status itself)."""
    check_fits(
        locked,
        what=f"Dispute {facts.id}",
        currency=facts.currency,
        livemode=facts.livemode,
        metadata=facts.metadata,
    )
    amount = money.from_minor_units(facts.amount, locked.currency)
    _save_dispute(locked, facts, amount=amount, stripe_invoice_id=stripe_invoice_id)
    if not facts.withdrawn:
        return ZERO
    origin = _Origin(facts.id, stripe_invoice_id, _date(facts.created), source, event_id)
    change = _ensure_entry(
        locked,
        origin,
        kind=Kind.DISPUTE,
        amount=-amount,
        note=(
            f"Dispute {facts.id} on {facts.charge or 'a payment'} ({facts.reason or 'no reason'})"
            f": funds withdrawn (seen via {origin.seen_via})."
        ),
    )
    if facts.reinstated:
        withdrawn = PurchaseOrderPayment.objects.get(kind=Kind.DISPUTE, stripe_object_id=facts.id)
        change += _ensure_entry(
            locked,
            origin,
            kind=Kind.DISPUTE_REINSTATEMENT,
            amount=-withdrawn.amount,
            note=f"Dispute {facts.id} won: funds reinstated (seen via {origin.seen_via}).",
        )
    return change
