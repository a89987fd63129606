"""Payments reach the PO through webhooks alone: the emulator signs and delivers every event to the
live test server, the view records and queues it, the real worker applies it.

Also the two ways webhooks fail in life: duplicated and reordered (the ledger stays exact), and
dropped (the beat's reconciliation repairs it, run by a real ``celery beat`` from its
django-celery-beat row).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from invoicing import money
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeEvent
from invoicing.services import ledger
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import PublishLog, wait_for_events_settled, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.processes import LoggedProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status


def stripe_ledger(po: PurchaseOrder) -> Decimal:
    return ledger.stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id)


def amount_paid_at_stripe(emulator: EmulatorHandle, key: str, po: PurchaseOrder) -> Decimal:
    invoice = emulator.client(key).v1.invoices.retrieve(po.stripe_invoice_id)
    return money.from_minor_units(invoice.amount_paid, po.currency)


@pytest.fixture
def invoiced_po(
    webhook_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    """Approved (the signal queues the creation, the worker sends the invoice): 6350.00 USD."""
    po = make_purchase_order(conference=webhook_conference)
    wait_for_status(po, Status.INVOICED)
    wait_for_events_settled(webhook_conference)  # invoice.created/finalized/sent...
    return po


def test_partial_ach_then_card_reach_the_po_through_webhooks_alone(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
    published: PublishLog,
) -> None:
    stripe_emulator.pay_invoice(
        invoiced_po.stripe_invoice_id, amount=200000, payment_method_type="us_bank_account"
    )
    wait_for_status(invoiced_po, Status.PARTIALLY_PAID)
    assert stripe_ledger(invoiced_po) == Decimal("2000.00")

    stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id, payment_method_type="card")
    wait_for_status(invoiced_po, Status.PAID)
    events = wait_for_events_settled(invoiced_po.conference)

    assert stripe_ledger(invoiced_po) == Decimal("6350.00")
    assert stripe_ledger(invoiced_po) == amount_paid_at_stripe(
        stripe_emulator, stripe_secret_key, invoiced_po
    )
    rows = PurchaseOrderPayment.objects.filter(purchase_order=invoiced_po).order_by("pk")
    assert [(row.amount, row.method) for row in rows] == [
        (Decimal("2000.00"), "stripe"),
        (Decimal("4350.00"), "stripe"),
    ]
    assert invoiced_po.stripe_invoice_status == "paid"
    assert {event.status for event in events} <= {"processed", "ignored"}
    assert {"invoice_payment.paid", "invoice.paid"} <= {event.type for event in events}
    # Webhooks alone: no sync or reconciliation task ran.
    assert not published.of("sync_purchase_order")
    assert not published.of("sync_conference_invoices")
    deliveries = stripe_emulator.deliveries(stripe_secret_key)
    assert deliveries
    assert all(delivery["status"] == 200 for delivery in deliveries)


def test_duplicated_and_reordered_webhooks_leave_the_ledger_equal_to_stripe(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    stripe_emulator.configure(
        stripe_secret_key, webhook_duplicate_rate=1.0, webhook_reorder_window=1.5, seed=5
    )
    for amount, method in (
        (100000, "us_bank_account"),
        (50000, "card"),
        (150000, "us_bank_account"),
        (None, "card"),
    ):
        stripe_emulator.pay_invoice(
            invoiced_po.stripe_invoice_id, amount=amount, payment_method_type=method
        )
    deliveries = stripe_emulator.wait_for_deliveries(stripe_secret_key, timeout=30)
    events = wait_for_events_settled(invoiced_po.conference)

    assert any(delivery["duplicate"] for delivery in deliveries)
    received = [d["event_id"] for d in deliveries if d["status"] == 200]
    assert len(received) > len(set(received))  # every event arrived at least twice
    assert StripeEvent.objects.filter(conference=invoiced_po.conference).count() == len(
        set(received)
    )
    assert {event.status for event in events} <= {"processed", "ignored"}
    invoiced_po.refresh_from_db()
    expected = amount_paid_at_stripe(stripe_emulator, stripe_secret_key, invoiced_po)
    assert expected == Decimal("6350.00")
    assert stripe_ledger(invoiced_po) == expected
    assert invoiced_po.status == Status.PAID
    # One ledger row per growth of amount_paid at most, each keyed by the amount it reached.
    rows = PurchaseOrderPayment.objects.filter(purchase_order=invoiced_po)
    afters = [row.stripe_amount_paid_after for row in rows]
    assert len(afters) == len(set(afters)) <= 4


def test_a_dropped_webhook_is_repaired_by_the_beat_reconciliation(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
    service_processes: Any,
) -> None:
    stripe_emulator.configure(stripe_secret_key, webhook_drop_rate=1.0)
    stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id)  # in full, by card
    stripe_emulator.wait_for_deliveries(stripe_secret_key, timeout=10)
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICED  # nothing arrived
    stripe_emulator.clear_requests(stripe_secret_key)

    beat: LoggedProcess = service_processes("beat", env={"RECONCILE_INTERVAL_SECONDS": "1"})
    wait_for_status(invoiced_po, Status.PAID, timeout=60)

    assert stripe_ledger(invoiced_po) == Decimal("6350.00")
    row = PeriodicTask.objects.get(name="sync-open-invoices")
    assert row.task == "workers.tasks.sync_open_invoices"
    assert row.interval is not None
    assert (row.interval.every, row.interval.period) == (1, "seconds")
    assert row.total_run_count >= 1 or "Sending due task sync-open-invoices" in beat.log_text()
    payment = PurchaseOrderPayment.objects.get(purchase_order=invoiced_po)
    assert "reconcile" in payment.note
    # Found through the events API and the open-invoice list, never a retrieve of the invoice.
    paths = {entry["path"] for entry in stripe_emulator.requests(stripe_secret_key)}
    assert "/v1/events" in paths
    assert f"/v1/invoices/{invoiced_po.stripe_invoice_id}" not in paths
