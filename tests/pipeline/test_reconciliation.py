"""Reconciliation: per conference, events since a cursor + open invoices a page at a time + the
few stragglers one by one; unchanged invoices cost no row lock. Call counts come from the
emulator's request log. No webhooks reach these conferences (no endpoint is registered).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from invoicing.models import Conference, PurchaseOrder, StripeSyncState
from invoicing.services import reconciliation, stripe_invoicing
from invoicing.services.ledger import stripe_paid_total
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.pipeline.conftest import PublishLog
from tests.stripe_emulator.handle import EmulatorHandle
from workers import tasks

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
CreateInvoiced = Callable[[int], list[PurchaseOrder]]


@pytest.fixture
def create_invoiced(
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    settings: Any,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> CreateInvoiced:
    """``n`` POs with open, sent invoices (created by our code, without our rate limit)."""
    # Setting the scene fast: without our limiter, and so without the sandbox's 25 requests/s.
    # The reconciliation under test makes a handful of list calls, far below either.
    settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND = 10_000.0
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)

    def create(n: int) -> list[PurchaseOrder]:
        pos = []
        for index in range(n):
            po = make_purchase_order(
                conference=stripe_conference, contact_email=f"billing{index % 7}@acme.example"
            )
            stripe_invoicing.create_stripe_invoice(po)
            po.refresh_from_db()
            pos.append(po)
        return pos

    return create


def calls(emulator: EmulatorHandle, key: str) -> list[tuple[str, str]]:
    return [(entry["method"], entry["path"]) for entry in emulator.requests(key)]


def ledger(po: PurchaseOrder) -> Decimal:
    return stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id)


def test_one_run_repairs_missed_payments_with_list_calls_only(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    create_invoiced: CreateInvoiced,
) -> None:
    pos = create_invoiced(150)
    paid, partial, uncollectible = pos[:8], pos[8:11], pos[11]
    for po in paid:
        stripe_emulator.pay_invoice(po.stripe_invoice_id)
    for po in partial:
        stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=123400)
    client = stripe_emulator.client(stripe_secret_key)
    client.v1.invoices.mark_uncollectible(uncollectible.stripe_invoice_id)
    # An invoice of this account that is not ours (another app issued it): left alone.
    customer = client.v1.customers.create({"email": "other@app.example"})
    foreign = client.v1.invoices.create(
        {"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 10}
    )
    client.v1.invoice_items.create({"customer": customer.id, "invoice": foreign.id, "amount": 500})
    client.v1.invoices.finalize_invoice(foreign.id)
    stripe_emulator.clear_requests(stripe_secret_key)

    summary = reconciliation.reconcile_conference(conference=stripe_conference)

    for po in paid:
        po.refresh_from_db()
        assert (po.status, ledger(po)) == (Status.PAID, Decimal("6350.00"))
    for po in partial:
        po.refresh_from_db()
        assert (po.status, ledger(po)) == (Status.PARTIALLY_PAID, Decimal("1234.00"))
    uncollectible.refresh_from_db()
    assert uncollectible.status == Status.INVOICE_UNCOLLECTIBLE
    untouched = PurchaseOrder.objects.filter(pk__in=[po.pk for po in pos[12:]])
    assert set(untouched.values_list("status", flat=True)) == {Status.INVOICED}

    made = calls(stripe_emulator, stripe_secret_key)
    # 9 closing events fit one page; 141 + 1 foreign open invoices take two pages; an event's
    # copy never says what was paid off Stripe, so the 8 invoices paid while their webhooks were
    # lost come from one page of paid invoices listed with amount_paid_off_stripe; refunds and
    # credit notes created since the cursor: one (empty) page each; no retrieves.
    assert sorted(made) == sorted(
        [("GET", "/v1/events")]
        + [("GET", "/v1/invoices")] * 3
        + [("GET", "/v1/refunds"), ("GET", "/v1/credit_notes")]
    )
    assert summary.stripe_calls == 6
    assert (summary.events, summary.open_invoices, summary.retrieved) == (9, 142, 0)
    assert (summary.applied, summary.not_ours, summary.errors) == (12, 1, 0)
    assert summary.unchanged == 150 - 12
    naive = len(pos)
    print(f"reconcile 150 invoices: {summary.stripe_calls} calls vs {naive} naive")
    # The two money lists cost the same for 150 invoices as for 10,000 (the benchmark's 1%).
    assert summary.stripe_calls - 2 <= 0.03 * naive
    paid_list = [
        request
        for request in stripe_emulator.requests(stripe_secret_key)
        if request["path"] == "/v1/invoices" and "paid" in str(request["params"])
    ][-1]
    assert "amount_paid_off_stripe" in str(paid_list["params"])
    events_request = stripe_emulator.requests(stripe_secret_key)[0]
    assert "invoice.paid" in str(events_request["params"])


def test_a_second_run_changes_nothing_and_reads_events_from_the_cursor(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    create_invoiced: CreateInvoiced,
    settings: Any,
) -> None:
    pos = create_invoiced(5)
    stripe_emulator.pay_invoice(pos[0].stripe_invoice_id)
    reconciliation.reconcile_conference(conference=stripe_conference)
    state = StripeSyncState.objects.get(conference=stripe_conference)
    paid_event = stripe_emulator.client(stripe_secret_key).v1.events.list({"type": "invoice.paid"})
    assert state.events_cursor == paid_event.data[0].created
    assert state.last_summary["applied"] == 1
    stamps = dict(PurchaseOrder.objects.values_list("pk", "updated_at"))
    stripe_emulator.clear_requests(stripe_secret_key)

    summary = reconciliation.reconcile_conference(conference=stripe_conference)

    assert (summary.applied, summary.unchanged, summary.retrieved) == (0, 5, 0)
    assert dict(PurchaseOrder.objects.values_list("pk", "updated_at")) == stamps  # no row written
    events_call, invoices_call, refunds_call, notes_call = stripe_emulator.requests(
        stripe_secret_key
    )
    assert [call["path"] for call in (events_call, invoices_call, refunds_call, notes_call)] == [
        "/v1/events",
        "/v1/invoices",
        "/v1/refunds",
        "/v1/credit_notes",
    ]
    since = state.events_cursor - settings.RECONCILE_EVENTS_OVERLAP_SECONDS
    for call in (events_call, refunds_call, notes_call):
        assert str(since) in str(call["params"])


def test_invoices_in_neither_list_are_retrieved_one_by_one(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    create_invoiced: CreateInvoiced,
) -> None:
    """An uncollectible invoice is not open, and its event is behind the cursor: retrieved."""
    pos = create_invoiced(3)
    client = stripe_emulator.client(stripe_secret_key)
    client.v1.invoices.mark_uncollectible(pos[0].stripe_invoice_id)
    reconciliation.reconcile_conference(conference=stripe_conference)
    pos[0].refresh_from_db()
    assert pos[0].status == Status.INVOICE_UNCOLLECTIBLE
    # The company pays the uncollectible invoice after all; its event is before the cursor's
    # window (the clock moved on) and the invoice is in no list of open invoices.
    stripe_emulator.pay_invoice(pos[0].stripe_invoice_id, amount=200000)
    stripe_emulator.advance_clock(7200, secret_key=stripe_secret_key)
    StripeSyncState.objects.filter(conference=stripe_conference).update(
        events_cursor=int(stripe_emulator.now(secret_key=stripe_secret_key))
    )
    stripe_emulator.clear_requests(stripe_secret_key)

    summary = reconciliation.reconcile_conference(conference=stripe_conference)

    assert summary.retrieved == 1
    assert ("GET", f"/v1/invoices/{pos[0].stripe_invoice_id}") in calls(
        stripe_emulator, stripe_secret_key
    )
    pos[0].refresh_from_db()
    assert ledger(pos[0]) == Decimal("2000.00")


def test_a_running_reconciliation_is_not_started_twice(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, stripe_conference: Conference
) -> None:
    StripeSyncState.objects.create(
        conference=stripe_conference, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    summary = reconciliation.reconcile_conference(conference=stripe_conference)
    assert summary.skipped
    assert stripe_emulator.requests(stripe_secret_key) == []
    # An expired lease (its worker died) does not block the next run.
    StripeSyncState.objects.filter(conference=stripe_conference).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert not reconciliation.reconcile_conference(conference=stripe_conference).skipped


def test_stripe_failing_mid_run_keeps_the_cursor_and_releases_the_lease(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    create_invoiced: CreateInvoiced,
) -> None:
    import stripe

    create_invoiced(2)
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": "500", "method": "GET", "path": "^/v1/invoices$"}]
    )
    with pytest.raises(stripe.APIError):
        reconciliation.reconcile_conference(conference=stripe_conference)
    state = StripeSyncState.objects.get(conference=stripe_conference)
    assert state.events_cursor is None
    assert state.lease_expires_at is None
    assert "APIError 500" in state.last_error
    assert not reconciliation.reconcile_conference(conference=stripe_conference).skipped


def test_the_management_command(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    create_invoiced: CreateInvoiced,
    make_conference: MakeConference,
    capsys: Any,
) -> None:
    (po,) = create_invoiced(1)
    stripe_emulator.pay_invoice(po.stripe_invoice_id)
    make_conference(secret_key="", slug="keyless")
    call_command("sync_stripe_invoices", "--conference", stripe_conference.slug)
    out = capsys.readouterr().out
    # Events, open invoices, the paid invoice listed with what was paid off Stripe, refunds and
    # credit notes created since the (first: no) cursor.
    assert f"{stripe_conference.slug}: 5 Stripe call(s)" in out
    assert "1 applied" in out
    po.refresh_from_db()
    assert po.status == Status.PAID
    with pytest.raises(CommandError, match="No conference"):
        call_command("sync_stripe_invoices", "--conference", "nope")
    with pytest.raises(CommandError, match="no Stripe secret key"):
        call_command("sync_stripe_invoices", "--conference", "keyless")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("embedded_worker_paused")
def test_the_beat_task_fans_out_one_task_per_active_conference_with_a_key(
    make_conference: MakeConference, published: PublishLog
) -> None:
    active = [make_conference(), make_conference()]
    make_conference(is_active=False)
    make_conference(secret_key="")
    assert tasks.sync_open_invoices() == 2
    queued = sorted(m.args[0] for m in published.of("sync_conference_invoices"))
    assert queued == sorted(conference.pk for conference in active)
