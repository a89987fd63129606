"""Case 1 of issue 6: workers SIGKILLed at random moments while approved POs are invoiced.

Real ``celery worker`` prefork processes invoice POs that the test approves (the approval signal
queues the creation task). At random points of the progress a worker is killed with SIGKILL,
either the whole worker (main process and pool children: a lost machine; its reserved messages
come back after the visibility timeout, and the beat's ``resume_stalled_invoice_creation`` queues
the stalled POs again) or one pool child in the middle of a task (the parent rejects the message
back to the queue, ``task_reject_on_worker_lost``); the killed worker is then restarted. At the
end the emulator must hold exactly one sent invoice per PO, no orphan draft, and no PO may keep
an error from an attempt that a later run finished. 3% of Stripe calls also fail transiently, so
retries and recorded errors mix with the kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from invoicing.models import PurchaseOrder
from invoicing.services import purchase_orders
from tests.core import conftest as core_fixtures
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.reliability.conftest import RecordFigures, size
from tests.reliability.stack import (
    VISIBILITY_TIMEOUT,
    BeatTicker,
    broker_backlog,
    publishing_to,
    stack_environment,
    stripe_call_figures,
    task_log_figures,
)
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import StartWorkers, WorkerProcess, celery_app, wait_until
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
CREATE_TASK = "workers.tasks.create_invoice_for_purchase_order"
RESUME_TASK = "workers.tasks.resume_stalled_invoice_creation"


def _sent(conference_id: int) -> int:
    return PurchaseOrder.objects.filter(
        conference_id=conference_id, invoice_sent_at__isnull=False
    ).count()


def _reached(conference_id: int, mark: int) -> bool:
    return _sent(conference_id) >= mark


def _keep_request_log(emulator: EmulatorHandle, secret_key: str, directory: Path) -> None:
    """The account's Stripe request log next to the worker logs, to explain a failure."""
    path = directory / "stripe-requests.json"
    path.write_text(json.dumps(emulator.requests(secret_key), indent=1, default=str))


def _kill(worker: WorkerProcess, rng: random.Random, *, whole: bool) -> str:
    """SIGKILL the whole worker (then restart it) or one busy pool child; returns which."""
    if not whole:
        # Billiard treats a child lost while the pool is still starting as fatal ("Could not start
        # worker processes": the worker exits, for its supervisor to restart): a worker restarted
        # by an earlier kill gets its pool children killed once it is up and answering pings.
        worker.wait_ready(celery_app())
        children = worker.child_pids()
        if children:
            os.kill(rng.choice(children), signal.SIGKILL)  # the parent forks a new child itself
            return "child"
    worker.kill_group(signal.SIGKILL)
    worker.start()  # restarted at once; the kills go on while it boots (readiness checked later)
    return "worker"


def test_workers_killed_while_invoicing_leave_one_sent_invoice_per_po(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    settings: Any,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    private_redis: RedisServer,
    celery_worker_processes: StartWorkers,
    record_figures: RecordFigures,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    count = size(ci=40, full=200)
    kills = size(ci=4, full=20)
    seed = int(os.environ.get("RELIABILITY_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    env = stack_environment(private_redis)
    # The test's own reads of Stripe share the workers' limiter, so together they stay under the
    # account's rate while the workers are still calling Stripe.
    settings.STRIPE_RATE_LIMIT_REDIS_URL = env["STRIPE_RATE_LIMIT_REDIS_URL"]
    broker_url = env["CELERY_BROKER_URL"]

    conference = make_conference(secret_key=stripe_secret_key)
    # Every call takes 10-60 ms, so a kill lands inside Stripe calls, not only between tasks; a
    # few calls fail (a 500 stored under its key, a lock timeout, an answer lost after the write),
    # so retries run and errors are recorded on POs between the kills.
    stripe_emulator.configure(
        stripe_secret_key,
        latency=0.01,
        latency_jitter=0.05,
        seed=seed,
        error_rate=0.03,
        errors=["500", "lock_timeout", "reset_after_commit"],
    )
    companies = max(2, count // 4)  # customers shared by several POs, created concurrently
    pos = [
        make_purchase_order(
            conference=conference,
            approve=False,
            reference=f"PO-KILL-{index:04d}",
            organization_name=f"Company {index % companies}",
            contact_email=f"billing{index % companies}@example.com",
        )
        for index in range(count)
    ]
    workers = celery_worker_processes(2, concurrency=2, env=env)
    request.addfinalizer(partial(_keep_request_log, stripe_emulator, stripe_secret_key, tmp_path))

    started = time.monotonic()
    # Kill when the number of sent invoices reaches these marks: random moments while work remains.
    marks = sorted(rng.sample(range(1, int(count * 0.7)), kills))
    delivered: list[str] = []
    first_whole = rng.randrange(2)
    sent_at_kill: list[int] = []
    with BeatTicker(broker_url, [RESUME_TASK], interval=2.0) as beat:
        with publishing_to(broker_url):
            for po in pos:
                purchase_orders.approve_purchase_order(po)
        for mark in marks:
            wait_until(
                partial(_reached, conference.pk, mark),
                timeout=120,
                interval=0.02,
                message=f"invoicing stalled below {mark} sent invoices",
            )
            sent_now = _sent(conference.pk)
            if sent_now >= count:
                break  # nothing left to interrupt
            # Whole workers and pool children in turn, so both happen at every size.
            whole = (len(delivered) + first_whole) % 2 == 0
            with_children = [worker for worker in workers if worker.child_pids()]
            victim = rng.choice(workers if whole or not with_children else with_children)
            delivered.append(_kill(victim, rng, whole=whole))
            sent_at_kill.append(sent_now)
        deadline = time.monotonic() + 60 + 2 * count
        while _sent(conference.pk) < count:
            if time.monotonic() > deadline:
                errors = PurchaseOrder.objects.filter(conference=conference).exclude(
                    invoice_error=""
                )
                pytest.fail(
                    f"only {_sent(conference.pk)} of {count} invoices sent; errors: "
                    + "; ".join(f"{po.reference}: {po.invoice_error}" for po in errors)
                )
            time.sleep(0.1)
        invoiced_after = time.monotonic() - started
        for worker in workers:
            worker.wait_ready(celery_app())  # every restarted worker came back
        # Messages the killed workers had reserved come back after the visibility timeout and a
        # worker's start sweeps them up: let every one of them run (as no-ops) before comparing.
        time.sleep(VISIBILITY_TIMEOUT + 0.5)
        workers[0].restart()
        wait_until(
            lambda: broker_backlog(broker_url) == 0,
            timeout=60 + count,
            interval=0.2,
            message="redelivered messages never drained",
        )
    wall = time.monotonic() - started

    stripe_emulator.configure(stripe_secret_key, error_rate=0.0)  # the test's own reads
    report = compare_with_stripe(emulator=stripe_emulator, conference=conference)
    report.assert_consistent()
    assert report.invoices == count
    pos_after = list(PurchaseOrder.objects.filter(conference=conference))
    assert {po.status for po in pos_after} == {Status.INVOICED}
    # A run that found the invoice done must not leave an earlier attempt's error on the PO.
    assert [(po.reference, po.invoice_error) for po in pos_after if po.invoice_error] == []
    assert not any(po.invoice_creation_blocked for po in pos_after)
    assert len(delivered) == kills, f"only {len(delivered)} kills landed while work remained"

    requests = stripe_emulator.requests(stripe_secret_key)
    logs = [worker.log_text() for worker in workers]
    tasks = task_log_figures(logs, CREATE_TASK)
    calls = stripe_call_figures(requests)
    record_figures(
        seed=seed,
        purchase_orders=count,
        invoices_in_stripe=report.invoices,
        kills_planned=kills,
        kills_delivered=len(delivered),
        whole_worker_kills=delivered.count("worker"),
        pool_child_kills=delivered.count("child"),
        sent_invoices_at_each_kill=sent_at_kill,
        creation_deliveries=tasks.received,
        creation_messages=tasks.distinct,
        creation_retries=tasks.retries,
        creation_redelivered=tasks.redelivered,
        resume_ticks=beat.sent[RESUME_TASK],
        **calls,
        stripe_calls_per_invoice=round(calls["stripe_calls"] / count, 2),
        orphan_drafts=0,
        seconds_until_all_sent=round(invoiced_after, 1),
        wall_seconds=round(wall, 1),
    )
