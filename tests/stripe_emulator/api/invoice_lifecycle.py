"""An invoice's state changes: finalize, send, pay, void, mark uncollectible.

``draft`` -> ``open`` (finalized) -> ``paid``; ``open`` -> ``void`` | ``uncollectible``;
``uncollectible`` -> ``paid`` | ``void``. Also what Stripe's scheduler does to ``auto_advance``
drafts, run before every request.
"""

from __future__ import annotations

from ..errors import (
    StripeError,
    invalid_request,
    invoice_not_editable,
    no_such,
    parameters_exclusive,
)
from ..models import (
    AUTO_FINALIZE_DELAY,
    JSON,
    InvoiceRec,
    amount_due,
    amount_remaining,
    invoice_total,
    starting_balance,
)
from ..render import render_invoice
from .context import Ctx, Params
from .customer_balance import move_balance, return_applied_balance
from .customers import copy_customer_fields
from .events import emit, previous_attributes
from .invoice_payments import (
    apply_payment,
    blocking_payments,
    create_default_payment,
    sync_default_payment,
)
from .invoices import INVOICE_EXPANDABLE, check_tax_location, require_invoice
from .params import expansions, reject_unsupported


def _finalize(ctx: Ctx, invoice: InvoiceRec, auto_advance: bool | None) -> None:
    customer = ctx.account.customers[invoice.customer]
    if auto_advance is not None:
        invoice.auto_advance = auto_advance
    invoice.status = "open"
    invoice.finalized_at = ctx.now
    if invoice.effective_at is None:
        invoice.effective_at = ctx.now
    if invoice.number is None:
        invoice.number = f"{customer.invoice_prefix}-{customer.next_invoice_sequence:04d}"
        customer.next_invoice_sequence += 1
    base = ctx.store.public_url
    invoice.hosted_invoice_url = f"{base}/i/{invoice.id}"
    invoice.invoice_pdf = f"{base}/i/{invoice.id}/pdf"
    invoice.webhooks_delivered_at = ctx.now
    copy_customer_fields(invoice, customer)
    _apply_customer_balance(ctx, invoice)
    if invoice.collection_method == "send_invoice" and invoice.due_date is None:
        invoice.due_date = ctx.now + (invoice.days_until_due or 0) * 86400
    if amount_due(ctx.account, invoice) > 0:
        create_default_payment(ctx, invoice)
    emit(ctx, "invoice.finalized", render_invoice(ctx.account, invoice))
    if amount_due(ctx.account, invoice) == 0:
        # Stripe marks an invoice with nothing to collect paid as it is finalized.
        invoice.status = "paid"
        invoice.paid_at = ctx.now
        emit(ctx, "invoice.paid", render_invoice(ctx.account, invoice))


def _apply_customer_balance(ctx: Ctx, invoice: InvoiceRec) -> None:
    """Finalizing applies the customer's balance (a credit, from a credit note's
    ``credit_amount`` or an overpayment, "automatically applied to their next invoice when it's
    finalized"; or a debit): ``starting_balance`` is fixed, ``ending_balance`` is what remains
    and becomes the customer's balance.
    """
    balance = starting_balance(ctx.account, invoice)
    invoice.starting_balance = balance
    invoice.ending_balance = min(invoice_total(ctx.account, invoice) + balance, 0)
    move_balance(ctx, invoice, amount=invoice.ending_balance - balance, type_="applied_to_invoice")


def advance_automatic_invoices(ctx: Ctx) -> None:
    """What Stripe's scheduler would have done by now: finalize ``auto_advance`` drafts an hour
    after creation and, for ``send_invoice``, send them. Runs before every API request, so the
    effect shows up as soon as a test advances the clock.
    """
    due = [
        invoice
        for invoice in ctx.account.invoices.values()
        if invoice.status == "draft"
        and invoice.auto_advance
        and not invoice.deleted
        and invoice.created + AUTO_FINALIZE_DELAY <= ctx.now
    ]
    for invoice in sorted(due, key=lambda record: record.seq):
        _finalize(ctx, invoice, None)
        if invoice.collection_method == "send_invoice" and invoice.status == "open":
            emit(ctx, "invoice.sent", render_invoice(ctx.account, invoice))


def finalize_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    if invoice.status != "draft":
        raise invoice_not_editable(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    expand = expansions(params, INVOICE_EXPANDABLE)
    if invoice.automatic_tax:
        # Tax is computed at finalization, from the customer's location as it is then.
        check_tax_location(ctx.account.customers[invoice.customer])
    _finalize(ctx, invoice, params.get("auto_advance"))
    return render_invoice(ctx.account, invoice, expand=expand)


def send_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    if invoice.collection_method != "send_invoice":
        raise invalid_request(
            "You can only manually send an invoice if its collection method is 'send_invoice'."
        )
    if invoice.status == "void":
        raise invalid_request("You can't send a void invoice.")
    expand = expansions(params, INVOICE_EXPANDABLE)
    if invoice.status == "draft":
        _finalize(ctx, invoice, None)
    emit(ctx, "invoice.sent", render_invoice(ctx.account, invoice))
    return render_invoice(ctx.account, invoice, expand=expand)


def void_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    if invoice.status not in ("open", "uncollectible"):
        if invoice.status == "draft":
            message = "You can only void finalized invoices; delete a draft invoice instead."
        else:
            message = (
                f"You can only void an open or uncollectible invoice; this invoice is "
                f"{invoice.status}."
            )
        raise invalid_request(message)
    if blocking_payments(ctx, invoice):
        # Docs "Accept partial payments for invoices": "When an invoice has open or paid
        # payments, you can't void or edit the invoice." What is left is closed by a credit note.
        raise invalid_request(
            f"You can't void invoice {invoice.id} because it has open or paid payments. To "
            "close the rest of the invoice, issue a credit note for the amount remaining.",
            code="invoice_not_editable",
        )
    expand = expansions(params, INVOICE_EXPANDABLE)
    before = render_invoice(ctx.account, invoice)
    invoice.status = "void"
    invoice.voided_at = ctx.now
    sync_default_payment(ctx, invoice)
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.voided", after)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    return_applied_balance(ctx, invoice)
    return render_invoice(ctx.account, invoice, expand=expand)


def mark_uncollectible(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    if invoice.status != "open":
        raise invalid_request(
            f"You can only mark an open invoice as uncollectible; this invoice is {invoice.status}."
        )
    if any(payment.status == "open" for payment in blocking_payments(ctx, invoice)):
        # Docs "Accept partial payments for invoices": "When an invoice has open payments, you
        # can't mark it uncollectible" (e.g. an ACH debit still processing).
        raise invalid_request(
            f"You can't mark invoice {invoice.id} as uncollectible while it has open payments "
            "(a payment is still processing).",
            code="invoice_not_editable",
        )
    expand = expansions(params, INVOICE_EXPANDABLE)
    before = render_invoice(ctx.account, invoice)
    invoice.status = "uncollectible"
    invoice.marked_uncollectible_at = ctx.now
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.marked_uncollectible", after)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    return render_invoice(ctx.account, invoice, expand=expand)


# Stripe's test payment methods that the emulator understands in ``pay``.
TEST_PAYMENT_METHODS = {
    "pm_card_visa": ("card", None),
    "pm_card_mastercard": ("card", None),
    "pm_card_chargeDeclined": ("card", "card_declined"),
    "pm_card_visa_chargeDeclined": ("card", "card_declined"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card", "insufficient_funds"),
    "pm_usBankAccount": ("us_bank_account", None),
}


def pay_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    reject_unsupported(params, ("source", "mandate"))
    expand = expansions(params, INVOICE_EXPANDABLE)
    if invoice.status == "paid":
        raise invalid_request("Invoice is already paid")
    if invoice.status == "void":
        raise invalid_request("This invoice is void and can no longer be paid.")
    out_of_band = params.get("paid_out_of_band", False)
    method = params.get("payment_method")
    if out_of_band and method is not None:
        raise parameters_exclusive("paid_out_of_band", "payment_method")
    if not out_of_band:
        if method is None:
            raise invalid_request(
                "This customer has no attached payment source or default payment method. "
                "Please consider adding a default payment method. For more information, visit "
                "https://docs.stripe.com/billing/subscriptions/payment-methods-setting#payment-method-priority.",
            )
        if method not in TEST_PAYMENT_METHODS:
            raise no_such("PaymentMethod", method, param="payment_method", status=400)
    if invoice.status == "draft":
        _finalize(ctx, invoice, None)
        if invoice.status == "paid":
            return render_invoice(ctx.account, invoice, expand=expand)
    if out_of_band:
        before = render_invoice(ctx.account, invoice)
        remaining = amount_remaining(ctx.account, invoice)
        invoice.amount_paid_off_stripe += remaining
        invoice.amount_paid += remaining
        invoice.paid_out_of_band = True
        invoice.status = "paid"
        invoice.paid_at = ctx.now
        sync_default_payment(ctx, invoice)
        after = render_invoice(ctx.account, invoice)
        emit(ctx, "invoice.paid", after)
        emit(ctx, "invoice.updated", after, previous_attributes(before, after))
        return render_invoice(ctx.account, invoice, expand=expand)
    assert method is not None
    method_type, failure = TEST_PAYMENT_METHODS[method]
    payment = apply_payment(
        ctx,
        invoice,
        amount=amount_remaining(ctx.account, invoice),
        method_type=method_type,
        failure_code=failure,
        pending=False,
    )
    if payment.status != "paid":  # the attempt failed (a default payment stays open)
        raise StripeError(
            402,
            "Your card was declined.",
            error_type="card_error",
            code=failure or "card_declined",
            extra={"decline_code": failure or "generic_decline"},
        )
    return render_invoice(ctx.account, invoice, expand=expand)
