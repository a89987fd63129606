"""Case 4: Stripe (the emulator) fails 20% of API calls while N POs are invoiced and paid.

The conference's emulator account answers a fifth of all API requests with one of: 500, 429
(``rate_limit``, no ``Stripe-Should-Retry``), 429 with ``Stripe-Should-Retry: true``, 429
``lock_timeout``, a connection reset before executing, and a reset *after* executing (the write
happened, the answer was lost), plus random latency (``latency_jitter``), reproducible through
the account's ``seed`` (the draws are; which request gets which draw depends on the workers'
interleaving). The first six writes get one fault of each kind, so every kind is exercised.
Two real prefork workers create the invoices (``celery worker`` subprocesses, stripe-python over
HTTP); each invoice, once sent, is paid in two parts, and the webhooks go through the live
server's inbox to the workers, whose invoice retrieves are faulted too.

Checked at the end: every PO paid, every event processed, one invoice per PO and ledgers equal to
Stripe (``compare_with_stripe``); and, from the emulator's request log, that retries back off as
the policy says:

- **per idempotency key** (one Stripe write): at most ``(TASK_MAX_RETRIES + 1) *
  (STRIPE_MAX_NETWORK_RETRIES + 1)`` requests: stripe-python retries a request itself up to
  ``max_network_retries`` times (``StripeClient(max_network_retries=STRIPE_MAX_NETWORK_RETRIES)``,
  ``invoicing/services/stripe_client.py``), and the task retries the step at most
  ``TASK_MAX_RETRIES`` times (``workers/tasks.py``); a 5xx moves the PO to a fresh key, which
  starts its own count;
- **spacing**: two consecutive requests under one key arrive at least
  ``min(HTTPClient.INITIAL_DELAY, 0.5 * TASK_RETRY_BACKOFF_BASE_SECONDS)`` apart: stripe-python
  sleeps at least 0.5 s before its own retry, and a task retry waits at least half its step
  (``invoicing/retry.py``: ``base * 2**(n-1)`` scaled by [0.5, 1]);
- **per invoice**: no more requests than the creation's runs and the events' attempts allow (see
  :func:`_allowed_calls_for_invoice`).

Each PO has its own customer email (companies differ), so each customer key belongs to one PO;
a shared customer would have concurrent first attempts under one key by design.
"""

from __future__ import annotations

import itertools
import os
import re
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest
from stripe._http_client import HTTPClient

from invoicing.models import PurchaseOrder, StripeCustomer, StripeEvent
from tests.core.conftest import MakePurchaseOrder, make_conference, make_purchase_order
from tests.pipeline.conftest import _fresh_stripe_clients, webhook_conference
from tests.reliability.conftest import RecordFigures, size
from tests.reliability.test_postgres_restart import pay_in_two_parts_until_settled
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import StartWorkers
from tests.support.consistency import compare_with_stripe

# Fixtures reused from the core and pipeline tests (imported, so pytest finds them here).
__all__ = ["_fresh_stripe_clients", "make_conference", "make_purchase_order", "webhook_conference"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

Status = PurchaseOrder.Status
FAULTS = [
    "500",
    "429",
    "429_should_retry",
    "lock_timeout",
    "connection_reset",
    "reset_after_commit",
]
ERROR_RATE = 0.2
LATENCY_JITTER = 0.15

# The retry policy the workers run with: production's except a 1 s backoff base (production: 5 s)
# so the case fits in CI; the bounds below are computed from these same numbers.
STRIPE_MAX_NETWORK_RETRIES = 2  # the production default
TASK_MAX_RETRIES = 10  # the production default
STRIPE_EVENT_MAX_ATTEMPTS = 10  # the production default
TASK_RETRY_BACKOFF_BASE_SECONDS = 1.0
WORKER_ENV = {
    "STRIPE_MAX_NETWORK_RETRIES": str(STRIPE_MAX_NETWORK_RETRIES),
    "TASK_MAX_RETRIES": str(TASK_MAX_RETRIES),
    "STRIPE_EVENT_MAX_ATTEMPTS": str(STRIPE_EVENT_MAX_ATTEMPTS),
    "TASK_RETRY_BACKOFF_BASE_SECONDS": str(TASK_RETRY_BACKOFF_BASE_SECONDS),
    "TASK_RETRY_BACKOFF_MAX_SECONDS": "8",
}
ATTEMPTS_PER_REQUEST = STRIPE_MAX_NETWORK_RETRIES + 1
MAX_REQUESTS_PER_KEY = (TASK_MAX_RETRIES + 1) * ATTEMPTS_PER_REQUEST
MIN_RETRY_GAP_SECONDS = min(HTTPClient.INITIAL_DELAY, 0.5 * TASK_RETRY_BACKOFF_BASE_SECONDS)
# One creation run makes at most: customer, invoice create, its verify (list), add_lines, its
# verify (retrieve), finalize, its verify, send, and the resume retrieve of a rerun.
CREATION_CALLS_PER_RUN = 9
# The arrival times the emulator logs come from another process's clock reading at receipt;
# allow for scheduling noise on a loaded 2-core machine.
CLOCK_SLACK_SECONDS = 0.02


def _allowed_calls_for_invoice(events_for_invoice: int) -> int:
    """Requests one PO's invoice may cost under the policy: creation runs plus event retrieves."""
    creation = (TASK_MAX_RETRIES + 1) * CREATION_CALLS_PER_RUN * ATTEMPTS_PER_REQUEST
    events = events_for_invoice * STRIPE_EVENT_MAX_ATTEMPTS * ATTEMPTS_PER_REQUEST
    return creation + events


@pytest.mark.timeout(900)
def test_stripe_failing_a_fifth_of_calls_creates_each_invoice_once_and_backs_off(
    stripe_emulator: EmulatorHandle,
    webhook_conference: Any,
    make_purchase_order: MakePurchaseOrder,
    celery_worker_processes: StartWorkers,
    record_figures: RecordFigures,
) -> None:
    conference = webhook_conference
    key = conference.stripe_secret_key
    count = size(ci=12, full=200)
    seed = int(os.environ.get("RELIABILITY_SEED", "20261125"))
    stripe_emulator.clear_requests(key)  # the webhook endpoint's registration is not the case
    stripe_emulator.configure(
        key,
        error_rate=ERROR_RATE,
        errors=FAULTS,
        latency_jitter=LATENCY_JITTER,
        seed=seed,
        # One of each kind on the first writes, whatever the draw: every kind is exercised.
        fail_next=[{"error": fault, "method": "POST"} for fault in FAULTS],
    )
    workers = celery_worker_processes(2, concurrency=2, env=WORKER_ENV)

    started = time.monotonic()
    pos = [
        make_purchase_order(
            conference=conference,
            organization_name=f"Company {number}",
            contact_email=f"billing-{number}-{uuid.uuid4().hex[:6]}@example.com",
        )
        for number in range(count)
    ]
    ids = [po.pk for po in pos]
    payments = pay_in_two_parts_until_settled(
        stripe_emulator, conference, ids, timeout=120 if count <= 20 else 900
    )
    elapsed = time.monotonic() - started
    stripe_emulator.configure(key, error_rate=0, latency_jitter=0)  # the check below is clean
    stripe_emulator.wait_for_deliveries(key, timeout=60)
    log = stripe_emulator.requests(key)

    statuses = Counter(PurchaseOrder.objects.filter(pk__in=ids).values_list("status", flat=True))
    events = list(StripeEvent.objects.filter(conference=conference))
    event_statuses = Counter(event.status for event in events)
    report = compare_with_stripe(emulator=stripe_emulator, conference=conference)

    # --- the request log: per key, per invoice ----------------------------------------------
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        if entry["idempotency_key"]:
            by_key[entry["idempotency_key"]].append(entry)
    attempts_per_key = {k: len(entries) for k, entries in by_key.items()}
    gaps: list[tuple[float, str]] = []
    for k, entries in by_key.items():
        times = sorted(entry["time"] for entry in entries)
        gaps += [(later - earlier, k) for earlier, later in itertools.pairwise(times)]
    too_close = [(gap, k) for gap, k in gaps if gap < MIN_RETRY_GAP_SECONDS - CLOCK_SLACK_SECONDS]

    owner: dict[str, int] = {}  # invoice id, PO uid or customer uid -> PO pk
    for po in PurchaseOrder.objects.filter(pk__in=ids):
        owner[str(po.uid)] = po.pk
        owner[po.stripe_invoice_id] = po.pk
    for customer in StripeCustomer.objects.filter(conference=conference):
        (po_pk,) = customer.purchase_orders.values_list("pk", flat=True)  # one PO each
        owner[str(customer.uid)] = po_pk
    calls_per_po: Counter[int] = Counter()
    uid_in_key = re.compile(r"^(?:po|customer)-([0-9a-f-]{36})")
    invoice_in_path = re.compile(r"^/v1/invoices/(in_[A-Za-z0-9]+)")
    for entry in log:
        found = uid_in_key.match(entry["idempotency_key"] or "") or invoice_in_path.match(
            entry["path"]
        )
        if found and found.group(1) in owner:
            calls_per_po[owner[found.group(1)]] += 1
    events_per_po: Counter[int] = Counter()
    for event in events:
        invoice_id = _event_invoice_id(event.payload)
        if invoice_id in owner:
            events_per_po[owner[invoice_id]] += 1
    over_budget = {
        pk: (calls, _allowed_calls_for_invoice(events_per_po[pk]))
        for pk, calls in calls_per_po.items()
        if calls > _allowed_calls_for_invoice(events_per_po[pk])
    }

    logs = "\n".join(worker.log_text() for worker in workers)
    faults = Counter(entry["fault"] for entry in log if entry["fault"])
    figures = {
        "purchase_orders": count,
        "seed": seed,
        "error_rate": ERROR_RATE,
        "api_calls": len(log),
        "faults_injected": sum(faults.values()),
        "faults_by_type": dict(sorted(faults.items())),
        "idempotent_replays": sum(1 for entry in log if entry["idempotent_replayed"]),
        "keys": len(by_key),
        "keys_retried": sum(1 for n in attempts_per_key.values() if n > 1),
        "retried_requests": sum(n - 1 for n in attempts_per_key.values()),
        "task_retries_seen": len(re.findall(r"retry: Retry in", logs)),
        "tasks_failed_unexpectedly": len(re.findall(r"raised unexpected", logs)),
        "max_attempts_per_key": max(attempts_per_key.values(), default=0),
        "allowed_attempts_per_key": MAX_REQUESTS_PER_KEY,
        "min_gap_between_attempts_s": round(min((gap for gap, _ in gaps), default=0.0), 3),
        "required_min_gap_s": MIN_RETRY_GAP_SECONDS,
        "max_calls_per_invoice": max(calls_per_po.values(), default=0),
        "mean_calls_per_invoice": round(sum(calls_per_po.values()) / max(len(calls_per_po), 1), 1),
        "invoices": report.invoices,
        "duplicates": report.invoices - len({po.pk for po in pos}),
        "events": len(events),
        "events_by_status": dict(event_statuses),
        "events_retried": sum(1 for event in events if event.attempts > 1),
        "payments_made": sum(payments.values()),
        "po_statuses": dict(statuses),
        "seconds": round(elapsed, 1),
    }
    record_figures(**figures)

    assert faults.keys() == set(FAULTS), f"not every fault was injected: {figures}"
    assert "raised unexpected" not in logs, figures
    assert statuses == {Status.PAID: count}, figures
    assert set(event_statuses) <= {StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED}, (
        figures
    )
    report.assert_consistent()
    assert report.invoices == count, figures
    assert max(attempts_per_key.values()) <= MAX_REQUESTS_PER_KEY, figures
    assert not too_close, f"retries closer than {MIN_RETRY_GAP_SECONDS} s: {sorted(too_close)[:5]}"
    assert not over_budget, f"invoices over the policy's budget (calls, allowed): {over_budget}"


def _event_invoice_id(payload: dict[str, Any]) -> str:
    """The invoice an event is about (an invoice, or an invoice payment's ``invoice``)."""
    obj = payload.get("data", {}).get("object", {})
    if obj.get("object") == "invoice":
        return str(obj.get("id", ""))
    return str(obj.get("invoice", ""))
