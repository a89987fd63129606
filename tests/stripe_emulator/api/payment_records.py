"""Payments made outside Stripe: ``/v1/payment_records`` and ``attach_payment``.

A Payment Record represents "payments that occur on- or off-Stripe ... in order to mark an
Invoice as paid" (API reference). ``report_payment`` records one (``outcome`` guaranteed,
failed or canceled, or none yet); ``POST /v1/invoices/:id/attach_payment`` with
``payment_record`` adds it to the invoice's payments (``payment.type = "payment_record"``).
A guaranteed record is credited at once: ``amount_paid`` and ``amount_paid_off_stripe`` grow
(the latter "dynamically computed from Payment Record data where the payment processor isn't
Stripe", changelog 2026-05-27.dahlia) and "attaching a payment record to the invoice marks it
as paid" when nothing remains (docs "Integrate with third-party payment processors"). What
exceeds the amount due is ``amount_overpaid``, credited to the customer's balance, as for any
payment (:func:`.invoice_payments.credit_invoice`): Stripe documents overpaid invoices
(``invoice.overpaid``), not a refusal.
"""

from __future__ import annotations

from typing import Any

from ..errors import StripeError, invalid_request, require
from ..ids import new_id
from ..models import JSON, PaymentRecordRec
from ..render import render_invoice
from ..render_billing import render_payment_record
from .context import Ctx, Params
from .customers import require_customer
from .invoice_payments import add_invoice_payment, credit_invoice
from .invoices import INVOICE_EXPANDABLE, require_invoice
from .lists import newest_first, paginate
from .params import expansions, merge_metadata, reject_unsupported, supported_currency
from .pricing import check_amount_for_currency

OUTCOMES = ("guaranteed", "failed", "canceled")
_ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")


def _address(value: Any) -> JSON:
    return {key: (value or {}).get(key) for key in _ADDRESS_KEYS}


def _outcome(params: Params) -> tuple[str | None, int | None]:
    """``outcome`` and the hash that dates it (``guaranteed[guaranteed_at]``...), which must
    agree: a hash for another outcome than the one reported is refused."""
    outcome = params.get("outcome")
    for name in OUTCOMES:
        if name in params and name != outcome:
            raise invalid_request(f"`{name}` can only be given with `outcome={name}`.", param=name)
    if outcome is None:
        return None, None
    if outcome not in params:
        raise StripeError(
            400,
            f"Missing required param: {outcome}[{outcome}_at].",
            code="parameter_missing",
            param=f"{outcome}[{outcome}_at]",
        )
    at: int = params[outcome][f"{outcome}_at"]
    return outcome, at


def _payment_method_details(params: Params) -> JSON:
    details: Params = params["payment_method_details"]
    reject_unsupported(details, ("payment_method",))
    if details.get("type") != "custom" or "display_name" not in details.get("custom", {}):
        raise StripeError(
            400,
            "Describe how the customer paid: payment_method_details[type]=custom with "
            "payment_method_details[custom][display_name] (e.g. Wire transfer).",
            code="parameter_missing",
            param="payment_method_details[custom][display_name]",
        )
    billing = details.get("billing_details")
    return {
        "billing_details": (
            {
                "address": _address(billing.get("address")),
                "email": billing.get("email"),
                "name": billing.get("name"),
                "phone": billing.get("phone"),
            }
            if billing is not None
            else None
        ),
        "custom": {
            "display_name": details["custom"]["display_name"],
            "type": details["custom"].get("type"),
        },
        "payment_method": None,
        "type": "custom",
    }


def report_payment(ctx: Ctx, params: Params) -> JSON:
    expansions(params, ())
    requested = params["amount_requested"]
    currency = supported_currency(requested["currency"], param="amount_requested[currency]")
    if requested["value"] <= 0:
        raise invalid_request(
            "The amount must be a positive integer.", param="amount_requested[value]"
        )
    check_amount_for_currency(requested["value"], currency, param="amount_requested[value]")
    outcome, outcome_at = _outcome(params)
    customer_details = params.get("customer_details")
    if customer_details is not None and "customer" in customer_details:
        require_customer(
            ctx, customer_details["customer"], param="customer_details[customer]", status=400
        )
    shipping = params.get("shipping_details")
    processor: Params = params.get("processor_details", {"type": "custom"})
    record = PaymentRecordRec(
        id=new_id("pr"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        amount=requested["value"],
        currency=currency,
        initiated_at=params["initiated_at"],
        payment_method_details=_payment_method_details(params),
        processor_details=(
            {
                "custom": {"payment_reference": processor["custom"]["payment_reference"]},
                "type": "custom",
            }
            if "custom" in processor
            else {"type": "custom"}
        ),
        payment_attempt_record=new_id("par"),
        outcome=outcome,
        outcome_at=outcome_at,
        customer_details=(
            {key: customer_details.get(key) for key in ("customer", "email", "name", "phone")}
            if customer_details is not None
            else None
        ),
        customer_presence=params.get("customer_presence"),
        description=params.get("description"),
        shipping_details=(
            {
                "address": _address(shipping.get("address")),
                "name": shipping.get("name"),
                "phone": shipping.get("phone"),
            }
            if shipping is not None
            else None
        ),
        metadata=merge_metadata(params.get("metadata", {}), param="metadata"),
        seq=ctx.account.next_seq(),
    )
    ctx.account.payment_records[record.id] = record
    return render_payment_record(record)


def list_payment_records(ctx: Ctx, params: Params) -> JSON:
    """The account's records, newest first; ``created_after``/``created_before`` are strict.

    Changelog 2026-07-29.dahlia "Adds the ability to list Payment Records": ``GET
    /v1/payment_records`` returns them "in reverse chronological order", paginated with
    ``starting_after``/``ending_before``, filtered "by creation time range (``created_after``
    and ``created_before``)"; the API reference: "created after this unix timestamp".
    """
    expansions(params, ())
    after, before = params.get("created_after"), params.get("created_before")
    selected = [
        record
        for record in newest_first(ctx.account.payment_records.values())
        if (after is None or record.created > after) and (before is None or record.created < before)
    ]
    return paginate(
        selected,
        params,
        url="/v1/payment_records",
        render=render_payment_record,
        id_of=lambda record: record.id,
        kind="payment_record",
    )


def retrieve_payment_record(ctx: Ctx, params: Params, record_id: str) -> JSON:
    expansions(params, ())
    return render_payment_record(require(ctx.account.payment_records, record_id, "payment_record"))


def _report_outcome(ctx: Ctx, params: Params, record_id: str, outcome: str) -> JSON:
    """The outcome of a payment reported as initiated; an attached record settles its invoice
    payment (guaranteed: paid, as for any payment; failed or canceled: nothing paid)."""
    record = require(ctx.account.payment_records, record_id, "payment_record")
    expansions(params, ())
    if record.outcome is not None:
        raise invalid_request(
            f"The payment record {record.id} already has an outcome ({record.outcome})."
        )
    metadata = merge_metadata(params.get("metadata", {}), record.metadata, param="metadata")
    record.outcome, record.outcome_at = outcome, params[f"{outcome}_at"]
    record.metadata = metadata
    if record.invoice_payment is not None:
        payment = ctx.account.invoice_payments[record.invoice_payment]
        invoice = ctx.account.invoices[payment.invoice]
        if outcome == "guaranteed" and invoice.status in ("open", "uncollectible"):
            credit_invoice(ctx, invoice, payment, off_stripe=True)
        elif outcome != "guaranteed":
            payment.status, payment.canceled_at = "canceled", record.outcome_at
    return render_payment_record(record)


def report_guaranteed(ctx: Ctx, params: Params, record_id: str) -> JSON:
    return _report_outcome(ctx, params, record_id, "guaranteed")


def report_failed(ctx: Ctx, params: Params, record_id: str) -> JSON:
    return _report_outcome(ctx, params, record_id, "failed")


def report_canceled(ctx: Ctx, params: Params, record_id: str) -> JSON:
    return _report_outcome(ctx, params, record_id, "canceled")


def attach_payment(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    """Attach a payment record to an invoice; it counts as soon as it is guaranteed."""
    invoice = require_invoice(ctx, invoice_id)
    reject_unsupported(params, ("payment_intent",))
    expand = expansions(params, INVOICE_EXPANDABLE)
    if "payment_record" not in params:
        raise StripeError(
            400,
            "Missing required param: payment_record.",
            code="parameter_missing",
            param="payment_record",
        )
    record = require(
        ctx.account.payment_records,
        params["payment_record"],
        "payment_record",
        param="payment_record",
        status=400,
    )
    if invoice.status not in ("open", "uncollectible"):
        raise invalid_request(
            f"You can only attach payments to an open invoice; this invoice is {invoice.status}."
        )
    if record.invoice_payment is not None:
        raise invalid_request(
            f"The payment record {record.id} is already attached to an invoice.",
            param="payment_record",
        )
    if record.currency != invoice.currency:
        raise invalid_request(
            f"The payment record is in {record.currency}, the invoice in {invoice.currency}.",
            param="payment_record",
        )
    payment = add_invoice_payment(ctx, invoice, record.amount, "custom", payment_record=record.id)
    record.invoice_payment = payment.id
    if record.outcome == "guaranteed":
        credit_invoice(ctx, invoice, payment, off_stripe=True)
    elif record.outcome is not None:
        payment.status, payment.canceled_at = "canceled", record.outcome_at
    return render_invoice(ctx.account, invoice, expand=expand)
