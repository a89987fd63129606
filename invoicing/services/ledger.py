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
recorded is what the invoice collected *on Stripe* (``amount_paid - amount_paid_off_stripe``) minus
the Stripe payments already recorded *for that invoice*, and the database's unique
``(stripe_invoice_id, stripe_amount_paid_after)`` backs that up. Money that reached the invoice
without Stripe collecting it (staff payments reported as PaymentRecords, amounts marked paid
outside Stripe, a customer credit balance) is the business of :mod:`.ledger_off_stripe`; what
Stripe credited to the customer's balance from an overpaid invoice, and the credit balance a
voided invoice gave back to the customer, leave the PO in the same step (:mod:`.ledger_balance`).
"""

from __future__ import annotations

import datetime
import logging
import uuid
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
from invoicing.services import ledger_balance, ledger_off_stripe, notifications
from invoicing.services.invoice_mirror import check_snapshot, save_mirror
from invoicing.services.invoice_snapshots import InvoiceLike, InvoiceSnapshot, as_snapshot
from invoicing.services.ledger_adjustments import apply_dispute, apply_refund
from invoicing.services.ledger_core import (
    LockedPurchaseOrder,
    derive_status,
    lock_purchase_order,
    recorded_from_form,
    seen_via,
    update_po_status,
    update_po_status_locked,
)
from invoicing.services.ledger_credits import apply_credit_note
from invoicing.services.ledger_paid_back import record_paid_back
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
    "record_paid_back",
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
        The change in money received (``0`` when the snapshot brought nothing new); what an
        overpaid invoice moved to the customer's credit balance counts negative.

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
        recorded += _record_off_stripe_collected(
            locked, snapshot, source=source, event_id=event_id, payment_date=payment_date
        )
        recorded += ledger_balance.record_overpaid(
            locked,
            snapshot,
            seen_via=seen_via(source, event_id),
            payment_date=payment_date,
        )
        recorded += ledger_balance.record_balance_returned(
            locked,
            snapshot,
            seen_via=seen_via(source, event_id),
            payment_date=payment_date,
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
    """Record what the invoice collected on Stripe beyond the ledger's Stripe rows for it.

    Only ``amount_paid - amount_paid_off_stripe``: a PaymentRecord attached to the invoice or an
    amount marked paid outside Stripe is never a Stripe payment. A view that does not say how
    much was paid off Stripe (an event payload) records nothing; the event handlers retrieve the
    invoice with it instead (``invoice_sync``).
    """
    on_stripe = snapshot.paid_on_stripe
    if on_stripe is None:
        return ZERO
    paid = money.from_minor_units(on_stripe, locked.currency)
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
    via = seen_via(source, event_id)
    payment = PurchaseOrderPayment(
        amount=delta,
        method=Method.STRIPE,
        reference=snapshot.number or snapshot.id,
        payment_date=payment_date or timezone.localdate(),
        note=(
            f"Stripe invoice {snapshot.id}: amount paid on Stripe {already} -> {paid} "
            f"(seen via {via})."
        ),
        stripe_invoice_id=snapshot.id,
        stripe_amount_paid_after=on_stripe,
    )
    _add_payment(locked, payment, source=source, stripe_event_id=event_id)
    return delta


def _record_off_stripe_collected(
    locked: LockedPurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    source: str,
    event_id: str,
    payment_date: datetime.date | None,
) -> Decimal:
    """Record what reached the invoice without Stripe collecting it and the ledger lacks.

    Amounts marked paid outside Stripe at Stripe, and the customer credit balance Stripe applied
    at finalization (:mod:`.ledger_off_stripe` builds the entries; kept apart from the Stripe
    half above so each rule reads on its own).
    """
    via = seen_via(source, event_id)
    recorded = ZERO
    for entry in (
        ledger_off_stripe.missing_off_stripe_entry(
            locked, snapshot, seen_via=via, payment_date=payment_date
        ),
        ledger_off_stripe.missing_credit_balance_entry(
            locked, snapshot, seen_via=via, payment_date=payment_date
        ),
    ):
        if entry is not None:
            _add_payment(locked, entry, source=source, stripe_event_id=event_id)
            recorded += entry.amount
    return recorded


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
    uid: uuid.UUID | None = None,
    overpayment_reason: str = "",
) -> PurchaseOrderPayment:
    """Add one payment to the ledger and re-derive the PO's status, under the PO's row lock.

    A wire, check or other payment on a PO whose invoice takes payments counts against that
    invoice at once and is then reported to Stripe (a PaymentRecord attached to the invoice,
    queued when this commits: ``invoicing/signals.py``), so Stripe asks only for the balance.
    More than is still due needs ``overpayment_reason``
    (:func:`.ledger_off_stripe.manual_payment_problem`); one recorded while the invoice is being
    created is reported once it is sent. ``uid``: the form's
    own key for this payment; the same ``uid`` again returns the payment already recorded, marked
    ``repeated_submit`` (a double submit records, and reports, once).

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
    if method == Method.CREDIT_BALANCE:
        raise InvalidPayment("A customer credit balance is recorded from Stripe's invoice only.")
    if overpayment_reason and method == Method.STRIPE:
        raise InvalidPayment("Only a payment made outside Stripe takes an overpayment reason.")

    payment = PurchaseOrderPayment(
        amount=amount,
        method=method,
        reference=reference,
        payment_date=payment_date,
        note=note,
        created_by=created_by,
        stripe_invoice_id=stripe_invoice_id,
        stripe_amount_paid_after=stripe_amount_paid_after,
        overpayment_reason=overpayment_reason.strip(),
        **({"uid": uid} if uid is not None else {}),
    )
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        if method != Method.STRIPE:
            recorded = recorded_from_form(
                locked,
                uid=payment.uid,
                what="payment",
                method=payment.method,
                amount=payment.amount,
            )
            if recorded is not None:
                purchase_order.status = locked.status
                return recorded
            _check_manual_payment(locked, payment)
        _add_payment(locked, payment, source=source, stripe_event_id=stripe_event_id)
        update_po_status_locked(locked, stripe_event_id=stripe_event_id)
    purchase_order.status = locked.status
    return payment


def _check_manual_payment(locked: LockedPurchaseOrder, payment: PurchaseOrderPayment) -> None:
    """Refuse what cannot be recorded now, and choose the invoice the payment is reported to."""
    if locked.status in {Status.DRAFT, Status.CANCELLED}:
        return  # _add_payment says why
    problem = ledger_off_stripe.manual_payment_problem(
        locked, amount=payment.amount, overpayment_reason=payment.overpayment_reason
    )
    if problem:
        raise InvalidPayment(problem)
    ledger_off_stripe.plan_report(locked, payment)


def _add_payment(
    locked: LockedPurchaseOrder,
    payment: PurchaseOrderPayment,
    *,
    source: str,
    stripe_event_id: str,
) -> None:
    """Insert one ledger row (its fields already checked); the caller derives the status after."""
    # Entries read from Stripe's invoice are recorded whatever the PO's state: the money moved.
    is_stripe = (
        payment.method in (Method.STRIPE, Method.CREDIT_BALANCE)
        or payment.off_stripe_paid_after is not None
    )
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
                f"{payment.get_method_display()} entry on invoice "
                f"{payment.stripe_invoice_id or payment.applied_invoice_id} is already recorded."
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
