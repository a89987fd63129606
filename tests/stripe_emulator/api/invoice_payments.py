"""Invoice payments: how a payment settles or fails, and ``/v1/invoice_payments``.

``pay`` (:mod:`.invoice_lifecycle`) and the control API's payments (the hosted page, the
Dashboard's "Charge customer") both go through :func:`apply_payment` (a PaymentIntent, see
:mod:`.payment_intents`); payments made off Stripe arrive as payment records
(:mod:`.payment_records`). Both reach the invoice through :func:`credit_invoice`.
"""

from __future__ import annotations

from ..errors import invalid_request, no_such
from ..ids import new_id
from ..models import JSON, InvoicePaymentRec, InvoiceRec, amount_due, amount_remaining
from ..render import render_invoice, render_invoice_payment
from .context import Ctx, Params
from .events import emit, previous_attributes
from .lists import matches_range, newest_first, paginate
from .payment_intents import fail_payment_attempt, start_payment, succeed_payment


def apply_payment(
    ctx: Ctx,
    invoice: InvoiceRec,
    *,
    amount: int,
    method_type: str,
    failure_code: str | None = None,
    pending: bool = False,
) -> InvoicePaymentRec:
    """Create an invoice payment backed by a PaymentIntent; settle it now unless it is a
    pending ACH debit.

    Callers have checked that the invoice is open or uncollectible and the amount is positive
    and at most the amount remaining.
    """
    is_default = not invoice.payment_ids and amount == amount_due(ctx.account, invoice)
    intent, _ = start_payment(ctx, invoice, amount=amount, method_type=method_type)
    payment = add_invoice_payment(
        ctx, invoice, amount, method_type, payment_intent=intent.id, is_default=is_default
    )
    if pending:
        return payment
    if failure_code is not None:
        fail_payment(ctx, payment, failure_code)
    else:
        settle_payment(ctx, payment)
    return payment


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
        succeed_payment(ctx, ctx.account.payment_intents[payment.payment_intent])
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
        fail_payment_attempt(ctx, ctx.account.payment_intents[payment.payment_intent], failure_code)
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
