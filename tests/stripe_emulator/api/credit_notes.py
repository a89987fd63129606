"""``/v1/credit_notes``: create (what :mod:`.credit_note_plan` worked out), preview, retrieve,
update, list, void; and what they do to the invoice.

A credit note's ``pre_payment_amount`` lowers the invoice's ``amount_due`` and
``amount_remaining`` and adds to its ``pre_payment_credit_notes_amount``; "if applying a credit
note to an invoice changes the amount due to zero, the invoice automatically transitions into
the paid state" (``invoice.updated``, ``invoice.paid``). Its ``post_payment_amount`` adds to
``post_payment_credit_notes_amount`` and leaves the amounts due alone: it is paid back as a
refund, as customer balance, or outside Stripe. "You can void a credit note only if it's on an
open invoice. Voiding a credit note reverses its adjustment, increasing the amount due on the
invoice by the amount of the credit note."
"""

from __future__ import annotations

from ..errors import invalid_request, require
from ..ids import new_id
from ..models import JSON, CreditNoteLineRec, CreditNoteRec, amount_remaining
from ..render import render_invoice
from ..render_billing import render_credit_note, render_credit_note_line
from .context import Ctx, Params
from .credit_note_plan import CreditNotePlan, plan_credit_note
from .events import emit, previous_attributes
from .invoice_payments import sync_default_payment
from .lists import list_page, paginate
from .params import expansions, merge_metadata, reject_unsupported
from .refunds import issue_refund


def _pdf(ctx: Ctx, note: CreditNoteRec) -> str:
    return f"{ctx.store.public_url}/i/{note.invoice}/credit_notes/{note.id}/pdf"


def credit_note_json(ctx: Ctx, note: CreditNoteRec) -> JSON:
    return render_credit_note(note, pdf=_pdf(ctx, note))


def _note_from_plan(ctx: Ctx, plan: CreditNotePlan, params: Params) -> CreditNoteRec:
    invoice = plan.invoice
    created = ctx.now
    return CreditNoteRec(
        id=new_id("cn"),
        number=f"{invoice.number}-CN-{len(invoice.credit_note_ids) + 1:02d}",
        created=created,
        livemode=ctx.account.livemode,
        invoice=invoice.id,
        customer=invoice.customer,
        currency=invoice.currency,
        amount=plan.amount,
        pre_payment_amount=plan.pre_payment_amount,
        post_payment_amount=plan.post_payment_amount,
        lines=plan.lines,
        effective_at=params.get("effective_at", created),
        credit_amount=plan.credit_amount,
        out_of_band_amount=plan.out_of_band_amount,
        refunds=[(refund.id, amount) for refund, amount in plan.linked_refunds],
        memo=params.get("memo"),
        reason=params.get("reason"),
        metadata=merge_metadata(params.get("metadata", {}), param="metadata"),
        seq=ctx.account.next_seq(),
    )


def create_credit_note(ctx: Ctx, params: Params) -> JSON:
    expansions(params, ())
    plan = plan_credit_note(ctx, params)
    note = _note_from_plan(ctx, plan, params)
    invoice, account = plan.invoice, ctx.account
    if plan.refund_charge is not None:
        refund = issue_refund(ctx, plan.refund_charge, plan.refund_amount, reason=None, metadata={})
        note.refunds.append((refund.id, refund.amount))
    if plan.credit_amount:
        account.customers[invoice.customer].balance -= plan.credit_amount
        note.customer_balance_transaction = new_id("cbtxn")
    before = render_invoice(account, invoice)
    account.credit_notes[note.id] = note
    invoice.credit_note_ids.append(note.id)
    invoice.pre_payment_credit_notes_amount += note.pre_payment_amount
    invoice.post_payment_credit_notes_amount += note.post_payment_amount
    paid_now = invoice.status == "open" and amount_remaining(account, invoice) == 0
    if paid_now:
        invoice.status, invoice.paid_at = "paid", ctx.now
    sync_default_payment(ctx, invoice)
    emit(ctx, "credit_note.created", credit_note_json(ctx, note))
    after = render_invoice(account, invoice)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    if paid_now:
        emit(ctx, "invoice.paid", after)
    return credit_note_json(ctx, note)


def preview_credit_note(ctx: Ctx, params: Params) -> JSON:
    """The credit note creation would issue, without issuing it (no refund is created)."""
    expansions(params, ())
    plan = plan_credit_note(ctx, params)
    return credit_note_json(ctx, _note_from_plan(ctx, plan, params))


def preview_credit_note_lines(ctx: Ctx, params: Params) -> JSON:
    plan = plan_credit_note(ctx, {k: v for k, v in params.items() if k not in _PAGING})
    return _lines_page(plan.lines, params, url="/v1/credit_notes/preview/lines")


_PAGING = ("limit", "starting_after", "ending_before", "expand")


def _lines_page(lines: list[CreditNoteLineRec], params: Params, *, url: str) -> JSON:
    expansions(params, (), prefix="data.")
    return paginate(
        lines,
        params,
        url=url,
        render=render_credit_note_line,
        id_of=lambda line: line.id,
        kind="credit_note_line_item",
    )


def _require_note(ctx: Ctx, note_id: str) -> CreditNoteRec:
    return require(ctx.account.credit_notes, note_id, "credit_note")


def retrieve_credit_note(ctx: Ctx, params: Params, note_id: str) -> JSON:
    expansions(params, ())
    return credit_note_json(ctx, _require_note(ctx, note_id))


def list_credit_note_lines(ctx: Ctx, params: Params, note_id: str) -> JSON:
    note = _require_note(ctx, note_id)
    return _lines_page(note.lines, params, url=f"/v1/credit_notes/{note.id}/lines")


def update_credit_note(ctx: Ctx, params: Params, note_id: str) -> JSON:
    note = _require_note(ctx, note_id)
    expansions(params, ())
    before = credit_note_json(ctx, note)
    if "memo" in params:
        note.memo = params["memo"]
    if "metadata" in params:
        note.metadata = merge_metadata(params["metadata"], note.metadata, param="metadata")
    after = credit_note_json(ctx, note)
    previous = previous_attributes(before, after)
    if previous:
        emit(ctx, "credit_note.updated", after, previous)
    return after


def void_credit_note(ctx: Ctx, params: Params, note_id: str) -> JSON:
    note = _require_note(ctx, note_id)
    expansions(params, ())
    invoice = ctx.account.invoices[note.invoice]
    if note.status == "void":
        raise invalid_request(f"The credit note {note.id} is already void.")
    if invoice.status != "open":
        raise invalid_request(
            f"You can void a credit note only if it's on an open invoice; invoice "
            f"{invoice.id} is {invoice.status}."
        )
    before = render_invoice(ctx.account, invoice)
    note.status, note.voided_at = "void", ctx.now
    invoice.pre_payment_credit_notes_amount -= note.pre_payment_amount
    invoice.post_payment_credit_notes_amount -= note.post_payment_amount
    sync_default_payment(ctx, invoice)
    emit(ctx, "credit_note.voided", credit_note_json(ctx, note))
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    return credit_note_json(ctx, note)


def list_credit_notes(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, ("customer_account",))
    expansions(params, (), prefix="data.")
    return list_page(
        ctx.account.credit_notes.values(),
        params,
        filters=("invoice", "customer"),
        url="/v1/credit_notes",
        render=lambda note: credit_note_json(ctx, note),
        kind="credit_note",
    )
