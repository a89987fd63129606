"""create / sync / webhook handling end to end: stripe-python over HTTP to the emulator, PostgreSQL.

Nothing is mocked: faults are injected with the emulator's per-account fault switches, payments
are made the way a customer would (the emulator's hosted-page endpoint), and event payloads are
the emulator's own events (``GET /v1/events``), i.e. exactly what Stripe would POST to a webhook.
"""

from __future__ import annotations

import datetime
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
import stripe
from django.db import connection
from django.utils import timezone

from invoicing import money
from invoicing.errors import InvoiceAlreadyAttached
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import invoice_sync, ledger, stripe_invoicing
from invoicing.services.invoice_sync import EventOutcome
from tests.core.conftest import MakePurchaseOrder, api_calls
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
DAY = 24 * 3600


def stripe_events(emulator: EmulatorHandle, secret_key: str, *types: str) -> list[dict[str, Any]]:
    """The account's events, oldest first, as the JSON Stripe would deliver to a webhook."""
    client = emulator.client(secret_key)
    events = [
        event.to_dict()
        for event in client.v1.events.list({"limit": 100}).auto_paging_iter()
        if not types or event.type in types
    ]
    return list(reversed(events))


def account_invoices(emulator: EmulatorHandle, secret_key: str) -> list[stripe.Invoice]:
    client = emulator.client(secret_key)
    return list(client.v1.invoices.list({"limit": 100}).auto_paging_iter())


def stripe_ledger(po: PurchaseOrder, invoice_id: str | None = None) -> Decimal:
    return ledger.stripe_paid_total(po, stripe_invoice_id=invoice_id or po.stripe_invoice_id)


def deliver_all(conference: Conference, events: list[dict[str, Any]]) -> list[EventOutcome]:
    return [
        invoice_sync.handle_invoice_event(conference=conference, event=event) for event in events
    ]


# --- The whole lifecycle -------------------------------------------------------------------------


def test_full_lifecycle_three_partial_payments(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    stripe_conference.invoice_memo = "Thank you for sponsoring."
    stripe_conference.invoice_footer = "Conference Org, 1 Main St."
    stripe_conference.invoice_days_until_due = 45
    stripe_conference.save()
    po = make_purchase_order(conference=stripe_conference)
    assert po.status == Status.APPROVED

    url = stripe_invoicing.create_stripe_invoice(po)

    po.refresh_from_db()
    assert po.status == Status.INVOICED
    assert url == po.stripe_invoice_url != ""
    client = stripe_emulator.client(stripe_secret_key)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    assert invoice.status == "open"
    assert invoice.hosted_invoice_url == url
    assert invoice.number == po.stripe_invoice_number
    assert invoice.currency == "usd"
    assert invoice.collection_method == "send_invoice"
    assert invoice.auto_advance is False
    assert invoice.description == "Thank you for sponsoring."
    assert invoice.footer == "Conference Org, 1 Main St."
    assert invoice.due_date is not None
    assert invoice.due_date - invoice.created == 45 * DAY
    assert invoice.amount_due == 635000
    assert invoice.payment_settings.payment_method_types == ["card", "us_bank_account"]
    assert invoice.metadata is not None
    assert invoice.metadata.to_dict() == {
        "po_id": str(po.pk),
        "po_uid": str(po.uid),
        "po_reference": po.reference,
        "conference": stripe_conference.slug,
        "generation": "1",
    }
    lines = [
        (
            line.description,
            line.quantity,
            line.pricing.unit_amount_decimal if line.pricing else None,
            line.amount,
        )
        for line in invoice.lines.data
    ]
    assert lines == [
        ("Gold sponsorship", 1, Decimal("500000"), 500000),
        ("Conference ticket", 3, Decimal("45000"), 135000),
    ]
    assert [
        event["type"] for event in stripe_events(stripe_emulator, stripe_secret_key, "invoice.sent")
    ] == ["invoice.sent"]

    expected_statuses = [Status.PARTIALLY_PAID, Status.PARTIALLY_PAID, Status.PAID]
    for amount, method, expected in zip(
        [100000, 200000, None], ["card", "us_bank_account", "card"], expected_statuses, strict=True
    ):
        stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=amount, payment_method_type=method)
        deliver_all(stripe_conference, stripe_events(stripe_emulator, stripe_secret_key))
        po.refresh_from_db()
        invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
        assert po.status == expected
        assert stripe_ledger(po) == money.from_minor_units(invoice.amount_paid, "usd")
        assert po.stripe_amount_paid == money.from_minor_units(invoice.amount_paid, "usd")
        assert po.stripe_invoice_status == invoice.status

    assert invoice.status == "paid"
    assert po.amount_received == Decimal("6350.00")
    assert PurchaseOrderPayment.objects.filter(purchase_order=po).count() == 3
    # A sync after everything finds nothing new.
    stripe_invoicing.sync_stripe_invoice_status(po)
    assert stripe_ledger(po) == Decimal("6350.00")
    assert PurchaseOrderPayment.objects.filter(purchase_order=po).count() == 3


def test_fresh_path_costs_five_calls_and_a_known_customer_four(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    first = make_purchase_order(conference=stripe_conference)
    stripe_invoicing.create_stripe_invoice(first)
    assert api_calls(stripe_emulator, stripe_secret_key) == [
        ("POST", "/v1/customers"),
        ("POST", "/v1/invoices"),
        ("POST", f"/v1/invoices/{_po(first).stripe_invoice_id}/add_lines"),
        ("POST", f"/v1/invoices/{_po(first).stripe_invoice_id}/finalize"),
        ("POST", f"/v1/invoices/{_po(first).stripe_invoice_id}/send"),
    ]
    stripe_emulator.clear_requests(stripe_secret_key)
    second = make_purchase_order(
        conference=stripe_conference, contact_email=" BILLING@acme.example "
    )
    stripe_invoicing.create_stripe_invoice(second)
    calls = api_calls(stripe_emulator, stripe_secret_key)
    assert len(calls) == 4
    assert ("POST", "/v1/customers") not in calls
    assert _po(second).stripe_customer == _po(first).stripe_customer
    customers = stripe_emulator.client(stripe_secret_key).v1.customers.list({"limit": 10})
    assert len(customers.data) == 1


def _po(po: PurchaseOrder) -> PurchaseOrder:
    po.refresh_from_db()
    return po


# --- Invariant 1: one invoice per PO, whatever fails ---------------------------------------------

CREATION_STEPS = [
    ("POST", r"^/v1/customers$"),
    ("POST", r"^/v1/invoices$"),
    ("POST", r"/add_lines$"),
    ("POST", r"/finalize$"),
    ("POST", r"/send$"),
]


def assert_exactly_one_sent_invoice(
    emulator: EmulatorHandle, secret_key: str, po: PurchaseOrder
) -> stripe.Invoice:
    po.refresh_from_db()
    invoices = account_invoices(emulator, secret_key)
    assert [invoice.id for invoice in invoices] == [po.stripe_invoice_id]
    invoice = invoices[0]
    assert invoice.status == "open"
    assert invoice.amount_due == 635000
    assert len(invoice.lines.data) == 2
    assert po.status == Status.INVOICED
    assert po.stripe_invoice_url == invoice.hosted_invoice_url
    sent = stripe_events(emulator, secret_key, "invoice.sent")
    assert len(sent) == 1
    customers = emulator.client(secret_key).v1.customers.list({"limit": 10}).data
    assert len(customers) == 1
    return invoice


@pytest.mark.parametrize(("method", "path"), CREATION_STEPS)
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        # The write happened at Stripe, the answer was lost (the crash-before-the-DB-write case).
        ("reset_after_commit", stripe.APIConnectionError),
        # Stripe failed and caches the 500 under the key for 24 h.
        ("500", stripe.APIError),
    ],
)
def test_failure_after_each_creation_step_then_rerun_gives_one_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    method: str,
    path: str,
    fault: str,
    error: type[stripe.StripeError],
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": fault, "method": method, "path": path}]
    )
    with pytest.raises(error):
        stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    assert po.status == Status.APPROVED

    url = stripe_invoicing.create_stripe_invoice(po)

    invoice = assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)
    assert url == invoice.hosted_invoice_url
    with pytest.raises(InvoiceAlreadyAttached):
        stripe_invoicing.create_stripe_invoice(po)


def test_stripe_python_retries_absorb_a_lost_answer_in_one_run(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    settings: Any,
) -> None:
    """With retries on, each lost answer is replayed under the same key within the same run."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[
            {"error": "reset_after_commit", "method": m, "path": p} for m, p in CREATION_STEPS
        ],
    )
    stripe_invoicing.create_stripe_invoice(po)
    assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)
    replays = [
        entry
        for entry in stripe_emulator.requests(stripe_secret_key)
        if entry["idempotent_replayed"]
    ]
    assert len(replays) == 5


def test_random_faults_and_repeated_reruns_still_give_one_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key,
        error_rate=0.4,
        errors=["500", "reset_after_commit", "connection_reset", "429"],
        seed=1234,
    )
    failures = 0
    for _ in range(60):
        try:
            stripe_invoicing.create_stripe_invoice(po)
            break
        except stripe.StripeError:
            failures += 1
    else:
        pytest.fail("creation never completed")
    stripe_emulator.configure(stripe_secret_key, error_rate=0.0)
    assert failures > 0
    assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)


def test_invoice_created_but_not_recorded_for_over_a_day_is_found_again(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """Keys expire after 24 h: the invoice is found by its metadata instead of created twice."""
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": r"^/v1/invoices$"}],
    )
    with pytest.raises(stripe.APIConnectionError):
        stripe_invoicing.create_stripe_invoice(po)
    # The worker stayed down for 25 hours: the emulator's keys expire, our attempt is that old.
    stripe_emulator.advance_clock(25 * 3600, secret_key=stripe_secret_key)
    PurchaseOrder.objects.filter(pk=po.pk).update(
        invoice_create_started_at=timezone.now() - datetime.timedelta(hours=25)
    )
    stripe_emulator.clear_requests(stripe_secret_key)

    stripe_invoicing.create_stripe_invoice(po)

    assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)
    calls = api_calls(stripe_emulator, stripe_secret_key)
    assert calls[0] == ("GET", "/v1/invoices")
    assert ("POST", "/v1/invoices") not in calls


def test_lines_added_but_not_recorded_for_over_a_day_are_not_added_again(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": r"/add_lines$"}],
    )
    with pytest.raises(stripe.APIConnectionError):
        stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    assert po.stripe_invoice_id
    assert po.invoice_lines_added_at is None
    stripe_emulator.advance_clock(25 * 3600, secret_key=stripe_secret_key)
    stripe_emulator.clear_requests(stripe_secret_key)

    stripe_invoicing.create_stripe_invoice(po)

    assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)
    paths = [path for _, path in api_calls(stripe_emulator, stripe_secret_key)]
    assert not any(path.endswith("/add_lines") for path in paths)
    assert f"/v1/invoices/{po.stripe_invoice_id}" in paths  # the retrieve that checked the lines


@pytest.mark.django_db(transaction=True)
def test_concurrent_creation_runs_make_one_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """The task ran twice at once (a redelivery): the keys make both runs converge."""
    from tests.core.test_concurrency import run_in_threads

    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(stripe_secret_key, latency=0.05, latency_jitter=0.05, seed=3)
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(stripe_invoicing.create_stripe_invoice(po))
        except (stripe.StripeError, ValueError) as exc:
            outcomes.append(exc)

    assert run_in_threads([run] * 4) == []
    stripe_emulator.configure(stripe_secret_key, latency=0.0, latency_jitter=0.0)
    po.refresh_from_db()
    if not po.has_complete_invoice:  # every run lost a race: the next retry finishes
        stripe_invoicing.create_stripe_invoice(po)
    assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)
    assert any(outcome == po.stripe_invoice_url for outcome in outcomes)
    executed = [
        entry["path"]
        for entry in stripe_emulator.requests(stripe_secret_key)
        if entry["method"] == "POST" and entry["status"] == 200 and not entry["idempotent_replayed"]
    ]
    assert sorted(path.rsplit("/", 1)[-1] for path in executed) == sorted(
        ["customers", "invoices", "add_lines", "finalize", "send"]
    )


@pytest.mark.django_db(transaction=True)
def test_a_run_answered_with_a_replay_resumes_from_stripe_not_from_the_replayed_draft(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """Two runs for one PO (a redelivered message and the resume task's): the slow one's create
    is answered with the idempotent replay of the first answer, a draft without lines, while the
    fast one already added the lines and sent the invoice. The slow run used to go on from that
    replayed draft, found its subtotal 0 and refused the invoice as "edited at Stripe": a
    permanent error that blocked a PO whose invoice was in fact sent (seen when workers were
    killed during invoicing, tests/reliability/test_worker_kills.py). Runs of one customer now
    take turns (``stripe_customers.customer_held``), so the run answered with the replay is the
    one that waited for the slow one."""
    po = make_purchase_order(conference=stripe_conference)
    # The slow run's first call (the customer) waits 3 s at Stripe before it runs.
    stripe_emulator.configure(stripe_secret_key, latency=3.0)
    slow_outcome: list[object] = []

    def slow_run() -> None:
        try:
            slow_outcome.append(stripe_invoicing.create_stripe_invoice(po))
        except Exception as exc:  # reported by the assert below
            slow_outcome.append(exc)
        finally:
            connection.close()

    slow = threading.Thread(target=slow_run)
    slow.start()
    time.sleep(0.5)  # the slow run is inside its first Stripe call
    stripe_emulator.configure(stripe_secret_key, latency=0.0)
    fast_url = stripe_invoicing.create_stripe_invoice(PurchaseOrder.objects.get(pk=po.pk))
    slow.join(timeout=30)

    assert slow_outcome == [fast_url]
    invoice = assert_exactly_one_sent_invoice(stripe_emulator, stripe_secret_key, po)
    assert (po.invoice_error, po.invoice_sent_at is not None) == ("", True)
    replayed = [
        entry["path"].rsplit("/", 1)[-1]
        for entry in stripe_emulator.requests(stripe_secret_key)
        if entry["idempotent_replayed"]
    ]
    # The run that waited wrote nothing of its own: it read the customer as the slow run left it
    # (no customer call at all), and its invoice create was answered with the first one's replay.
    assert replayed == ["invoices"]
    assert invoice.id == po.stripe_invoice_id
