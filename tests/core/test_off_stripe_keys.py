"""An off-Stripe report survives a poisoned idempotency key and still reaches Stripe once.

Stripe saves a 5xx under the request's key and replays it for a day, and a 5xx does not say
whether the write happened: the emulator's ``500`` executes nothing, ``500_after_commit``
executes and then answers 500. The services run directly against the emulator (the worker's
retries of the same function are in ``tests/pipeline/test_off_stripe_payments.py``).
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
import stripe

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import off_stripe_reports, purchase_orders
from invoicing.services.invoice_creation import create_stripe_invoice
from tests.core.conftest import MakePurchaseOrder
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

Method = PurchaseOrderPayment.Method
TODAY = datetime.date(2026, 12, 1)


def wire_on_invoice(
    make_purchase_order: MakePurchaseOrder, conference: Conference
) -> tuple[PurchaseOrder, PurchaseOrderPayment]:
    """A 1,000.00 wire counted against the PO's sent 6,350.00 invoice, not reported yet."""
    po = make_purchase_order(conference=conference)
    create_stripe_invoice(po)
    po.refresh_from_db()
    wire = purchase_orders.record_payment(
        po, amount=Decimal("1000.00"), method=Method.WIRE, reference="W-9", payment_date=TODAY
    )
    return po, wire


def fail_next(emulator: EmulatorHandle, key: str, error: str, path: str) -> None:
    emulator.configure(key, fail_next=[{"error": error, "method": "POST", "path": path}])


def at_stripe(emulator: EmulatorHandle, key: str, po: PurchaseOrder) -> tuple[int, int, int]:
    """(payment records, records among the invoice's payments, amount_paid_off_stripe)."""
    client = emulator.client(key)
    records = client.v1.payment_records.list({"limit": 100}).data
    attached = client.v1.invoice_payments.list(
        {"invoice": po.stripe_invoice_id, "payment": {"type": "payment_record"}, "limit": 100}
    ).data
    invoice = client.v1.invoices.retrieve(
        po.stripe_invoice_id, params={"expand": ["amount_paid_off_stripe"]}
    )
    return len(records), len(attached), invoice.amount_paid_off_stripe or 0


@pytest.mark.parametrize("step", ["/report_payment$", "/attach_payment$"])
def test_a_5xx_moves_the_key_once_stripe_shows_nothing_happened_and_the_retry_reports_once(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    step: str,
) -> None:
    key = stripe_conference.stripe_secret_key
    po, wire = wire_on_invoice(make_purchase_order, stripe_conference)
    fail_next(stripe_emulator, key, "500", step)

    with pytest.raises(stripe.APIError):
        off_stripe_reports.report_off_stripe_payment(wire)
    wire.refresh_from_db()
    assert (wire.key_epoch, wire.stripe_attached_at) == (1, None)

    # Under the old key Stripe would answer the same 500 all day; the fresh one goes through.
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    wire.refresh_from_db()
    assert wire.stripe_attached_at is not None
    assert at_stripe(stripe_emulator, key, po) == (1, 1, 100000)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.PARTIALLY_PAID


@pytest.mark.parametrize("step", ["/report_payment$", "/attach_payment$"])
def test_a_5xx_for_a_write_that_happened_carries_on_with_it_under_the_same_key(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    step: str,
) -> None:
    key = stripe_conference.stripe_secret_key
    po, wire = wire_on_invoice(make_purchase_order, stripe_conference)
    fail_next(stripe_emulator, key, "500_after_commit", step)

    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    wire.refresh_from_db()
    assert wire.key_epoch == 0  # the write was found: no fresh key, so no second report
    assert wire.stripe_payment_record_id.startswith("pr_")
    assert at_stripe(stripe_emulator, key, po) == (1, 1, 100000)
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    assert at_stripe(stripe_emulator, key, po) == (1, 1, 100000)


@pytest.mark.parametrize("key_expired", [False, True], ids=["within_a_day", "key_expired"])
def test_a_crash_after_stripe_recorded_the_report_still_reports_once(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    key_expired: bool,
) -> None:
    key = stripe_conference.stripe_secret_key
    po, wire = wire_on_invoice(make_purchase_order, stripe_conference)
    fail_next(stripe_emulator, key, "reset_after_commit", "/report_payment$")

    with pytest.raises(stripe.APIConnectionError):  # recorded at Stripe, the answer lost
        off_stripe_reports.report_off_stripe_payment(wire)
    wire.refresh_from_db()
    assert wire.stripe_payment_record_id == ""
    if key_expired:  # the retry comes after Stripe forgot the key
        stripe_emulator.advance_clock(25 * 3600, secret_key=key)
        PurchaseOrderPayment.objects.filter(pk=wire.pk).update(
            recorded_at=wire.recorded_at - datetime.timedelta(hours=25)
        )

    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    assert at_stripe(stripe_emulator, key, po) == (1, 1, 100000)
