"""A voided invoice gives the credit balance it applied back to the customer (Stripe API changelog
2019-12-03), so the PO stops counting it as received: a re-issue does not carry it forward (Stripe
applies it again to the new invoice), and a cancelled PO shows nothing received from it. Against
the emulator, by our own void, re-issue and cancel, by webhooks and by reconciliation, twice.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
import stripe

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import (
    invoice_lifecycle,
    invoice_sync,
    off_stripe_reports,
    purchase_orders,
    reconciliation,
    stripe_invoicing,
)
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_stripe_invoicing import deliver_all, stripe_events
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.consistency import compare_with_stripe

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method
TODAY = datetime.date(2026, 12, 1)
CREDIT = Decimal("100.00")


def invoiced(make_purchase_order: MakePurchaseOrder, conference: Conference) -> PurchaseOrder:
    po = make_purchase_order(conference=conference)
    stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    return po


def balance(client: stripe.StripeClient, po: PurchaseOrder) -> int:
    """The customer's balance at Stripe (negative: a credit), read through the PO's invoice."""
    customer = client.v1.invoices.retrieve(po.stripe_invoice_id).customer
    found = client.v1.customers.retrieve(str(customer)).balance
    assert found is not None
    return found


def from_credit_balance(po: PurchaseOrder) -> Decimal:
    """What the PO counts as received from the customer's credit balance, net."""
    rows = po.payments.filter(method=Method.CREDIT_BALANCE)
    return sum((row.amount for row in rows), Decimal(0))


def assert_consistent(emulator: EmulatorHandle, conference: Conference) -> None:
    compare_with_stripe(emulator=emulator, conference=conference).assert_consistent()


@pytest.fixture
def with_credit(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> PurchaseOrder:
    """PO B, whose open invoice Stripe started from a 100.00 credit (PO A's overpayment)."""
    # The tests' own reads, full runs and comparisons come back to back, past the sandbox's 25
    # requests/s; what they check is the ledger, not the rate limit.
    stripe_emulator.configure(stripe_conference.stripe_secret_key, rate_limit=None)
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    first = invoiced(make_purchase_order, stripe_conference)
    wire = purchase_orders.record_payment(
        first,
        amount=first.total + CREDIT,
        method=Method.WIRE,
        payment_date=TODAY,
        overpayment_reason="Paid 100.00 too much",
    )
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    assert balance(client, first) == -10000
    po = invoiced(make_purchase_order, stripe_conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    assert (invoice.starting_balance, invoice.amount_due) == (-10000, 625000)
    assert from_credit_balance(po) == CREDIT
    assert po.status == Status.PARTIALLY_PAID
    return po


def test_a_reissue_counts_the_credit_balance_once_and_asks_for_the_rest(
    stripe_emulator: EmulatorHandle, stripe_conference: Conference, with_credit: PurchaseOrder
) -> None:
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    po, old = with_credit, with_credit.stripe_invoice_id

    invoice_lifecycle.reissue_stripe_invoice(po)

    po.refresh_from_db()
    assert client.v1.invoices.retrieve(old).status == "void"
    new = client.v1.invoices.retrieve(po.stripe_invoice_id)
    assert po.invoice_credit == 0  # nothing carried forward: Stripe applies the balance again
    assert not [line for line in new.lines.data if line.amount < 0]
    assert (new.starting_balance, new.amount_due, new.amount_remaining) == (
        -10000,
        625000,
        625000,
    )
    assert balance(client, po) == 0
    assert from_credit_balance(po) == CREDIT
    assert po.amount_received == CREDIT

    stripe_emulator.pay_invoice(po.stripe_invoice_id)
    stripe_invoicing.sync_stripe_invoice_status(po)
    po.refresh_from_db()
    assert po.status == Status.PAID
    assert po.amount_received == po.total
    assert_consistent(stripe_emulator, stripe_conference)


def test_cancel_leaves_the_credit_balance_with_the_customer(
    stripe_emulator: EmulatorHandle, stripe_conference: Conference, with_credit: PurchaseOrder
) -> None:
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    po = with_credit

    invoice_lifecycle.cancel_invoiced_purchase_order(po, reason="Event postponed")

    po.refresh_from_db()
    assert po.status == Status.CANCELLED
    assert from_credit_balance(po) == 0
    assert po.amount_received == 0
    assert balance(client, po) == -10000
    (returned,) = po.payments.filter(amount__lt=0)
    assert str(returned) == (
        f"100.00 USD back on the customer's credit balance at Stripe (invoice "
        f"{po.stripe_invoice_id} voided)"
    )
    assert_consistent(stripe_emulator, stripe_conference)


@pytest.mark.parametrize("path", ["webhooks", "reconciliation"])
def test_a_void_seen_twice_takes_the_credit_balance_off_once(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    with_credit: PurchaseOrder,
    path: str,
) -> None:
    key = stripe_conference.stripe_secret_key
    client = stripe_emulator.client(key)
    po = with_credit
    client.v1.invoices.void_invoice(po.stripe_invoice_id)  # in the Dashboard
    assert balance(client, po) == -10000

    for _ in range(2):
        if path == "webhooks":
            deliver_all(stripe_conference, stripe_events(stripe_emulator, key))
        else:
            reconciliation.reconcile_conference(conference=stripe_conference, full=True)
        po.refresh_from_db()
        assert po.status == Status.INVOICE_VOIDED
        assert from_credit_balance(po) == 0
        assert po.payments.filter(amount__lt=0).count() == 1

    invoice_lifecycle.reissue_stripe_invoice(po)
    po.refresh_from_db()
    new = client.v1.invoices.retrieve(po.stripe_invoice_id)
    assert new.amount_due == 625000
    assert po.invoice_credit == 0
    assert from_credit_balance(po) == CREDIT
    assert_consistent(stripe_emulator, stripe_conference)


def test_the_void_event_alone_records_and_returns_the_balance(
    stripe_emulator: EmulatorHandle, stripe_conference: Conference, with_credit: PurchaseOrder
) -> None:
    """A ledger that never saw the balance applied records it and its return from the void."""
    key = stripe_conference.stripe_secret_key
    po = with_credit
    po.payments.filter(method=Method.CREDIT_BALANCE).delete()
    stripe_emulator.client(key).v1.invoices.void_invoice(po.stripe_invoice_id)
    (voided,) = stripe_events(stripe_emulator, key, "invoice.voided")
    invoice_sync.handle_invoice_event(conference=stripe_conference, event=voided)
    po.refresh_from_db()
    assert sorted(po.payments.filter(method=Method.CREDIT_BALANCE).values_list("amount")) == [
        (Decimal("-100.000"),),
        (Decimal("100.000"),),
    ]
