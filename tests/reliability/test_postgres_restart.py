"""Case 3: PostgreSQL restarted while invoices are created and webhook events processed.

How the test database comes to live on a private server
-------------------------------------------------------
pytest-django creates one test database per session, from ``DATABASE_URL``, before the first test
that needs it; every other test of the session shares it on the machine's cluster (5432), which
must never be restarted. So the case runs in two halves:

- :func:`test_postgres_restarted_during_processing` (the one CI runs) starts a PostgreSQL of its
  own (``initdb`` in a temporary directory, a free port; :mod:`tests.support.postgres_server`) and
  a Redis of its own as broker, then runs the inner half in a **pytest subprocess** whose
  ``DATABASE_URL`` points at that server. That session's pytest-django creates its
  ``test_<name>`` database there, and its ``celery worker`` subprocesses, its live server (the
  webhook endpoint) and the test itself all use it. Nothing of the outer session's database or
  broker is involved, so a session worker of the outer run can never take the inner's tasks.
- :func:`test_postgres_restart_inner` does the work and is skipped unless ``PRIVATE_POSTGRES``
  names the server it may restart.

What the inner half does: N approved POs queue their invoice creation on two prefork workers;
each invoice, once sent, is paid in two parts on the emulator, whose webhooks reach the live
server and go through the inbox to the workers. Meanwhile the server is restarted R times, in turns
``pg_ctl stop -m fast`` and ``-m immediate`` (a crash: no checkpoint, recovery at start), each time
down for a second. At the end: every PO paid, every event settled (none failed), and
``compare_with_stripe(...).assert_consistent()``: one invoice per PO, ledgers equal to Stripe.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import InterfaceError, OperationalError, connections

from invoicing.models import PurchaseOrder, StripeEvent
from tests.core.conftest import MakePurchaseOrder, make_conference, make_purchase_order
from tests.pipeline.conftest import _fresh_stripe_clients, webhook_conference
from tests.reliability.conftest import RecordFigures, size
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support import postgres_server
from tests.support.celery_workers import StartWorkers
from tests.support.consistency import compare_with_stripe
from tests.support.postgres_server import PostgresServer, private_postgres_server
from tests.support.processes import REPO_ROOT
from tests.support.redis_server import RedisServer

# Fixtures reused from the core and pipeline tests (imported, so pytest finds them here).
__all__ = ["_fresh_stripe_clients", "make_conference", "make_purchase_order", "webhook_conference"]

_T = TypeVar("_T")
Status = PurchaseOrder.Status
FIGURES_ENV = "PRIVATE_POSTGRES_FIGURES"
DATABASE_NAME = "wt_reliability_pg_restart"
DOWN_SECONDS = 1.0
# The default PO (tests/core/conftest.py) totals 6,350.00 USD: half by card, the rest by ACH.
FIRST_PAYMENT = 317_500

# Worker settings for the inner half: retries in fractions of a second so a case with several
# restarts fits in CI; the policy itself (exponential, jittered, capped) is the production one.
WORKER_ENV = {
    "TASK_RETRY_BACKOFF_BASE_SECONDS": "0.25",
    "TASK_RETRY_BACKOFF_MAX_SECONDS": "2",
    "TASK_MAX_RETRIES": "10",
}


# --- The outer half: a private server, the inner half in a pytest subprocess --------------------


@pytest.mark.timeout(900)
def test_postgres_restarted_during_processing(
    private_redis: RedisServer, record_figures: RecordFigures, tmp_path: Path
) -> None:
    reason = postgres_server.available()
    if reason is not None:
        pytest.skip(f"no private PostgreSQL: {reason}")
    figures_path = tmp_path / "figures.json"
    with private_postgres_server() as server:
        env = {
            **os.environ,
            "DATABASE_URL": server.url(DATABASE_NAME),
            "CELERY_BROKER_URL": private_redis.url(0),
            postgres_server.ENV_VAR: server.to_env(),
            FIGURES_ENV: str(figures_path),
            "PYTHONUNBUFFERED": "1",
        }
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable, "-m", "pytest", f"{Path(__file__)}::test_postgres_restart_inner",
                "-p", "no:cacheprovider", "-q", "-x", "--no-header", "--show-capture=stdout",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        server_log = server.log_text()
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the inner half failed:\n{output[-12000:]}"
    assert "1 passed" in output, output[-4000:]
    figures: dict[str, Any] = json.loads(figures_path.read_text())
    figures["server_terminations_logged"] = len(
        re.findall(r"terminating connection due to administrator command", server_log)
    )
    figures["seconds"] = round(elapsed, 1)
    record_figures(**figures)


# --- The inner half: runs only inside that subprocess --------------------------------------------


def _retry_db(call: Callable[[], _T], *, timeout: float = 60.0) -> _T:
    """Run a database call from the test thread, reconnecting while the server restarts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError):
            connections.close_all()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def pay_in_two_parts_until_settled(
    emulator: EmulatorHandle,
    conference: Any,
    ids: list[int],
    *,
    timeout: float,
    busy: Callable[[], bool] = lambda: False,
) -> dict[int, int]:
    """Pay each PO's invoice in two parts (card, then ACH for the rest) as soon as it is sent.

    Returns when every PO is paid, every inbox event of the conference is settled and ``busy()``
    (the fault injector) is false, or after ``timeout`` seconds (the test's asserts then say what
    is missing). Database reads go through :func:`_retry_db`. Returns payments made per PO pk.
    """
    payments: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while True:
        rows = _retry_db(
            lambda: list(
                PurchaseOrder.objects.filter(pk__in=ids).values_list(
                    "pk", "status", "stripe_invoice_id", "invoice_sent_at"
                )
            )
        )
        for pk, _status, invoice_id, sent_at in rows:
            made = payments.get(pk, 0)
            if sent_at is None or made >= 2:
                continue
            if made == 0:
                emulator.pay_invoice(invoice_id, amount=FIRST_PAYMENT)
            else:
                emulator.pay_invoice(invoice_id, payment_method_type="us_bank_account")
            payments[pk] = made + 1
        settled = not _retry_db(
            lambda: StripeEvent.objects.filter(
                conference=conference,
                status__in=[StripeEvent.Status.PENDING, StripeEvent.Status.PROCESSING],
            ).exists()
        )
        all_paid = all(status == Status.PAID for _, status, _, _ in rows)
        if (all_paid and settled and not busy()) or time.monotonic() > deadline:
            return payments
        time.sleep(0.2)


class Restarter(threading.Thread):
    """Restarts the server every ``interval`` seconds, ``times`` times, in turns fast/immediate."""

    def __init__(self, server: PostgresServer, *, times: int, interval: float) -> None:
        super().__init__(name="postgres-restarter", daemon=True)
        self.server = server
        self.times = times
        self.interval = interval
        self.modes: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            for number in range(self.times):
                if self.stopping.wait(self.interval):
                    return
                mode = "fast" if number % 2 == 0 else "immediate"
                self.server.restart(mode=mode, down_for=DOWN_SECONDS)
                self.modes[mode] += 1
        except BaseException as error:  # reported by the test
            self.error = error

    @property
    def restarts(self) -> int:
        return sum(self.modes.values())


@pytest.mark.skipif(
    postgres_server.ENV_VAR not in os.environ,
    reason="inner half of test_postgres_restarted_during_processing (runs in its subprocess)",
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(840)
def test_postgres_restart_inner(
    stripe_emulator: EmulatorHandle,
    webhook_conference: Any,
    make_purchase_order: MakePurchaseOrder,
    celery_worker_processes: StartWorkers,
) -> None:
    server = PostgresServer.from_env()
    conference = webhook_conference
    count = size(ci=12, full=200)
    restarts = size(ci=3, full=10)
    interval = float(size(ci=3, full=6))
    workers = celery_worker_processes(2, concurrency=2, env=WORKER_ENV)

    started = time.monotonic()
    restarter = Restarter(server, times=restarts, interval=interval)
    pos = [make_purchase_order(conference=conference) for _ in range(min(count, 4))]
    restarter.start()
    pos += [
        _retry_db(lambda: make_purchase_order(conference=conference))
        for _ in range(count - len(pos))
    ]
    ids = [po.pk for po in pos]

    payments = pay_in_two_parts_until_settled(
        stripe_emulator,
        conference,
        ids,
        timeout=60 if count <= 20 else 600,
        busy=restarter.is_alive,
    )
    restarter.stopping.set()
    restarter.join(timeout=60)
    assert restarter.error is None, f"restarting the server failed: {restarter.error!r}"
    deliveries = stripe_emulator.wait_for_deliveries(conference.stripe_secret_key, timeout=60)
    connections.close_all()

    statuses = Counter(PurchaseOrder.objects.filter(pk__in=ids).values_list("status", flat=True))
    events = list(StripeEvent.objects.filter(conference=conference))
    event_statuses = Counter(event.status for event in events)
    logs = "\n".join(worker.log_text() for worker in workers)
    figures = {
        "purchase_orders": count,
        "restarts": restarter.restarts,
        "restart_modes": dict(restarter.modes),
        "task_retries_seen": len(re.findall(r"retry: Retry in", logs)),
        "task_retries_by_task": dict(
            Counter(re.findall(r"Task workers\.tasks\.(\w+)\[[^\]]*\] retry: Retry in", logs))
        ),
        "db_errors_in_worker_logs": len(
            re.findall(r"^.*(?:OperationalError|InterfaceError).*$", logs, flags=re.MULTILINE)
        ),
        "tasks_failed_unexpectedly": len(re.findall(r"raised unexpected", logs)),
        "invoices_in_stripe": 0,
        "events": len(events),
        "events_by_status": dict(event_statuses),
        "events_retried": sum(1 for event in events if event.attempts > 1),
        "webhook_deliveries": len(deliveries),
        "webhook_deliveries_refused": sum(1 for d in deliveries if not d["succeeded"]),
        "webhook_deliveries_failed_for_good": sum(
            1 for d in deliveries if d["final"] and not d["succeeded"]
        ),
        "payments_made": sum(payments.values()),
        "po_statuses": dict(statuses),
        "seconds": round(time.monotonic() - started, 1),
    }
    report = compare_with_stripe(emulator=stripe_emulator, conference=conference)
    figures["invoices_in_stripe"] = report.invoices
    figures["stripe_payments_in_ledger"] = report.stripe_payments
    Path(os.environ.get(FIGURES_ENV, os.devnull)).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))

    assert restarter.restarts == restarts, figures
    # Every task that met the outage retried; none failed for good (and waited for the beat).
    assert figures["tasks_failed_unexpectedly"] == 0, figures
    assert statuses == {Status.PAID: count}, figures
    assert event_statuses[StripeEvent.Status.FAILED] == 0, figures
    assert not event_statuses.keys() & {StripeEvent.Status.PENDING, StripeEvent.Status.PROCESSING}
    report.assert_consistent()
    assert report.invoices == count
