"""The ledger's off-Stripe half: money that reached an invoice without Stripe collecting it.

Owned by :mod:`invoicing.services.ledger` (which imports it; it never imports the ledger), and,
like it, the only code that writes these entries:

- **Wire, check and other payments** recorded by staff on a PO whose invoice takes payments are
  counted against that invoice (``applied_invoice_id``) from the moment they are saved, then
  reported to Stripe as a PaymentRecord attached to the invoice (:mod:`.off_stripe_reports`),
  which moves the invoice's ``amount_paid_off_stripe`` by the same amount.
- **Amounts marked paid outside Stripe at Stripe** (``paid_out_of_band``, the Dashboard) appear
  only as growth of ``amount_paid_off_stripe`` beyond our entries: recorded as ``other``, keyed
  by the invoice and Stripe's figure after them.
- **A customer credit balance** that Stripe applied to an invoice at finalization
  (``starting_balance``, e.g. from an earlier overpayment) counts as received for the PO, once
  per invoice.

So for every invoice our off-Stripe entries equal its ``amount_paid_off_stripe`` and our Stripe
entries its ``amount_paid - amount_paid_off_stripe``. The functions that read a snapshot only
*build* the missing entries; the ledger inserts them under the PO's row lock.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Final

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from invoicing import money
from invoicing.models import ZERO, PurchaseOrder, PurchaseOrderPayment
from invoicing.services.invoice_snapshots import InvoiceSnapshot
from invoicing.stripe_invoice_status import StripeInvoiceStatus

Method = PurchaseOrderPayment.Method
Status = PurchaseOrder.Status

OFF_STRIPE_METHODS: Final = (Method.WIRE, Method.CHECK, Method.OTHER)
# Stripe attaches payments only to invoices that can still take them.
ATTACHABLE_INVOICE_STATUSES: Final = frozenset(
    {StripeInvoiceStatus.OPEN, StripeInvoiceStatus.UNCOLLECTIBLE}
)


def _sum(rows: QuerySet[PurchaseOrderPayment]) -> Decimal:
    result: Decimal = rows.aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return result


def off_stripe_total(purchase_order: PurchaseOrder, *, invoice_id: str) -> Decimal:
    """Our off-Stripe entries counted against one invoice (reported or still being reported)."""
    return _sum(
        PurchaseOrderPayment.objects.filter(
            purchase_order=purchase_order,
            method__in=OFF_STRIPE_METHODS,
            applied_invoice_id=invoice_id,
        )
    )


def ledger_holds_all_paid(purchase_order: PurchaseOrder, snapshot: InvoiceSnapshot) -> bool:
    """Whether the ledger already holds the invoice's whole ``amount_paid`` (both halves).

    For a view that does not say how much was paid off Stripe (an event payload): when this is
    False, the caller retrieves the invoice with ``amount_paid_off_stripe`` instead.
    """
    held = _sum(
        PurchaseOrderPayment.objects.filter(purchase_order=purchase_order).filter(
            Q(method=Method.STRIPE, stripe_invoice_id=snapshot.id)
            | Q(method__in=OFF_STRIPE_METHODS, applied_invoice_id=snapshot.id)
        )
    )
    return money.from_minor_units(snapshot.amount_paid, purchase_order.currency) <= held


def missing_off_stripe_entry(
    locked: PurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    seen_via: str,
    payment_date: datetime.date | None,
) -> PurchaseOrderPayment | None:
    """The entry for what Stripe counts as paid off Stripe beyond ours: marked paid at Stripe.

    Our own reports are counted from the moment they are saved, so they never show up here; a
    view that does not say (``amount_paid_off_stripe`` is None) adds nothing.
    """
    if snapshot.amount_paid_off_stripe is None or snapshot.status == StripeInvoiceStatus.DELETED:
        return None
    stripe_says = money.from_minor_units(snapshot.amount_paid_off_stripe, locked.currency)
    ours = off_stripe_total(locked, invoice_id=snapshot.id)
    if stripe_says <= ours:
        return None
    return PurchaseOrderPayment(
        amount=stripe_says - ours,
        method=Method.OTHER,
        reference=snapshot.number or snapshot.id,
        payment_date=payment_date or timezone.localdate(),
        note=(
            f"Marked paid outside Stripe on Stripe invoice {snapshot.id}: paid off Stripe "
            f"{ours} -> {stripe_says} (seen via {seen_via})."
        ),
        applied_invoice_id=snapshot.id,
        off_stripe_paid_after=snapshot.amount_paid_off_stripe,
    )


def missing_credit_balance_entry(
    locked: PurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    seen_via: str,
    payment_date: datetime.date | None,
) -> PurchaseOrderPayment | None:
    """The entry for the customer credit balance Stripe applied to the invoice, if not held yet."""
    applied = snapshot.credit_balance_applied
    if applied <= 0 or snapshot.status == StripeInvoiceStatus.DELETED:
        return None
    if PurchaseOrderPayment.objects.filter(
        purchase_order=locked,
        kind=PurchaseOrderPayment.Kind.PAYMENT,
        method=Method.CREDIT_BALANCE,
        applied_invoice_id=snapshot.id,
    ).exists():
        return None
    amount = money.from_minor_units(applied, locked.currency)
    return PurchaseOrderPayment(
        amount=amount,
        method=Method.CREDIT_BALANCE,
        reference=snapshot.number or snapshot.id,
        payment_date=payment_date or timezone.localdate(),
        note=(
            f"The customer's credit balance at Stripe paid {amount} of invoice {snapshot.id} "
            f"when it was finalized (seen via {seen_via})."
        ),
        applied_invoice_id=snapshot.id,
    )


# --- Staff payments --------------------------------------------------------------------------


def report_target(purchase_order: PurchaseOrder) -> str:
    """The Stripe invoice a new off-Stripe payment is reported to ("" when none can take it)."""
    if (
        purchase_order.has_complete_invoice
        and purchase_order.stripe_invoice_status in ATTACHABLE_INVOICE_STATUSES
    ):
        return purchase_order.stripe_invoice_id
    return ""


def manual_payment_problem(
    locked: PurchaseOrder, *, amount: Decimal, overpayment_reason: str
) -> str:
    """Why a wire, check or other payment cannot be recorded now ("" when it can).

    More than is still due is an overpayment, recorded only on purpose (with a reason): reported
    to the open invoice, Stripe credits the excess to the customer's balance, which it applies to
    their next invoice.
    """
    due = max(locked.balance_due, ZERO)
    if amount > due and not overpayment_reason.strip():
        shown = money.format_display(amount, locked.currency)
        still_due = money.format_display(due, locked.currency)
        return (
            f"{shown} is more than the {still_due} still due on PO {locked.reference}. Record at "
            "most that, or give an overpayment reason to record it on purpose"
            + (
                " (Stripe then credits the excess to the customer's balance, for their next "
                "invoice)."
                if report_target(locked)
                else "."
            )
        )
    return ""


def plan_report(locked: PurchaseOrder, payment: PurchaseOrderPayment) -> None:
    """Decide whether and where a new staff payment is reported to Stripe (PO lock held).

    To the invoice if it takes payments; once it is sent if it is still being created (the
    invoice asks for everything until then); never when there is no invoice to report to
    (paid, void: a re-issue deducts everything received) or the conference has no Stripe key.
    """
    target = report_target(locked)
    awaiting_invoice = (
        locked.status in {Status.APPROVED, Status.PARTIALLY_PAID}
        and not locked.has_complete_invoice
    )
    payment.report_to_stripe = locked.conference.has_stripe_key and (
        bool(target) or awaiting_invoice
    )
    payment.applied_invoice_id = target if payment.report_to_stripe else ""


def report_outlook(payment: PurchaseOrderPayment) -> str:
    """What happens at Stripe with a staff payment just recorded, in the organizer's words."""
    if payment.applied_invoice_id:
        return (
            f"it is being reported to Stripe invoice {payment.applied_invoice_id}, which then asks "
            "only for the balance"
        )
    if payment.report_to_stripe:
        return "it is reported to the invoice at Stripe as soon as the invoice is sent"
    return "it is not reported to Stripe (no invoice open for payments)"


def awaits_report(payment: PurchaseOrderPayment) -> bool:
    """A staff payment to report to Stripe and not yet attached to its invoice."""
    return (
        payment.report_to_stripe
        and payment.stripe_attached_at is None
        and not payment.stripe_report_error
    )


def choose_target(locked: PurchaseOrder, payment: PurchaseOrderPayment) -> str:
    """The invoice to attach a payment recorded before its invoice was sent, stored (PO lock held).

    "" while the invoice is still being created (its creation queues the report again).
    """
    if payment.applied_invoice_id:
        return payment.applied_invoice_id
    target = report_target(locked)
    if target:
        PurchaseOrderPayment.objects.filter(pk=payment.pk, applied_invoice_id="").update(
            applied_invoice_id=target
        )
        payment.applied_invoice_id = target
    return target


def mark_reported(payment: PurchaseOrderPayment, *, payment_record_id: str) -> None:
    """Store the PaymentRecord Stripe made for the payment (once: a replay finds it stored)."""
    PurchaseOrderPayment.objects.filter(pk=payment.pk, stripe_payment_record_id="").update(
        stripe_payment_record_id=payment_record_id
    )
    payment.stripe_payment_record_id = payment_record_id


def move_report_key(payment: PurchaseOrderPayment) -> bool:
    """Report and attach under a fresh idempotency key from now on; False if another run did.

    Only once Stripe shows the write under the current key did not happen: Stripe replays a
    5xx stored under it for a day.
    """
    moved = PurchaseOrderPayment.objects.filter(pk=payment.pk, key_epoch=payment.key_epoch).update(
        key_epoch=payment.key_epoch + 1
    )
    return bool(moved)


def mark_attached(payment: PurchaseOrderPayment) -> None:
    """The PaymentRecord is attached to the invoice: Stripe counts it in amount_paid_off_stripe."""
    now = timezone.now()
    PurchaseOrderPayment.objects.filter(pk=payment.pk, stripe_attached_at=None).update(
        stripe_attached_at=now, stripe_report_error=""
    )
    payment.stripe_attached_at = now


def settle_unattached(
    locked: PurchaseOrder,
    payment: PurchaseOrderPayment,
    invoice: InvoiceSnapshot,
    *,
    record_id: str,
) -> None:
    """The invoice stopped taking payments before the attach (PO lock held).

    Usually (paid by card, voided) Stripe's ``amount_paid_off_stripe`` does not include the
    payment, so it stops counting against the invoice. If the invoice was instead marked paid
    outside Stripe meanwhile, the entry recorded for that was reduced by this payment while it
    counted (it was pending): Stripe's figure covers it, and it stays counted.
    """
    stripe_off = money.from_minor_units(invoice.amount_paid_off_stripe or 0, locked.currency)
    others = off_stripe_total(locked, invoice_id=invoice.id) - payment.amount
    if stripe_off > others:
        why = (
            f"Not attached at Stripe: invoice {invoice.id} was marked paid outside Stripe "
            "meanwhile, and Stripe counts this payment in that amount."
        )
        PurchaseOrderPayment.objects.filter(pk=payment.pk).update(stripe_report_error=why)
        payment.stripe_report_error = why
        return
    mark_not_attachable(
        locked,
        payment,
        f"Not attached at Stripe: invoice {invoice.id} is {invoice.status} and takes no more "
        f"payments (payment record {record_id}). The payment stays in the ledger.",
    )


def mark_not_attachable(locked: PurchaseOrder, payment: PurchaseOrderPayment, why: str) -> None:
    """The invoice no longer takes payments: the entry stops counting against it (PO lock held).

    The money was still received, so the entry stays in the ledger (the PO may end overpaid, for
    a person to refund or credit); it is just not part of that invoice at Stripe.
    """
    PurchaseOrderPayment.objects.filter(
        pk=payment.pk, purchase_order=locked, stripe_attached_at=None
    ).update(applied_invoice_id="", stripe_report_error=why[:2000])
    payment.applied_invoice_id, payment.stripe_report_error = "", why
