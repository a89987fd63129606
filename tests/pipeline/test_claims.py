"""The inbox claim and the reconciliation lease, proven without timing luck.

As in ``tests/core/test_locks.py``: the test holds the lock from a connection of its own and
watches, in PostgreSQL's bookkeeping, the path under test skip it (the inbox claim's
``SKIP LOCKED``) or wait for it and then decide on what the holder committed (the lease).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from invoicing.models import Conference, PurchaseOrder, StripeEvent, StripeSyncState
from invoicing.services import reconciliation, stripe_events, stripe_invoicing
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.pipeline.test_event_processing import plain_event, record
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.locks import Contention

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("embedded_worker_paused"),
]

EventStatus = StripeEvent.Status


def test_a_worker_skips_an_inbox_row_another_worker_is_claiming(
    contention: Contention, make_conference: MakeConference
) -> None:
    """A redelivered message reaches a second worker while the first is inside its claim: the
    second returns at once, without waiting for the row and without touching it."""
    row = record(make_conference(), plain_event(f"evt_claim_{uuid.uuid4().hex[:12]}"))

    def process() -> stripe_events.ProcessResult:
        return stripe_events.process_stripe_event(stripe_event_id=row.pk)

    with contention.hold(process):  # the first worker, its claim's transaction still open
        second_worker = contention.start(process)
        second_worker.finishes_while_held()
        assert second_worker.outcome().skipped

    row.refresh_from_db()
    assert (row.status, row.attempts) == (EventStatus.IGNORED, 1)  # processed once, by the first


def test_a_second_reconciliation_waits_for_the_lease_being_taken_and_then_skips(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """Two beat runs for one conference at once: the second must decide on the lease the first
    is taking, not on what it read before the first committed. So its compare-and-set waits for
    the first's row and finds the lease taken: it skips without a Stripe call. Once the first run
    has ended, the next run reconciles (here: a payment whose webhook never came)."""
    po = make_purchase_order(conference=stripe_conference)
    stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    stripe_emulator.pay_invoice(po.stripe_invoice_id)
    StripeSyncState.objects.create(conference=stripe_conference)
    account = stripe_conference.stripe_secret_key  # the emulator's account for it
    stripe_emulator.clear_requests(account)

    def take_the_lease() -> None:
        StripeSyncState.objects.filter(conference=stripe_conference).update(
            lease_expires_at=timezone.now() + timedelta(minutes=5)
        )

    with contention.hold(take_the_lease) as first_run:
        second_run = contention.start(
            lambda: reconciliation.reconcile_conference(conference=stripe_conference)
        )
        second_run.wait_until_blocked(first_run, at="UPDATE")
    assert second_run.outcome().skipped
    assert stripe_emulator.requests(account) == []

    StripeSyncState.objects.filter(conference=stripe_conference).update(lease_expires_at=None)
    summary = reconciliation.reconcile_conference(conference=stripe_conference)
    assert (summary.skipped, summary.applied) == (False, 1)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.PAID
