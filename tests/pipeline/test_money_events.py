"""Money going back reaches the PO whoever moved it: refunds made in the Stripe Dashboard (here:
straight through the emulator's API with a plain stripe client, not our code), disputes the card
network opens and decides, credit notes; by webhook through the live server, the inbox and the
real worker, and, with webhooks dropped, by the next reconciliation.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderDispute,
    PurchaseOrderPayment,
)
from invoicing.services.reconciliation import reconcile_conference
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import wait_for, wait_for_events_settled, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.consistency import compare_with_stripe

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind


@pytest.fixture
def invoiced_po(
    webhook_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    """Approved (the worker sends the invoice by itself): 6350.00 USD."""
    po = make_purchase_order(conference=webhook_conference)
    wait_for_status(po, Status.INVOICED)
    wait_for_events_settled(webhook_conference)
    return po


def pay(emulator: EmulatorHandle, po: PurchaseOrder, amount: int | None, method: str) -> str:
    """The customer pays; returns the PaymentIntent behind the invoice payment."""
    paid = emulator.pay_invoice(po.stripe_invoice_id, amount=amount, payment_method_type=method)
    intent: str = paid["invoice_payment"]["payment"]["payment_intent"]
    return intent


def received(po: PurchaseOrder) -> Decimal:
    return PurchaseOrder.objects.get(pk=po.pk).amount_received


def kinds(po: PurchaseOrder) -> list[tuple[str, Decimal]]:
    return [(row.kind, row.amount) for row in po.payments.order_by("pk")]


def test_a_dashboard_refund_and_a_lost_dispute_reach_the_po_by_webhook(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    dashboard = stripe_emulator.client(stripe_secret_key)  # not our code: the Dashboard
    intent = pay(stripe_emulator, invoiced_po, None, "card")
    wait_for_status(invoiced_po, Status.PAID)

    refund = dashboard.v1.refunds.create(
        params={"payment_intent": intent, "amount": 100000, "reason": "requested_by_customer"}
    )
    wait_for(lambda: received(invoiced_po) == Decimal("5350.00"), message="refund never arrived")
    invoiced_po.refresh_from_db()  # what was given back is owed no more: still paid
    assert invoiced_po.status == Status.PAID
    assert invoiced_po.balance_due == 0

    charge = dashboard.v1.payment_intents.retrieve(intent).latest_charge
    dispute_id = stripe_emulator.open_dispute(str(charge), reason="fraudulent")["dispute"]["id"]
    wait_for(lambda: PurchaseOrder.objects.get(pk=invoiced_po.pk).has_open_dispute)
    stripe_emulator.close_dispute(dispute_id, won=False)
    wait_for_status(invoiced_po, Status.REFUNDED)
    wait_for(lambda: not PurchaseOrder.objects.get(pk=invoiced_po.pk).has_open_dispute)
    events = wait_for_events_settled(invoiced_po.conference)

    assert kinds(invoiced_po) == [
        (Kind.PAYMENT, Decimal("6350.000")),
        (Kind.REFUND, Decimal("-1000.000")),
        (Kind.DISPUTE, Decimal("-5350.000")),
    ]
    entries = PurchaseOrderPayment.objects.filter(purchase_order=invoiced_po)
    assert {row.stripe_invoice_id for row in entries} == {invoiced_po.stripe_invoice_id}
    assert entries.get(kind=Kind.REFUND).stripe_object_id == refund.id
    assert PurchaseOrderDispute.objects.get(purchase_order=invoiced_po).status == "lost"
    assert {event.status for event in events} <= {"processed", "ignored"}
    handled = {event.type for event in events if event.status == "processed"}
    assert {"refund.created", "charge.refunded", "charge.dispute.closed"} <= handled
    compare_with_stripe(
        emulator=stripe_emulator, conference=invoiced_po.conference
    ).assert_consistent()


def test_a_dashboard_credit_note_lowers_what_is_owed_and_a_failed_ach_refund_gives_it_back(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    dashboard = stripe_emulator.client(stripe_secret_key)
    intent = pay(stripe_emulator, invoiced_po, 200000, "us_bank_account")
    wait_for_status(invoiced_po, Status.PARTIALLY_PAID)
    note = dashboard.v1.credit_notes.create(
        params={"invoice": invoiced_po.stripe_invoice_id, "amount": 100000, "memo": "booth smaller"}
    )
    wait_for(lambda: PurchaseOrderCredit.objects.filter(stripe_credit_note_id=note.id).exists())
    pay(stripe_emulator, invoiced_po, None, "card")  # the remaining 3350.00
    wait_for_status(invoiced_po, Status.PAID)
    credit = PurchaseOrderCredit.objects.get(purchase_order=invoiced_po)
    assert (credit.amount, credit.purpose) == (Decimal("1000.000"), "external")

    ach_refund = dashboard.v1.refunds.create(params={"payment_intent": intent, "amount": 50000})
    assert ach_refund.status == "pending"
    stripe_emulator.fail_refund(ach_refund.id)
    wait_for(
        lambda: PurchaseOrderPayment.objects.filter(kind=Kind.REFUND_REVERSAL).exists(),
        message="the failed refund never arrived",
    )
    wait_for_events_settled(invoiced_po.conference)
    invoiced_po.refresh_from_db()
    assert invoiced_po.amount_received == Decimal("5350.000")
    assert invoiced_po.status == Status.PAID
    compare_with_stripe(
        emulator=stripe_emulator, conference=invoiced_po.conference
    ).assert_consistent()


def test_with_webhooks_dropped_the_next_reconciliation_brings_refunds_disputes_and_credits(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    # The "Dashboard" here is a raw client firing back to back, outside our limiter: the
    # sandbox's 25 requests/s would answer it 429, which the Dashboard itself never meets.
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)
    dashboard = stripe_emulator.client(stripe_secret_key)
    card = pay(stripe_emulator, invoiced_po, 300000, "card")
    wait_for_status(invoiced_po, Status.PARTIALLY_PAID)
    first = reconcile_conference(conference=invoiced_po.conference)  # sets the cursor
    assert first.errors == 0
    stripe_emulator.configure(stripe_secret_key, webhook_drop_rate=1.0)

    dashboard.v1.credit_notes.create(
        params={"invoice": invoiced_po.stripe_invoice_id, "amount": 35000}
    )
    dashboard.v1.refunds.create(params={"payment_intent": card, "amount": 50000})
    charge = str(dashboard.v1.payment_intents.retrieve(card).latest_charge)
    dispute = stripe_emulator.open_dispute(charge, amount=100000)["dispute"]["id"]
    stripe_emulator.close_dispute(dispute, won=False)
    stripe_emulator.wait_for_deliveries(stripe_secret_key, timeout=10)
    wait_for_events_settled(invoiced_po.conference)
    assert received(invoiced_po) == Decimal("3000.000")  # nothing arrived

    summary = reconcile_conference(conference=invoiced_po.conference)
    assert summary.errors == 0, summary.error_samples
    invoiced_po.refresh_from_db()
    assert invoiced_po.amount_received == Decimal("1500.000")
    assert invoiced_po.amount_credited == Decimal("350.000")
    assert PurchaseOrderDispute.objects.get(purchase_order=invoiced_po).status == "lost"
    assert invoiced_po.status == Status.PARTIALLY_PAID
    assert "reconcile" in invoiced_po.payments.get(kind=Kind.REFUND).note
    compare_with_stripe(
        emulator=stripe_emulator, conference=invoiced_po.conference
    ).assert_consistent()

    again = reconcile_conference(conference=invoiced_po.conference)
    assert again.errors == 0
    assert kinds(invoiced_po) == kinds(PurchaseOrder.objects.get(pk=invoiced_po.pk))
    assert invoiced_po.payments.count() == 3


def test_a_refund_on_another_apps_charge_is_ignored(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, webhook_conference: Conference
) -> None:
    """An invoice no PO of ours has (another app on the same account): its refund is not ours."""
    client = stripe_emulator.client(stripe_secret_key)
    customer = client.v1.customers.create(params={"email": "x@example.com"})
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 3}
    )
    client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": invoice.id, "amount": 5000, "currency": "usd"}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = stripe_emulator.pay_invoice(str(invoice.id))
    client.v1.refunds.create(
        params={"payment_intent": paid["invoice_payment"]["payment"]["payment_intent"]}
    )
    stripe_emulator.wait_for_deliveries(stripe_secret_key, timeout=10)
    events = wait_for_events_settled(webhook_conference)
    refund_events = [event for event in events if event.type.startswith(("refund.", "charge."))]
    assert refund_events
    assert {event.status for event in refund_events} == {"ignored"}
    assert not PurchaseOrderPayment.objects.filter(kind=Kind.REFUND).exists()
