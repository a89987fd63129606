"""Every state change of a PO logs one structured line: PO, invoice and Stripe event where known."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from invoicing.logging import ScrubbingJsonFormatter, SecretScrubbingFilter
from invoicing.models import Conference, PurchaseOrder
from invoicing.services import purchase_orders
from invoicing.services.invoice_sync import handle_invoice_event
from invoicing.services.stripe_invoicing import create_stripe_invoice
from tests.core.conftest import MakePurchaseOrder
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines() -> Iterator[StringIO]:
    """The invoicing loggers' records, formatted as the JSON format of the settings does."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ScrubbingJsonFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(SecretScrubbingFilter())
    logger = logging.getLogger("invoicing")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def records(stream: StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_po_life_logs_each_change_with_its_po_invoice_and_event(
    json_lines: StringIO,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> None:
    key = stripe_conference.stripe_secret_key
    po = make_purchase_order(conference=stripe_conference, approve=False, reference="LOG-1")
    purchase_orders.approve_purchase_order(po)
    create_stripe_invoice(po)
    po.refresh_from_db()
    invoice_id = po.stripe_invoice_id

    stripe_emulator.pay_invoice(invoice_id, amount=100000, payment_method_type="us_bank_account")
    client = stripe_emulator.client(key)
    event = next(
        e
        for e in client.v1.events.list(params={"type": "invoice.updated"}).data
        if getattr(e.data.object, "amount_paid", None) == 100000
    )
    response = client.v1.events.retrieve(event.id).last_response
    assert response is not None
    payload = json.loads(response.body)  # the event as Stripe sent it
    handle_invoice_event(conference=stripe_conference, event=payload)
    purchase_orders.record_payment(
        po, amount=Decimal("250.00"), method="wire", payment_date=timezone.localdate()
    )

    lines = records(json_lines)
    changes = {str(line["event"]): line for line in lines if "event" in line}
    for name in (
        "po_created",
        "po_approved",
        "stripe_customer_created",
        "invoice_created",
        "invoice_lines_added",
        "invoice_finalized",
        "invoice_sent",
        "po_status_changed",
        "payment_recorded",
        "invoice_status_changed",
    ):
        assert name in changes, f"no {name} line in {sorted(changes)}"
    for line in lines:
        if "event" in line:
            assert line["po_reference"] == "LOG-1"
    for name in ("invoice_created", "invoice_lines_added", "invoice_finalized", "invoice_sent"):
        assert changes[name]["invoice_id"] == invoice_id
    # The webhook's payment and the status change it caused name the event.
    stripe_payment = next(
        line
        for line in lines
        if line.get("event") == "payment_recorded" and line["method"] == "stripe"
    )
    assert stripe_payment["invoice_id"] == invoice_id
    assert stripe_payment["stripe_event_id"] == event.id
    assert stripe_payment["amount"] == "1000.00 USD"
    to_partial = next(
        line
        for line in lines
        if line.get("event") == "po_status_changed" and line["to_status"] == "partially_paid"
    )
    assert to_partial["stripe_event_id"] == event.id
    assert to_partial["invoice_id"] == invoice_id
    wire = next(
        line
        for line in lines
        if line.get("event") == "payment_recorded" and line["method"] == "wire"
    )
    assert "invoice_id" not in wire  # a wire payment belongs to no invoice
    assert key not in json_lines.getvalue()


def test_cancelling_logs_who_and_why(
    json_lines: StringIO, make_purchase_order: MakePurchaseOrder, admin_user: User
) -> None:
    po = make_purchase_order(approve=False, reference="LOG-2")
    purchase_orders.cancel_purchase_order(po, cancelled_by=admin_user, reason="Duplicate PO")
    cancelled = next(line for line in records(json_lines) if line.get("event") == "po_cancelled")
    assert cancelled["po_reference"] == "LOG-2"
    assert cancelled["reason"] == "Duplicate PO"
    assert cancelled["cancelled_by"] == admin_user.pk
    assert PurchaseOrder.objects.get(pk=po.pk).status == "cancelled"
