"""The hosted invoice page (``GET /i/<invoice id>``), plain HTML a browser test can drive.

Stable hooks for Playwright:

* ``#invoice-number``, ``#invoice-status``, ``#due-date``, ``#customer-name``, ``#customer-email``
* ``#amount-due``, ``#amount-paid``, ``#amount-remaining``; ``#lines`` with one ``tr.line`` each
* ``#pay-card-form`` with button ``#pay-card`` (pays everything that remains)
* ``#pay-ach-form`` with button ``#pay-ach`` (pays everything that remains by ACH debit)

Like Stripe's page, it pays the invoice's default payment, the whole amount remaining, and offers
no amount field: partial payments come from the Dashboard's "Charge customer", here the control
API's ``POST /_emulator/invoices/<id>/payments`` with ``amount``.
* ``#notice`` / ``#error`` after a payment (the form posts, then is redirected back here)
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from . import currencies
from .errors import StripeError, no_such
from .models import Account, InvoiceRec, amount_due, amount_remaining, invoice_lines

if TYPE_CHECKING:
    from .store import Store

Response = tuple[int, bytes, dict[str, str]]


def handle(store: Store, method: str, path: str, query: str, body: bytes) -> Response:
    parts = path.strip("/").split("/")
    credit_note_pdf = len(parts) == 5 and parts[2] == "credit_notes" and parts[4] == "pdf"
    if method != "GET" or not (
        len(parts) == 2 or (len(parts) == 3 and parts[2] == "pdf") or credit_note_pdf
    ):
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
    invoice_id = parts[1]
    account = store.invoice_owner(invoice_id)
    if account is None:
        raise no_such("invoice", invoice_id)
    with store.lock:
        invoice = account.invoices[invoice_id]
        if invoice.deleted or invoice.status == "draft":
            raise no_such("invoice", invoice_id)
        if credit_note_pdf:
            note = account.credit_notes.get(parts[3])
            if note is None or note.invoice != invoice.id:
                raise no_such("credit_note", parts[3])
            total = currencies.format_amount(note.amount, note.currency)
            text = f"Credit note {note.number} - {total}"
            return 200, _pdf_document(text), {"Content-Type": "application/pdf"}
        if len(parts) == 3:
            return 200, _pdf(account, invoice), {"Content-Type": "application/pdf"}
        page = _page(account, invoice, dict(parse_qsl(query)))
    return 200, page.encode(), {"Content-Type": "text/html; charset=utf-8"}


def _money(amount: int, currency: str) -> str:
    return html.escape(currencies.format_amount(amount, currency))


def _page(account: Account, invoice: InvoiceRec, query: dict[str, str]) -> str:
    esc = html.escape
    due = amount_due(account, invoice)
    remaining = amount_remaining(account, invoice)
    rows = "\n".join(
        f'<tr class="line" id="line-{esc(item.line_id)}"><td class="description">'
        f'{esc(item.description or "")}</td><td class="quantity">{item.quantity}</td>'
        f'<td class="amount">{_money(item.amount, item.currency)}</td></tr>'
        for item in invoice_lines(account, invoice)
    )
    payable = invoice.status in ("open", "uncollectible") and remaining > 0
    accepted = invoice.payment_method_types or ["card", "us_bank_account"]
    action = f"/_emulator/invoices/{esc(invoice.id)}/payments"
    forms = ""
    if payable and "card" in accepted:
        forms += f"""
  <form id="pay-card-form" method="post" action="{action}">
    <input type="hidden" name="payment_method_type" value="card">
    <input type="hidden" name="return_to" value="hosted">
    <button id="pay-card" type="submit">Pay {_money(remaining, invoice.currency)} by card</button>
  </form>"""
    if payable and "us_bank_account" in accepted:
        forms += f"""
  <form id="pay-ach-form" method="post" action="{action}">
    <input type="hidden" name="payment_method_type" value="us_bank_account">
    <input type="hidden" name="return_to" value="hosted">
    <button id="pay-ach" type="submit">Pay {_money(remaining, invoice.currency)} by bank account
      (ACH)</button>
  </form>"""
    notice = ""
    if "notice" in query:
        notice = f'<p id="notice" role="status">{esc(query["notice"])}</p>'
    if "error" in query:
        notice = f'<p id="error" role="alert">{esc(query["error"])}</p>'
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Invoice {esc(invoice.number or invoice.id)}</title></head>
<body>
  <h1>Invoice <span id="invoice-number">{esc(invoice.number or "")}</span></h1>
  {notice}
  <p>Status: <span id="invoice-status">{esc(invoice.status)}</span></p>
  <p>Due: <span id="due-date">{esc(_date(invoice.due_date))}</span></p>
  <p>Billed to: <span id="customer-name">{esc(invoice.customer_name or "")}</span>
     <span id="customer-email">{esc(invoice.customer_email or "")}</span></p>
  <table id="lines">
    <thead><tr><th>Description</th><th>Qty</th><th>Amount</th></tr></thead>
    <tbody>
{rows}
    </tbody>
  </table>
  <dl>
    <dt>Amount due</dt><dd id="amount-due">{_money(due, invoice.currency)}</dd>
    <dt>Amount paid</dt><dd id="amount-paid">{_money(invoice.amount_paid, invoice.currency)}</dd>
    <dt>Amount remaining</dt><dd id="amount-remaining">{_money(remaining, invoice.currency)}</dd>
  </dl>{forms}
  <p><a id="invoice-pdf" href="/i/{esc(invoice.id)}/pdf">Download PDF</a></p>
</body>
</html>
"""


def _date(timestamp: int | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).date().isoformat()


def _pdf(account: Account, invoice: InvoiceRec) -> bytes:
    """A one-page PDF naming the invoice; enough for a download link to work."""
    total = currencies.format_amount(amount_due(account, invoice), invoice.currency)
    return _pdf_document(f"Invoice {invoice.number} - {total}")


def _pdf_document(text: str) -> bytes:
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 14 Tf 72 720 Td ({safe}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)
