"""The hosted invoice page (``GET /i/<invoice id>``), plain HTML a browser test can drive.

Stable hooks for Playwright:

* ``#invoice-number``, ``#invoice-status``, ``#due-date``, ``#customer-name``, ``#customer-email``
* ``#customer-address`` (one ``span.address-line`` per line), ``#customer-tax-ids`` (one
  ``li.tax-id`` each), ``#custom-fields`` (one ``div.custom-field`` each, ``dt``/``dd``)
* ``#invoice-pdf``: the link to the invoice PDF (``invoice_pdf``)
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
from .models import (
    Account,
    InvoiceRec,
    amount_due,
    amount_remaining,
    invoice_lines,
)
from .tax_records import invoice_taxes

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
  {_billing_details(invoice)}
  <table id="lines">
    <thead><tr><th>Description</th><th>Qty</th><th>Amount</th></tr></thead>
    <tbody>
{rows}
    </tbody>
  </table>
  <dl>
    {_tax_row(account, invoice)}<dt>Amount due</dt>
    <dd id="amount-due">{_money(due, invoice.currency)}</dd>
    <dt>Amount paid</dt><dd id="amount-paid">{_money(invoice.amount_paid, invoice.currency)}</dd>
    <dt>Amount remaining</dt><dd id="amount-remaining">{_money(remaining, invoice.currency)}</dd>
  </dl>{forms}
  <p><a id="invoice-pdf" href="/i/{esc(invoice.id)}/pdf">Download PDF</a></p>
</body>
</html>
"""


def _tax_row(account: Account, invoice: InvoiceRec) -> str:
    """``#tax`` (automatic tax only): the tax the invoice adds to its lines."""
    if not invoice.automatic_tax:
        return ""
    country, taxes = invoice_taxes(account, invoice)
    rate = account.config.tax_rates.get(country or "", 0)
    return (
        f"<dt>Tax ({html.escape(country or '')} {rate}%)</dt>"
        f'<dd id="tax">{_money(sum(taxes), invoice.currency)}</dd>\n    '
    )


def address_lines(address: dict[str, str | None] | None) -> list[str]:
    """An address as it is printed: street lines, postal code and city, state, country."""
    if not address:
        return []
    city = " ".join(part for part in (address.get("postal_code"), address.get("city")) if part)
    parts = (address.get("line1"), address.get("line2"), city, address.get("state"))
    return [part for part in (*parts, address.get("country")) if part]


def billing_text(invoice: InvoiceRec) -> list[str]:
    """What the invoice says about whom it bills, line by line (page and PDF share it)."""
    lines = [f"{field['name']}: {field['value']}" for field in invoice.custom_fields or []]
    lines += [f"Billed to: {invoice.customer_name or invoice.customer_email or ''}"]
    lines += address_lines(invoice.customer_address)
    lines += [f"{tax['type'].upper()} {tax['value']}" for tax in invoice.customer_tax_ids or []]
    return lines


def _billing_details(invoice: InvoiceRec) -> str:
    esc = html.escape
    address = "".join(
        f'<span class="address-line">{esc(line)}</span><br>'
        for line in address_lines(invoice.customer_address)
    )
    taxes = "".join(
        f'<li class="tax-id"><span class="tax-id-type">{esc(tax["type"])}</span> '
        f'<span class="tax-id-value">{esc(tax["value"])}</span></li>'
        for tax in invoice.customer_tax_ids or []
    )
    fields = "".join(
        f'<div class="custom-field"><dt>{esc(field["name"])}</dt>'
        f"<dd>{esc(field['value'])}</dd></div>"
        for field in invoice.custom_fields or []
    )
    return (
        f'<p id="customer-address">{address}</p>\n'
        f'  <ul id="customer-tax-ids">{taxes}</ul>\n'
        f'  <dl id="custom-fields">{fields}</dl>'
    )


def _date(timestamp: int | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).date().isoformat()


def _pdf(account: Account, invoice: InvoiceRec) -> bytes:
    """A one-page PDF naming the invoice; enough for a download link to work."""
    total = currencies.format_amount(amount_due(account, invoice), invoice.currency)
    tax = sum(invoice_taxes(account, invoice)[1])
    taxed = (
        [f"Tax: {currencies.format_amount(tax, invoice.currency)}"] if invoice.automatic_tax else []
    )
    return _pdf_document(f"Invoice {invoice.number} - {total}", *billing_text(invoice), *taxed)


def _pdf_document(text: str, *more: str) -> bytes:
    """A one-page PDF, one line of text per argument (Latin-1: Helvetica's encoding)."""
    shown = []
    for line in (text, *more):
        safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        shown.append(f"({safe}) Tj")
    stream = ("BT /F1 12 Tf 16 TL 72 720 Td " + " T* ".join(shown) + " ET").encode(
        "latin-1", "replace"
    )
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
