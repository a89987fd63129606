"""Invoice payments: how a payment settles or fails, and ``/v1/invoice_payments``.

``pay`` (:mod:`.invoice_lifecycle`) and the control API's payments (the hosted page, the
Dashboard's "Charge customer") both go through :func:`apply_payment` (a PaymentIntent, see
:mod:`.payment_intents`); payments made off Stripe arrive as payment records
(:mod:`.payment_records`). Both reach the invoice through :func:`credit_invoice`.
"""

from __future__ import annotations

from ..errors import invalid_request, no_such
from ..ids import new_id
from ..models import JSON, Account, InvoicePaymentRec, InvoiceRec, amount_due, amount_remaining
from ..render import render_invoice, render_invoice_payment
from .context import Ctx, Params
from .events import emit, previous_attributes
from .lists import matches_range, newest_first, paginate
from .payment_intents import (
    cancel_payment,
    charge_intent,
    fail_payment_attempt,
    open_intent,
    start_payment,
    succeed_payment,
)


def apply_payment(
    ctx: Ctx,
    invoice: InvoiceRec,
    *,
    amount: int,
    method_type: str,
    failure_code: str | None = None,
    pending: bool = False,
) -> InvoicePaymentRec:
    """Collect ``amount`` on the invoice; settle it now unless it is a pending ACH debit.

    Paying everything that remains goes through the invoice's default payment, as the hosted
    page does ("When you finalize an invoice, Stripe creates a default payment that you can use
    to pay the invoice in full", docs "Accept partial payments for invoices"). A smaller amount is
    the Dashboard's "Charge customer" ("any amount less than or equal to the total of the
    remaining balance"): a separate PaymentIntent attached as another, non-default payment.

    Callers have checked that the invoice is open or uncollectible and the amount is positive
    and at most the amount remaining.
    """
    default = default_payment(ctx, invoice)
    if (
        default is not None
        and amount == amount_remaining(ctx.account, invoice)
        and ctx.account.payment_intents[default.payment_intent or ""].status
        == "requires_payment_method"
    ):
        payment = default
        payment.amount_requested = amount
        intent = ctx.account.payment_intents[payment.payment_intent or ""]
        charge_intent(ctx, intent, amount=amount, method_type=method_type)
        payment.payment_method_type = method_type
    else:
        intent, _ = start_payment(ctx, invoice, amount=amount, method_type=method_type)
        payment = add_invoice_payment(ctx, invoice, amount, method_type, payment_intent=intent.id)
    if pending:
        return payment
    if failure_code is not None:
        fail_payment(ctx, payment, failure_code)
    else:
        settle_payment(ctx, payment)
    return payment


def create_default_payment(ctx: Ctx, invoice: InvoiceRec) -> None:
    """Finalizing an invoice that asks for money creates its default payment: ``open``,
    ``is_default``, for the amount remaining, backed by a PaymentIntent awaiting a method.
    """
    remaining = amount_remaining(ctx.account, invoice)
    if remaining <= 0 or default_payment(ctx, invoice) is not None:
        return
    intent = open_intent(ctx, invoice, amount=remaining)
    add_invoice_payment(ctx, invoice, remaining, "card", payment_intent=intent.id, is_default=True)


def default_payment(ctx: Ctx, invoice: InvoiceRec) -> InvoicePaymentRec | None:
    """The invoice's default payment while it is still ``open``."""
    for payment_id in invoice.payment_ids:
        payment = ctx.account.invoice_payments[payment_id]
        if payment.is_default and payment.status == "open":
            return payment
    return None


def sync_default_payment(ctx: Ctx, invoice: InvoiceRec) -> None:
    """Keep the default payment in step with the invoice: ``amount_requested`` follows
    ``amount_remaining`` while nothing is in flight on it; once the invoice is paid by other
    means or void, its untouched PaymentIntent is canceled and the payment with it.
    """
    payment = default_payment(ctx, invoice)
    if payment is None:
        return
    intent = ctx.account.payment_intents[payment.payment_intent or ""]
    if intent.status != "requires_payment_method":
        return  # a charge is in flight: its amount is fixed until it settles or fails
    remaining = amount_remaining(ctx.account, invoice)
    if invoice.status in ("open", "uncollectible") and remaining > 0:
        payment.amount_requested = intent.amount = remaining
        return
    payment.status, payment.canceled_at = "canceled", ctx.now
    cancel_payment(ctx, intent, "void_invoice" if invoice.status == "void" else "automatic")


def in_flight(account: Account, invoice: InvoiceRec) -> list[InvoicePaymentRec]:
    """Open payments whose money is moving (an ACH debit processing): they reserve their amount."""
    moving = []
    for payment_id in invoice.payment_ids:
        payment = account.invoice_payments[payment_id]
        intent = account.payment_intents.get(payment.payment_intent or "")
        if payment.status == "open" and intent is not None and intent.status == "processing":
            moving.append(payment)
    return moving


def blocking_payments(ctx: Ctx, invoice: InvoiceRec) -> list[InvoicePaymentRec]:
    """Payments that stop a void, an edit or (when ``open``) mark-uncollectible.

    Docs "Accept partial payments for invoices", invoice payment statuses: "When an invoice has
    open or paid payments, you can't void or edit the invoice. When an invoice has open payments,
    you can't mark it uncollectible." The default payment created at finalization is ``open`` on
    every unpaid invoice, which Stripe still voids; it counts once money moves on it (a charge in
    flight, or paid).
    """
    blocking = []
    for payment_id in invoice.payment_ids:
        payment = ctx.account.invoice_payments[payment_id]
        if payment.status == "paid":
            blocking.append(payment)
        elif payment.status == "open":
            intent = ctx.account.payment_intents.get(payment.payment_intent or "")
            untouched = intent is not None and intent.status == "requires_payment_method"
            if not (payment.is_default and untouched):
                blocking.append(payment)
    return blocking


def add_invoice_payment(
    ctx: Ctx,
    invoice: InvoiceRec,
    amount: int,
    method_type: str,
    *,
    payment_intent: str | None = None,
    payment_record: str | None = None,
    is_default: bool = False,
) -> InvoicePaymentRec:
    """A new, open payment on the invoice, by a PaymentIntent or a payment record."""
    payment = InvoicePaymentRec(
        id=new_id("inpay"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        invoice=invoice.id,
        currency=invoice.currency,
        amount_requested=amount,
        payment_method_type=method_type,
        payment_intent=payment_intent,
        payment_record=payment_record,
        is_default=is_default,
        seq=ctx.account.next_seq(),
    )
    ctx.account.invoice_payments[payment.id] = payment
    ctx.store.index_payment(payment.id, ctx.account)
    invoice.payment_ids.append(payment.id)
    return payment


def settle_payment(ctx: Ctx, payment: InvoicePaymentRec) -> None:
    invoice = ctx.account.invoices[payment.invoice]
    if payment.status != "open":
        raise invalid_request(f"The payment {payment.id} is already {payment.status}.")
    if invoice.status not in ("open", "uncollectible"):
        raise invalid_request(
            f"The invoice {invoice.id} is {invoice.status} and can no longer take payments."
        )
    if payment.payment_intent is not None:
        intent = ctx.account.payment_intents[payment.payment_intent]
        if intent.status != "processing":
            raise invalid_request(f"The payment {payment.id} has no charge processing.")
        succeed_payment(ctx, intent)
    credit_invoice(ctx, invoice, payment, off_stripe=payment.payment_record is not None)


def credit_invoice(
    ctx: Ctx, invoice: InvoiceRec, payment: InvoicePaymentRec, *, off_stripe: bool
) -> None:
    """The payment's money reaches the invoice: ``amount_paid`` grows, and the invoice is paid
    once nothing remains.

    What exceeds the amount due is ``amount_overpaid``, which "is credited to the customer's
    credit balance" (Invoice.amount_overpaid), and ``invoice.overpaid`` "occurs when an invoice
    transitions to paid with a non-zero amount_overpaid".
    """
    account = ctx.account
    amount = payment.amount_requested
    before = render_invoice(account, invoice)
    payment.status = "paid"
    payment.amount_paid = amount
    payment.paid_at = ctx.now
    invoice.amount_paid += amount
    if off_stripe:
        invoice.amount_paid_off_stripe += amount
    else:
        invoice.attempted = True
        invoice.attempt_count = max(invoice.attempt_count, 1)
    overpaid = max(invoice.amount_paid - amount_due(account, invoice), 0)
    if overpaid > invoice.amount_overpaid:
        account.customers[invoice.customer].balance -= overpaid - invoice.amount_overpaid
        invoice.amount_overpaid = overpaid
    fully_paid = amount_remaining(account, invoice) == 0
    if fully_paid:
        invoice.status = "paid"
        invoice.paid_at = ctx.now
    sync_default_payment(ctx, invoice)
    emit(ctx, "invoice_payment.paid", render_invoice_payment(payment))
    after = render_invoice(account, invoice)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    if fully_paid:
        emit(ctx, "invoice.paid", after)
        if not off_stripe:
            emit(ctx, "invoice.payment_succeeded", after)
        if invoice.amount_overpaid:
            emit(ctx, "invoice.overpaid", after)


def fail_payment(ctx: Ctx, payment: InvoicePaymentRec, failure_code: str) -> None:
    invoice = ctx.account.invoices[payment.invoice]
    if payment.status != "open":
        raise invalid_request(f"The payment {payment.id} is already {payment.status}.")
    before = render_invoice(ctx.account, invoice)
    if payment.payment_intent is not None:
        if ctx.account.payment_intents[payment.payment_intent].status != "processing":
            raise invalid_request(f"The payment {payment.id} has no charge processing.")
        fail_payment_attempt(ctx, ctx.account.payment_intents[payment.payment_intent], failure_code)
    if payment.is_default:
        # The attempt failed, not the payment: its PaymentIntent waits for another method
        # (``requires_payment_method``), so the default payment stays ``open`` for the next try.
        payment.amount_requested = amount_remaining(ctx.account, invoice)
    else:
        payment.status = "canceled"
        payment.canceled_at = ctx.now
    payment.failure_code = failure_code
    invoice.attempted = True
    invoice.attempt_count += 1
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.payment_failed", after)
    previous = previous_attributes(before, after)
    if previous:
        emit(ctx, "invoice.updated", after, previous)


def retrieve_invoice_payment(ctx: Ctx, params: Params, payment_id: str) -> JSON:
    payment = ctx.account.invoice_payments.get(payment_id)
    if payment is None:
        raise no_such("invoice_payment", payment_id)
    return render_invoice_payment(payment)


def _matches_payment(wanted: Params, payment: InvoicePaymentRec) -> bool:
    """``payment[type]`` (required) and ``payment[payment_intent|payment_record]``."""
    kind = "payment_record" if payment.payment_record is not None else "payment_intent"
    return (
        wanted["type"] == kind
        and wanted.get("payment_intent") in (None, payment.payment_intent)
        and wanted.get("payment_record") in (None, payment.payment_record)
    )


def list_invoice_payments(ctx: Ctx, params: Params) -> JSON:
    invoice = params.get("invoice")
    status = params.get("status")
    created = params.get("created")
    payment_filter = params.get("payment")
    records = [
        payment
        for payment in newest_first(ctx.account.invoice_payments.values())
        if (invoice is None or payment.invoice == invoice)
        and (status is None or payment.status == status)
        and matches_range(created, payment.created)
        and (payment_filter is None or _matches_payment(payment_filter, payment))
    ]
    return paginate(
        records,
        params,
        url="/v1/invoice_payments",
        render=render_invoice_payment,
        id_of=lambda record: record.id,
        kind="invoice_payment",
    )
