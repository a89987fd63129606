"""Invoice payments: how a payment settles or fails, and ``/v1/invoice_payments``.

``pay`` (:mod:`.invoice_lifecycle`) and the control API's payments (the hosted page, the
Dashboard's "Charge customer") both go through :func:`apply_payment`: a PaymentIntent and its
charge (:mod:`.payment_intents`) behind each invoice payment.
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
    """Create an invoice payment; settle it now unless it is a pending ACH debit.

    Callers have checked that the invoice is open or uncollectible and the amount is positive
    and at most the amount remaining.
    """
    is_default = not invoice.payment_ids and amount == amount_due(ctx.account, invoice)
    intent, _ = start_payment(ctx, invoice, amount=amount, method_type=method_type)
    payment = InvoicePaymentRec(
        id=new_id("inpay"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        invoice=invoice.id,
        currency=invoice.currency,
        amount_requested=amount,
        payment_method_type=method_type,
        payment_intent=intent.id,
        is_default=is_default,
        seq=ctx.account.next_seq(),
    )
    ctx.account.invoice_payments[payment.id] = payment
    ctx.store.index_payment(payment.id, ctx.account)
    invoice.payment_ids.append(payment.id)
    if pending:
        return payment
    if failure_code is not None:
        fail_payment(ctx, payment, failure_code)
    else:
        settle_payment(ctx, payment)
    return payment


def settle_payment(ctx: Ctx, payment: InvoicePaymentRec) -> None:
    invoice = ctx.account.invoices[payment.invoice]
    if payment.status != "open":
        raise invalid_request(f"The payment {payment.id} is already {payment.status}.")
    if invoice.status not in ("open", "uncollectible"):
        raise invalid_request(
            f"The invoice {invoice.id} is {invoice.status} and can no longer take payments."
        )
    succeed_payment(ctx, ctx.account.payment_intents[payment.payment_intent])
    amount = min(payment.amount_requested, amount_remaining(ctx.account, invoice))
    before = render_invoice(ctx.account, invoice)
    payment.status = "paid"
    payment.amount_paid = amount
    payment.paid_at = ctx.now
    invoice.amount_paid += amount
    invoice.attempted = True
    invoice.attempt_count = max(invoice.attempt_count, 1)
    fully_paid = amount_remaining(ctx.account, invoice) == 0
    if fully_paid:
        invoice.status = "paid"
        invoice.paid_at = ctx.now
    emit(ctx, "invoice_payment.paid", render_invoice_payment(payment))
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    if fully_paid:
        emit(ctx, "invoice.paid", after)
        emit(ctx, "invoice.payment_succeeded", after)


def fail_payment(ctx: Ctx, payment: InvoicePaymentRec, failure_code: str) -> None:
    invoice = ctx.account.invoices[payment.invoice]
    if payment.status != "open":
        raise invalid_request(f"The payment {payment.id} is already {payment.status}.")
    before = render_invoice(ctx.account, invoice)
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
        and (
            payment_filter is None
            or (
                payment_filter["type"] == "payment_intent"
                and payment_filter.get("payment_intent") in (None, payment.payment_intent)
            )
        )
    ]
    return paginate(
        records,
        params,
        url="/v1/invoice_payments",
        render=render_invoice_payment,
        id_of=lambda record: record.id,
        kind="invoice_payment",
    )
