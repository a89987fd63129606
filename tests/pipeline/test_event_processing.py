"""Worker-side processing of the inbox: claim once, dispatch by type, settle with retries; replay.

Events are recorded with the view's own service (``record_stripe_event``), which queues them after
commit; the session's embedded worker processes them. Faults come from the emulator.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.contrib.admin.sites import site
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from invoicing.models import Conference, PurchaseOrder, StripeEvent
from invoicing.services import ledger, stripe_events, webhook_intake
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.core.test_stripe_invoicing import stripe_events as emulator_events
from tests.pipeline.conftest import PublishLog, wait_for, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from workers import webhook_publisher

pytestmark = pytest.mark.django_db(transaction=True)

Status = PurchaseOrder.Status
EventStatus = StripeEvent.Status
PROCESS = "process_stripe_event"


def record(conference: Conference, event: dict[str, Any]) -> StripeEvent:
    # As a webhook delivers it: JSON (stripe-python's to_dict() holds Decimals for *_decimal).
    event = json.loads(json.dumps(event, default=str))
    return webhook_intake.record_stripe_event(conference=conference, event=event).stripe_event


def plain_event(event_id: str) -> dict[str, Any]:
    """An event of a type the pipeline does not act on."""
    return {
        "id": event_id,
        "object": "event",
        "type": "customer.created",
        "livemode": False,
        "created": 1,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }


def settled(row: StripeEvent, *, timeout: float = 30) -> StripeEvent:
    def done() -> bool:
        row.refresh_from_db()
        return row.status in {EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.FAILED}

    wait_for(done, timeout=timeout, message=f"event {row.stripe_event_id} stayed {row.status}")
    return row


@pytest.fixture
def invoiced_po(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder, celery_worker: Any
) -> PurchaseOrder:
    po = make_purchase_order(conference=stripe_conference)  # the worker creates the invoice
    return wait_for_status(po, Status.INVOICED)


def payment_event(
    emulator: EmulatorHandle, key: str, po: PurchaseOrder, amount: int
) -> dict[str, Any]:
    emulator.pay_invoice(po.stripe_invoice_id, amount=amount)
    (event,) = emulator_events(emulator, key, "invoice_payment.paid")[-1:]
    return event


@pytest.mark.usefixtures("celery_worker")
def test_an_event_type_we_do_not_handle_is_ignored(
    stripe_conference: Conference, published: PublishLog
) -> None:
    row = settled(
        record(
            stripe_conference,
            plain_event("evt_ignored_1"),
        )
    )
    assert row.status == EventStatus.IGNORED
    assert (row.attempts, row.last_error) == (1, "")
    assert row.processed_at is not None
    assert len(published.of(PROCESS, row.pk)) == 1


def test_a_payment_event_is_applied_once(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
) -> None:
    event = payment_event(stripe_emulator, stripe_secret_key, invoiced_po, 120000)
    row = settled(record(invoiced_po.conference, event))
    assert row.status == EventStatus.PROCESSED
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PARTIALLY_PAID
    # Recording the same event again adds nothing and processes nothing.
    again = webhook_intake.record_stripe_event(conference=invoiced_po.conference, event=event)
    assert not again.created
    assert ledger.stripe_paid_total(
        invoiced_po, stripe_invoice_id=invoiced_po.stripe_invoice_id
    ) == Decimal("1200.00")


def test_transient_stripe_failures_are_retried_with_backoff(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
    published: PublishLog,
) -> None:
    """invoice_payment.paid retrieves the invoice: a 500 then a 429 lock_timeout, then success."""
    event = payment_event(stripe_emulator, stripe_secret_key, invoiced_po, 100000)
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[
            {"error": "500", "method": "GET", "path": "^/v1/invoices/in_"},
            {"error": "lock_timeout", "method": "GET", "path": "^/v1/invoices/in_"},
        ],
    )
    row = settled(record(invoiced_po.conference, event))
    assert row.status == EventStatus.PROCESSED
    assert row.attempts == 3
    assert row.last_error == ""
    assert len(published.of(PROCESS, row.pk)) == 3  # the first message and two retries
    statuses = [
        entry["status"]
        for entry in stripe_emulator.requests(stripe_secret_key)
        if entry["path"] == f"/v1/invoices/{invoiced_po.stripe_invoice_id}"
    ]
    assert statuses[-3:] == [500, 429, 200]
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PARTIALLY_PAID


def test_retries_stop_after_the_budget_and_the_event_is_parked_as_failed(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
    settings: Any,
    published: PublishLog,
) -> None:
    settings.STRIPE_EVENT_MAX_ATTEMPTS = 3
    event = payment_event(stripe_emulator, stripe_secret_key, invoiced_po, 100000)
    stripe_emulator.configure(stripe_secret_key, error_rate=1.0, errors=["500"])
    try:
        row = settled(record(invoiced_po.conference, event))
    finally:
        stripe_emulator.configure(stripe_secret_key, error_rate=0.0)
    assert row.status == EventStatus.FAILED
    assert row.attempts == 3
    assert "APIError 500" in row.last_error
    assert row.next_attempt_at is None
    assert len(published.of(PROCESS, row.pk)) == 3
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICED

    # Replayed once Stripe is healthy again: processed, with a fresh budget.
    result = stripe_events.replay_stripe_events(failed=True)
    assert result.replayed == [row.stripe_event_id]
    row = settled(row)
    assert (row.status, row.attempts, row.last_error) == (EventStatus.PROCESSED, 1, "")
    wait_for_status(invoiced_po, Status.PARTIALLY_PAID)


def test_a_rejected_event_fails_at_once_without_retry(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
    make_conference: MakeConference,
    published: PublishLog,
) -> None:
    """An event about conference A's invoice, arriving at conference B: refused, parked, visible."""
    other = make_conference(secret_key=stripe_emulator.new_secret_key())
    event = payment_event(stripe_emulator, stripe_secret_key, invoiced_po, 100000)
    (paid_update,) = [
        e
        for e in emulator_events(stripe_emulator, stripe_secret_key, "invoice.updated")
        if e["data"]["object"]["amount_paid"] == 100000
    ]
    row = settled(record(other, paid_update))
    assert row.status == EventStatus.FAILED
    assert row.attempts == 1
    assert "EventRejected" in row.last_error
    assert len(published.of(PROCESS, row.pk)) == 1
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICED
    assert event["type"] == "invoice_payment.paid"


def test_stripe_refusing_the_request_is_permanent(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    invoiced_po: PurchaseOrder,
    published: PublishLog,
) -> None:
    """A 404 from Stripe (InvalidRequestError) will not change on retry: failed after one try."""
    event = payment_event(stripe_emulator, stripe_secret_key, invoiced_po, 100000)
    PurchaseOrder.objects.filter(pk=invoiced_po.pk).update(stripe_invoice_id="in_gone_missing")
    event["data"]["object"]["invoice"] = "in_gone_missing"
    event["id"] = "evt_missing_invoice"
    row = settled(record(invoiced_po.conference, event))
    assert row.status == EventStatus.FAILED
    assert row.attempts == 1
    assert "InvalidRequestError 404" in row.last_error
    assert len(published.of(PROCESS, row.pk)) == 1


def _visible_elsewhere(event_id: str) -> bool:
    """Whether another database connection (a worker's) sees the inbox row now."""
    seen: list[bool] = []

    def look() -> None:
        try:
            seen.append(StripeEvent.objects.filter(stripe_event_id=event_id).exists())
        finally:
            connection.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(timeout=10)
    return seen == [True]


@pytest.mark.usefixtures("embedded_worker_paused")
def test_the_inbox_row_is_committed_before_its_message_is_published(
    stripe_conference: Conference,
) -> None:
    """Outside a transaction the INSERT commits on its own (one round trip for the view), and
    the publish comes after it: a worker handed the message finds the row."""
    visible_at_publish: list[bool] = []

    def at_publish(sender: str | None = None, body: Any = None, **_: Any) -> None:
        if sender == f"workers.tasks.{PROCESS}":
            visible_at_publish.append(_visible_elsewhere("evt_commit_first"))

    before_task_publish.connect(at_publish, weak=False)
    try:
        row = record(stripe_conference, plain_event("evt_commit_first"))
        assert webhook_publisher.wait_for_published(10)  # the publisher thread has sent it
    finally:
        before_task_publish.disconnect(at_publish)
    assert visible_at_publish == [True]
    assert row.status == EventStatus.PENDING


@pytest.mark.usefixtures("embedded_worker_paused")
def test_recording_inside_a_transaction_publishes_at_its_commit_and_survives_a_duplicate(
    stripe_conference: Conference, published: PublishLog
) -> None:
    """A caller's transaction: the row is queued when that transaction commits, and a duplicate
    (``ON CONFLICT DO NOTHING`` on the unique id) inserts nothing and leaves the caller's work."""
    with transaction.atomic():
        row = record(stripe_conference, plain_event("evt_in_caller_tx"))
        again = webhook_intake.record_stripe_event(
            conference=stripe_conference, event=plain_event("evt_in_caller_tx")
        )
        assert not again.created
        assert again.stripe_event.pk == row.pk
        assert published.of(PROCESS) == []
        assert not _visible_elsewhere("evt_in_caller_tx")
        # The caller's transaction is still usable after the refused INSERT.
        assert StripeEvent.objects.filter(pk=row.pk).exists()
    assert [m.args for m in published.of(PROCESS)] == [(row.pk,)]
    assert _visible_elsewhere("evt_in_caller_tx")


@pytest.mark.usefixtures("embedded_worker_paused")
def test_two_workers_claiming_one_event_process_it_once(
    stripe_conference: Conference,
) -> None:
    row = record(
        stripe_conference,
        plain_event("evt_claim_race"),
    )
    barrier = threading.Barrier(8)
    results: list[stripe_events.ProcessResult] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(stripe_events.process_stripe_event(stripe_event_id=row.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    assert sum(not result.skipped for result in results) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == (EventStatus.IGNORED, 1)


@pytest.mark.usefixtures("embedded_worker_paused")
def test_reenqueue_queues_due_and_abandoned_events_once_per_period(
    stripe_conference: Conference, published: PublishLog, settings: Any
) -> None:
    def event(event_id: str) -> dict[str, Any]:
        return {
            "id": event_id,
            "object": "event",
            "type": "customer.created",
            "livemode": False,
            "created": 1,
            "data": {"object": {"id": "cus_1"}},
        }

    now = timezone.now()
    fresh = record(stripe_conference, plain_event("evt_fresh"))  # queued, not yet due again
    lost = record(stripe_conference, plain_event("evt_lost"))
    StripeEvent.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(seconds=1))
    abandoned = record(stripe_conference, plain_event("evt_abandoned"))
    StripeEvent.objects.filter(pk=abandoned.pk).update(
        status=EventStatus.PROCESSING, attempts=1, next_attempt_at=now - timedelta(seconds=1)
    )
    running = record(stripe_conference, plain_event("evt_running"))
    StripeEvent.objects.filter(pk=running.pk).update(
        status=EventStatus.PROCESSING, attempts=1, next_attempt_at=now + timedelta(minutes=5)
    )
    done = record(stripe_conference, plain_event("evt_done"))
    StripeEvent.objects.filter(pk=done.pk).update(status=EventStatus.PROCESSED)
    before = {pk: len(published.of(PROCESS, pk)) for pk in (fresh.pk, lost.pk, abandoned.pk)}

    assert stripe_events.reenqueue_pending_stripe_events() == 2
    assert stripe_events.reenqueue_pending_stripe_events() == 0  # not again within the period
    assert len(published.of(PROCESS, lost.pk)) == before[lost.pk] + 1
    assert len(published.of(PROCESS, abandoned.pk)) == before[abandoned.pk] + 1
    assert len(published.of(PROCESS, fresh.pk)) == before[fresh.pk]
    assert not published.of(PROCESS, running.pk)[1:]
    abandoned.refresh_from_db()
    assert abandoned.status == EventStatus.PENDING  # its claim was dead: anyone may take it
    assert abandoned.next_attempt_at is not None
    assert abandoned.next_attempt_at > now + timedelta(
        seconds=settings.STRIPE_EVENT_REENQUEUE_AFTER_SECONDS - 5
    )
    # The abandoned one is processed by whoever takes it now.
    result = stripe_events.process_stripe_event(stripe_event_id=abandoned.pk)
    assert result.status == EventStatus.IGNORED


@pytest.mark.usefixtures("embedded_worker_paused")
def test_replay_command_inline_and_queued(
    stripe_conference: Conference, published: PublishLog, capsys: Any
) -> None:
    failed = record(
        stripe_conference,
        plain_event("evt_failed_cmd"),
    )
    StripeEvent.objects.filter(pk=failed.pk).update(
        status=EventStatus.FAILED, attempts=10, last_error="boom"
    )
    call_command("replay_stripe_events", "--failed", "--inline")
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == (EventStatus.IGNORED, 1, "")
    assert "evt_failed_cmd: ignored" in capsys.readouterr().out

    queued_before = len(published.of(PROCESS, failed.pk))
    call_command("replay_stripe_events", "evt_failed_cmd")
    failed.refresh_from_db()
    assert failed.status == EventStatus.PENDING
    assert len(published.of(PROCESS, failed.pk)) == queued_before + 1

    with pytest.raises(CommandError, match="not found"):
        call_command("replay_stripe_events", "evt_never_seen")
    with pytest.raises(CommandError, match="Give event ids"):
        call_command("replay_stripe_events")
    with pytest.raises(CommandError, match="Not Stripe event ids"):
        call_command("replay_stripe_events", "123")


@pytest.mark.usefixtures("celery_worker")
def test_replay_from_the_admin(
    stripe_conference: Conference, admin_client: Client, settings: Any, tmp_path: Any
) -> None:
    settings.STATIC_ROOT = tmp_path
    assert StripeEvent in site._registry
    row = settled(
        record(
            stripe_conference,
            plain_event("evt_admin_replay"),
        )
    )
    StripeEvent.objects.filter(pk=row.pk).update(status=EventStatus.FAILED, last_error="boom")
    response = admin_client.post(
        reverse("admin:invoicing_stripeevent_changelist"),
        {"action": "replay_selected", "_selected_action": [str(row.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 event(s) queued again" in response.content.decode()
    row = settled(row)
    assert (row.status, row.last_error) == (EventStatus.IGNORED, "")
