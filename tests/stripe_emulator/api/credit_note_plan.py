"""What a credit note would do to its invoice, worked out before anything changes.

``POST /v1/credit_notes`` and ``GET /v1/credit_notes/preview`` share :func:`plan_credit_note`,
so the preview refuses what creation refuses. The rules, from the API reference ("Create a
credit note") and the guide "Generate credit notes programmatically":

* only ``open`` and ``paid`` invoices take credit notes; one of ``amount`` or ``lines``;
* the credit note "will first reduce the invoice's amount_remaining (and amount_due), but not
  below zero" (``pre_payment_amount``); the rest is ``post_payment_amount``, and "the sum of
  refunds, customer balance credits, and outside of Stripe credits must equal the
  post_payment_amount";
* an invoice line is credited by amount or by quantity, and "you can't combine discount types on
  an invoice line item"; nothing is credited beyond what the invoice billed, counting the earlier
  entries of the same ``lines`` for that line as well as earlier credit notes;
* on an invoice with tax, Stripe credits a line's tax with it ("If invoice is set up with
  automatic_tax[enabled]=true, this amount is tax exclusive"); the emulator does not work that
  tax out, so it refuses ``lines`` there rather than credit less than Stripe would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from ..errors import StripeError, invalid_request, no_such, parameters_exclusive
from ..ids import new_id
from ..models import (
    ChargeRec,
    CreditNoteLineRec,
    CreditNoteRec,
    InvoiceItemRec,
    InvoiceRec,
    RefundRec,
    amount_remaining,
    invoice_lines,
    invoice_total,
)
from ..tax_records import invoice_taxes
from .context import Ctx, Params
from .invoices import require_invoice
from .params import merge_metadata, reject_unsupported
from .refunds import check_refundable

OVER_CREDIT = "The credit note amount exceeds the maximum creditable amount for this invoice."


@dataclass
class CreditNotePlan:
    invoice: InvoiceRec
    amount: int
    lines: list[CreditNoteLineRec]
    pre_payment_amount: int
    post_payment_amount: int
    refund_amount: int = 0
    refund_charge: ChargeRec | None = None
    linked_refunds: list[tuple[RefundRec, int]] = field(default_factory=list)
    credit_amount: int = 0
    out_of_band_amount: int | None = None


def issued_notes(ctx: Ctx, invoice: InvoiceRec) -> list[CreditNoteRec]:
    notes = (ctx.account.credit_notes[note_id] for note_id in invoice.credit_note_ids)
    return [note for note in notes if note.status == "issued"]


def plan_credit_note(ctx: Ctx, params: Params) -> CreditNotePlan:
    reject_unsupported(params, ("shipping_cost",))
    invoice = require_invoice(ctx, params["invoice"], param="invoice", status=400)
    if invoice.status not in ("open", "paid"):
        raise invalid_request(
            f"You can only issue a credit note for an open or paid invoice; this invoice is "
            f"{invoice.status}.",
            param="invoice",
        )
    if "amount" in params and "lines" in params:
        raise parameters_exclusive("amount", "lines")
    if "lines" in params:
        _check_lines_against_tax(ctx, invoice, params["lines"])
        lines: list[CreditNoteLineRec] = []
        for index, line in enumerate(params["lines"]):
            lines.append(_line(ctx, invoice, line, index, planned=lines))
        amount = sum(line.amount for line in lines)
    elif "amount" in params:
        lines, amount = [], params["amount"]
    else:
        raise StripeError(
            400,
            "One of `amount`, `lines`, or `shipping_cost` must be provided.",
            code="parameter_missing",
            param="amount",
        )
    if amount <= 0:
        raise invalid_request("The credit note amount must be positive.", param="amount")
    credited = sum(note.amount for note in issued_notes(ctx, invoice))
    if amount > invoice_total(ctx.account, invoice) - credited:
        raise invalid_request(OVER_CREDIT, param="amount" if "amount" in params else "lines")
    pre = min(amount, amount_remaining(ctx.account, invoice)) if invoice.status == "open" else 0
    plan = CreditNotePlan(invoice, amount, lines, pre, amount - pre)
    _plan_post_payment(ctx, plan, params)
    return plan


def _check_lines_against_tax(ctx: Ctx, invoice: InvoiceRec, lines: list[Params]) -> None:
    # API reference, lines[].type: "`custom_line_item` is not valid when the invoice is set up
    # with `automatic_tax[enabled]=true`".
    for index, line in enumerate(lines):
        if invoice.automatic_tax and line.get("type") == "custom_line_item":
            raise invalid_request(
                "`custom_line_item` is not valid when the invoice is set up with "
                "`automatic_tax[enabled]=true`.",
                param=f"lines[{index}][type]",
            )
    if any(invoice_taxes(ctx.account, invoice)[1]):
        raise invalid_request(
            "The Stripe emulator does not support `lines` on a credit note for an invoice with "
            "tax (Stripe credits the line's tax too): credit it by `amount`.",
            param="lines",
        )


def _plan_post_payment(ctx: Ctx, plan: CreditNotePlan, params: Params) -> None:
    plan.credit_amount = params.get("credit_amount", 0)
    plan.out_of_band_amount = params.get("out_of_band_amount")
    plan.refund_amount = params.get("refund_amount", 0)
    for name in ("credit_amount", "out_of_band_amount", "refund_amount"):
        if params.get(name, 0) < 0:
            raise invalid_request(f"`{name}` must not be negative.", param=name)
    plan.linked_refunds = [
        _linked_refund(ctx, plan.invoice, refund, index)
        for index, refund in enumerate(params.get("refunds", []))
    ]
    total = (
        plan.refund_amount
        + plan.credit_amount
        + (plan.out_of_band_amount or 0)
        + sum(amount for _, amount in plan.linked_refunds)
    )
    if total != plan.post_payment_amount:
        raise invalid_request(
            f"The sum of refunds, customer balance credit and outside of Stripe credit ({total}) "
            f"must equal the credit note's post_payment_amount ({plan.post_payment_amount}): "
            f"its first {plan.pre_payment_amount} reduce what the invoice still asks for."
        )
    if plan.refund_amount:
        plan.refund_charge = _charge_to_refund(ctx, plan.invoice, plan.refund_amount)


def _charge_to_refund(ctx: Ctx, invoice: InvoiceRec, amount: int) -> ChargeRec:
    """``refund_amount``: "a refund will be created for the charge associated with the
    invoice" (one refund: the newest paid charge that can take it)."""
    charges = [
        ctx.account.charges[intent.latest_charge]
        for payment in map(ctx.account.invoice_payments.get, reversed(invoice.payment_ids))
        if payment is not None and payment.status == "paid" and payment.payment_intent
        for intent in [ctx.account.payment_intents[payment.payment_intent]]
        if intent.latest_charge is not None
    ]
    if not charges:
        raise invalid_request(
            "This invoice has no payment made on Stripe to refund: `refund_amount` must be 0.",
            param="refund_amount",
        )
    for charge in charges:
        if charge.status == "succeeded" and charge.dispute is None and charge.refundable >= amount:
            return charge
    check_refundable(ctx, charges[0], amount)  # raises Stripe's refusal for the newest charge
    return charges[0]


def _linked_refund(
    ctx: Ctx, invoice: InvoiceRec, params: Params, index: int
) -> tuple[RefundRec, int]:
    name = f"refunds[{index}]"
    if params.get("type", "refund") != "refund":
        raise invalid_request(
            "The Stripe emulator does not support refunds of payment records on credit notes.",
            param=f"{name}[type]",
        )
    if "refund" not in params:
        raise StripeError(400, f"Missing required param: {name}[refund].", code="parameter_missing")
    refund = ctx.account.refunds.get(params["refund"])
    if refund is None:
        raise no_such("refund", params["refund"], param=f"{name}[refund]", status=400)
    intents = {
        ctx.account.invoice_payments[payment_id].payment_intent
        for payment_id in invoice.payment_ids
    }
    if refund.payment_intent not in intents or refund.status == "failed":
        raise invalid_request(
            f"The refund {refund.id} is not a refund of this invoice's payments.",
            param=f"{name}[refund]",
        )
    linked = sum(
        amount
        for note in ctx.account.credit_notes.values()
        if note.status == "issued"
        for refund_id, amount in note.refunds
        if refund_id == refund.id
    )
    amount = params.get("amount_refunded", refund.amount - linked)
    if not 0 < amount <= refund.amount - linked:
        raise invalid_request(
            f"The refund {refund.id} has {refund.amount - linked} left to link to credit notes.",
            param=f"{name}[amount_refunded]",
        )
    return refund, amount


def _line(
    ctx: Ctx, invoice: InvoiceRec, params: Params, index: int, *, planned: list[CreditNoteLineRec]
) -> CreditNoteLineRec:
    name = f"lines[{index}]"
    reject_unsupported_line(params, name)
    metadata = merge_metadata(params.get("metadata", {}), param=f"{name}[metadata]")
    line = CreditNoteLineRec(
        id=new_id("cnli"),
        type=params["type"],
        amount=0,
        livemode=ctx.account.livemode,
        metadata=metadata,
    )
    if line.type == "custom_line_item":
        for wrong in ("amount", "invoice_line_item"):
            if wrong in params:
                raise invalid_request(
                    f"`{name}[{wrong}]` is only valid when `type` is `invoice_line_item`.",
                    param=f"{name}[{wrong}]",
                )
        if "unit_amount" in params and "unit_amount_decimal" in params:
            raise parameters_exclusive(f"{name}[unit_amount]", f"{name}[unit_amount_decimal]")
        unit = Decimal(params.get("unit_amount", 0)) + params.get("unit_amount_decimal", 0)
        line.quantity = params.get("quantity", 1)
        line.unit_amount_decimal = unit
        line.unit_amount = int(unit) if unit == unit.to_integral_value() else None
        line.description = params.get("description")
        line.amount = _round(unit * (line.quantity or 0))
        return line
    for wrong in ("description", "unit_amount", "unit_amount_decimal"):
        if wrong in params:
            raise invalid_request(
                f"`{name}[{wrong}]` is only valid when `type` is `custom_line_item`.",
                param=f"{name}[{wrong}]",
            )
    item = _invoice_item(ctx, invoice, params, name)
    line.invoice_item, line.invoice_line_item = item.id, item.line_id
    line.description = item.description
    _credit_item(ctx, invoice, item, line, params, name, planned=planned)
    return line


def reject_unsupported_line(params: Params, name: str) -> None:
    for option in ("tax_amounts", "tax_rates"):
        if params.get(option):
            raise invalid_request(
                f"The Stripe emulator does not support `{name}[{option}]`.",
                param=f"{name}[{option}]",
            )


def _invoice_item(ctx: Ctx, invoice: InvoiceRec, params: Params, name: str) -> InvoiceItemRec:
    if "invoice_line_item" not in params:
        raise StripeError(
            400,
            f"Missing required param: {name}[invoice_line_item].",
            code="parameter_missing",
            param=f"{name}[invoice_line_item]",
        )
    for item in invoice_lines(ctx.account, invoice):
        if item.line_id == params["invoice_line_item"]:
            return item
    raise no_such(
        "invoice line item",
        params["invoice_line_item"],
        param=f"{name}[invoice_line_item]",
        status=400,
    )


def _credit_item(
    ctx: Ctx,
    invoice: InvoiceRec,
    item: InvoiceItemRec,
    line: CreditNoteLineRec,
    params: Params,
    name: str,
    *,
    planned: list[CreditNoteLineRec],
) -> None:
    if "amount" in params and "quantity" in params:
        raise parameters_exclusive(f"{name}[amount]", f"{name}[quantity]")
    mode = "quantity" if "quantity" in params else "amount"
    if mode not in params:
        raise StripeError(
            400,
            f"Pass `{name}[amount]` or `{name}[quantity]`: how much of the line to credit.",
            code="parameter_missing",
            param=f"{name}[amount]",
        )
    earlier = [
        old
        for old in [*(old for note in issued_notes(ctx, invoice) for old in note.lines), *planned]
        if old.invoice_item == item.id
    ]
    if any(old.credited_by != mode for old in earlier):
        raise invalid_request(
            f"This line item was credited by {earlier[0].credited_by} before; a credit note can "
            f"only credit it by {earlier[0].credited_by} again.",
            param=f"{name}[{mode}]",
        )
    line.credited_by = mode
    if mode == "amount":
        left = item.amount - sum(old.amount for old in earlier)
        line.amount, line.quantity = params["amount"], 1
    else:
        left = item.quantity - sum(old.quantity or 0 for old in earlier)
        line.quantity = params["quantity"]
        unit = item.unit_amount_decimal or Decimal(0)
        line.unit_amount_decimal = unit
        line.unit_amount = int(unit) if unit == unit.to_integral_value() else None
        line.amount = _round(unit * line.quantity)
    asked = line.amount if mode == "amount" else (line.quantity or 0)
    if not 0 < asked <= left:
        raise invalid_request(OVER_CREDIT, param=f"{name}[{mode}]")


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
