"""Benchmark 2: 1,000 POs approved at once, invoiced at Stripe's rate limit, against a baseline.

Run (one command; pytest-django creates and drops its own test database, the emulator and the
workers are subprocesses it starts and stops; like the other Django benchmarks here)::

    .venv/bin/pytest tests/benchmarks/bulk_invoicing.py -s -p no:cacheprovider

Knobs (environment): ``BENCH_BULK_POS`` (1000), ``BENCH_BULK_WORKERS`` (2 ``celery worker``
processes), ``BENCH_BULK_CONCURRENCY`` (10 prefork children each), ``BENCH_BULK_LATENCY`` (0.1 s),
``BENCH_BULK_BASELINE=0`` (ours only: the baseline takes ~10 minutes).

Setup: two conferences (two Stripe accounts in the emulator, each adding ``latency`` to every
call and answering 429 past 25 requests in any second, like Stripe's sandbox), N POs of 3 lines,
alternating between them, each from a new customer (the dearest path). Real ``celery worker``
subprocesses on the test database and the broker, with enough concurrency to keep each account's
pipe full: at 23 requests/s and ~0.12 s per call, 3 calls must be in flight per account.

1. **Ours**: all N POs approved in one transaction (``approve_purchase_order``; the commit
   queues N ``create_invoice_for_purchase_order`` tasks), production code and settings as they
   are (rate limiter: at most 24 per 1.05 s window, shared through Redis).
2. **Baseline**, on the same workers, N more POs with the same lines in two fresh accounts: the
   original approach (customer looked up by listing, one invoice-item call per line, no rate
   limiter), as :func:`baseline_create_invoice` below, with the same ``StripeClient`` settings
   minus the limiter, the same retry policy (retry transient errors with the production backoff)
   and per-PO idempotency keys, so the only differences are the three the issue names.

Figures come from the emulator's request log (calls, 429s, arrival times) and the database
(invoices sent, failures); duplicates from ``compare_with_stripe`` (invoices per PO, orphan
drafts) plus customers per e-mail. The steady-state rate is counted between the first and last
request of each account, less 2 s at each end (ramp-up and tail).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import stripe
from celery import Task, shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from invoicing import money
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderLineItem
from invoicing.retry import backoff_seconds, describe_error, is_transient
from invoicing.services import purchase_orders
from invoicing.services.invoice_creation import _invoice_create_params
from invoicing.services.stripe_client import STRIPE_API_VERSION, build_stripe_client
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support import celery_workers
from tests.support.celery_workers import StartWorkers, WorkerProcess
from tests.support.consistency import compare_with_stripe

if TYPE_CHECKING:
    from stripe.params import InvoiceItemCreateParams

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(3600)]

N = int(os.environ.get("BENCH_BULK_POS", "1000"))
WORKERS = int(os.environ.get("BENCH_BULK_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_BULK_CONCURRENCY", "10"))
LATENCY = float(os.environ.get("BENCH_BULK_LATENCY", "0.1"))
BASELINE = os.environ.get("BENCH_BULK_BASELINE", "1") != "0"
STRIPE_LIMIT = 25  # requests per second per account, Stripe's sandbox
LINES = [("Gold sponsorship", 1, "5000.00"), ("Booth", 2, "750.00"), ("Ticket", 5, "399.00")]
EDGE_SECONDS = 2.0  # left out at each end of an account's requests for the steady state
Status = PurchaseOrder.Status


# --- The baseline: the original approach, inside the benchmark, not in production code -----------

_baseline_clients: dict[str, stripe.StripeClient] = {}


def _baseline_client(secret_key: str) -> stripe.StripeClient:
    """Our StripeClient's settings (version, retries, timeout, base) without the rate limiter."""
    client = _baseline_clients.get(secret_key)
    if client is None:
        client = _baseline_clients[secret_key] = stripe.StripeClient(
            secret_key,
            stripe_version=STRIPE_API_VERSION,
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
            base_addresses={"api": settings.STRIPE_API_BASE},
        )
    return client


def _baseline_invoice(po: PurchaseOrder) -> None:
    client = _baseline_client(po.conference.stripe_secret_key)
    found = client.v1.customers.list({"email": po.contact_email, "limit": 1})
    if found.data:
        customer_id = found.data[0].id
    else:
        customer_id = client.v1.customers.create(
            {"email": po.contact_email, "name": po.organization_name},
            options={"idempotency_key": po.idempotency_key("baseline-customer")},
        ).id
    invoice = client.v1.invoices.create(
        _invoice_create_params(po, customer_id),
        options={"idempotency_key": po.idempotency_key("baseline-invoice")},
    )
    for item in po.line_items.all():
        line: InvoiceItemCreateParams = {
            "customer": customer_id,
            "invoice": invoice.id,
            "currency": po.currency,
            "unit_amount_decimal": Decimal(money.to_minor_units(item.unit_price, po.currency)),
            "quantity": item.quantity,
            "description": item.description,
        }
        client.v1.invoice_items.create(
            line,
            options={"idempotency_key": po.idempotency_key(f"baseline-line-{item.position}")},
        )
    client.v1.invoices.finalize_invoice(
        invoice.id,
        {"auto_advance": False},
        options={"idempotency_key": po.idempotency_key("baseline-finalize")},
    )
    sent = client.v1.invoices.send_invoice(
        invoice.id, options={"idempotency_key": po.idempotency_key("baseline-send")}
    )
    PurchaseOrder.objects.filter(pk=po.pk).update(
        status=Status.INVOICED,
        stripe_invoice_id=sent.id,
        stripe_invoice_url=sent.hosted_invoice_url or "",
        stripe_invoice_status=sent.status or "",
        invoice_sent_at=timezone.now(),
        invoice_error="",
    )


@shared_task(bind=True, name="tests.benchmarks.baseline_create_invoice", max_retries=None)
def baseline_create_invoice(self: Task[Any, Any], purchase_order_id: int) -> None:
    """The original approach, with the production retry policy (transient: back off, retry)."""
    po = PurchaseOrder.objects.select_related("conference").get(pk=purchase_order_id)
    if po.invoice_sent_at is not None:
        return
    try:
        _baseline_invoice(po)
    except Exception as error:
        retries = int(self.request.retries or 0)
        if is_transient(error) and retries < settings.TASK_MAX_RETRIES:
            raise self.retry(exc=error, countdown=backoff_seconds(retries + 1)) from error
        PurchaseOrder.objects.filter(pk=po.pk).update(
            invoice_error=describe_error(error), invoice_creation_blocked=True
        )


# --- Setup ----------------------------------------------------------------------------------------


def _conference(emulator: EmulatorHandle, label: str) -> Conference:
    key = emulator.new_secret_key()
    emulator.configure(key, latency=LATENCY, rate_limit=STRIPE_LIMIT)
    slug = f"bulk-{label}-{uuid.uuid4().hex[:6]}"
    return Conference.objects.create(slug=slug, name=slug, stripe_secret_key=key)


def _purchase_orders(conferences: list[Conference], *, status: str) -> list[PurchaseOrder]:
    """N POs alternating between the conferences, 3 lines each, every one a new customer."""
    run = uuid.uuid4().hex[:6]
    now = timezone.now()
    pos = PurchaseOrder.objects.bulk_create(
        PurchaseOrder(
            conference=conferences[index % len(conferences)],
            reference=f"BULK-{run}-{index:05d}",
            organization_name=f"Sponsor {index}",
            contact_email=f"billing{index}-{run}@sponsor.example",
            currency="usd",
            status=status,
            approved_at=now if status == Status.APPROVED else None,
        )
        for index in range(N)
    )
    PurchaseOrderLineItem.objects.bulk_create(
        PurchaseOrderLineItem(
            purchase_order=po,
            position=position,
            description=description,
            quantity=quantity,
            unit_price=Decimal(price),
        )
        for po in pos
        for position, (description, quantity, price) in enumerate(LINES, start=1)
    )
    return pos


# --- Figures --------------------------------------------------------------------------------------


@dataclass
class AccountFigures:
    calls: int
    rejected: int  # 429
    first: float
    last: float
    steady_rate: float
    overall_rate: float
    busiest_second: int
    in_flight: float  # mean requests being served at once (sum of durations / active time)


@dataclass
class RunFigures:
    label: str
    seconds: float
    sent: int
    failed: int
    duplicates: int
    task_retries: int
    accounts: list[AccountFigures]
    cpu: dict[str, float]  # CPU seconds per invoice: workers, emulator, this process
    load: tuple[tuple[float, float, float], tuple[float, float, float]]  # before, after

    @property
    def accepted_calls(self) -> int:
        return self.calls - self.rejected

    @property
    def calls(self) -> int:
        return sum(account.calls for account in self.accounts)

    @property
    def rejected(self) -> int:
        return sum(account.rejected for account in self.accounts)


def _busiest_second(stamps: list[float]) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def _account_figures(emulator: EmulatorHandle, key: str) -> AccountFigures:
    log = [entry for entry in emulator.requests(key) if entry["path"].startswith("/v1/")]
    accepted = sorted(float(entry["time"]) for entry in log if entry["status"] != 429)
    first, last = accepted[0], accepted[-1]
    low, high = first + EDGE_SECONDS, last - EDGE_SECONDS
    steady = [stamp for stamp in accepted if low <= stamp < high]
    return AccountFigures(
        calls=len(log),
        rejected=sum(1 for entry in log if entry["status"] == 429),
        first=first,
        last=last,
        steady_rate=len(steady) / (high - low) if high > low else float("nan"),
        overall_rate=(len(accepted) - 1) / (last - first) if last > first else float("nan"),
        busiest_second=_busiest_second(accepted),
        in_flight=sum(float(entry["duration_ms"] or 0) for entry in log) / 1000 / (last - first),
    )


def _duplicates(emulator: EmulatorHandle, conference: Conference) -> list[str]:
    problems = compare_with_stripe(emulator=emulator, conference=conference).problems
    client = emulator.client(conference.stripe_secret_key)
    emails = Counter(
        customer.email for customer in client.v1.customers.list({"limit": 100}).auto_paging_iter()
    )
    problems += [f"{count} customers for {email}" for email, count in emails.items() if count > 1]
    return problems


def _wait_until_done(
    pos: list[PurchaseOrder], started: float, on_poll: Callable[[], None] = lambda: None
) -> None:
    ids = [po.pk for po in pos]
    deadline = time.monotonic() + max(600.0, N * 1.0)
    last_report = 0.0
    while time.monotonic() < deadline:
        done = PurchaseOrder.objects.filter(pk__in=ids, invoice_sent_at__isnull=False).count()
        blocked = PurchaseOrder.objects.filter(
            pk__in=ids, invoice_sent_at__isnull=True, invoice_creation_blocked=True
        ).count()
        on_poll()
        if done + blocked >= len(ids):
            return
        if time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            print(f"  ... {done} sent, {blocked} blocked after {time.monotonic() - started:.0f} s")
        time.sleep(0.5)
    print("  !!! gave up waiting; counting what is there")


def _run(
    label: str,
    emulator: EmulatorHandle,
    conferences: list[Conference],
    pos: list[PurchaseOrder],
    workers: list[WorkerProcess],
    start: Callable[[], datetime],
) -> RunFigures:
    """``start()`` queues the work and returns when the clock starts; wait, then read figures."""
    retries_before = _task_retries(workers)
    load_before = os.getloadavg()
    pids = {"workers": _worker_pids(workers), "emulator": [emulator.pid or 0]}
    cpu_before = {name: _cpu_seconds(group) for name, group in pids.items()}
    postgres = _PostgresCpu()
    test_cpu_before = time.process_time()
    started = time.monotonic()
    start_wall = start()
    _wait_until_done(pos, started, on_poll=postgres.sample)
    cpu = {name: _cpu_seconds(group) - cpu_before[name] for name, group in pids.items()}
    cpu["this process"] = time.process_time() - test_cpu_before
    cpu["postgres"] = postgres.seconds()
    load_after = os.getloadavg()

    ids = [po.pk for po in pos]
    sent = PurchaseOrder.objects.filter(pk__in=ids, invoice_sent_at__isnull=False)
    finished = sent.aggregate(last=Max("invoice_sent_at"))["last"]
    # Read the request logs before checking for duplicates, whose lists are logged too.
    accounts = [_account_figures(emulator, c.stripe_secret_key) for c in conferences]
    duplicates = [problem for c in conferences for problem in _duplicates(emulator, c)]
    for problem in duplicates[:5]:
        print(f"  {label} duplicate/problem: {problem}")
    count = sent.count()
    return RunFigures(
        label=label,
        seconds=(finished - start_wall).total_seconds() if finished else float("nan"),
        sent=count,
        failed=len(ids) - count,
        duplicates=len(duplicates),
        task_retries=_task_retries(workers) - retries_before,
        accounts=accounts,
        cpu={name: seconds / max(count, 1) for name, seconds in cpu.items()},
        load=(load_before, load_after),
    )


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


class _PostgresCpu:
    """CPU of the PostgreSQL backends serving the test database, sampled from /proc.

    Backends come and go (``DATABASE_CONN_MAX_AGE``), so they are sampled while the run goes on
    and each one's last reading is kept; backends already there at the start count from there.
    """

    def __init__(self) -> None:
        self._name = str(connection.settings_dict["NAME"])
        self._start = self._read()
        self._last = dict(self._start)

    def _read(self) -> dict[int, float]:
        readings = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"postgres: ") and f" {self._name} ".encode() in cmdline:
                readings[int(entry.name)] = _cpu_seconds([int(entry.name)])
        return readings

    def sample(self) -> None:
        self._last.update(self._read())

    def seconds(self) -> float:
        self.sample()
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())


def _worker_pids(workers: list[WorkerProcess]) -> list[int]:
    return [pid for worker in workers for pid in [worker.pid, *worker.child_pids()]]


def _task_retries(workers: list[WorkerProcess]) -> int:
    return sum(worker.log_text().count("retry: Retry in") for worker in workers)


def _print(run: RunFigures) -> None:
    print(f"\n{run.label}: {run.sent}/{N} invoices sent in {run.seconds:.1f} s "
          f"({run.sent / run.seconds:.2f} invoices/s); {run.calls} Stripe calls = "
          f"{run.calls / max(run.sent, 1):.3f} per invoice ({run.rejected} x 429, "
          f"{run.accepted_calls / max(run.sent, 1):.3f} accepted per invoice); "
          f"{run.task_retries} task retries; {run.failed} failed; "
          f"{run.duplicates} duplicates")  # fmt: skip
    for index, account in enumerate(run.accounts):
        print(f"  account {index + 1}: {account.calls} calls ({account.rejected} x 429), "
              f"steady {account.steady_rate:.2f}/s = {account.steady_rate / STRIPE_LIMIT:.1%} of "
              f"{STRIPE_LIMIT}/s, overall {account.overall_rate:.2f}/s, busiest second "
              f"{account.busiest_second}, {account.in_flight:.2f} in flight on average, "
              f"active {account.last - account.first:.1f} s")  # fmt: skip
    cpu = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in run.cpu.items())
    print(f"  CPU per invoice: {cpu}; load average before {run.load[0]}, after {run.load[1]}")


def _limiter_alone(emulator: EmulatorHandle, conferences: list[Conference]) -> list[AccountFigures]:
    """Cheap calls (retrieves) from 8 threads per account through our rate-limited clients.

    Isolates the limiter from the workers: each call costs a few ms of CPU here, so the callers
    keep every account's pipe full even on a loaded machine, and the rate seen is the limiter's.
    """
    per_account, threads = 300, 8

    def hammer(conference: Conference, customer_id: str) -> None:
        client = build_stripe_client(conference)
        for _ in range(per_account // threads):
            client.v1.customers.retrieve(customer_id)

    customers = {
        c.pk: emulator.client(c.stripe_secret_key).v1.customers.create({"email": "x@y.example"}).id
        for c in conferences
    }
    for conference in conferences:
        emulator.clear_requests(conference.stripe_secret_key)
    with ThreadPoolExecutor(max_workers=threads * len(conferences)) as pool:
        for future in [
            pool.submit(hammer, c, customers[c.pk]) for c in conferences for _ in range(threads)
        ]:
            future.result()
    return [_account_figures(emulator, c.stripe_secret_key) for c in conferences]


# --- The benchmark --------------------------------------------------------------------------------


def test_bulk_invoicing_at_the_rate_limit(
    stripe_emulator: EmulatorHandle,
    celery_worker_processes: StartWorkers,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="invoicing")  # not 1,000 "queued" lines
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    # The workers must know the baseline task too.
    monkeypatch.setattr(
        celery_workers, "TEST_TASK_MODULES", (*celery_workers.TEST_TASK_MODULES, __name__)
    )
    ours_conferences = [_conference(stripe_emulator, f"ours-{n}") for n in "ab"]
    base_conferences = [_conference(stripe_emulator, f"base-{n}") for n in "ab"]
    ours_pos = _purchase_orders(ours_conferences, status=Status.DRAFT)
    base_pos = _purchase_orders(base_conferences, status=Status.APPROVED)
    workers = celery_worker_processes(
        WORKERS,
        pool="prefork",
        concurrency=CONCURRENCY,
        loglevel="INFO",  # INFO logs retries
    )
    print(f"\nsetup: {N} POs x {len(LINES)} lines twice, 2 accounts each at {STRIPE_LIMIT}/s, "
          f"latency {LATENCY * 1000:.0f} ms; {WORKERS} workers x {CONCURRENCY} prefork; "
          f"limiter {settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND} per "
          f"{1 + settings.STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS:g} s window; "
          f"load average {os.getloadavg()}")  # fmt: skip

    # 0. The limiter alone, callers never short (what the schedule gives when the pipe is full).
    alone = _limiter_alone(
        stripe_emulator, [_conference(stripe_emulator, f"pipe-{n}") for n in "ab"]
    )
    for index, account in enumerate(alone):
        print(f"limiter alone, account {index + 1}: {account.calls} retrieves from 8 threads "
              f"({account.rejected} x 429), steady {account.steady_rate:.2f}/s = "
              f"{account.steady_rate / STRIPE_LIMIT:.1%} of {STRIPE_LIMIT}/s, busiest second "
              f"{account.busiest_second}, {account.in_flight:.2f} in flight")  # fmt: skip

    # 1. Ours: approve everything in one transaction; the commit queues the tasks.
    def approve_all() -> datetime:
        committed: list[datetime] = []
        with transaction.atomic():
            # Registered first, so it runs first at the commit, before the tasks are queued.
            transaction.on_commit(lambda: committed.append(timezone.now()))
            for po in ours_pos:
                purchase_orders.approve_purchase_order(po)
        return committed[0]

    ours = _run("ours", stripe_emulator, ours_conferences, ours_pos, workers, approve_all)
    _print(ours)
    if not BASELINE:
        return

    # 2. Baseline on the same workers.
    def queue_baseline() -> datetime:
        queued = timezone.now()
        for po in base_pos:
            baseline_create_invoice.delay(po.pk)
        return queued

    base = _run("baseline", stripe_emulator, base_conferences, base_pos, workers, queue_baseline)
    _print(base)

    rates = [a.steady_rate / STRIPE_LIMIT for a in ours.accounts]
    print(f"\nratio: ours {base.seconds / ours.seconds:.2f}x faster than the baseline, "
          f"{ours.calls / max(ours.sent, 1):.2f} vs {base.calls / max(base.sent, 1):.2f} calls "
          f"per invoice, {ours.rejected} vs {base.rejected} x 429; steady state "
          f"{min(rates):.1%}..{max(rates):.1%} of each account's limit "
          f"(mean {statistics.mean(rates):.1%})")  # fmt: skip
    goals = {
        ">= 90% of each account's limit": min(rates) >= 0.9,
        "<= 5 calls per invoice": round(ours.accepted_calls / max(ours.sent, 1), 2) <= 5,
        "zero duplicates": ours.duplicates == 0,
        "zero failures": ours.failed == 0,
    }
    verdicts = [f"{goal}: {'met' if ok else 'MISSED'}" for goal, ok in goals.items()]
    print("goals: " + ", ".join(verdicts))
    assert ours.sent == N, "every PO invoiced"
    assert ours.duplicates == 0
