"""The admin's actions, end to end: the admin queues, the real worker calls Stripe (the emulator).

Each action answers with one message per PO (what was queued, or why it was refused), and what it
queued really happens: the sync brings a payment in, the void voids at Stripe, the re-issue sends a
new invoice for the balance, the cancel voids first. Destructive actions ask for confirmation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from config.celery import app as celery_app
from invoicing.models import Conference, PurchaseOrder, StripeEvent, StripeSyncState
from invoicing.services.stripe_client import clear_stripe_clients
from tests.core.conftest import MakePurchaseOrder, invoiced_here
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import wait_until
from tests.support.redis_server import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

CHANGELIST = "admin:invoicing_purchaseorder_changelist"
Status = PurchaseOrder.Status


@pytest.fixture(autouse=True)
def _fresh_stripe_clients() -> Iterator[None]:
    yield
    clear_stripe_clients()


def act(client: Client, action: str, *pos: PurchaseOrder, **extra: str) -> Any:
    data = {"action": action, "_selected_action": [str(po.pk) for po in pos], **extra}
    return client.post(reverse(CHANGELIST), data, follow=True)


def notes(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def reaches(po: PurchaseOrder, status: str, timeout: float = 20) -> PurchaseOrder:
    deadline = time.monotonic() + timeout
    while True:
        po.refresh_from_db()
        if po.status == status:
            return po
        if time.monotonic() > deadline:
            pytest.fail(
                f"{po.reference} never became {status}: it is {po.status}, "
                f"last error {po.invoice_error!r}"
            )
        time.sleep(0.1)


@pytest.fixture
def invoiced(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    """An invoiced PO (6,350.00 USD); its account has no webhook endpoint: only syncs see it."""
    po = invoiced_here(make_purchase_order(conference=stripe_conference, approve=False))
    assert po.status == Status.INVOICED
    return po


def test_sync_now_brings_in_a_payment_no_webhook_announced(
    admin_client: Client,
    invoiced: PurchaseOrder,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> None:
    draft = make_purchase_order(approve=False, reference="PO-DRAFT-S")
    stripe_emulator.pay_invoice(invoiced.stripe_invoice_id, amount=200000)
    response = act(admin_client, "sync_selected", invoiced, draft)
    messages = notes(response)
    assert f"{invoiced.reference}: sync of invoice {invoiced.stripe_invoice_id} queued" in (
        " ".join(messages)
    )
    assert "PO-DRAFT-S: not synced: it has no Stripe invoice yet." in messages
    reaches(invoiced, Status.PARTIALLY_PAID)
    assert invoiced.amount_received == Decimal("2000.00")


def test_void_of_a_part_paid_invoice_is_refused_and_re_issue_asks_only_for_the_balance(
    admin_client: Client,
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> None:
    key = invoiced.conference.stripe_secret_key
    stripe_emulator.pay_invoice(invoiced.stripe_invoice_id, amount=100000)
    first_invoice = invoiced.stripe_invoice_id

    confirm = act(admin_client, "void_selected", invoiced)
    page = confirm.content.decode()
    assert "Void these invoices?" in page
    assert first_invoice in page
    assert invoiced.status == Status.INVOICED  # nothing happened yet

    refused = act(admin_client, "reissue_selected", invoiced)
    assert any("not re-issued" in m and "void an unpaid invoice first" in m for m in notes(refused))

    # The payment was not seen yet (no webhook here): the void is queued, and the worker finds
    # the payment, which Stripe never voids, so it records it and says what to do instead.
    done = act(admin_client, "void_selected", invoiced, confirm="yes")
    assert any("void of invoice" in m and "queued" in m for m in notes(done))
    reaches(invoiced, Status.PARTIALLY_PAID)
    wait_until(
        lambda: "never voids" in PurchaseOrder.objects.get(pk=invoiced.pk).invoice_error,
        timeout=20,
        message="the refused void was not shown on the PO",
    )
    client = stripe_emulator.client(key)
    assert client.v1.invoices.retrieve(first_invoice).status == "open"
    # The payment that arrived before the void is in the ledger (recorded from the snapshot).
    assert invoiced.amount_received == Decimal("1000.00")
    # Now the admin itself refuses the void and points at re-issue or cancel.
    refused = act(admin_client, "void_selected", invoiced)
    assert any("not voided" in m and "re-issue it or cancel" in m for m in notes(refused))

    confirm = act(admin_client, "reissue_selected", invoiced)
    assert "Re-issue these invoices?" in confirm.content.decode()
    assert "new invoice for the balance 5,350.00 USD" in confirm.content.decode()
    act(admin_client, "reissue_selected", invoiced, confirm="yes")

    def reissued() -> bool:
        # The task clears the refused void's error once it returns, a moment after the send.
        invoiced.refresh_from_db()
        return (
            invoiced.generation == 2
            and invoiced.invoice_sent_at is not None
            and invoiced.invoice_error == ""
        )

    wait_until(reissued, timeout=20, message="the new invoice was not sent, or its task not done")
    # Money was received before, so the PO stays partially paid under its new invoice.
    assert invoiced.status == Status.PARTIALLY_PAID
    assert invoiced.invoice_error == ""
    assert invoiced.stripe_invoice_id not in {"", first_invoice}
    assert invoiced.generation == 2
    new_invoice = client.v1.invoices.retrieve(invoiced.stripe_invoice_id)
    assert new_invoice.amount_due == 535000  # 6,350.00 minus the 1,000.00 received
    old = client.v1.invoices.retrieve(first_invoice)
    assert (old.status, old.amount_paid, old.pre_payment_credit_notes_amount) == (
        "paid",
        100000,
        535000,
    )

    # The PO's page tells the story: both invoices with their numbers, and what happened.
    first_number = client.v1.invoices.retrieve(first_invoice).number
    page = admin_client.get(reverse("admin:invoicing_purchaseorder_change", args=[invoiced.pk]))
    html = page.content.decode()
    generations = html[html.index('class="po-generations"') :]
    generations = generations[: generations.index("</table>")]
    assert first_number
    assert first_number in generations
    assert first_invoice in generations
    assert "replaced" in generations
    assert invoiced.stripe_invoice_number in generations
    timeline = html[html.index('class="po-timeline"') :]
    timeline = timeline[: timeline.index("</table>")]
    # (The fixture approves with a plain UPDATE: no "Approved" line.)
    # Stripe refuses to void a part-paid invoice: the re-issue credits its unpaid rest instead.
    for step in (
        "Invoice created and sent",
        "Payment received",
        "Credit note (unpaid remainder moved",
    ):
        assert step in timeline, step
    assert "Invoice voided" not in timeline
    assert "Re-issue started" in timeline
    assert "1,000.00 USD by Stripe" in timeline
    assert "admin" in timeline  # who voided and re-issued
    # Only what the status allows is offered as a button: the new invoice takes no payment yet,
    # so void; the PO is part-paid, so re-issue and cancel; never approve or retry creation.
    assert 'value="void_selected"' in html
    assert 'value="reissue_selected"' in html
    assert 'value="approve_selected"' not in html


def test_cancel_asks_for_a_reason_and_voids_first(
    admin_client: Client,
    admin_user: User,
    invoiced: PurchaseOrder,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> None:
    draft = make_purchase_order(approve=False, reference="PO-DRAFT-C")
    paid = make_purchase_order(approve=False, reference="PO-PAID-C")
    PurchaseOrder.objects.filter(pk=paid.pk).update(status=Status.PAID)

    confirm = act(admin_client, "cancel_selected", invoiced, draft, paid)
    page = confirm.content.decode()
    assert "Cancel these purchase orders?" in page
    assert 'name="reason"' in page

    assert " required" in page  # the browser asks for it; the server insists too
    for blank in ("", "   "):
        again = act(admin_client, "cancel_selected", invoiced, draft, confirm="yes", reason=blank)
        assert "Cancel these purchase orders?" in again.content.decode()
        assert "Give a reason: nothing was cancelled without one." in notes(again)
    draft.refresh_from_db()
    assert draft.status == Status.DRAFT
    invoiced.refresh_from_db()
    assert invoiced.status == Status.INVOICED

    done = act(
        admin_client,
        "cancel_selected",
        invoiced,
        draft,
        paid,
        confirm="yes",
        reason="Sponsor withdrew.",
    )
    messages = notes(done)
    assert "PO-DRAFT-C: cancelled." in messages
    assert any(m.startswith("PO-PAID-C: not cancelled: it is paid") for m in messages)
    assert any(m.startswith(f"{invoiced.reference}: cancellation") for m in messages)

    draft.refresh_from_db()
    assert draft.status == Status.CANCELLED
    assert draft.cancellation_reason == "Sponsor withdrew."
    assert draft.cancelled_by == admin_user
    reaches(invoiced, Status.CANCELLED)
    assert invoiced.cancellation_reason == "Sponsor withdrew."
    assert invoiced.cancelled_by == admin_user
    client = stripe_emulator.client(invoiced.conference.stripe_secret_key)
    assert client.v1.invoices.retrieve(invoiced.stripe_invoice_id).status == "void"
    paid.refresh_from_db()
    assert paid.status == Status.PAID
    # A cancelled PO shows what was received and that nothing is owed.
    page = admin_client.get(reverse("admin:invoicing_purchaseorder_change", args=[invoiced.pk]))
    html = page.content.decode()
    assert "nothing (cancelled)" in html
    assert "Sponsor withdrew." in html


@pytest.fixture
def dead_broker() -> Iterator[None]:
    """The app publishes to a port nobody listens on (Redis down)."""
    from workers.enqueue import close_pools

    celery_app.conf.update(broker_write_url=f"redis://127.0.0.1:{free_port()}/7")
    close_pools()
    try:
        yield
    finally:
        celery_app.conf.update(broker_write_url=None)
        close_pools()


def test_a_broker_outage_is_reported_per_po_and_changes_nothing(
    admin_client: Client, invoiced: PurchaseOrder, dead_broker: None
) -> None:
    response = act(admin_client, "sync_selected", invoiced)
    assert response.status_code == 200
    assert notes(response) == [
        f"{invoiced.reference}: sync of invoice {invoiced.stripe_invoice_id} could not be queued "
        "(the broker did not answer); nothing changed, try again in a moment."
    ]


def test_replay_requeues_a_failed_event_and_the_worker_processes_it(
    admin_client: Client, invoiced: PurchaseOrder, stripe_emulator: EmulatorHandle
) -> None:
    stripe_emulator.pay_invoice(invoiced.stripe_invoice_id, amount=50000)
    client = stripe_emulator.client(invoiced.conference.stripe_secret_key)
    listed = client.v1.events.list(params={"type": "invoice.updated", "limit": 1}).data[0]
    event = client.v1.events.retrieve(listed.id)
    assert event.last_response is not None
    failed = StripeEvent.objects.create(
        conference=invoiced.conference,
        stripe_event_id=event.id,
        type=event.type,
        livemode=False,
        payload=json.loads(event.last_response.body),  # the event as Stripe sent it
        status=StripeEvent.Status.FAILED,
        attempts=10,
        last_error="APIError: the emulator was down",
    )
    response = admin_client.post(
        reverse("admin:invoicing_stripeevent_changelist"),
        {"action": "replay_selected", "_selected_action": [str(failed.pk)]},
        follow=True,
    )
    assert notes(response) == [
        f"{event.id} (invoice.updated, was failed): queued again with a fresh retry budget.",
        "1 event(s) queued again.",
    ]

    def processed() -> bool:
        failed.refresh_from_db()
        return failed.status == StripeEvent.Status.PROCESSED

    wait_until(processed, timeout=20, message="the replayed event was not processed")
    reaches(invoiced, Status.PARTIALLY_PAID)
    assert invoiced.amount_received == Decimal("500.00")


def test_reconcile_now_runs_the_conference_reconciliation(
    admin_client: Client, invoiced: PurchaseOrder, stripe_emulator: EmulatorHandle
) -> None:
    conference = invoiced.conference
    stripe_emulator.pay_invoice(invoiced.stripe_invoice_id)  # all of it; no webhook endpoint
    response = admin_client.post(
        reverse("admin:invoicing_conference_changelist"),
        {"action": "reconcile_selected", "_selected_action": [str(conference.pk)]},
        follow=True,
    )
    assert any(m.startswith(f"{conference.slug}: reconciliation queued") for m in notes(response))
    reaches(invoiced, Status.PAID)
    # The run stamps its end after applying the invoices: the PO can be paid a moment before.
    wait_until(
        lambda: StripeSyncState.objects.filter(
            conference=conference, last_finished_at__isnull=False
        ).exists(),
        timeout=20,
        message="the reconciliation never finished",
    )
