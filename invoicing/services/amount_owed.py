"""Reducing what a PO owes: a credit note on its open invoice (a :class:`StripeWriteRequest`).

The credit note goes on the invoice the request named when it was made, by amount or by line,
with the organizer's reason as its memo and ``metadata[purpose]=reduce``. By line, each PO line is
found among the invoice's lines by the metadata invoice creation puts on them (``po_uid``,
``po_line``): no invoice line id is kept at creation, so they are read from the invoice, and stored
in the request's plan before the credit note is asked for. It is created under a key derived
from the row, after listing the invoice's credit notes for one this request already made (a run
that crashed before storing its id). On an open invoice the whole credit note is
``pre_payment_amount``: Stripe lowers ``amount_due`` and ``amount_remaining`` (an invoice left
owing nothing becomes paid), and nothing has to be refunded. The invoice as Stripe returns it then
goes through the ledger (its mirror), and the credit note lowers what the PO owes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe
from django.db import transaction

from invoicing import money
from invoicing.access import may_reduce
from invoicing.models import StripeWriteRequest
from invoicing.services.invoice_snapshots import WITH_OFF_STRIPE
from invoicing.services.keyed_writes import find_by_metadata, poisons_key
from invoicing.services.ledger import apply_credit_note, apply_invoice_snapshot
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.stripe_write_requests import finish, lock_request, refuse
from invoicing.stripe_invoice_status import StripeInvoiceStatus

if TYPE_CHECKING:
    from stripe.params import CreditNoteCreateParams, CreditNoteCreateParamsLine

State = StripeWriteRequest.State

PURPOSE = "reduce"


def _earlier_credit_note(
    client: stripe.StripeClient, row: StripeWriteRequest
) -> stripe.CreditNote | None:
    notes = client.v1.credit_notes.list({"invoice": row.stripe_invoice_id, "limit": 100})
    return find_by_metadata(notes.auto_paging_iter(), "credit_note_request", str(row.pk))


def _invoice_line_ids(client: stripe.StripeClient, row: StripeWriteRequest) -> dict[int, str]:
    """The invoice's line for each PO line (by position), found by our metadata on the lines."""
    uid = str(row.purchase_order.uid)
    found: dict[int, str] = {}
    lines = client.v1.invoices.line_items.list(row.stripe_invoice_id, {"limit": 100})
    for line in lines.auto_paging_iter():
        metadata = line.metadata.to_dict() if line.metadata is not None else {}
        if metadata.get("po_uid") == uid and str(metadata.get("po_line", "")).isdigit():
            found[int(metadata["po_line"])] = line.id
    return found


def _fix_invoice_lines(client: stripe.StripeClient, row: StripeWriteRequest) -> None:
    """Store which invoice line each PO line of the plan credits (once: a retry sends the same)."""
    if all(item.get("invoice_line_item") for item in row.plan):
        return
    found = _invoice_line_ids(client, row)
    missing = [item for item in row.plan if int(item["po_line"]) not in found]
    if missing:
        names = ", ".join(str(item["description"]) for item in missing)
        refuse(row, f"not reduced: invoice {row.stripe_invoice_id} has no line for {names}.")
    with transaction.atomic():
        locked = lock_request(row)
        locked.plan = [
            {**item, "invoice_line_item": found[int(item["po_line"])]} for item in locked.plan
        ]
        locked.save(update_fields=["plan", "updated_at"])
    row.refresh_from_db()


def _credit_note_params(row: StripeWriteRequest, minor: int) -> CreditNoteCreateParams:
    params: CreditNoteCreateParams = {
        "invoice": row.stripe_invoice_id,
        "reason": "order_change",
        "memo": row.reason[:5000],
        "metadata": row.stripe_metadata(purpose=PURPOSE),
    }
    if not row.credited_lines:
        params["amount"] = minor
        return params
    lines: list[CreditNoteCreateParamsLine] = [
        {
            "type": "invoice_line_item",
            "invoice_line_item": str(item["invoice_line_item"]),
            "quantity": int(item["quantity"]),
        }
        for item in row.credited_lines
    ]
    params["lines"] = lines
    return params


def _create_credit_note(client: stripe.StripeClient, row: StripeWriteRequest) -> stripe.CreditNote:
    po = row.purchase_order
    minor = money.to_minor_units(row.amount, po.currency)
    invoice = client.v1.invoices.retrieve(row.stripe_invoice_id)
    if invoice.status != StripeInvoiceStatus.OPEN:
        refuse(
            row,
            f"not reduced: invoice {invoice.id} is {invoice.status}; only an open invoice's "
            "amount can be reduced.",
        )
    if minor > invoice.amount_remaining:
        left = money.format_amount(
            money.from_minor_units(invoice.amount_remaining, po.currency), po.currency
        )
        refuse(
            row,
            f"not reduced: invoice {invoice.id} asks only {left} now, less than "
            f"{money.format_amount(row.amount, po.currency)}.",
        )
    if row.credited_lines:
        _fix_invoice_lines(client, row)
    try:
        return client.v1.credit_notes.create(
            _credit_note_params(row, minor),
            options={"idempotency_key": row.idempotency_key("credit_note")},
        )
    except stripe.StripeError as error:
        if poisons_key(error):  # see refunds._send_refund: the listing finds it if it happened
            StripeWriteRequest.objects.filter(pk=row.pk, key_epoch=row.key_epoch).update(
                key_epoch=row.key_epoch + 1
            )
        raise


def process_reduce_request(*, write_request: StripeWriteRequest) -> None:
    """Carry out a queued reduction; a repeated run finds its credit note and finishes.

    Raises:
        InvalidTransition: refused (the person's role, the invoice no longer open, the amount
            more than it asks); the request is marked failed with the reason.
        stripe.StripeError: Stripe failed; the next run resumes.
    """
    row = StripeWriteRequest.objects.select_related(
        "purchase_order__conference", "requested_by"
    ).get(pk=write_request.pk)
    if row.state != State.QUEUED:
        return
    po = row.purchase_order
    client = build_stripe_client(po.conference)
    note = None
    if row.stripe_credit_note_id:
        note = client.v1.credit_notes.retrieve(row.stripe_credit_note_id)
    else:
        note = _earlier_credit_note(client, row)
    if note is None:
        if row.requested_by is None or not may_reduce(row.requested_by, po.conference_id):
            refuse(row, f"not reduced: only an organizer of {po.conference} reduces amounts.")
        note = _create_credit_note(client, row)
    if not row.stripe_credit_note_id:
        with transaction.atomic():
            locked = lock_request(row)
            locked.stripe_credit_note_id = note.id
            locked.save(update_fields=["stripe_credit_note_id", "updated_at"])
        row.refresh_from_db()
    # With amount_paid_off_stripe: a view without it would move the PO's mirror of the invoice
    # past money the ledger cannot record from it, and the reconciliation would then skip it.
    invoice = client.v1.invoices.retrieve(row.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE})
    apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reduce")
    apply_credit_note(purchase_order=po, credit_note=note, source="reduce")
    finish(row, state=State.SUCCEEDED)
    write_request.refresh_from_db()
