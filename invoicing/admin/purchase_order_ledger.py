"""The PO page's read-only views of money that changed besides payments: credit notes, disputes.

The rows are written only by the ledger (from Stripe's events and reconciliation, or the actions
that ask Stripe for a refund or a credit note); here they are shown as tables, never as forms:
no formset, so nothing about them is posted with the PO's form.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from invoicing.admin.common import amount_or_dash
from invoicing.models import PurchaseOrder


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> SafeString | str:
    if not rows:
        return "None"
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html('<table class="ledger-table"><tr>{}</tr>{}</table>', head, body)


def _when(value: object) -> str:
    return "-" if value is None else str(value)[:16]


# Stripe's credit note reasons (CreditNote.reason), in words.
_CREDIT_NOTE_REASONS = {
    "duplicate": "Duplicate",
    "fraudulent": "Fraudulent",
    "order_change": "Order change",
    "product_unsatisfactory": "Product unsatisfactory",
}


def credit_note_reason(reason: str, memo: str) -> str:
    """Stripe's reason code in words, then the memo (the organizer's reason): "Order change:
    Booth cancelled"; either alone when the other is empty."""
    code = _CREDIT_NOTE_REASONS.get(reason, reason.replace("_", " ").capitalize())
    return ": ".join(part for part in (code, memo.strip()) if part) or "-"


def credit_notes_table(po: PurchaseOrder) -> SafeString | str:
    """Each credit note: what it took off the amount owed, and whether it still does."""
    rows = []
    for credit in po.credits.all():
        if credit.voided_at is not None:
            counted = "no: voided"
        elif not credit.counted:
            counted = "no: asked again by the replacement invoice"
        else:
            counted = "yes"
        rows.append(
            (
                credit.number or credit.stripe_credit_note_id,
                amount_or_dash(credit.amount, po.currency),
                credit.get_purpose_display(),
                counted,
                credit_note_reason(credit.reason, credit.memo),
                credit.stripe_invoice_id,
                _when(credit.issued_at),
                _when(credit.voided_at),
            )
        )
    return _table(
        (
            "Credit note",
            "Amount",
            "Purpose",
            "Lowers what is owed",
            "Reason / memo",
            "Invoice",
            "Issued",
            "Voided",
        ),
        rows,
    )


def disputes_table(po: PurchaseOrder) -> SafeString | str:
    """Each chargeback and where it stands; its money is in the ledger above."""
    rows = [
        (
            dispute.stripe_dispute_id,
            dispute.status.replace("_", " ") + (" (open)" if dispute.is_open else ""),
            amount_or_dash(dispute.amount, po.currency),
            dispute.reason or "-",
            dispute.stripe_charge_id or "-",
            _when(dispute.opened_at),
        )
        for dispute in po.disputes.all()
    ]
    return _table(("Dispute", "Status", "Amount", "Reason", "Charge", "Opened"), rows)
