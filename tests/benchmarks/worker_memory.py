"""Benchmark 5: the worker's memory (RSS of the parent and each prefork child) along 1,000 invoices
and 10,000 events.

Run::

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://.../n \\
        .venv/bin/python -m tests.benchmarks.worker_memory [--invoices 1000] [--events 10000]

Setup (:mod:`tests.benchmarks._stack`): a database of its own, the emulator, the Procfile's worker
(prefork, one child per CPU), its rate limiter raised (``FAST_SETUP_LIMITER``: the limiter's code
still runs on every call, it only stops making a thousand invoices take minutes).

Phase 1: ``--invoices`` POs of 3 lines, each a new customer, approved ``--batch`` at a time; after
each batch is sent the RSS of every worker process is read from ``/proc/<pid>/status``. Phase 2:
each invoice is paid on the emulator in two parts, and the events Stripe would send (the
emulator's ``/v1/events`` of the account: customer, invoice created/finalized/sent/updated, payment
events...) are recorded with the webhook view's own service (``record_stripe_event``: inbox row +
publish) ``--event-batch`` at a time, the worker processing each batch before the next sample.
``invoice_payment.paid`` events make the worker retrieve the invoice from Stripe; the others apply
their snapshot. If the account holds fewer events than ``--events``, they are recorded again under
new ids (a duplicate delivery Stripe could make), so the worker handles that many.

Prints the samples, then per process: first sample (after the first batch), last, max, and the
slope of a least-squares line through the samples (MB per 1,000 tasks), for each phase. Goal:
< 200 MB per process and flat.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from tests.benchmarks import _stack
from tests.benchmarks._stack import BenchmarkError, Service, Stack
from tests.support.processes import child_pids

API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class RssSample:
    phase: str
    invoices: int
    events: int
    pid: int
    role: str
    rss_kib: int


class Sampler:
    """Reads the RSS of the worker's main process and of its pool children."""

    def __init__(self, worker: Service) -> None:
        self.worker = worker
        self.samples: list[RssSample] = []
        self.children_seen: set[int] = set()

    def sample(self, phase: str, invoices: int, events: int) -> str:
        parent = self.worker.pid
        children = child_pids(parent)
        self.children_seen.update(children)
        line = [f"{phase:8s} invoices {invoices:5d} events {events:6d}  RSS MB:"]
        for role, pid in [("parent", parent), *((f"child {pid}", pid) for pid in children)]:
            rss = _stack.rss_kib(pid)
            if rss is None:
                continue
            self.samples.append(RssSample(phase, invoices, events, pid, role, rss))
            line.append(f"{role} {rss / 1024:6.1f}")
        return "  ".join(line)


def record_events(conference: Any, events: list[dict[str, Any]]) -> int:
    """Record each event as the webhook view would (inbox row, then publish); returns how many."""
    from invoicing.services import webhook_intake

    created = 0
    for event in events:
        created += webhook_intake.record_stripe_event(conference=conference, event=event).created
    return created


def settled(conference: Any) -> bool:
    from invoicing.models import StripeEvent

    return not StripeEvent.objects.filter(
        conference=conference,
        status__in=[StripeEvent.Status.PENDING, StripeEvent.Status.PROCESSING],
    ).exists()


def _report(samples: list[RssSample], phase: str, unit: str) -> list[str]:
    lines = []
    for pid in sorted({s.pid for s in samples if s.phase == phase}):
        mine = [s for s in samples if s.phase == phase and s.pid == pid]
        x = [s.invoices if unit == "invoices" else s.events for s in mine]
        mb = [s.rss_kib / 1024 for s in mine]
        per_thousand = _stack.slope(list(zip(x, mb, strict=True))) * 1000
        lines.append(
            f"  {phase:8s} {mine[0].role:13s} first {mb[0]:6.1f} MB  last {mb[-1]:6.1f} MB  "
            f"max {max(mb):6.1f} MB  slope {per_thousand:+.2f} MB per 1,000 {unit}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=100, help="POs approved per sample")
    parser.add_argument("--event-batch", type=int, default=1000, help="events per sample")
    args = parser.parse_args(argv)

    with Stack("memory") as stack:
        print(f"machine: {_stack.machine_summary()}")
        worker, _hostname = stack.start_worker(env=_stack.FAST_SETUP_LIMITER)
        sampler = Sampler(worker)
        conference = _stack.make_conference(stack)
        print(sampler.sample("start", 0, 0))

        from invoicing.models import PurchaseOrder

        started = time.monotonic()
        pks = [
            _stack.create_purchase_order(conference, n, tag="MEM").pk for n in range(args.invoices)
        ]
        for first in range(0, len(pks), args.batch):
            _stack.approve_and_wait(stack, pks[first : first + args.batch])
            print(sampler.sample("invoices", min(first + args.batch, len(pks)), 0))
        invoices_seconds = time.monotonic() - started

        from invoicing.money import to_minor_units

        for invoice_id, due, currency in PurchaseOrder.objects.filter(pk__in=pks).values_list(
            "stripe_invoice_id", "stripe_amount_due", "currency"
        ):
            if due is None:
                raise BenchmarkError(f"invoice {invoice_id}: no amount due recorded")
            half = to_minor_units(due, currency) // 2
            stack.emulator.pay_invoice(invoice_id, amount=half)  # a first part...
            stack.emulator.pay_invoice(invoice_id)  # ...and the rest
        events = stack.emulator.raw_events(conference.stripe_secret_key)
        available = len(events)
        started = time.monotonic()
        done = 0
        while done < args.events:
            batch = []
            for offset in range(min(args.event_batch, args.events - done)):
                event = dict(events[(done + offset) % available])
                round_ = (done + offset) // available
                if round_:
                    event["id"] = f"{event['id']}_again{round_}"
                batch.append(event)
            if record_events(conference, batch) != len(batch):
                raise BenchmarkError("an event id was recorded twice")
            done += len(batch)
            stack.wait(
                lambda: settled(conference), timeout=600, interval=0.2, what="events processed"
            )
            print(sampler.sample("events", len(pks), done))
        events_seconds = time.monotonic() - started
        from django.db.models import Count

        from invoicing.models import StripeEvent

        outcome = {
            row["status"]: row["n"]
            for row in StripeEvent.objects.filter(conference=conference)
            .values("status")
            .annotate(n=Count("pk"))
        }
        print(
            f"\n{len(pks)} invoices in {invoices_seconds:.0f} s; {done} events "
            f"({available} distinct from the account) in {events_seconds:.0f} s: {outcome}"
        )
        replaced = sampler.children_seen - {s.pid for s in sampler.samples if s.phase == "events"}
        if replaced:
            print(f"note: pool children replaced during the run: {sorted(replaced)}")
        print(f"\nsummary ({time.strftime('%Y-%m-%d %H:%M %Z')}, {_stack.machine_summary()})")
        for line in _report(sampler.samples, "invoices", "invoices") + _report(
            sampler.samples, "events", "events"
        ):
            print(line)
        peak = max(s.rss_kib for s in sampler.samples) / 1024
        print(
            f"  peak {peak:.1f} MB (goal < 200 MB per process: {'met' if peak < 200 else 'MISSED'})"
        )
        return 0


if __name__ == "__main__":
    sys.exit(main())
