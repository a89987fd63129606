"""May money be recorded as paid back outside Stripe, and how much? One answer for the PO page's
form and for the ledger, which asks again under the PO's row lock
(:mod:`invoicing.services.ledger_paid_back`).

Money received by wire, check or other means is given back the same way, outside Stripe: the
organizer records it so the ledger (and the status) knows. Stripe payments are given back with
Refund payments… instead. Money that an invoice still taking payments counts as paid (a payment
reported to it as a PaymentRecord, or to be reported once it is sent, or marked paid there) is
not given back here: Stripe cannot take a PaymentRecord back off an open invoice, which would go
on counting money the customer no longer paid.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Final, cast

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from invoicing import access, money
from invoicing.models import ZERO, PurchaseOrder, PurchaseOrderPayment
from invoicing.stripe_invoice_status import StripeInvoiceStatus

if TYPE_CHECKING:
    from invoicing.access import Person

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method

OFF_STRIPE_METHODS: Final = (Method.WIRE, Method.CHECK, Method.OTHER)
# Invoices that count payment records attached to them and still take payments.
_TAKING_PAYMENTS: Final = frozenset({StripeInvoiceStatus.OPEN, StripeInvoiceStatus.UNCOLLECTIBLE})


def _sum(rows: QuerySet[PurchaseOrderPayment]) -> Decimal:
    total: Decimal = rows.aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return total


def held_off_stripe(po: PurchaseOrder) -> Decimal:
    """What the PO holds from payments made outside Stripe (wire, check, other), net of what was
    paid back that way (recorded here, or a credit note's ``out_of_band_amount``)."""
    rows = PurchaseOrderPayment.objects.filter(purchase_order=po, method__in=OFF_STRIPE_METHODS)
    return _sum(rows)


def on_open_invoice(po: PurchaseOrder) -> Decimal:
    """Payments made outside Stripe that an invoice still taking payments counts as paid, or
    will once it is sent."""
    counted = Q(report_to_stripe=True, applied_invoice_id="", stripe_report_error="")
    if po.stripe_invoice_id and po.stripe_invoice_status in _TAKING_PAYMENTS:
        counted |= Q(applied_invoice_id=po.stripe_invoice_id)
    return _sum(
        PurchaseOrderPayment.objects.filter(
            counted,
            purchase_order=po,
            kind=PurchaseOrderPayment.Kind.PAYMENT,
            method__in=OFF_STRIPE_METHODS,
        )
    )


def paid_back_amount(po: PurchaseOrder) -> Decimal:
    """What may be recorded as paid back outside Stripe now."""
    return max(ZERO, held_off_stripe(po) - on_open_invoice(po))


def _open_invoice_words(po: PurchaseOrder, *, others: bool) -> str:
    invoice = po.stripe_invoice_number or po.stripe_invoice_id or "its invoice"
    return (
        f"its {'other ' if others else ''}payments made outside Stripe count as paid on invoice "
        f"{invoice} at Stripe, which still takes payments (or will, once sent), and Stripe "
        "cannot take them back off it; record the rest once the invoice is paid or voided, or "
        "the PO cancelled."
    )


def paid_back_refusal(po: PurchaseOrder, amount: object = None, *, by: Person | None) -> str:
    """Why ``by`` cannot record ``amount`` as paid back outside Stripe ("" when they can).

    ``amount`` None: whether the action is open at all (the PO page's button).
    """
    if by is None or not access.may_refund(by, po.conference_id):
        return f"only a finance admin of {po.conference} records money paid back."
    if po.status == Status.DRAFT:
        return "it is a draft; nothing was paid on it."
    held = held_off_stripe(po)
    if held <= 0:
        return (
            "it holds no payment made outside Stripe (wire, check or other) to pay back; "
            "Stripe payments are given back with Refund payments…"
        )
    most = paid_back_amount(po)
    if amount is None:
        return "" if most > 0 else _open_invoice_words(po, others=False)
    if why := money.entered_amount_problem(amount, po.currency):
        return why
    amount = cast(Decimal, amount)  # what entered_amount_problem accepts
    shown = money.format_amount(amount, po.currency)
    if amount > held:
        return (
            f"{shown} is more than the PO holds from payments made outside Stripe, net of what "
            f"was paid back that way ({money.format_amount(held, po.currency)}); Stripe payments "
            "are given back with Refund payments…"
        )
    if amount > most:
        return (
            f"{shown} is more than can be paid back now "
            f"({money.format_amount(most, po.currency)}): " + _open_invoice_words(po, others=True)
        )
    return ""
