"""A credit note on a paid invoice, made in the Stripe Dashboard (a plain stripe client against
the emulator, not our code), whose post-payment part goes to the customer's credit balance or is
paid back outside Stripe: that money leaves the PO, which Stripe considers settled, so the PO is
*paid*, not *overpaid*; by webhook through the live server and the real worker, and, with
webhooks dropped, by the next reconciliation.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services.reconciliation import reconcile_conference
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import wait_for, wait_for_events_settled, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.consistency import compare_with_stripe

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind


@pytest.fixture
def paid_po(
    stripe_emulator: EmulatorHandle,
    webhook_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> PurchaseOrder:
    """6,350.00 USD, invoiced by the worker and paid in full by card on the hosted page."""
    po = make_purchase_order(conference=webhook_conference)
    wait_for_status(po, Status.INVOICED)
    stripe_emulator.pay_invoice(po.stripe_invoice_id, payment_method_type="card")
    wait_for_status(po, Status.PAID)
    wait_for_events_settled(webhook_conference)
    po.refresh_from_db()
    return po


def moves(po: PurchaseOrder) -> list[tuple[str, Decimal]]:
    return [(row.kind, row.amount) for row in po.payments.exclude(kind=Kind.PAYMENT).order_by("pk")]


def test_a_dashboard_credit_note_to_the_balance_and_out_of_band_leaves_the_po_paid(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, paid_po: PurchaseOrder
) -> None:
    dashboard = stripe_emulator.client(stripe_secret_key)
    note = dashboard.v1.credit_notes.create(
        params={
            "invoice": paid_po.stripe_invoice_id,
            "amount": 100000,
            "credit_amount": 60000,
            "out_of_band_amount": 40000,
            "memo": "two seats fewer",
        }
    )
    assert (note.pre_payment_amount, note.post_payment_amount) == (0, 100000)
    wait_for(lambda: len(moves(paid_po)) == 2, message="the credit note never reached the PO")
    wait_for_events_settled(paid_po.conference)

    assert moves(paid_po) == [
        (Kind.TO_CREDIT_BALANCE, Decimal("-600.000")),
        (Kind.PAID_BACK_OFF_STRIPE, Decimal("-400.000")),
    ]
    paid_po.refresh_from_db()
    assert paid_po.amount_owed == paid_po.amount_received == Decimal("5350.000")
    assert paid_po.status == Status.PAID
    invoice = dashboard.v1.invoices.retrieve(paid_po.stripe_invoice_id, {"expand": ["customer"]})
    customer = invoice.customer
    assert isinstance(customer, stripe.Customer)
    assert customer.balance == -60000  # where the 600.00 went
    compare_with_stripe(emulator=stripe_emulator, conference=paid_po.conference).assert_consistent()


def test_with_webhooks_dropped_the_reconciliation_takes_the_money_off_the_po(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, paid_po: PurchaseOrder
) -> None:
    # The "Dashboard" is a raw client outside our limiter (see test_money_events).
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)
    dashboard = stripe_emulator.client(stripe_secret_key)
    assert reconcile_conference(conference=paid_po.conference).errors == 0  # sets the cursor
    stripe_emulator.configure(stripe_secret_key, webhook_drop_rate=1.0)

    invoice = paid_po.stripe_invoice_id
    dashboard.v1.credit_notes.create(
        params={"invoice": invoice, "amount": 35000, "credit_amount": 35000}
    )
    dashboard.v1.credit_notes.create(
        params={"invoice": invoice, "amount": 15000, "out_of_band_amount": 15000}
    )
    stripe_emulator.wait_for_deliveries(stripe_secret_key, timeout=10)
    wait_for_events_settled(paid_po.conference)
    assert moves(paid_po) == []  # nothing arrived
    report = compare_with_stripe(emulator=stripe_emulator, conference=paid_po.conference)
    assert any("credited to balance" in problem for problem in report.problems), report.problems

    summary = reconcile_conference(conference=paid_po.conference)
    assert summary.errors == 0, summary.error_samples
    assert sorted(moves(paid_po)) == [
        (Kind.PAID_BACK_OFF_STRIPE, Decimal("-150.000")),
        (Kind.TO_CREDIT_BALANCE, Decimal("-350.000")),
    ]
    assert "reconcile" in paid_po.payments.get(kind=Kind.TO_CREDIT_BALANCE).note
    paid_po.refresh_from_db()
    assert paid_po.amount_owed == paid_po.amount_received == Decimal("5850.000")
    assert paid_po.status == Status.PAID
    compare_with_stripe(emulator=stripe_emulator, conference=paid_po.conference).assert_consistent()

    assert reconcile_conference(conference=paid_po.conference).errors == 0
    assert len(moves(paid_po)) == 2
