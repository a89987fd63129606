"""The ledger's off-Stripe half: what a view of an invoice says, and what is recorded from it.

Pure parsing first (no fakes: an invoice as Stripe serializes it), then the services against the
emulator, called directly (the worker's runs are in ``tests/pipeline/test_off_stripe_payments.py``).
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest

from invoicing.errors import EventRejected
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import invoice_sync, off_stripe_reports, purchase_orders
from invoicing.services.invoice_creation import create_stripe_invoice
from invoicing.services.invoice_snapshots import InvoiceSnapshot
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_stripe_invoicing import stripe_events
from tests.stripe_emulator.handle import EmulatorHandle

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method
TODAY = datetime.date(2026, 12, 1)


def payload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "in_test_1",
        "object": "invoice",
        "status": "open",
        "currency": "usd",
        "livemode": False,
        "amount_due": 635000,
        "amount_paid": 100000,
        "amount_remaining": 535000,
        "starting_balance": 0,
        "ending_balance": 0,
    }
    return {**base, **fields}


def test_a_view_says_what_was_paid_off_stripe_only_when_it_carries_it() -> None:
    assert InvoiceSnapshot.from_payload(payload()).paid_on_stripe is None  # an event's copy
    expanded = InvoiceSnapshot.from_payload(payload(amount_paid_off_stripe=30000))
    assert (expanded.amount_paid_off_stripe, expanded.paid_on_stripe) == (30000, 70000)
    for bad in (-1, 100001, "100", True):
        with pytest.raises(EventRejected, match="amount_paid_off_stripe"):
            InvoiceSnapshot.from_payload(payload(amount_paid_off_stripe=bad))


@pytest.mark.parametrize(
    ("starting", "ending", "applied"),
    [
        (-65000, 0, 65000),  # the credit paid part of the invoice
        (-800000, -165000, 635000),  # more credit than the invoice: the rest stays
        (0, 0, 0),
        (5000, 0, 0),  # a debt the customer owes is not a credit
        (-65000, None, 0),  # a draft: Stripe shows the live balance, nothing is applied yet
    ],
)
def test_the_credit_balance_applied_at_finalization(
    starting: int, ending: int | None, applied: int
) -> None:
    snapshot = InvoiceSnapshot.from_payload(
        payload(starting_balance=starting, ending_balance=ending)
    )
    assert snapshot.credit_balance_applied == applied


@pytest.mark.django_db
def test_an_event_without_the_split_is_retrieved_and_a_wire_never_counts_as_stripe(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    key = stripe_conference.stripe_secret_key
    po = make_purchase_order(conference=stripe_conference)
    create_stripe_invoice(po)
    po.refresh_from_db()
    wire = purchase_orders.record_payment(
        po, amount=Decimal("1000.00"), method=Method.WIRE, reference="W-1", payment_date=TODAY
    )
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    stripe_emulator.pay_invoice(po.stripe_invoice_id)  # the 5,350.00 that remains
    stripe_emulator.clear_requests(key)
    for event in stripe_events(stripe_emulator, key):
        invoice_sync.handle_invoice_event(conference=stripe_conference, event=event)
    retrieves = [
        r
        for r in stripe_emulator.requests(key)
        if r["method"] == "GET" and r["path"] == f"/v1/invoices/{po.stripe_invoice_id}"
    ]
    # The copies the events carry cannot tell the card from the wire: retrieves that can did.
    assert retrieves
    assert all(r["params"] == {"expand": {"0": "amount_paid_off_stripe"}} for r in retrieves)
    po.refresh_from_db()
    assert po.status == Status.PAID
    assert sorted(po.payments.values_list("method", "amount")) == [
        (Method.STRIPE, Decimal("5350.000")),
        (Method.WIRE, Decimal("1000.000")),
    ]


@pytest.mark.django_db
def test_a_wire_recorded_while_the_invoice_is_created_is_reported_once_it_is_sent(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    key = stripe_conference.stripe_secret_key
    po = make_purchase_order(conference=stripe_conference)  # approved; no invoice yet
    wire = purchase_orders.record_payment(
        po, amount=Decimal("1000.00"), method=Method.WIRE, reference="W-2", payment_date=TODAY
    )
    assert (wire.report_to_stripe, wire.applied_invoice_id) == (True, "")
    assert off_stripe_reports.report_off_stripe_payment(wire) is False  # waits for the invoice
    assert stripe_emulator.requests(key) == []
    create_stripe_invoice(po)
    po.refresh_from_db()
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    wire.refresh_from_db()
    assert wire.applied_invoice_id == po.stripe_invoice_id
    invoice = stripe_emulator.client(key).v1.invoices.retrieve(
        po.stripe_invoice_id, params={"expand": ["amount_paid_off_stripe"]}
    )
    assert (invoice.amount_paid_off_stripe, invoice.amount_remaining) == (100000, 535000)
    assert po.status == Status.PARTIALLY_PAID


@pytest.mark.django_db
def test_an_invoice_paid_by_card_before_the_attach_keeps_the_wire_out_of_it(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    create_stripe_invoice(po)
    po.refresh_from_db()
    wire = purchase_orders.record_payment(
        po, amount=Decimal("1000.00"), method=Method.WIRE, reference="W-3", payment_date=TODAY
    )
    stripe_emulator.pay_invoice(po.stripe_invoice_id)  # the company paid it all by card first
    assert off_stripe_reports.report_off_stripe_payment(wire) is False
    wire.refresh_from_db()
    assert wire.applied_invoice_id == ""
    assert "is paid and takes no more payments" in wire.stripe_report_error
    po.refresh_from_db()
    assert po.status == Status.OVERPAID  # 6,350 by card and 1,000 by wire: a refund is due
    assert off_stripe_reports.report_off_stripe_payment(wire) is False  # never tried again
