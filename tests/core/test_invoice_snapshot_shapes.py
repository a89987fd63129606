"""Invoice snapshots no Stripe history can produce are refused before any write (issue 6, case 6).

Found by tests/reliability/test_bad_input.py: a negative amount, ``amount_paid`` over
``amount_due``, an unknown status, an amount beyond our money columns (a DataError at the
INSERT) and an event ``created`` that is no date (OverflowError) were applied or crashed. The
shapes real invoices do take (void with a partial payment, an overpayment Stripe declares, a
re-issued invoice's reduced amount_due) must keep passing.
"""

from __future__ import annotations

from typing import Any

import pytest

from invoicing.errors import EventRejected
from invoicing.models import PurchaseOrderPayment
from invoicing.services.invoice_snapshots import InvoiceSnapshot
from invoicing.services.invoice_sync import handle_invoice_event
from invoicing.services.ledger import apply_invoice_snapshot
from tests.core.conftest import MakePurchaseOrder


def invoice(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "in_shape",
        "object": "invoice",
        "status": "open",
        "currency": "usd",
        "livemode": False,
        "amount_due": 10_000,
        "amount_paid": 2_500,
        "amount_remaining": 7_500,
        "amount_overpaid": 0,
        "metadata": {},
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "fields",
    [
        {"amount_paid": -1},
        {"amount_due": -5, "amount_remaining": 0},
        {"amount_remaining": -1},
        {"amount_paid": 10_001, "amount_remaining": 0},
        {"amount_remaining": 10_001},
        {"status": "pending"},
        {"status": "PAID"},
    ],
)
def test_impossible_shapes_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(EventRejected):
        InvoiceSnapshot.from_payload(invoice(**fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "void", "amount_remaining": 0},  # voided after a partial payment
        {"status": "uncollectible"},
        {"status": "paid", "amount_paid": 10_000, "amount_remaining": 0},
        {"status": "paid", "amount_paid": 10_500, "amount_remaining": 0, "amount_overpaid": 500},
        {"status": "draft", "amount_due": 0, "amount_paid": 0, "amount_remaining": 0},
        {"amount_paid": 0, "amount_remaining": 10_000},
    ],
)
def test_shapes_real_invoices_take_pass(fields: dict[str, Any]) -> None:
    snapshot = InvoiceSnapshot.from_payload(invoice(**fields))
    assert snapshot.status == fields.get("status", "open")


@pytest.mark.django_db
def test_an_amount_beyond_the_money_columns_is_refused_before_any_write(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order()
    po.stripe_invoice_id = "in_shape"
    po.save(update_fields=["stripe_invoice_id"])
    huge = 10**13  # 100,000,000,000.00 USD: one more digit than DECIMAL(14, 3) holds
    with pytest.raises(EventRejected, match="beyond any PO"):
        apply_invoice_snapshot(
            purchase_order=po,
            invoice=invoice(amount_due=huge, amount_paid=huge, amount_remaining=0),
            source="test",
        )
    assert not PurchaseOrderPayment.objects.filter(purchase_order=po).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("created", [10**15, -(10**15)])
def test_an_event_created_at_no_date_is_refused(
    make_purchase_order: MakePurchaseOrder, created: int
) -> None:
    po = make_purchase_order()
    po.stripe_invoice_id = "in_shape"
    po.save(update_fields=["stripe_invoice_id"])
    event = {
        "id": "evt_shape",
        "type": "invoice.paid",
        "livemode": False,
        "created": created,
        "data": {"object": invoice()},
    }
    with pytest.raises(EventRejected, match="is no date"):
        handle_invoice_event(conference=po.conference, event=event)
    assert not PurchaseOrderPayment.objects.filter(purchase_order=po).exists()
