"""Benchmark: Stripe calls and wall time per invoice created, against the emulator.

Run explicitly (benchmarks are not part of the suite)::

    .venv/bin/pytest tests/benchmarks/invoice_creation.py -s -p no:cacheprovider

Prints the calls each path costs (fresh customer, known customer, resume after a lost answer)
and the throughput of sequential and threaded creation. Figures, not asserts on time.
``BENCH_PROFILE=1`` adds a cProfile of the sequential creations (where a worker's CPU goes per
invoice; the emulator runs in its own process, so its time shows as waiting on the socket).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
import stripe
from django.db import connection

from invoicing.models import Conference, PurchaseOrder
from invoicing.services import purchase_orders, stripe_invoicing
from invoicing.services.purchase_orders import LineItemInput
from tests.core.conftest import api_calls
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db(transaction=True)

LINES = [LineItemInput(f"Item {n}", n, Decimal("99.50")) for n in range(1, 6)]


def _conference(secret_key: str) -> Conference:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    return Conference.objects.create(slug=slug, name=slug, stripe_secret_key=secret_key)


def _po(conference: Conference, email: str) -> PurchaseOrder:
    po = purchase_orders.create_purchase_order(
        conference=conference,
        reference=f"BENCH-{uuid.uuid4().hex[:10]}",
        organization_name="Bench Corp",
        contact_email=email,
        lines=LINES,
    )
    return purchase_orders.approve_purchase_order(po)


def test_calls_and_time_per_invoice(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, settings: Any
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe_conference = _conference(stripe_secret_key)
    # Calls per path.
    fresh = _po(stripe_conference, "fresh@bench.example")
    stripe_invoicing.create_stripe_invoice(fresh)
    fresh_calls = len(api_calls(stripe_emulator, stripe_secret_key))
    stripe_emulator.clear_requests(stripe_secret_key)
    known = _po(stripe_conference, "fresh@bench.example")
    stripe_invoicing.create_stripe_invoice(known)
    known_calls = len(api_calls(stripe_emulator, stripe_secret_key))
    stripe_emulator.clear_requests(stripe_secret_key)
    lost = _po(stripe_conference, "lost@bench.example")
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": "/finalize$"}],
    )
    with pytest.raises(stripe.APIConnectionError):  # the injected lost answer
        stripe_invoicing.create_stripe_invoice(lost)
    stripe_invoicing.create_stripe_invoice(lost)
    resume_calls = Counter(m for m, _ in api_calls(stripe_emulator, stripe_secret_key))
    print(
        f"\ncalls per invoice: fresh customer {fresh_calls}, known customer {known_calls}, "
        f"lost finalize answer + rerun {dict(resume_calls)}"
    )

    # Sequential wall time per invoice (new customer each time).
    durations = []
    profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    cpu_started = time.process_time()
    for n in range(30):
        po = _po(stripe_conference, f"seq{n}@bench.example")
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        stripe_invoicing.create_stripe_invoice(po)
        if profiler is not None:
            profiler.disable()
        durations.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu_started) / 30
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    print(
        f"sequential: median {statistics.median(durations) * 1000:.1f} ms/invoice, "
        f"p95 {sorted(durations)[int(len(durations) * 0.95) - 1] * 1000:.1f} ms; "
        f"{cpu * 1000:.1f} ms CPU of this process per PO (creating and approving it included)"
    )

    # Threads, one conference (one Stripe account) each, like several workers.
    conferences = [_conference(stripe_emulator.new_secret_key()) for _ in range(4)]
    batches = {c.pk: [_po(c, f"t{n}@bench.example") for n in range(15)] for c in conferences}

    def work(conference: Conference) -> None:
        try:
            for po in batches[conference.pk]:
                stripe_invoicing.create_stripe_invoice(po)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(c,)) for c in conferences]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    total = sum(len(batch) for batch in batches.values())
    print(f"4 threads x 15 invoices: {total / elapsed:.1f} invoices/s ({elapsed:.2f} s)")
