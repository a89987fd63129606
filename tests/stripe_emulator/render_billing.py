"""Stripe's JSON shapes for credit notes and payment records (payments made off Stripe)."""

from __future__ import annotations

from .models import JSON, CreditNoteLineRec, CreditNoteRec, PaymentRecordRec
from .render import decimal_string

LINES_EMBEDDED = 10


def credit_note_type(note: CreditNoteRec) -> str:
    if note.post_payment_amount == 0:
        return "pre_payment"
    return "post_payment" if note.pre_payment_amount == 0 else "mixed"


def render_credit_note_line(line: CreditNoteLineRec) -> JSON:
    rendered: JSON = {
        "id": line.id,
        "object": "credit_note_line_item",
        "amount": line.amount,
        "description": line.description,
        "discount_amount": 0,
        "discount_amounts": [],
        "livemode": line.livemode,
        "metadata": dict(line.metadata),
        "pretax_credit_amounts": [],
        "quantity": line.quantity,
        "tax_rates": [],
        "taxes": [],
        "type": line.type,
        "unit_amount": line.unit_amount,
        "unit_amount_decimal": (
            decimal_string(line.unit_amount_decimal)
            if line.unit_amount_decimal is not None
            else None
        ),
    }
    if line.invoice_line_item is not None:
        rendered["invoice_line_item"] = line.invoice_line_item
    return rendered


def render_credit_note(note: CreditNoteRec, *, pdf: str) -> JSON:
    return {
        "id": note.id,
        "object": "credit_note",
        "amount": note.amount,
        "amount_shipping": 0,
        "created": note.created,
        "currency": note.currency,
        "customer": note.customer,
        "customer_account": None,
        "customer_balance_transaction": note.customer_balance_transaction,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": note.effective_at,
        "invoice": note.invoice,
        "lines": {
            "object": "list",
            "data": [render_credit_note_line(line) for line in note.lines[:LINES_EMBEDDED]],
            "has_more": len(note.lines) > LINES_EMBEDDED,
            "url": f"/v1/credit_notes/{note.id}/lines",
        },
        "livemode": note.livemode,
        "memo": note.memo,
        "metadata": dict(note.metadata),
        "number": note.number,
        "out_of_band_amount": note.out_of_band_amount,
        "pdf": pdf,
        "post_payment_amount": note.post_payment_amount,
        "pre_payment_amount": note.pre_payment_amount,
        "pretax_credit_amounts": [],
        "reason": note.reason,
        "refunds": [
            {
                "amount_refunded": amount,
                "payment_record_refund": None,
                "refund": refund_id,
                "type": "refund",
            }
            for refund_id, amount in note.refunds
        ],
        "shipping_cost": None,
        "status": note.status,
        "subtotal": note.amount,
        "subtotal_excluding_tax": note.amount,
        "total": note.amount,
        "total_excluding_tax": note.amount,
        "total_taxes": [],
        "type": credit_note_type(note),
        "voided_at": note.voided_at,
    }


def _money(value: int, currency: str) -> JSON:
    return {"currency": currency, "value": value}


def render_payment_record(record: PaymentRecordRec) -> JSON:
    """The amounts follow the reported outcome: all of it guaranteed, failed or canceled.

    ``amount_authorized`` moves with ``amount_guaranteed``: an off-Stripe payment reported as
    guaranteed has been authorized and collected; Stripe's docs describe neither further.
    """

    def when(outcome: str) -> JSON:
        return _money(record.amount if record.outcome == outcome else 0, record.currency)

    return {
        "id": record.id,
        "object": "payment_record",
        "amount": _money(record.amount, record.currency),
        "amount_authorized": when("guaranteed"),
        "amount_canceled": when("canceled"),
        "amount_failed": when("failed"),
        "amount_guaranteed": when("guaranteed"),
        "amount_refunded": _money(0, record.currency),
        "amount_requested": _money(record.amount, record.currency),
        "application": None,
        "created": record.created,
        "customer_details": record.customer_details,
        "customer_presence": record.customer_presence,
        "description": record.description,
        "latest_payment_attempt_record": record.payment_attempt_record,
        "livemode": record.livemode,
        "metadata": dict(record.metadata),
        "payment_method_details": record.payment_method_details,
        "processor_details": record.processor_details,
        "reported_by": "self",
        "shipping_details": record.shipping_details,
    }
