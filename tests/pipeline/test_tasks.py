"""The tasks' failure policy against the emulator's faults, through the real worker.

Transient failures are retried with backoff and the PO shows the error meanwhile; permanent ones
are recorded where the organizer sees them and stop; success clears the error. The resume task
picks up what ran out of retries. Staff actions (void, re-issue, cancel) and the single-PO sync run
as tasks, as the admin queues them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from celery.signals import task_postrun

from invoicing.models import Conference, PurchaseOrder
from invoicing.services import ledger, purchase_orders
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.pipeline.conftest import PublishLog, wait_for, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from workers import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
CREATE = "create_invoice_for_purchase_order"


def sent_invoices(emulator: EmulatorHandle, key: str) -> list[Any]:
    return [
        invoice
        for invoice in emulator.client(key).v1.invoices.list({"limit": 100}).data
        if invoice.status != "draft"
    ]


def wait_for_error(po: PurchaseOrder, text: str, *, timeout: float = 30) -> PurchaseOrder:
    def recorded() -> bool:
        po.refresh_from_db()
        return text in po.invoice_error

    wait_for(recorded, timeout=timeout, message=f"no error {text!r} on {po.reference}")
    return po


def wait_for_error_cleared(po: PurchaseOrder, *, timeout: float = 30) -> PurchaseOrder:
    """The task clears the PO's error just after the service returns, which commits the status
    first: a test that saw the status must wait for the clear too."""

    def cleared() -> bool:
        po.refresh_from_db()
        return po.invoice_error == ""

    wait_for(cleared, timeout=timeout, message=f"error never cleared on {po.reference}")
    return po


def test_a_transient_failure_is_retried_and_the_error_cleared(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
) -> None:
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[
            {"error": "500", "method": "POST", "path": "/finalize$"},
            {"error": "connection_reset", "method": "POST", "path": "/send$"},
        ],
    )
    po = make_purchase_order(conference=stripe_conference)
    wait_for_error_cleared(wait_for_status(po, Status.INVOICED))
    assert (po.invoice_error, po.invoice_error_at, po.invoice_creation_blocked) == ("", None, False)
    assert len(published.of(CREATE, po.pk)) == 3  # approval + two retries
    (invoice,) = sent_invoices(stripe_emulator, stripe_secret_key)
    assert invoice.id == po.stripe_invoice_id
    statuses = [(e["path"].rsplit("/", 1)[-1], e["status"]) for e in stripe_emulator.requests(
        stripe_secret_key) if e["method"] == "POST"]  # fmt: skip
    assert ("finalize", 500) in statuses
    assert ("finalize", 200) in statuses
    assert ("send", 200) in statuses


def test_a_permanent_failure_is_recorded_and_not_retried(
    stripe_emulator: EmulatorHandle,
    settings: Any,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
) -> None:
    """Stripe refuses the key (401): retrying cannot help; the organizer must fix the key."""
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    conference = make_conference(secret_key="sk_test_revoked-key")
    po = make_purchase_order(conference=conference)
    wait_for_error(po, "AuthenticationError 401")
    assert po.invoice_error.startswith("Invoice creation failed: Stripe AuthenticationError 401")
    assert po.invoice_creation_blocked is True
    assert "revoked-key" not in po.invoice_error
    assert po.status == Status.APPROVED
    assert len(published.of(CREATE, po.pk)) == 1
    # The resume task leaves a blocked PO alone.
    settings.INVOICE_CREATION_GRACE_SECONDS = 0
    assert tasks.resume_stalled_invoice_creation() == 0


def test_retries_run_out_then_the_resume_task_finishes_the_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
    settings: Any,
) -> None:
    settings.TASK_MAX_RETRIES = 2
    stripe_emulator.configure(
        stripe_secret_key, error_rate=1.0, errors=["429"], error_methods=["POST"]
    )
    po = make_purchase_order(conference=stripe_conference)
    wait_for_error(po, "after 2 retries")
    assert "RateLimitError 429" in po.invoice_error
    assert po.invoice_creation_blocked is False
    assert len(published.of(CREATE, po.pk)) == 3
    assert sent_invoices(stripe_emulator, stripe_secret_key) == []

    stripe_emulator.configure(stripe_secret_key, error_rate=0.0)
    settings.INVOICE_CREATION_GRACE_SECONDS = 3600
    assert tasks.resume_stalled_invoice_creation() == 0  # touched moments ago: not idle yet
    settings.INVOICE_CREATION_GRACE_SECONDS = 0
    assert tasks.resume_stalled_invoice_creation() == 1
    wait_for_error_cleared(wait_for_status(po, Status.INVOICED))
    assert len(sent_invoices(stripe_emulator, stripe_secret_key)) == 1


def test_a_task_for_work_already_done_is_a_quiet_no_op(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    wait_for_status(po, Status.INVOICED)
    stripe_emulator.clear_requests(stripe_secret_key)
    finished: set[str] = set()

    def note_finished(task_id: str, **_: Any) -> None:
        finished.add(task_id)

    # The embedded worker is a thread of this process: its task_postrun says a task is over, so
    # the test ends only after the marker's last write (the database flush must not meet it).
    task_postrun.connect(note_finished, weak=False)
    try:
        tasks.create_invoice_for_purchase_order.delay(po.pk)
        tasks.create_invoice_for_purchase_order.delay(10**12)  # no such PO
        tasks.sync_purchase_order.delay(10**12)
        marker = tasks.sync_purchase_order.delay(po.pk)  # runs after the others (one solo worker)
        assert marker is not None
        wait_for(lambda: marker.id in finished, message="the sync never finished")
    finally:
        task_postrun.disconnect(note_finished)
    assert any(e["method"] == "GET" for e in stripe_emulator.requests(stripe_secret_key))
    writes = [e for e in stripe_emulator.requests(stripe_secret_key) if e["method"] == "POST"]
    assert writes == []
    po.refresh_from_db()
    assert (po.status, po.invoice_error) == (Status.INVOICED, "")


def test_a_retry_that_finds_the_invoice_sent_clears_the_creation_error(
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """An attempt failed (error shown, retry scheduled) and another run (a redelivery, the
    resume task) sent the invoice meanwhile: the retry finds nothing to do and must not leave
    the organizer looking at an error for an invoice that went out. A sync's error stays."""
    po = make_purchase_order(conference=stripe_conference)
    wait_for_status(po, Status.INVOICED)
    purchase_orders.record_invoice_error(
        po, message="Invoice creation failed, retry 1 of 10 in 5 s: Stripe APIError 409"
    )
    tasks.create_invoice_for_purchase_order.delay(po.pk)

    def cleared() -> bool:
        po.refresh_from_db()
        return po.invoice_error == ""

    wait_for(cleared, message="the stale creation error stayed on the PO")
    assert (po.invoice_error_at, po.invoice_creation_blocked) == (None, False)

    purchase_orders.record_invoice_error(po, message="Sync failed: Stripe APIError 500")
    tasks.create_invoice_for_purchase_order(po.pk)  # in this process: nothing to wait for
    po.refresh_from_db()
    assert po.invoice_error == "Sync failed: Stripe APIError 500"


def test_sync_task_brings_in_a_payment_without_webhooks(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    wait_for_status(po, Status.INVOICED)
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=35000)
    tasks.sync_purchase_order.delay(po.pk)
    wait_for_status(po, Status.PARTIALLY_PAID)
    assert ledger.stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id) == (
        Decimal("350.00")
    )


def test_void_refused_then_reissue_then_cancel_as_the_admin_queues_them(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
    django_user_model: Any,
) -> None:
    staff = django_user_model.objects.create_user("organizer", password="x")
    po = make_purchase_order(conference=stripe_conference)
    wait_for_status(po, Status.INVOICED)
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=100000)
    first_invoice = po.stripe_invoice_id

    # Stripe never voids an invoice with a paid payment: the void is refused, and says why.
    tasks.void_purchase_order_invoice.delay(po.pk, staff.pk)
    wait_for_error(po, "never voids")
    wait_for_status(po, Status.PARTIALLY_PAID)
    # The payment that reached Stripe before the void is in the ledger, from the void's snapshot.
    assert ledger.stripe_paid_total(po, stripe_invoice_id=first_invoice) == Decimal("1000.00")

    tasks.reissue_purchase_order_invoice.delay(po.pk, staff.pk)

    def reissued() -> bool:
        po.refresh_from_db()
        return po.generation == 2 and po.has_complete_invoice

    wait_for(reissued, message="the re-issued invoice was never sent")
    assert po.status == Status.PARTIALLY_PAID  # 1000.00 of 6350.00 received
    assert po.stripe_invoice_id != first_invoice
    assert po.invoice_sent_at is not None
    new_invoice = stripe_emulator.client(stripe_secret_key).v1.invoices.retrieve(
        po.stripe_invoice_id
    )
    assert new_invoice.amount_due == 635000 - 100000
    assert not published.of(CREATE, po.pk)[1:]  # the re-issue creates the invoice itself

    tasks.cancel_purchase_order_task.delay(po.pk, staff.pk, "Company withdrew")
    wait_for_status(po, Status.CANCELLED)
    assert po.cancelled_by == staff
    assert po.cancellation_reason == "Company withdrew"
    statuses = {
        invoice.id: invoice.status
        for invoice in stripe_emulator.client(stripe_secret_key).v1.invoices.list().data
    }
    # The first closed by the re-issue's credit note (paid), the unpaid second voided.
    assert statuses == {first_invoice: "paid", po.stripe_invoice_id: "void"}
    assert po.invoice_error == ""


def test_a_refused_staff_action_is_shown_on_the_po(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order(conference=stripe_conference, approve=False)
    tasks.void_purchase_order_invoice.delay(po.pk)
    wait_for_error(po, "has no Stripe invoice to void")
    assert po.invoice_error.startswith("Void failed:")
    assert po.invoice_creation_blocked is False
