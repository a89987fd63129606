"""Case 2 of issue 6: Redis killed and restarted empty during a burst of webhooks.

The whole pipeline runs as deployed: the emulator delivers signed events (Stripe's way, 16 at a
time, retrying anything but 2xx) to gunicorn running the project's webhook view; the view records
each event in the inbox and queues it; ``celery worker`` prefork processes apply them. Redis (the
broker and the rate limiter's store, a server of the test's own) is SIGKILLed in the middle of the
burst and started again empty a moment later: every message queued or reserved is gone, and the
view meanwhile records events it cannot queue. The beat's ``reenqueue_pending_stripe_events`` is
enqueued as beat would (every two seconds, failing while Redis is away); reconciliation is *not*
run, so the ledger can only be right if every event was processed.

End: each event Stripe has for the account is one inbox row, processed (or ignored, for types we
do not act on), settled once by exactly one worker run; every PO's ledger equals its invoice's
``amount_paid``.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from invoicing.models import Conference, PurchaseOrder, StripeEvent
from invoicing.services import purchase_orders, stripe_events
from invoicing.services.invoice_sync import HANDLED_EVENT_TYPES
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.webhook_endpoints import WEBHOOK_EVENT_TYPES
from tests.core import conftest as core_fixtures
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.reliability.conftest import RecordFigures, size
from tests.reliability.stack import (
    BeatTicker,
    broker_backlog,
    publishing_to,
    stack_environment,
    stripe_call_figures,
    web_server,
)
from tests.stripe_emulator.handle import EmulatorHandle
from tests.stripe_emulator.webhooks import encode_payload, signature_header
from tests.support.celery_workers import StartWorkers, WorkerProcess, wait_until
from tests.support.consistency import compare_with_stripe
from tests.support.redis_server import RedisServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    # The full size runs for minutes on a busy machine; pyproject's 300 s is for everything else.
    pytest.mark.timeout(size(ci=300, full=1200)),
]

# The core suite's factories for conferences and POs, used here as fixtures.
make_conference = core_fixtures.make_conference
make_purchase_order = core_fixtures.make_purchase_order

Status = PurchaseOrder.Status
EventStatus = StripeEvent.Status
REENQUEUE_TASK = "workers.tasks.reenqueue_pending_stripe_events"
# Events of one PO sent to our endpoint (creation, two part payments, the last one), as measured.
EVENTS_PER_PO = 11
# Redis is killed when this share of the burst is recorded, and is away this long.
KILL_AT = 0.25
OUTAGE_SECONDS = 1.0

_SETTLED = re.compile(
    r"stripe event (evt_\w+) \([\w.]+\) for conference [\w-]+: (processed|ignored)"
)
_REENQUEUED = re.compile(r"re-enqueued (\d+) of (\d+) due stripe event")
_SENTINEL = "reliability:sentinel"
_CANCELLED = "cannot be acknowledged after a connection loss"


def _recorded(conference: Conference) -> int:
    return StripeEvent.objects.filter(conference=conference).count()


def _unsettled(conference: Conference) -> int:
    return StripeEvent.objects.filter(
        conference=conference, status__in=[EventStatus.PENDING, EventStatus.PROCESSING]
    ).count()


def _set_sentinel(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    try:
        client.set(_SENTINEL, "1")
    finally:
        client.close()


def _sentinel_survived(broker_url: str) -> bool:
    client = redis.Redis.from_url(broker_url)
    try:
        return bool(client.exists(_SENTINEL))
    finally:
        client.close()


def _restart_exited(workers: list[WorkerProcess], restarts: Counter[str]) -> None:
    """Start again a worker that exited, as the process supervisor of a deployment does.

    Celery exits on an "Unrecoverable error", and losing Redis caused one in about half the runs
    (kombu's Redis channel, closed after the connection was collected, raised AttributeError in
    ``_connparams``; cf. celery/celery#9250) until ``workers.broker`` turned it into a connection
    error. The test still restarts an exited worker, so that the rest of it measures what it
    measures, and then fails: a worker must survive losing Redis.
    """
    for worker in workers:
        if not worker.running:
            worker.start()
            restarts[worker.hostname] += 1


def _repost(url: str, secret: str, payload: bytes) -> int:
    """Deliver one event again as Stripe does after giving up for a while (fresh signature)."""
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, secret, int(time.time())),
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return int(response.status)


def test_redis_killed_and_restarted_empty_during_a_webhook_burst_loses_and_doubles_nothing(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    settings: Any,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    private_redis: RedisServer,
    celery_worker_processes: StartWorkers,
    record_figures: RecordFigures,
    tmp_path: Path,
) -> None:
    target_events = size(ci=300, full=2000)
    po_count = -(-target_events // EVENTS_PER_PO)
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    env = stack_environment(private_redis)
    # The test's own reads of Stripe share the workers' limiter, so together they stay under the
    # account's rate while the workers are still calling Stripe.
    settings.STRIPE_RATE_LIMIT_REDIS_URL = env["STRIPE_RATE_LIMIT_REDIS_URL"]
    broker_url = env["CELERY_BROKER_URL"]

    setup_started = time.monotonic()
    with web_server(tmp_path, env) as web:
        conference = make_conference(secret_key=stripe_secret_key, stripe_webhook_secret="")
        stripe_events.register_webhook_endpoint(
            conference=conference, url=web.webhook_url(conference.slug)
        )
        conference.refresh_from_db()
        # Stripe holds the events until the burst; some are delivered twice (at least once).
        stripe_emulator.configure(
            stripe_secret_key, webhooks_paused=True, webhook_duplicate_rate=0.03, seed=6
        )
        workers = celery_worker_processes(2, concurrency=2, env=env)
        restarts: Counter[str] = Counter()

        # The invoices (created by the workers, as on approval), then the customers pay: two
        # parts and the rest, by card or ACH. Every one of those events waits at Stripe.
        pos = [
            make_purchase_order(
                conference=conference,
                approve=False,
                reference=f"PO-BURST-{index:04d}",
                contact_email=f"billing{index}@example.com",
            )
            for index in range(po_count)
        ]
        with publishing_to(broker_url):
            for po in pos:
                purchase_orders.approve_purchase_order(po)
        wait_until(
            lambda: (
                PurchaseOrder.objects.filter(conference=conference, status=Status.INVOICED).count()
                == po_count
            ),
            timeout=60 + po_count,
            interval=0.2,
            message="the invoices were not all created before the burst",
        )
        for index, po in enumerate(PurchaseOrder.objects.filter(conference=conference)):
            method = "us_bank_account" if index % 3 == 0 else "card"
            stripe_emulator.pay_invoice(
                po.stripe_invoice_id, amount=100000, payment_method_type=method
            )
            stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=35000)
            stripe_emulator.pay_invoice(po.stripe_invoice_id, payment_method_type=method)

        # Through the app's client: the workers may still be calling Stripe, and reads outside
        # our limiter would meet the account's 25 requests/s sandbox limit (a 429).
        client = build_stripe_client(conference)
        # What Stripe sends to the endpoint: the events of the types it subscribes to.
        events_at_stripe = {
            event.id: event.type
            for event in client.v1.events.list({"limit": 100}).auto_paging_iter()
            if event.type in WEBHOOK_EVENT_TYPES
        }
        with BeatTicker(broker_url, [REENQUEUE_TASK], interval=2.0) as beat:
            started = time.monotonic()
            setup_seconds = started - setup_started
            stripe_emulator.configure(stripe_secret_key, webhooks_paused=False)
            # The burst is on: kill Redis once a third of it is in, bring it back empty.
            wait_until(
                lambda: _recorded(conference) >= len(events_at_stripe) * KILL_AT,
                timeout=120,
                interval=0.01,
                message="the burst never reached the web app",
            )
            recorded_at_kill = _recorded(conference)
            messages_lost = broker_backlog(broker_url)  # queued or reserved: gone with Redis
            _set_sentinel(broker_url)
            private_redis.kill()
            killed_at = time.time()
            time.sleep(OUTAGE_SECONDS)
            recorded_during_outage = _recorded(conference) - recorded_at_kill
            private_redis.start()
            back_at = time.time()
            assert not _sentinel_survived(broker_url)  # back empty: nothing queued survived

            deliveries = stripe_emulator.wait_for_deliveries(
                stripe_secret_key, timeout=60 + 0.2 * len(events_at_stripe)
            )
            burst_seconds = time.monotonic() - started
            # Stripe keeps retrying for days; our stand-in for that is posting what it gave up on.
            succeeded = {d["event_id"] for d in deliveries if d["succeeded"]}
            given_up = sorted(set(events_at_stripe) - succeeded)
            reposted = 0
            for event_id in given_up:
                payload = encode_payload(client.v1.events.retrieve(event_id).to_dict())
                status = _repost(
                    web.webhook_url(conference.slug), conference.stripe_webhook_secret, payload
                )
                assert status == 200
                reposted += 1

            def all_settled() -> bool:
                _restart_exited(workers, restarts)
                return _unsettled(conference) == 0

            wait_until(
                all_settled,
                timeout=60 + 0.3 * len(events_at_stripe),
                interval=0.2,
                message=f"{_unsettled(conference)} events never processed",
            )
            wall = time.monotonic() - started
        web_log = web.service.log_text()
    logs = "\n".join(worker.log_text() for worker in workers)

    rows = {row.stripe_event_id: row for row in StripeEvent.objects.filter(conference=conference)}
    wrong = {
        event_id: row.status
        for event_id, row in rows.items()
        if row.status
        != (EventStatus.PROCESSED if row.type in HANDLED_EVENT_TYPES else EventStatus.IGNORED)
    }
    settled = Counter(event_id for event_id, _ in _SETTLED.findall(logs))
    twice = {event_id: n for event_id, n in settled.items() if n != 1}
    report = compare_with_stripe(emulator=stripe_emulator, conference=conference)

    attempts_during_outage = [d for d in deliveries if killed_at <= d["time"] <= back_at]
    requests = stripe_emulator.requests(stripe_secret_key)
    record_figures(
        purchase_orders=po_count,
        events_at_stripe=len(events_at_stripe),
        delivery_attempts=len(deliveries),
        duplicate_deliveries=sum(1 for d in deliveries if d["duplicate"]),
        accepted_2xx=sum(1 for d in deliveries if d["succeeded"]),
        refused_or_5xx=sum(1 for d in deliveries if not d["succeeded"]),
        refused_during_outage=sum(1 for d in attempts_during_outage if not d["succeeded"]),
        attempts_during_outage=len(attempts_during_outage),
        reposted_by_test=reposted,
        recorded_before_kill=recorded_at_kill,
        recorded_during_outage=recorded_during_outage,
        # A lone event (process_stripe_event) or a batch the publisher thread sent at once
        # (queue_stripe_events) that the broker refused: the rows were made due for the beat.
        not_queued_by_web=web_log.count("could not queue workers.tasks."),
        workers_restarted_after_exit=sum(restarts.values()),
        reenqueued_by_beat=sum(int(n) for n, _ in _REENQUEUED.findall(logs)),
        messages_in_redis_at_kill=messages_lost,
        tasks_cancelled_on_connection_loss=logs.count(_CANCELLED),
        # Cancelled mid-event, their claim expired (STRIPE_EVENT_CLAIM_SECONDS) and the beat
        # queued them again.
        rows_tried_more_than_once=sum(1 for row in rows.values() if row.attempts > 1),
        beat_ticks=beat.sent[REENQUEUE_TASK],
        beat_ticks_failed=beat.failed,
        processed=sum(1 for row in rows.values() if row.status == EventStatus.PROCESSED),
        ignored=sum(1 for row in rows.values() if row.status == EventStatus.IGNORED),
        settled_in_worker_logs=len(settled),
        processed_twice=len(twice),
        lost=len(set(events_at_stripe) - set(rows)),
        max_attempts_on_a_row=max(row.attempts for row in rows.values()),
        setup_seconds=round(setup_seconds, 1),
        stripe_payments=report.stripe_payments,
        stripe_api_calls=stripe_call_figures(requests)["stripe_calls"],
        burst_seconds=round(burst_seconds, 1),
        wall_seconds=round(wall, 1),
    )

    assert set(rows) == set(events_at_stripe), "an event Stripe has was never recorded"
    assert wrong == {}
    # A task cancelled just after settling may not have logged it: the log is a lower bound.
    assert set(settled) <= set(rows), "a worker settled an event of another conference"
    assert twice == {}, "an event was processed more than once"
    report.assert_consistent()
    assert {po.status for po in PurchaseOrder.objects.filter(conference=conference)} == {
        Status.PAID
    }
    # Workers reconnect by themselves (workers.broker): none exited for a supervisor to restart.
    unrecoverable = [line for line in logs.splitlines() if "Unrecoverable error" in line]
    assert not restarts, f"workers exited and were restarted: {dict(restarts)}; {unrecoverable}"
