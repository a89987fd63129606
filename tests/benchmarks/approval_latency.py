"""Benchmark 4: from the approving commit to the invoice sent in the emulator, one PO at a time.

Run::

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://.../n \\
        .venv/bin/python -m tests.benchmarks.approval_latency [--count 200] [--gaps 0,0.5]

Setup (:mod:`tests.benchmarks._stack`): a database of its own, the emulator (no added latency, no
faults), the Procfile's worker with the production settings (its Stripe rate limiter included),
one conference (one Stripe account). ``--count`` draft POs of 3 lines, each for a new company (so
each invoice also creates its customer: 5 Stripe calls), plus ``--warmup`` more first, not counted.

Each PO is approved (``approve_purchase_order``, which queues the creation task on commit) and the
benchmark waits until our database shows the invoice sent before approving the next one, then
idles for the gap: once back to back (0 s: the per-account rate limiter paces the calls), once
0.5 s apart (an organizer clicking through POs; the limiter's bucket refills). The clock starts
in an on-commit hook registered before the approval's own (so at the COMMIT, before the
publish) and stops at the end of the emulator's ``POST /v1/invoices/<id>/send`` (its request log:
start + duration, same machine clock). Also printed: commit to the first Stripe request (publish,
queue, task start), first request to sent (Stripe calls, our rate limiter's waits), sent to
visible in our database.

Goal: p50 < 150 ms. ``--profile`` runs ``py-spy record`` on the worker during the measured POs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from tests.benchmarks import _stack
from tests.benchmarks._stack import Stack


@dataclass
class Sample:
    pk: int
    committed: float
    seen: float
    invoice_id: str = ""
    first_request: float = 0.0
    sent: float = 0.0
    calls: int = 0


def approve_timed(po: Any) -> float:
    """Approve; return the time of the COMMIT (an on-commit hook that runs before the publish)."""
    from django.db import transaction

    from invoicing.services import purchase_orders

    stamp: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: stamp.append(time.time()))
        purchase_orders.approve_purchase_order(po)
    return stamp[0]


def wait_sent(stack: Stack, pk: int, *, timeout: float = 60.0) -> float:
    from invoicing.models import PurchaseOrder

    found = PurchaseOrder.objects.filter(pk=pk, invoice_sent_at__isnull=False)
    deadline = time.monotonic() + timeout
    while not found.exists():
        if time.monotonic() > deadline:
            stack.wait(found.exists, timeout=0, what=f"PO {pk}'s invoice to be sent")
        time.sleep(0.002)
    return time.time()


def attach_emulator_times(stack: Stack, conference: Any, samples: list[Sample]) -> None:
    """Fill each sample from the emulator's request log (one account: this conference's)."""
    from invoicing.models import PurchaseOrder

    invoice_ids = dict(
        PurchaseOrder.objects.filter(pk__in=[s.pk for s in samples]).values_list(
            "pk", "stripe_invoice_id"
        )
    )
    log = sorted(stack.emulator.requests(conference.stripe_secret_key), key=lambda r: r["time"])
    for sample in samples:
        sample.invoice_id = invoice_ids[sample.pk]
        mine = [r for r in log if sample.committed <= r["time"] <= sample.seen]
        sends = [r for r in mine if r["path"] == f"/v1/invoices/{sample.invoice_id}/send"]
        if not mine or not sends:
            raise _stack.BenchmarkError(f"no send request logged for invoice {sample.invoice_id}")
        sample.first_request = mine[0]["time"]
        sample.sent = sends[-1]["time"] + sends[-1]["duration_ms"] / 1000
        sample.calls = len(mine)


def _figures(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:34s} p50 {_stack.percentile(ms, 0.5):7.1f} ms   p90 "
        f"{_stack.percentile(ms, 0.9):7.1f} ms   p99 {_stack.percentile(ms, 0.99):7.1f} ms   "
        f"max {max(ms):7.1f} ms"
    )


def run_phase(
    stack: Stack, conference: Any, drafts: list[Any], *, gap: float, worker: Any, profile: bool
) -> tuple[list[Sample], float, str]:
    """Approve ``drafts`` one after another; returns the samples, the wall time, the load."""
    stack.emulator.clear_requests(conference.stripe_secret_key)
    profiler = None
    if profile:
        out = stack.tmp / f"worker-gap{gap:g}.raw"
        profiler = _stack.start_profile(worker.pid, out, seconds=len(drafts) * (gap + 0.5))
        time.sleep(1.0)
    samples = []
    started = time.monotonic()
    for po in drafts:
        committed = approve_timed(po)
        samples.append(Sample(pk=po.pk, committed=committed, seen=wait_sent(stack, po.pk)))
        if gap:
            time.sleep(gap)
    elapsed = time.monotonic() - started
    load = _stack.load_average()
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        profiler.wait(timeout=60)
    attach_emulator_times(stack, conference, samples)
    return samples, elapsed, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=200, help="POs per gap")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--gaps", default="0,0.5", help="idle seconds between a send and the next approval"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy on the worker")
    args = parser.parse_args(argv)
    gaps = [float(gap) for gap in args.gaps.split(",")]

    with Stack("approval") as stack:
        print(f"machine: {_stack.machine_summary()}")
        worker, _hostname = stack.start_worker()
        conference = _stack.make_conference(stack)
        total = args.warmup + args.count * len(gaps)
        drafts = [_stack.create_purchase_order(conference, n, tag="AP") for n in range(total)]
        for po in drafts[: args.warmup]:
            approve_timed(po)
            wait_sent(stack, po.pk)
        print(f"warm-up: {args.warmup} POs invoiced")
        verdicts = []
        for number, gap in enumerate(gaps):
            first = args.warmup + number * args.count
            samples, elapsed, load = run_phase(
                stack,
                conference,
                drafts[first : first + args.count],
                gap=gap,
                worker=worker,
                profile=args.profile,
            )
            latency = [s.sent - s.committed for s in samples]
            print(
                f"\n{args.count} POs one after another, {gap:g} s idle after each, "
                f"in {elapsed:.1f} s ({load})"
            )
            print(_figures("approving commit -> invoice sent", latency))
            print(
                _figures(
                    "  commit -> first Stripe request",
                    [s.first_request - s.committed for s in samples],
                )
            )
            print(_figures("  first request -> sent", [s.sent - s.first_request for s in samples]))
            print(_figures("  sent -> visible in our database", [s.seen - s.sent for s in samples]))
            print(f"  Stripe calls per invoice: {sorted({s.calls for s in samples})}")
            if args.profile:
                print("profile (py-spy on the worker, its children included):")
                print(_stack.summarize_profile(stack.tmp / f"worker-gap{gap:g}.raw"))
            p50 = _stack.percentile(latency, 0.5) * 1000
            p99 = _stack.percentile(latency, 0.99) * 1000
            verdicts.append(
                f"  gap {gap:g} s: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                f"(goal p50 < 150 ms: {'met' if p50 < 150 else 'MISSED'})"
            )
        print(f"\nsummary ({time.strftime('%Y-%m-%d %H:%M %Z')}, {_stack.machine_summary()})")
        print("\n".join(verdicts))
        return 0


if __name__ == "__main__":
    sys.exit(main())
