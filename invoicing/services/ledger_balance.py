"""The ledger's entries for money that left a PO without a refund (owned by :mod:`.ledger`).

Stripe moves money off an invoice in two ways that are not refunds: it credits the customer's
balance (an overpaid invoice's ``amount_overpaid``, a credit note's customer balance credit) and it
records what the organizer pays back outside Stripe (a credit note's ``out_of_band_amount``). That
money no longer belongs to the PO: the next invoice of the customer counts the credit balance it
uses (``credit_balance`` payments), and what was paid back is gone. So each becomes a negative
entry here, keyed so every replay is harmless: an overpaid invoice by its id and Stripe's
``amount_overpaid`` after the entry (the figure only grows), a credit note by its id and the
entry's kind. A voided credit note adds the opposite entries, keeping the ledger append-only.

Callers hold the PO's row lock and derive the status after.
"""

from __future__ import annotations

import datetime
import logging
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from invoicing import money
from invoicing.errors import EventRejected
from invoicing.logging import log_state_change
from invoicing.models import ZERO, PurchaseOrderPayment
from invoicing.services.invoice_snapshots import InvoiceSnapshot
from invoicing.services.ledger_core import LockedPurchaseOrder
from invoicing.services.ledger_objects import CreditNoteFacts
from invoicing.stripe_invoice_status import StripeInvoiceStatus

logger = logging.getLogger(__name__)

Kind = PurchaseOrderPayment.Kind
Method = PurchaseOrderPayment.Method

# What each kind undoes when its credit note is voided, and the method both carry.
_REVERSAL = {
    Kind.TO_CREDIT_BALANCE: Kind.TO_CREDIT_BALANCE_REVERSAL,
    Kind.PAID_BACK_OFF_STRIPE: Kind.PAID_BACK_OFF_STRIPE_REVERSAL,
}
_METHOD = {
    Kind.TO_CREDIT_BALANCE: Method.CREDIT_BALANCE,
    Kind.PAID_BACK_OFF_STRIPE: Method.OTHER,
}


def _insert(locked: LockedPurchaseOrder, entry: PurchaseOrderPayment, *, seen_via: str) -> None:
    """Insert one entry the caller found missing under the PO's lock (the database's unique keys
    refuse a second one should another PO's transaction claim the same Stripe figure)."""
    entry.purchase_order = locked
    entry.save(force_insert=True)
    log_state_change(
        logger,
        event="ledger_entry_recorded",
        po_reference=locked.reference,
        invoice_id=entry.stripe_invoice_id or None,
        kind=entry.kind,
        stripe_object=entry.stripe_object_id or None,
        amount=money.format_amount(entry.amount, locked.currency),
        via=seen_via or None,
    )


# --- Overpaid invoices ---------------------------------------------------------------------------


def moved_from_overpaid(locked: LockedPurchaseOrder, *, invoice_id: str) -> Decimal:
    """What the ledger already moved to the credit balance from this overpaid invoice (>= 0)."""
    result: Decimal = PurchaseOrderPayment.objects.filter(
        purchase_order=locked,
        kind=Kind.TO_CREDIT_BALANCE,
        stripe_invoice_id=invoice_id,
        overpaid_after__isnull=False,
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return -result


def record_overpaid(
    locked: LockedPurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    seen_via: str,
    payment_date: datetime.date | None,
) -> Decimal:
    """Take what Stripe credited to the customer's balance from this invoice off the PO.

    Stripe: ``amount_overpaid`` "is credited to the customer's credit balance". Returns the
    (negative) change, 0 when the ledger already holds Stripe's figure or the view is older.
    """
    if snapshot.amount_overpaid <= 0 or snapshot.status == StripeInvoiceStatus.DELETED:
        return ZERO
    stripe_says = money.from_minor_units(snapshot.amount_overpaid, locked.currency)
    already = moved_from_overpaid(locked, invoice_id=snapshot.id)
    if stripe_says <= already:
        return ZERO
    shown = money.format_display(stripe_says - already, locked.currency)
    return _to_credit_balance(
        locked,
        snapshot,
        amount=already - stripe_says,
        note=(
            f"{shown} moved to the customer's credit balance at Stripe (invoice {snapshot.id} "
            f"overpaid: {already} -> {stripe_says}; seen via {seen_via})."
        ),
        seen_via=seen_via,
        payment_date=payment_date,
        overpaid_after=snapshot.amount_overpaid,
    )


# --- Voided invoices ------------------------------------------------------------------------------


def record_balance_returned(
    locked: LockedPurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    seen_via: str,
    payment_date: datetime.date | None,
) -> Decimal:
    """Take the credit balance a voided invoice had applied off the PO: Stripe gave it back.

    Stripe (API changelog 2019-12-03): "Customer balances applied to all invoices are now
    debited or credited back to the customer when voided." The balance pays the customer's next
    invoice, where it is counted again, so it must not count here too (nor be carried to a
    re-issued invoice as received). Keyed by the invoice (``stripe_object_id``), once. Returns
    the (negative) change.
    """
    if snapshot.status != StripeInvoiceStatus.VOID:
        return ZERO
    applied = PurchaseOrderPayment.objects.filter(
        purchase_order=locked,
        kind=Kind.PAYMENT,
        method=Method.CREDIT_BALANCE,
        applied_invoice_id=snapshot.id,
    ).first()
    if (
        applied is None
        or PurchaseOrderPayment.objects.filter(
            kind=Kind.TO_CREDIT_BALANCE, stripe_object_id=snapshot.id
        ).exists()
    ):
        return ZERO
    shown = money.format_display(applied.amount, locked.currency)
    return _to_credit_balance(
        locked,
        snapshot,
        amount=-applied.amount,
        note=(
            f"Invoice {snapshot.id} voided: Stripe returned the {shown} of credit balance it had "
            f"applied to the customer's credit balance (seen via {seen_via})."
        ),
        seen_via=seen_via,
        payment_date=payment_date,
        stripe_object_id=snapshot.id,
    )


def _to_credit_balance(
    locked: LockedPurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    amount: Decimal,
    note: str,
    seen_via: str,
    payment_date: datetime.date | None,
    overpaid_after: int | None = None,
    stripe_object_id: str = "",
) -> Decimal:
    """Insert the entry for money this invoice left on the customer's credit balance (negative
    ``amount``), keyed by Stripe's overpaid figure or the invoice itself. Returns ``amount``."""
    entry = PurchaseOrderPayment(
        kind=Kind.TO_CREDIT_BALANCE,
        method=Method.CREDIT_BALANCE,
        amount=amount,
        reference=snapshot.number or snapshot.id,
        payment_date=payment_date or timezone.localdate(),
        note=note,
        stripe_invoice_id=snapshot.id,
        overpaid_after=overpaid_after,
        stripe_object_id=stripe_object_id,
    )
    _insert(locked, entry, seen_via=seen_via)
    return amount


# --- Credit notes on paid invoices ---------------------------------------------------------------


def _credit_note_entry(
    locked: LockedPurchaseOrder,
    facts: CreditNoteFacts,
    *,
    kind: PurchaseOrderPayment.Kind,
    method: PurchaseOrderPayment.Method,
    amount: Decimal,
    note: str,
    seen_via: str,
) -> Decimal:
    existing = PurchaseOrderPayment.objects.filter(kind=kind, stripe_object_id=facts.id).first()
    if existing is not None:
        if existing.purchase_order_id != locked.pk:
            raise EventRejected(f"Credit note {facts.id} is recorded on another purchase order.")
        return ZERO
    entry = PurchaseOrderPayment(
        kind=kind,
        method=method,
        amount=amount,
        reference=facts.number or facts.id,
        payment_date=timezone.localdate(),
        note=note,
        stripe_invoice_id=facts.invoice,
        stripe_object_id=facts.id,
    )
    _insert(locked, entry, seen_via=seen_via)
    return amount


def _post_payment_parts(
    facts: CreditNoteFacts,
) -> list[tuple[PurchaseOrderPayment.Kind, int, str]]:
    """The parts of a credit note's post-payment amount that leave the PO without a refund
    (refunds reach the ledger as refunds): their entry kind, amount (minor units) and words."""
    parts = (
        (
            Kind.TO_CREDIT_BALANCE,
            facts.credit_balance_amount,
            "moved to the customer's credit balance at Stripe",
        ),
        (Kind.PAID_BACK_OFF_STRIPE, facts.out_of_band_amount, "paid back outside Stripe"),
    )
    return [(kind, minor, what) for kind, minor, what in parts if minor > 0]


def post_payment_entry_kinds(facts: CreditNoteFacts) -> set[PurchaseOrderPayment.Kind]:
    """The entries :func:`apply_post_payment` leaves in the ledger for this view of the note."""
    kinds: set[PurchaseOrderPayment.Kind] = set()
    for kind, _, _ in _post_payment_parts(facts):
        kinds |= {kind, _REVERSAL[kind]} if facts.voided else {kind}
    return kinds


def apply_post_payment(
    locked: LockedPurchaseOrder, facts: CreditNoteFacts, *, seen_via: str
) -> Decimal:
    """The entries for a credit note's post-payment part that is not a refund; their reversals
    once it is void. Returns the change in money received."""
    name = facts.number or facts.id
    change = ZERO
    # Stripe voids credit notes on open invoices only, where nothing is post-payment; a void view
    # of one that had a post-payment part is still undone here, never ignored.
    for kind, minor, what in _post_payment_parts(facts):
        amount = money.from_minor_units(minor, locked.currency)
        shown = money.format_display(amount, locked.currency)
        change += _credit_note_entry(
            locked,
            facts,
            kind=kind,
            method=_METHOD[kind],
            amount=-amount,
            note=f"{shown} {what} (credit note {name} on invoice {facts.invoice}; {seen_via}).",
            seen_via=seen_via,
        )
        if facts.voided:
            change += _credit_note_entry(
                locked,
                facts,
                kind=_REVERSAL[kind],
                method=_METHOD[kind],
                amount=amount,
                note=f"Credit note {name} voided: {shown} no longer {what} ({seen_via}).",
                seen_via=seen_via,
            )
    return change
