"""Benchmark 1: webhook ingest through gunicorn, against a trivial view served the same way.

Run (wrk is Debian's ``wrk`` package: ``apt-get install wrk``)::

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://.../n \\
        .venv/bin/python -m tests.benchmarks.webhook_ingest [--seconds 10] [--profile]

Setup (:mod:`tests.benchmarks._stack`): a database of its own, the emulator, the Procfile's worker
and its web line (gunicorn, 2 workers x 4 threads by default) with ``/trivial/`` added to the
routes (``webhook_settings``/``webhook_urls``: a CSRF-exempt view that answers what the webhook
view answers and does nothing). ``--invoices`` POs (3 lines each) are approved and invoiced by the
worker through the emulator, then paid there; each paid invoice is the ``data.object`` of the
``invoice.paid`` events posted, so processing them is the real work (the first one per invoice
records the payment, the others find it recorded).

Phase 1, the maximum: wrk, a second process (``-t2 -c50``, closed loop), with
``webhook_ingest.lua``: each request carries the next event of a file signed just before the run
(a new ``evt_`` id each time, so each is one INSERT and one publish). The trivial view gets the
same requests. Each round runs the trivial view, then the webhook view, ``--seconds`` each.
Figures: events/s, wrk's p50/p99 latency, the ratio webhook/trivial (goal >= 0.5).

Phase 2, the latency at half load: an open-loop paced sender (asyncio, in this process, 50
kept-alive connections) posts at a constant rate of half the webhook's max from phase 1 (wrk2 is
not in Debian, and wrk's ``delay()`` is closed loop: a slow answer delays the next request and
hides itself). Latency counts from when a request was due, not when a connection was free, so
queueing shows (no coordinated omission). Goal: p99 < 50 ms. The same sender then posts to the
store-only and the trivial views at the same rate: the tail of the durable write alone, and the
one the server and the machine add whatever the view does. Each line names its slowest request:
when it was due and whether it had to reconnect. Every connection is used once (a GET of the
trivial view) before the clock starts.

During both phases the worker consumes nothing (``--worker-consumes`` changes that): on 2 cores
its CPU would otherwise be charged to the view, which the trivial view does not pay. Then it
drains the queue; the benchmark counts accepted (2xx) vs recorded (inbox rows) vs processed, checks
that no row exists for an id never sent and every id the paced sender saw accepted is recorded,
and compares the ledger with Stripe (``tests.support.consistency``).

``--profile`` adds a run with ``py-spy record`` on gunicorn (not counted) and prints where its
time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.benchmarks import _stack
from tests.benchmarks._stack import BenchmarkError, Stack

LUA_SCRIPT = Path(__file__).with_name("webhook_ingest.lua")
WRK_INSTALL_HINT = (
    "wrk is not installed. It is Debian's `wrk` package: `sudo apt-get install wrk` "
    "(or build it from https://github.com/wg/wrk and put it on PATH)."
)
API_VERSION = "2026-10-28.endive"
EVENT_TEMPLATE = (
    '{\n  "id": "%s",\n  "object": "event",\n  "api_version": "' + API_VERSION + '",\n'
    '  "created": %d,\n  "data": {\n    "object": %s\n  },\n  "livemode": false,\n'
    '  "pending_webhooks": 1,\n  "request": {\n    "id": null,\n    "idempotency_key": null\n'
    '  },\n  "type": "invoice.paid"\n}'
)
SETTLED = ("processed", "ignored", "failed")


# --- Events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedEvent:
    event_id: str
    body: bytes
    signature: str


class EventSource:
    """Signed ``invoice.paid`` events, a new id each, cycling over the paid invoices."""

    def __init__(self, *, secret: str, invoices: list[dict[str, Any]]) -> None:
        self.secret = secret
        self.snapshots = [
            json.dumps(invoice, indent=2).replace("\n", "\n    ") for invoice in invoices
        ]
        self.tag = uuid.uuid4().hex[:8]
        self.issued = 0

    def take(self, count: int) -> list[SignedEvent]:
        from tests.stripe_emulator.webhooks import signature_header

        now = int(time.time())
        events = []
        for number in range(self.issued, self.issued + count):
            event_id = f"evt_bench{self.tag}{number:08d}"
            snapshot = self.snapshots[number % len(self.snapshots)]
            body = (EVENT_TEMPLATE % (event_id, now, snapshot)).encode()
            events.append(SignedEvent(event_id, body, signature_header(body, self.secret, now)))
        self.issued += count
        return events


def write_wrk_files(events: list[SignedEvent], prefix: Path, threads: int) -> list[list[str]]:
    """Thread n's events (round-robin) to ``<prefix><n>``; returns each thread's ids in order."""
    ids: list[list[str]] = [[] for _ in range(threads)]
    with contextlib.ExitStack() as files:
        outputs = [files.enter_context(Path(f"{prefix}{n}").open("wb")) for n in range(threads)]
        for index, event in enumerate(events):
            slot = index % threads
            record = b"%s\n%d\n%s\n" % (event.signature.encode(), len(event.body), event.body)
            outputs[slot].write(record)
            ids[slot].append(event.event_id)
    return ids


# --- Phase 1: wrk --------------------------------------------------------------------------------


@dataclass
class WrkResult:
    view: str
    figures: dict[str, Any]
    sent_ids: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds: gunicorn, database

    @property
    def rate(self) -> float:
        return float(self.figures["requests"]) / (float(self.figures["duration_us"]) / 1e6)

    @property
    def errors(self) -> int:
        keys = ("connect_errors", "read_errors", "write_errors", "timeouts", "non2xx")
        return sum(int(self.figures[key]) for key in keys)

    def line(self) -> str:
        f = self.figures
        return (
            f"{self.view:8s} {self.rate:7.0f} req/s   p50 {f['p50_us'] / 1000:6.1f} ms   "
            f"p90 {f['p90_us'] / 1000:6.1f} ms   p99 {f['p99_us'] / 1000:6.1f} ms   "
            f"max {f['max_us'] / 1000:6.1f} ms   2xx {f['ok']}   errors {self.errors}"
            + (f"   duplicates {f['duplicates']}" if f["duplicates"] else "")
            + (
                f"\n{'':8s} CPU per request: gunicorn {self.cpu_ms('web'):.2f} ms, "
                f"PostgreSQL backends {self.cpu_ms('db'):.2f} ms"
                if self.cpu
                else ""
            )
        )

    def cpu_ms(self, group: str) -> float:
        return 1000 * self.cpu.get(group, 0.0) / max(1, int(self.figures["requests"]))


def run_wrk(
    *,
    url: str,
    view: str,
    events: list[SignedEvent],
    mode: str,
    seconds: float,
    connections: int,
    threads: int,
    workdir: Path,
    meter: _stack.CpuMeter | None = None,
) -> WrkResult:
    prefix = workdir / f"wrk-{view}-{uuid.uuid4().hex[:6]}-"
    ids = write_wrk_files(events, prefix, threads)
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), url, "--", str(prefix), mode,
    ]  # fmt: skip
    if meter is not None:
        meter.start()
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    cpu = meter.stop() if meter is not None else {}
    for n in range(threads):
        Path(f"{prefix}{n}").unlink(missing_ok=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if completed.returncode != 0 or not lines:
        raise BenchmarkError(
            f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    figures = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    sent_ids: list[str] = []
    if mode == "once":
        for thread_ids, sent in zip(ids, figures["sent_per_thread"], strict=True):
            sent_ids.extend(thread_ids[:sent])
        if figures["wrapped"]:
            print(f"  note: {view}: a wrk thread ran out of events (sent them all): figures low")
    return WrkResult(view=view, figures=figures, sent_ids=sent_ids, cpu=cpu)


def _create_floor_table() -> None:
    """The store-only view's table: the inbox's durability (logged, synchronous commit) and
    payload column (jsonb, lz4 where the server has it), without its indexes."""
    from django.db import connection

    from tests.benchmarks.webhook_urls import FLOOR_TABLE

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} "
            "(id bigserial PRIMARY KEY, body jsonb NOT NULL)"
        )
        cursor.execute(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'invoicing_stripeevent'::regclass AND attname = 'payload'"
        )
        (method,) = cursor.fetchone() or ("",)
        if method == "l":
            cursor.execute(f"ALTER TABLE {FLOOR_TABLE} ALTER COLUMN body SET COMPRESSION lz4")


# --- Phase 2: the paced, open-loop sender --------------------------------------------------------


@dataclass
class PacedResult:
    rate: float
    offered: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # from when each request was due
    service: list[float] = field(default_factory=list)  # from when it was written
    statuses: Counter[int] = field(default_factory=Counter)
    accepted_ids: list[str] = field(default_factory=list)
    reconnects: int = 0
    max_lag: float = 0.0  # how late the sender itself was at a due time
    # The slowest request: its latency, when it was due (s after the start), whether it reconnected.
    worst: tuple[float, float, bool] = (0.0, 0.0, False)

    def summary(self) -> str:
        latency, due_at, reconnected = self.worst
        return (
            f"achieved {len(self.latencies) / self.seconds:.0f}/s; latency from due time "
            f"p50 {_stack.percentile(self.latencies, 0.50) * 1000:.1f} ms, "
            f"p90 {_stack.percentile(self.latencies, 0.9) * 1000:.1f} ms, "
            f"p99 {_stack.percentile(self.latencies, 0.99) * 1000:.1f} ms, "
            f"max {latency * 1000:.1f} ms (due at {due_at:.1f} s"
            f"{', after a reconnect' if reconnected else ''}); service time "
            f"p99 {_stack.percentile(self.service, 0.99) * 1000:.1f} ms; statuses "
            f"{dict(self.statuses)}; sender lag max {self.max_lag * 1000:.1f} ms; "
            f"reconnects {self.reconnects}"
        )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed by the server")
    status = int(status_line.split()[1])
    length = 0
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _paced(
    url: str, events: list[SignedEvent], rate: float, connections: int, warm_path: str
) -> PacedResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = PacedResult(rate=rate, offered=len(events))
    # LIFO: the connections in use stay warm; the idle ones may be closed by the server (keep-alive)
    pool: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.LifoQueue()
    for _ in range(connections):
        reader, writer = await asyncio.open_connection(host, port)
        # One request first: a connection opened and left silent kept the first paced requests
        # waiting ~5 s behind it (seen with the trivial view too), which no real sender does.
        writer.write(f"GET {warm_path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        await _read_response(reader)
        pool.put_nowait((reader, writer))
    loop = asyncio.get_running_loop()

    def request(event: SignedEvent) -> bytes:
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nStripe-Signature: {event.signature}\r\n"
            f"Content-Length: {len(event.body)}\r\n\r\n"
        )
        return head.encode() + event.body

    async def one(event: SignedEvent, due: float) -> None:
        reader, writer = await pool.get()
        data = request(event)
        reconnected = False
        for attempt in (1, 2):
            written = loop.time()
            try:
                writer.write(data)
                status, body = await _read_response(reader)
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                if attempt == 2:
                    raise
                writer.close()  # kept-alive connection closed by the server: open another
                result.reconnects += 1
                reconnected = True
                reader, writer = await asyncio.open_connection(host, port)
        finished = loop.time()
        pool.put_nowait((reader, writer))
        result.latencies.append(finished - due)
        if finished - due > result.worst[0]:
            result.worst = (finished - due, due - start, reconnected)
        result.service.append(finished - written)
        result.statuses[status] += 1
        if 200 <= status < 300 and b'"duplicate": false' in body:
            result.accepted_ids.append(event.event_id)

    tasks = []
    start = loop.time() + 0.1
    for index, event in enumerate(events):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            result.max_lag = max(result.max_lag, -delay)
        tasks.append(asyncio.create_task(one(event, due)))
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    return result


def run_paced(
    url: str, events: list[SignedEvent], rate: float, connections: int, warm_path: str
) -> PacedResult:
    return asyncio.run(_paced(url, events, rate, connections, warm_path))


# --- Counting ------------------------------------------------------------------------------------


def inbox_counts(conference: Any) -> Counter[str]:
    from django.db.models import Count

    from invoicing.models import StripeEvent

    rows = (
        StripeEvent.objects.filter(conference=conference).values("status").annotate(n=Count("pk"))
    )
    return Counter({row["status"]: row["n"] for row in rows})


def check_ids(conference: Any, sent: set[str], accepted: set[str]) -> list[str]:
    """Problems: rows for ids never sent, accepted ids without a row."""
    from invoicing.models import StripeEvent

    recorded = set(
        StripeEvent.objects.filter(conference=conference).values_list("stripe_event_id", flat=True)
    )
    problems = []
    phantom = recorded - sent
    if phantom:
        problems.append(f"{len(phantom)} inbox rows for ids never sent, e.g. {sorted(phantom)[:3]}")
    missing = accepted - recorded
    if missing:
        problems.append(
            f"{len(missing)} accepted events have no inbox row, e.g. {sorted(missing)[:3]}"
        )
    return problems


# --- The run -------------------------------------------------------------------------------------


def _prepare(stack: Stack, invoices: int) -> tuple[Any, list[dict[str, Any]]]:
    """A conference with ``invoices`` sent invoices, then paid on the emulator: their snapshots."""
    from invoicing.models import PurchaseOrder

    conference = _stack.make_conference(stack)
    pks = [_stack.create_purchase_order(conference, n, tag="WH").pk for n in range(invoices)]
    _stack.approve_and_wait(stack, pks)
    snapshots = []
    for invoice_id in PurchaseOrder.objects.filter(pk__in=pks).values_list(
        "stripe_invoice_id", flat=True
    ):
        paid = stack.emulator.pay_invoice(invoice_id)["invoice"]
        if paid["status"] != "paid":
            raise BenchmarkError(f"invoice {invoice_id} is {paid['status']} after paying it")
        snapshots.append(paid)
    return conference, snapshots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="one unmeasured run per view")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--invoices", type=int, default=200)
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--worker-consumes", action="store_true", help="worker runs during load")
    parser.add_argument("--profile", action="store_true", help="py-spy on gunicorn, extra run")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_INSTALL_HINT, file=sys.stderr)
        return 2

    with Stack("webhook") as stack:
        print(f"machine: {_stack.machine_summary()}")
        _worker, hostname = stack.start_worker(env=_stack.FAST_SETUP_LIMITER)
        started = time.monotonic()
        conference, snapshots = _prepare(stack, args.invoices)
        print(
            f"setup: {len(snapshots)} invoices sent and paid in {time.monotonic() - started:.1f} s"
        )
        web, base = stack.start_web(
            env={"DJANGO_SETTINGS_MODULE": "tests.benchmarks.webhook_settings"}
        )
        webhook_url = f"{base}/stripe/webhooks/{conference.slug}/"
        trivial_url = f"{base}/trivial/"
        floor_url = f"{base}/store-only/"
        _create_floor_table()
        source = EventSource(secret=conference.stripe_webhook_secret, invoices=snapshots)
        trivial_events = source.take(200)  # the trivial view cycles over these
        sent: set[str] = set()  # ids posted to the webhook view
        accepted_count = 0
        wrk = partial(
            run_wrk,
            connections=args.connections,
            threads=args.threads,
            workdir=stack.tmp,
            meter=_stack.CpuMeter(web),
        )

        def webhook_run(seconds: float, expected_rate: float) -> WrkResult:
            nonlocal accepted_count
            count = int(expected_rate * seconds * 1.3) + 200 * args.threads
            result = wrk(
                url=webhook_url,
                view="webhook",
                events=source.take(count),
                mode="once",
                seconds=seconds,
            )
            sent.update(result.sent_ids)
            accepted_count += int(result.figures["ok"]) - int(result.figures["duplicates"])
            return result

        def cycle_run(url: str, view: str, seconds: float) -> WrkResult:
            """A comparison view (trivial, store-only): the same bodies, over and over."""
            return wrk(url=url, view=view, events=trivial_events, mode="cycle", seconds=seconds)

        trivial_run = partial(cycle_run, trivial_url, "trivial")
        floor_run = partial(cycle_run, floor_url, "store")

        if not args.worker_consumes:
            stack.set_consuming(hostname, consuming=False)
        print(
            f"\nphase 1: wrk -t{args.threads} -c{args.connections}, {args.seconds:g} s per run, "
            f"worker {'consuming' if args.worker_consumes else 'paused'}; {_stack.load_average()}"
        )
        warm = trivial_run(args.warmup)
        webhook_run(args.warmup, warm.rate)
        floor_run(args.warmup)
        rounds: list[tuple[WrkResult, WrkResult]] = []
        floors: list[WrkResult] = []
        for number in range(1, args.rounds + 1):
            trivial = trivial_run(args.seconds)
            floor = floor_run(args.seconds)
            webhook = webhook_run(args.seconds, trivial.rate)
            rounds.append((trivial, webhook))
            floors.append(floor)
            print(f" round {number}  ({_stack.load_average()})")
            print(f"  {trivial.line()}")
            print(f"  {floor.line()}")
            print(f"  {webhook.line()}")
            print(
                f"  ratio webhook/trivial {webhook.rate / trivial.rate:.2f}; store-only/trivial "
                f"{floor.rate / trivial.rate:.2f}; "
                f"webhook/store-only {webhook.rate / floor.rate:.2f}"
            )
        max_rate = statistics.median(webhook.rate for _, webhook in rounds)
        ceiling = statistics.median(trivial.rate for trivial, _ in rounds)
        ratio = statistics.median(webhook.rate / trivial.rate for trivial, webhook in rounds)
        p50 = statistics.median(webhook.figures["p50_us"] / 1000 for _, webhook in rounds)
        p99 = statistics.median(webhook.figures["p99_us"] / 1000 for _, webhook in rounds)
        wrk_errors = sum(webhook.errors for _, webhook in rounds)

        paced_rate = max_rate / 2
        paced_events = source.take(int(paced_rate * args.paced_seconds))
        sent.update(event.event_id for event in paced_events)
        print(
            f"\nphase 2: paced open-loop sender, {paced_rate:.0f} events/s (half the max) for "
            f"{args.paced_seconds:g} s, {args.connections} connections; {_stack.load_average()}"
        )
        paced_run = partial(
            run_paced, rate=paced_rate, connections=args.connections, warm_path="/trivial/"
        )
        paced = paced_run(webhook_url, paced_events)
        accepted_count += len(paced.accepted_ids)
        paced_p99 = _stack.percentile(paced.latencies, 0.99) * 1000
        print(f"  webhook  {paced.summary()}")
        # The same sender and rate against the floor and the trivial view: the tail of the
        # durable write alone, and what the server and the machine add whatever the view does.
        cycled = [trivial_events[i % len(trivial_events)] for i in range(len(paced_events))]
        floor_paced = paced_run(floor_url, cycled)
        print(f"  store    {floor_paced.summary()}")
        baseline = paced_run(trivial_url, cycled)
        print(f"  trivial  {baseline.summary()}")
        web_log = web.log_path.read_text(errors="replace") if web.log_path.exists() else ""
        # A frozen gunicorn worker is killed after its 30 s timeout: the long tails seen on a
        # loaded machine (tests/benchmarks/README.md) either show up here or come from elsewhere.
        print(
            f"  gunicorn so far: {web_log.count('WORKER TIMEOUT')} worker timeout(s), "
            f"{web_log.count('Booting worker')} worker start(s)"
        )

        if args.profile:
            for gil in (False, True):
                profile_path = stack.tmp / f"gunicorn-gil{gil}.raw"
                profiler = _stack.start_profile(
                    web.pid, profile_path, seconds=args.seconds, gil=gil
                )
                time.sleep(1.0)  # py-spy attaches
                profiled = webhook_run(args.seconds, max_rate)
                profiler.wait(timeout=args.seconds + 60)
                print(
                    f"\nprofile (py-spy on gunicorn, "
                    f"{'GIL holder only: CPU' if gil else 'all busy threads: CPU and waits'}"
                    f", not counted): {profiled.line()}"
                )
                print(_stack.summarize_profile(profile_path))

        print("\ndrain: the worker processes what was recorded")
        if not args.worker_consumes:
            stack.set_consuming(hostname, consuming=True)
        time.sleep(1.0)  # requests gunicorn still had when wrk stopped get recorded
        drain_started = time.monotonic()
        stack.wait(
            lambda: not (inbox_counts(conference).keys() - set(SETTLED)),
            timeout=120.0 + sum(inbox_counts(conference).values()) / 5,
            interval=0.5,
            what="the worker to settle every recorded event",
        )
        drain_seconds = time.monotonic() - drain_started
        counts = inbox_counts(conference)
        from tests.support.consistency import compare_with_stripe

        problems = check_ids(conference, sent, set(paced.accepted_ids))
        problems += compare_with_stripe(emulator=stack.emulator, conference=conference).problems
        recorded = sum(counts.values())
        if recorded < accepted_count:
            problems.append(f"recorded {recorded} < accepted {accepted_count}")
        if counts["processed"] != recorded:
            problems.append(f"not all processed: {dict(counts)}")
        print(
            f"  accepted (2xx, new) {accepted_count}, sent {len(sent)}, recorded {recorded}, "
            f"processed {counts['processed']} ({dict(counts)}); in flight when wrk stopped "
            f"(recorded, answer not counted): {recorded - accepted_count}"
        )
        print(
            f"  drained {recorded} events in {drain_seconds:.1f} s "
            f"({recorded / drain_seconds:.0f} events/s, the worker's 2 prefork children)"
        )
        print("  consistency: " + ("; ".join(problems) if problems else "OK (ledger = Stripe)"))

        print(f"\nsummary ({time.strftime('%Y-%m-%d %H:%M %Z')}, {_stack.machine_summary()})")
        print(
            f"  webhook max {max_rate:.0f} events/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms at "
            f"{args.connections} connections; trivial ceiling {ceiling:.0f} req/s; ratio "
            f"{ratio:.2f} (goal >= 0.5: {'met' if ratio >= 0.5 else 'MISSED'}); "
            f"wrk errors {wrk_errors}"
        )
        floor_ratio = statistics.median(
            f.rate / t.rate for f, (t, _) in zip(floors, rounds, strict=True)
        )
        floor_cpu = statistics.median(f.cpu_ms("web") + f.cpu_ms("db") for f in floors)
        print(
            f"  store-only (one INSERT, nothing else): ratio {floor_ratio:.2f} to the trivial "
            "view, "
            f"CPU per request {floor_cpu:.2f} ms: the ceiling of any design that stores the event "
            "before answering"
        )
        web_cpu = statistics.median(w.cpu_ms("web") for _, w in rounds)
        db_cpu = statistics.median(w.cpu_ms("db") for _, w in rounds)
        trivial_cpu = statistics.median(t.cpu_ms("web") + t.cpu_ms("db") for t, _ in rounds)
        print(
            f"  CPU per request: webhook gunicorn {web_cpu:.2f} ms + PostgreSQL {db_cpu:.2f} ms, "
            f"trivial {trivial_cpu:.2f} ms: the view costs {(web_cpu + db_cpu) / trivial_cpu:.1f}x"
        )
        print(
            f"  at {paced_rate:.0f} events/s offered: p99 {paced_p99:.1f} ms "
            f"(goal < 50 ms: {'met' if paced_p99 < 50 else 'MISSED'}); the trivial view at that "
            f"rate: p99 {_stack.percentile(baseline.latencies, 0.99) * 1000:.1f} ms, the "
            f"store-only view: {_stack.percentile(floor_paced.latencies, 0.99) * 1000:.1f} ms"
        )
        print(
            f"  accepted {accepted_count} / recorded {recorded} / processed {counts['processed']}: "
            + ("OK" if not problems else "PROBLEMS")
        )
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
