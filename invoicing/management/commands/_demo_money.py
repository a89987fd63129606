"""The demo's money going back: a PO paid then refunded, one whose amount owed was reduced by a
credit note, and one reduced by line (a credit note crediting two of its booth passes;
``seed_demo``).

Both go through what an organizer's buttons do (a request row, then the worker's service), run
here in the command so the demo shows them at once. The customer's card payment is made the way
the emulator's hosted page makes it (its control API; the demo runs only against the emulator).
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from decimal import Decimal
from typing import Any

from django.conf import settings

from invoicing.errors import InvoiceAlreadyAttached
from invoicing.models import PurchaseOrder, StripeWriteRequest
from invoicing.services import purchase_orders
from invoicing.services.amount_owed import process_reduce_request
from invoicing.services.refunds import process_refund_request
from invoicing.services.stripe_invoicing import create_stripe_invoice, sync_stripe_invoice_status
from invoicing.services.stripe_write_requests import record_request

Kind = StripeWriteRequest.Kind

REFUND_AMOUNT = Decimal("2350.00")  # all of DEMO-1006: the PO ends "Refunded"
REFUND_REASON = "Stark Industries withdrew its sponsorship; refunded in full."
REDUCE_AMOUNT = Decimal("500.00")
REDUCE_REASON = "Booth moved to a smaller space (2 x 3 m)."
REDUCE_LINES = {2: 2}  # DEMO-1008's line 2: 2 of its 5 booth passes
REDUCE_LINES_REASON = "Two booth staff cancelled their trip."


def _invoiced(po: PurchaseOrder, admin: Any) -> PurchaseOrder:
    """Approve and create the invoice now (the worker, also asked, resumes the same one)."""
    po = purchase_orders.approve_purchase_order(po, approved_by=admin)
    with contextlib.suppress(InvoiceAlreadyAttached):  # the worker was quicker
        create_stripe_invoice(po)
    po.refresh_from_db()
    return po


def _card_payment(invoice_id: str) -> None:
    """The customer pays the whole invoice by card on the emulator's hosted page."""
    request = urllib.request.Request(  # noqa: S310 (STRIPE_API_BASE: the emulator, http)
        f"{settings.STRIPE_API_BASE.rstrip('/')}/_emulator/invoices/{invoice_id}/payments",
        data=json.dumps({"payment_method_type": "card"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 (the emulator's http URL)
        pass


def paid_then_refunded(po: PurchaseOrder, admin: Any) -> PurchaseOrder:
    po = _invoiced(po, admin)
    _card_payment(po.stripe_invoice_id)
    sync_stripe_invoice_status(po)
    row = record_request(
        purchase_order=po,
        kind=Kind.REFUND,
        amount=REFUND_AMOUNT,
        reason=REFUND_REASON,
        requested_by=admin,
    )
    process_refund_request(write_request=row)
    po.refresh_from_db()
    return po


def owes_less(po: PurchaseOrder, admin: Any) -> PurchaseOrder:
    po = _invoiced(po, admin)
    row = record_request(
        purchase_order=po,
        kind=Kind.REDUCE,
        amount=REDUCE_AMOUNT,
        reason=REDUCE_REASON,
        requested_by=admin,
    )
    process_reduce_request(write_request=row)
    po.refresh_from_db()
    return po


def owes_less_by_line(po: PurchaseOrder, admin: Any) -> PurchaseOrder:
    po = _invoiced(po, admin)
    row = record_request(
        purchase_order=po,
        kind=Kind.REDUCE,
        amount=None,
        lines=REDUCE_LINES,
        reason=REDUCE_LINES_REASON,
        requested_by=admin,
    )
    process_reduce_request(write_request=row)
    po.refresh_from_db()
    return po
