"""Benchmark: reconciliation against the naive one-retrieve-per-PO sync, on the same Stripe state.

Run explicitly (benchmarks are not part of the suite)::

    DATABASE_URL=... CELERY_BROKER_URL=... .venv/bin/pytest tests/benchmarks/reconciliation.py \\
        -s -p no:cacheprovider            # BENCH_RECONCILE_INVOICES=10000 by default

Setup: N open invoices in one emulator account (created with the emulator's client, in threads),
N invoiced POs pointing at them (bulk-created), 5% of the invoices paid in full with no webhook
delivered. Then, on the same Stripe state:

- naive: ``sync_stripe_invoice_status`` for every PO (one retrieve + one row-locking transaction);
- the database is put back as before (payments removed, mirrors reset);
- ``reconcile_conference``: events since the cursor + open invoices a page at a time.

Both repair the same 5%. Prints Stripe calls (from the emulator's request log), wall time, and the
time Stripe's 25 requests/s sandbox limit alone would impose. Our own rate limiter is raised out of
the way so the figures measure the code, not the limiter. Figures, not asserts on time.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
    StripeSyncState,
)
from invoicing.services import reconciliation, stripe_invoicing
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db(transaction=True)

N = int(os.environ.get("BENCH_RECONCILE_INVOICES", "10000"))
PAID_SHARE = 0.05
UNIT = 10_000  # 100.00 USD per invoice
SANDBOX_RATE = 25.0


def _create_invoices(emulator: EmulatorHandle, key: str, slug: str) -> list[tuple[str, str]]:
    """N sent invoices; returns (po uid, invoice id) pairs."""
    client = emulator.client(key, max_network_retries=2)
    customers = [
        client.v1.customers.create({"email": f"bench{n}@example.com"}).id for n in range(50)
    ]

    def one(index: int) -> tuple[str, str]:
        uid = str(uuid.uuid4())
        invoice = client.v1.invoices.create(
            {
                "customer": customers[index % len(customers)],
                "collection_method": "send_invoice",
                "days_until_due": 30,
                "currency": "usd",
                "metadata": {"po_uid": uid, "conference": slug, "generation": "1"},
            }
        )
        client.v1.invoices.add_lines(
            invoice.id, {"lines": [{"amount": UNIT, "description": "Conference ticket"}]}
        )
        client.v1.invoices.finalize_invoice(invoice.id, {"auto_advance": False})
        client.v1.invoices.send_invoice(invoice.id)
        return uid, invoice.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(N)))


def _reset_database(conference: Conference) -> None:
    """Back to 'every PO invoiced, nothing received', as before the naive run."""
    pos = PurchaseOrder.objects.filter(conference=conference)
    PurchaseOrderPayment.objects.filter(purchase_order__in=pos).delete()
    pos.update(
        status=PurchaseOrder.Status.INVOICED,
        stripe_invoice_status="open",
        stripe_amount_paid=Decimal("0"),
        stripe_amount_remaining=Decimal("100"),
        last_synced_at=None,
    )
    StripeSyncState.objects.filter(conference=conference).delete()


def test_reconciliation_against_the_naive_sync(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, settings: Any
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND = 100_000.0
    settings.STRIPE_RATE_LIMIT_TEST_BURST = 100_000
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    conference = Conference.objects.create(
        slug=slug, name=slug, stripe_secret_key=stripe_secret_key
    )

    started = time.monotonic()
    pairs = _create_invoices(stripe_emulator, stripe_secret_key, slug)
    now = timezone.now()
    pos = PurchaseOrder.objects.bulk_create(
        PurchaseOrder(
            conference=conference,
            reference=f"B-{index:06d}",
            organization_name="Bench Corp",
            contact_email="bench@example.com",
            currency="usd",
            status=PurchaseOrder.Status.INVOICED,
            uid=uuid.UUID(uid),
            stripe_invoice_id=invoice_id,
            stripe_invoice_status="open",
            stripe_amount_due=Decimal("100"),
            stripe_amount_paid=Decimal("0"),
            stripe_amount_remaining=Decimal("100"),
            approved_at=now,
            invoice_created_at=now,
            invoice_lines_added_at=now,
            invoice_finalized_at=now,
            invoice_sent_at=now,
        )
        for index, (uid, invoice_id) in enumerate(pairs)
    )
    PurchaseOrderLineItem.objects.bulk_create(
        PurchaseOrderLineItem(
            purchase_order=po, position=1, description="Ticket", quantity=1, unit_price=100
        )
        for po in pos
    )
    paid = pos[:: int(1 / PAID_SHARE)]
    for po in paid:
        stripe_emulator.pay_invoice(po.stripe_invoice_id)
    print(f"\nsetup: {N} open invoices, {len(paid)} paid without webhooks, "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip

    # Naive: one retrieve and one locked transaction per PO.
    stripe_emulator.clear_requests(stripe_secret_key)
    started = time.monotonic()
    for po in PurchaseOrder.objects.filter(conference=conference).select_related("conference"):
        stripe_invoicing.sync_stripe_invoice_status(po)
    naive_seconds = time.monotonic() - started
    naive_calls = len(stripe_emulator.requests(stripe_secret_key))
    naive_paid = PurchaseOrder.objects.filter(conference=conference, status="paid").count()

    _reset_database(conference)
    stripe_emulator.clear_requests(stripe_secret_key)
    profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    started = time.monotonic()
    if profiler is not None:
        profiler.enable()
    summary = reconciliation.reconcile_conference(conference=conference)
    ours_seconds = time.monotonic() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    ours_calls = len(stripe_emulator.requests(stripe_secret_key))
    ours_paid = PurchaseOrder.objects.filter(conference=conference, status="paid").count()

    print(f"naive:     {naive_calls:6d} Stripe calls, {naive_seconds:7.1f} s, repaired {naive_paid}"
          f" (at {SANDBOX_RATE:.0f} req/s: >= {naive_calls / SANDBOX_RATE:.0f} s)")  # fmt: skip
    print(f"reconcile: {ours_calls:6d} Stripe calls, {ours_seconds:7.1f} s, repaired {ours_paid}"
          f" (at {SANDBOX_RATE:.0f} req/s: >= {ours_calls / SANDBOX_RATE:.1f} s)")  # fmt: skip
    print(f"           {summary.event_pages} event page(s), {summary.invoice_pages} invoice "
          f"page(s), {summary.retrieved} retrieve(s); {summary.applied} applied, "
          f"{summary.unchanged} unchanged; {summary.apply_seconds:.1f} s of "
          f"{summary.seconds:.1f} s in the ledger")  # fmt: skip
    print(f"ratio: {ours_calls / naive_calls:.2%} of the naive calls, "
          f"{naive_seconds / ours_seconds:.0f}x faster")  # fmt: skip
    assert naive_paid == ours_paid == len(paid)
    assert summary.stripe_calls == ours_calls
