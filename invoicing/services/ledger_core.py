"""The ledger's lock and its status rule, shared by every module that writes money.

Every money operation locks the PO row once (:func:`lock_purchase_order`, ``SELECT ... FOR
UPDATE``), writes, and derives the status once (:func:`update_po_status_locked`). The status
compares what the PO has received, net (payments less refunds less disputed funds withdrawn and
not reinstated), with what it owes (its total less the credit notes that count and the refunds
that did not give back an overpayment: :func:`~invoicing.models.owed_after_refunds`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NewType

from django.db import transaction
from django.db.models import (
    ExpressionWrapper,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from invoicing import money
from invoicing.errors import InvalidPayment
from invoicing.logging import log_state_change
from invoicing.models import (
    COUNTED_CREDIT_PURPOSES,
    REFUND_KINDS,
    ZERO,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
    owed_after_refunds,
)
from invoicing.models.amounts import MONEY_OUTPUT as _MONEY
from invoicing.services import notifications
from invoicing.stripe_invoice_status import VOIDED_STATUSES, StripeInvoiceStatus

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind

# A PO reloaded under its row lock, held until the surrounding transaction ends.
LockedPurchaseOrder = NewType("LockedPurchaseOrder", PurchaseOrder)


def lock_purchase_order(purchase_order: PurchaseOrder) -> LockedPurchaseOrder:
    """Reload the PO with its row lock held until the surrounding transaction ends."""
    # The conference comes along (every snapshot check reads it); only the PO row is locked.
    return LockedPurchaseOrder(
        PurchaseOrder.objects.select_for_update(of=("self",))
        .select_related("conference")
        .get(pk=purchase_order.pk)
    )


def seen_via(source: str, event_id: str = "") -> str:
    """How an entry was seen, for its note and log line: the path, and the event if one."""
    return f"{source}, event {event_id}" if event_id else source


@dataclass(frozen=True)
class LedgerTotals:
    """A PO's money, read once: what it owes and what it holds."""

    total: Decimal  # the lines
    tax: Decimal  # what Stripe Tax added to the invoice (0 without it)
    credited: Decimal  # credit notes that lower what is owed
    paid_in: Decimal  # payments only (all methods), before anything went back
    received: Decimal  # net: payments less refunds less disputes lost or pending
    # Moved to the customer's credit balance at Stripe (<= 0): gone from the PO, yet not given
    # back to the customer, so a PO whose money all went there is settled, not refunded.
    to_credit_balance: Decimal = ZERO
    refunded: Decimal = ZERO  # refunds that succeeded (>= 0)

    @property
    def owed(self) -> Decimal:
        # With Stripe Tax, "paid" means the invoice's total (lines plus tax) was collected.
        return owed_after_refunds(
            owed=self.total + self.tax - self.credited,
            received=self.received,
            refunded=self.refunded,
        )


_TO_CREDIT_BALANCE = (Kind.TO_CREDIT_BALANCE, Kind.TO_CREDIT_BALANCE_REVERSAL)


def recorded_from_form(
    locked: PurchaseOrder, *, uid: uuid.UUID, what: str, **same: object
) -> PurchaseOrderPayment | None:
    """The entry a form already recorded under its ``uid`` (submitted twice), marked
    ``repeated_submit``; None if there is none. An entry under that key that differs from the
    PO or from ``same`` (field: value) means the key was used for another ``what``: refused."""
    earlier = PurchaseOrderPayment.objects.filter(uid=uid).first()
    if earlier is None:
        return None
    if earlier.purchase_order_id != locked.pk or any(
        getattr(earlier, field) != value for field, value in same.items()
    ):
        raise InvalidPayment(f"This form was already used for another {what}; reload the page.")
    earlier.repeated_submit = True
    return earlier


def _sum(queryset: QuerySet[Any], expression: Any) -> Subquery:
    return Subquery(
        queryset.filter(purchase_order=OuterRef("pk"))
        .order_by()
        .values("purchase_order")
        .annotate(total=Sum(expression))
        .values("total"),
        output_field=_MONEY,
    )


def ledger_totals(purchase_order: PurchaseOrder) -> LedgerTotals:
    """One query: the lines, the ledger entries (net and payments only), the credits that count.

    Status derivation runs on every money write, so it reads everything at once.
    """
    zero = Value(ZERO, output_field=_MONEY)
    entries = PurchaseOrderPayment.objects.all()
    row = (
        PurchaseOrder.objects.filter(pk=purchase_order.pk)
        .annotate(
            ledger_total=Coalesce(
                _sum(
                    PurchaseOrderLineItem.objects.all(),
                    ExpressionWrapper(F("quantity") * F("unit_price"), output_field=_MONEY),
                ),
                zero,
            ),
            ledger_received=Coalesce(_sum(entries, F("amount")), zero),
            ledger_paid_in=Coalesce(_sum(entries.filter(kind=Kind.PAYMENT), F("amount")), zero),
            ledger_to_credit_balance=Coalesce(
                _sum(entries.filter(kind__in=_TO_CREDIT_BALANCE), F("amount")), zero
            ),
            ledger_refunds=Coalesce(_sum(entries.filter(kind__in=REFUND_KINDS), F("amount")), zero),
            ledger_credited=Coalesce(
                _sum(
                    PurchaseOrderCredit.objects.filter(
                        voided_at__isnull=True, purpose__in=COUNTED_CREDIT_PURPOSES
                    ),
                    F("amount"),
                ),
                zero,
            ),
        )
        .values(
            "ledger_total",
            "ledger_received",
            "ledger_paid_in",
            "ledger_to_credit_balance",
            "ledger_refunds",
            "ledger_credited",
            "stripe_invoice_tax",
        )
        .get()
    )
    return LedgerTotals(
        total=row["ledger_total"],
        tax=row["stripe_invoice_tax"] or ZERO,
        credited=row["ledger_credited"],
        paid_in=row["ledger_paid_in"],
        received=row["ledger_received"],
        to_credit_balance=row["ledger_to_credit_balance"],
        refunded=-row["ledger_refunds"],
    )


def status_for(purchase_order: PurchaseOrder, totals: LedgerTotals) -> str:
    """The status the ledger and the mirrored invoice imply (pure: no query).

    ``refunded``: money came in and all of it went back (refunds, disputes, paid back outside
    Stripe; what moved to the customer's credit balance was not given back). ``paid``: net
    received equals what is owed, and something was paid or credited (a PO credited down to
    nothing is settled too).
    """
    received, owed = totals.received, totals.owed
    invoice_status = purchase_order.stripe_invoice_status
    if totals.paid_in > 0 and received - totals.to_credit_balance <= 0:
        return Status.REFUNDED
    if received == owed and (received > 0 or totals.credited > 0):
        return Status.PAID
    if received > owed:
        return Status.OVERPAID
    if purchase_order.stripe_invoice_id and invoice_status in VOIDED_STATUSES:
        return Status.INVOICE_VOIDED
    if purchase_order.stripe_invoice_id and invoice_status == StripeInvoiceStatus.UNCOLLECTIBLE:
        return Status.INVOICE_UNCOLLECTIBLE
    if received > 0:
        return Status.PARTIALLY_PAID
    if purchase_order.has_complete_invoice:
        return Status.INVOICED
    return Status.APPROVED


def derive_status(purchase_order: PurchaseOrder) -> str:
    """The status the ledger and the mirrored invoice imply (pure read, no lock)."""
    current = purchase_order.status
    if current in {Status.DRAFT, Status.CANCELLED}:
        return current
    return status_for(purchase_order, ledger_totals(purchase_order))


def update_po_status(purchase_order: PurchaseOrder, *, stripe_event_id: str = "") -> str:
    """Derive paid / partially_paid / overpaid / refunded / ... from the ledger and store it.

    Returns the status now stored. ``stripe_event_id``: the event that caused this update, for
    the log line.
    """
    with transaction.atomic():
        new_status = update_po_status_locked(
            lock_purchase_order(purchase_order), stripe_event_id=stripe_event_id
        )
    purchase_order.status = new_status
    return new_status


def update_po_status_locked(locked: LockedPurchaseOrder, *, stripe_event_id: str = "") -> str:
    """:func:`update_po_status` for a caller holding the lock: the one place that stores it.

    A draft or cancelled PO keeps its status whatever the ledger records.
    """
    if locked.status in {Status.DRAFT, Status.CANCELLED}:
        return locked.status
    totals = ledger_totals(locked)
    new_status = status_for(locked, totals)
    if new_status != locked.status:
        previous = locked.status
        locked.status = new_status
        locked.save(update_fields=["status", "updated_at"])
        if new_status == Status.PAID:
            notifications.purchase_order_paid(locked, received=totals.received)
        log_state_change(
            logger,
            event="po_status_changed",
            po_reference=locked.reference,
            invoice_id=locked.stripe_invoice_id or None,
            stripe_event_id=stripe_event_id or None,
            from_status=previous,
            to_status=new_status,
            received=money.format_amount(totals.received, locked.currency),
            owed=money.format_amount(totals.owed, locked.currency),
        )
    return new_status
