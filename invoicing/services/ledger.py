"""The ledger: the only code that writes ``PurchaseOrderPayment`` or stores a PO's money status.

Every operation locks the PO row once (:func:`lock_purchase_order`, ``SELECT ... FOR UPDATE``) and
does all of its work under that lock, so webhooks, syncs, reconciliation and staff payments for one
PO serialize on PostgreSQL instead of racing. The ``*_locked`` variants are the same operations for
a caller that already holds the lock because it writes its own columns in the same transaction;
they take the :data:`LockedPurchaseOrder` that :func:`lock_purchase_order` returns, so the type
checker sees that a lock is held.

An operation ends by deriving the status once, from everything it wrote. Applying an invoice
snapshot checks that the invoice is the PO's and mirrors it (:mod:`.invoice_mirror`), records what
Stripe collected that the ledger does not hold yet, then derives. Stale, duplicated, reordered or
concurrent snapshots can never record a payment twice or hide one behind a wire transfer: what is
recorded is ``amount_paid`` minus the Stripe payments already recorded *for that invoice*, and the
database's unique ``(stripe_invoice_id, stripe_amount_paid_after)`` backs that up.
"""

from __future__ import annotations

import datetime
import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from invoicing import money
from invoicing.errors import InvalidPayment
from invoicing.logging import log_state_change
from invoicing.models import ZERO, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import notifications
from invoicing.services.invoice_mirror import check_snapshot, save_mirror
from invoicing.services.invoice_snapshots import InvoiceLike, InvoiceSnapshot, as_snapshot
from invoicing.services.ledger_adjustments import apply_dispute, apply_refund
from invoicing.services.ledger_core import (
    LockedPurchaseOrder,
    derive_status,
    lock_purchase_order,
    update_po_status,
    update_po_status_locked,
)
from invoicing.services.ledger_credits import apply_credit_note
from invoicing.stripe_invoice_status import StripeInvoiceStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method
Kind = PurchaseOrderPayment.Kind

__all__ = [
    "LockedPurchaseOrder",
    "apply_credit_note",
    "apply_dispute",
    "apply_invoice_snapshot",
    "apply_invoice_snapshot_locked",
    "apply_refund",
    "derive_status",
    "lock_purchase_order",
    "record_payment",
    "stripe_paid_total",
    "update_po_status",
    "update_po_status_locked",
]


def stripe_paid_total(purchase_order: PurchaseOrder, *, stripe_invoice_id: str) -> Decimal:
    """Sum of the ``stripe`` ledger rows for one invoice; wire and check rows never count here."""
    result: Decimal = PurchaseOrderPayment.objects.filter(
        purchase_order=purchase_order,
        method=Method.STRIPE,
        stripe_invoice_id=stripe_invoice_id,
        kind=Kind.PAYMENT,
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return result


# --- Invoice snapshots ---------------------------------------------------------------------------


def apply_invoice_snapshot(
    *,
    purchase_order: PurchaseOrder,
    invoice: InvoiceLike,
    source: str,
    event_id: str = "",
    payment_date: datetime.date | None = None,
) -> Decimal:
    """Bring one view of a Stripe invoice into the PO: mirror it and record any new payment.

    The single entry point for sync, every webhook handler and reconciliation; safe with stale,
    duplicated, out-of-order or concurrent snapshots (see the module docstring).

    Returns:
        The amount newly recorded (``0`` when the snapshot brought nothing new).

    Raises:
        EventRejected: the invoice is not this PO's, or its currency/livemode do not match.
    """
    snapshot = as_snapshot(invoice)
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        recorded = apply_invoice_snapshot_locked(
            locked, snapshot, source=source, event_id=event_id, payment_date=payment_date
        )
    purchase_order.refresh_from_db()
    return recorded


def apply_invoice_snapshot_locked(
    locked: LockedPurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    source: str,
    event_id: str = "",
    payment_date: datetime.date | None = None,
    extra_fields: tuple[str, ...] = (),
) -> Decimal:
    """:func:`apply_invoice_snapshot` for a caller holding the lock; returns the amount recorded.

    ``extra_fields``: columns the caller set on ``locked``, saved with the mirror in one write.
    """
    check_snapshot(locked, snapshot)
    save_mirror(locked, snapshot, source=source, event_id=event_id, extra_fields=extra_fields)
    recorded = ZERO
    if snapshot.status != StripeInvoiceStatus.DELETED:
        recorded = _record_stripe_collected(
            locked, snapshot, source=source, event_id=event_id, payment_date=payment_date
        )
    update_po_status_locked(locked, stripe_event_id=event_id)
    return recorded


def _record_stripe_collected(
    locked: LockedPurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    source: str,
    event_id: str,
    payment_date: datetime.date | None,
) -> Decimal:
    """Record what the invoice collected beyond the ledger's Stripe rows for it; the amount."""
    paid = money.from_minor_units(snapshot.amount_paid, locked.currency)
    already = stripe_paid_total(locked, stripe_invoice_id=snapshot.id)
    delta = paid - already
    if delta < 0:
        # Out of order: an older view of the invoice; the ledger already holds more.
        logger.debug(
            "po %s: stale snapshot of invoice %s (paid %s < recorded %s) via %s",
            locked.reference,
            snapshot.id,
            paid,
            already,
            source,
        )
    if delta <= 0:
        return ZERO
    seen_via = f"{source}, event {event_id}" if event_id else source
    off_stripe = (
        " Includes "
        + money.format_amount(
            money.from_minor_units(snapshot.amount_paid_off_stripe, locked.currency),
            locked.currency,
        )
        + " marked paid outside Stripe."
        if snapshot.amount_paid_off_stripe
        else ""
    )
    payment = PurchaseOrderPayment(
        amount=delta,
        method=Method.STRIPE,
        reference=snapshot.number or snapshot.id,
        payment_date=payment_date or timezone.localdate(),
        note=(
            f"Stripe invoice {snapshot.id}: amount paid {already} -> {paid} "
            f"(seen via {seen_via}).{off_stripe}"
        ),
        stripe_invoice_id=snapshot.id,
        stripe_amount_paid_after=snapshot.amount_paid,
    )
    _add_payment(locked, payment, source=source, stripe_event_id=event_id)
    return delta


# --- Payments ------------------------------------------------------------------------------------


def record_payment(
    purchase_order: PurchaseOrder,
    *,
    amount: Decimal,
    method: str,
    reference: str = "",
    payment_date: datetime.date,
    note: str = "",
    created_by: User | None = None,
    stripe_invoice_id: str = "",
    stripe_amount_paid_after: int | None = None,
    source: str = "",
    stripe_event_id: str = "",
) -> PurchaseOrderPayment:
    """Add one payment to the ledger and re-derive the PO's status, under the PO's row lock.

    Manual payments (wire, check, other) need an approved, not cancelled PO. A ``stripe`` payment is
    recorded whatever the PO's state: the money really moved at Stripe, and a ledger that forgot it
    would no longer equal Stripe (a payment on a cancelled PO is logged as needing a refund).
    ``stripe`` rows come from applying invoice snapshots, which pass the invoice id and its
    ``amount_paid`` after the payment (minor units); the database refuses a second row for the
    same pair. ``source`` (how the payment was seen) and ``stripe_event_id`` (the event that
    brought it, if any) only go to the log lines.
    """
    if method not in Method.values:
        raise InvalidPayment(f"Unknown payment method {method!r}; use one of {Method.values}.")
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidPayment(f"The amount must be a Decimal, not {amount!r}.")
    if amount <= 0:
        raise InvalidPayment(f"The amount must be greater than zero, not {amount}.")
    if not isinstance(payment_date, datetime.date):
        raise InvalidPayment(f"The payment date must be a date, not {payment_date!r}.")
    if method == Method.STRIPE and (not stripe_invoice_id or not stripe_amount_paid_after):
        raise InvalidPayment(
            "A Stripe payment needs stripe_invoice_id and stripe_amount_paid_after."
        )
    if method != Method.STRIPE and (stripe_invoice_id or stripe_amount_paid_after is not None):
        raise InvalidPayment("Only a Stripe payment carries Stripe invoice data.")

    payment = PurchaseOrderPayment(
        amount=amount,
        method=method,
        reference=reference,
        payment_date=payment_date,
        note=note,
        created_by=created_by,
        stripe_invoice_id=stripe_invoice_id,
        stripe_amount_paid_after=stripe_amount_paid_after,
    )
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        _add_payment(locked, payment, source=source, stripe_event_id=stripe_event_id)
        update_po_status_locked(locked, stripe_event_id=stripe_event_id)
    purchase_order.status = locked.status
    return payment


def _add_payment(
    locked: LockedPurchaseOrder,
    payment: PurchaseOrderPayment,
    *,
    source: str,
    stripe_event_id: str,
) -> None:
    """Insert one ledger row (its fields already checked); the caller derives the status after."""
    is_stripe = payment.method == Method.STRIPE
    try:
        money.to_minor_units(payment.amount, locked.currency)
    except money.AmountNotRepresentable as exc:
        raise InvalidPayment(str(exc)) from None
    if not is_stripe and locked.status == Status.CANCELLED:
        raise InvalidPayment(f"PO {locked.reference} is cancelled; it takes no payments.")
    if not is_stripe and locked.status == Status.DRAFT:
        raise InvalidPayment(f"PO {locked.reference} is a draft; approve it first.")
    payment.purchase_order = locked
    try:
        with transaction.atomic():
            payment.save(force_insert=True)
    except IntegrityError:
        if is_stripe:
            raise InvalidPayment(
                f"Stripe payment up to {payment.stripe_amount_paid_after} on invoice "
                f"{payment.stripe_invoice_id} is already recorded."
            ) from None
        raise
    on_cancelled = locked.status == Status.CANCELLED
    notifications.payment_received(locked, payment)  # sent after commit, once per entry
    log_state_change(
        logger,
        event="payment_recorded",
        po_reference=locked.reference,
        invoice_id=payment.stripe_invoice_id or None,
        stripe_event_id=stripe_event_id or None,
        level=logging.WARNING if on_cancelled else logging.INFO,
        method=payment.method,
        amount=money.format_amount(payment.amount, locked.currency),
        reference=payment.reference,
        via=source or None,
        **({"recorded_by": payment.created_by.pk} if payment.created_by is not None else {}),
        **({"attention": "on a CANCELLED purchase order: refund needed"} if on_cancelled else {}),
    )
