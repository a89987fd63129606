"""Benchmark 3: one reconciliation of every conference against the naive sync, same Stripe state.

Run (one command; pytest-django creates and drops its own test database, the emulator is a
subprocess it starts and stops; like the other Django benchmarks here)::

    .venv/bin/pytest tests/benchmarks/reconciliation.py -s -p no:cacheprovider

Knobs (environment): ``BENCH_RECONCILE_POS`` (10000), ``BENCH_RECONCILE_SAMPLE`` (1000),
``BENCH_RECONCILE_LATENCY`` (0.05 s), ``BENCH_PROFILE=1`` (cProfile of the sync-all).

Setup (no latency, as fast as the emulator goes): two conferences, N/2 sent invoices each, created
over plain keep-alive HTTP from 8 threads; N invoiced POs pointing at them, bulk-created; the last
sync's cursor is stored (as a finished run leaves it); then 5% of the invoices are paid in full on
the emulator with no webhook endpoint (every webhook dropped). Then, with ``latency`` added to
every API call and the production rate limiter as configured:

1. **sync-all**: what the beat's ``sync_open_invoices`` fans out, one
   ``reconciliation.reconcile_conference`` per conference (one after the other here; workers run
   them side by side): closing events since the cursor, then open invoices 100 a page.
2. The database is put back as it was (payments removed, mirrors reset, same cursor).
3. **naive**: ``sync_stripe_invoice_status`` for a sample of POs (the first ``SAMPLE / 2`` of each
   conference, 5% of them paid), one after the other; its cost is linear in the POs, so calls
   and time are scaled by ``N / SAMPLE``.
4. The database is put back again; **full**: ``reconcile_conference(full=True)`` per conference
   (``sync_stripe_invoices --full``): every invoice, refund, credit note and dispute, each invoice
   applied under its PO's lock even when level with the mirror.

Prints Stripe calls (the emulator's request log), wall time, POs repaired, and the ratios.
"""

from __future__ import annotations

import cProfile
import http.client
import json
import logging
import os
import pstats
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

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
from invoicing.services.stripe_client import STRIPE_API_VERSION
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(3600)]

N = int(os.environ.get("BENCH_RECONCILE_POS", "10000"))
SAMPLE = int(os.environ.get("BENCH_RECONCILE_SAMPLE", "1000"))
LATENCY = float(os.environ.get("BENCH_RECONCILE_LATENCY", "0.05"))
PAID_EVERY = 20  # 5%
UNIT = 10_000  # 100.00 USD per invoice
CONFERENCES = 2


class _RawStripe:
    """Form-encoded POSTs on one kept-alive connection per thread: setup at the emulator's pace.

    stripe-python costs more CPU per call than the emulator does (tests/stripe_emulator/README.md,
    Throughput); for 30,000 setup calls that is minutes on two cores.
    """

    def __init__(self, base_url: str, secret_key: str) -> None:
        address = urlsplit(base_url)
        self._host, self._port = address.hostname or "127.0.0.1", address.port
        self._headers = {
            "Authorization": f"Bearer {secret_key}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Stripe-Version": STRIPE_API_VERSION,
        }
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def post(self, path: str, fields: dict[str, str | int]) -> dict[str, Any]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        connection.request("POST", path, urlencode(fields), headers=self._headers)
        response = connection.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body}")
        return dict(body)


def _create_invoices(
    emulator: EmulatorHandle, key: str, slug: str, uids: list[uuid.UUID]
) -> list[str]:
    """One sent invoice of 100.00 USD per PO uid; returns their ids, in the same order."""
    raw = _RawStripe(emulator.base_url, key)
    customers = [
        str(raw.post("/v1/customers", {"email": f"sponsor{n}@{slug}.example"})["id"])
        for n in range(50)
    ]

    def one(index: int) -> str:
        invoice = raw.post(
            "/v1/invoices",
            {
                "customer": customers[index % len(customers)],
                "collection_method": "send_invoice",
                "days_until_due": 30,
                "currency": "usd",
                "auto_advance": "false",
                "metadata[conference]": slug,
                "metadata[po_index]": index,
                "metadata[generation]": 1,
                "metadata[po_uid]": str(uids[index]),
            },
        )
        invoice_id = str(invoice["id"])
        raw.post(
            f"/v1/invoices/{invoice_id}/add_lines",
            {"lines[0][amount]": UNIT, "lines[0][description]": "Conference ticket"},
        )
        raw.post(f"/v1/invoices/{invoice_id}/finalize", {"auto_advance": "false"})
        raw.post(f"/v1/invoices/{invoice_id}/send", {})
        return invoice_id

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(one, range(len(uids))))
    finally:
        raw.close()


def _purchase_orders(
    conference: Conference, uids: list[uuid.UUID], invoice_ids: list[str]
) -> list[PurchaseOrder]:
    now = timezone.now()
    pos = PurchaseOrder.objects.bulk_create(
        PurchaseOrder(
            conference=conference,
            reference=f"R-{index:06d}",
            organization_name="Sponsor",
            contact_email=f"sponsor{index % 50}@{conference.slug}.example",
            currency="usd",
            status=PurchaseOrder.Status.INVOICED,
            uid=uids[index],
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
        for index, invoice_id in enumerate(invoice_ids)
    )
    PurchaseOrderLineItem.objects.bulk_create(
        PurchaseOrderLineItem(
            purchase_order=po, position=1, description="Ticket", quantity=1, unit_price=100
        )
        for po in pos
    )
    return pos


def _reset_database(conferences: list[Conference], cursors: dict[int, int]) -> None:
    """Back to 'every PO invoiced, nothing received, last sync at the cursor'."""
    pos = PurchaseOrder.objects.filter(conference__in=conferences)
    PurchaseOrderPayment.objects.filter(purchase_order__in=pos).delete()
    pos.update(
        status=PurchaseOrder.Status.INVOICED,
        stripe_invoice_status="open",
        stripe_amount_paid=Decimal("0"),
        stripe_amount_remaining=Decimal("100"),
        last_synced_at=None,
    )
    for conference in conferences:
        StripeSyncState.objects.update_or_create(
            conference=conference,
            defaults={
                "events_cursor": cursors[conference.pk],
                "last_finished_at": timezone.now() - timedelta(minutes=15),
                "lease_expires_at": None,
                "last_summary": {},
            },
        )


def _paid(conferences: list[Conference]) -> int:
    return PurchaseOrder.objects.filter(
        conference__in=conferences, status=PurchaseOrder.Status.PAID
    ).count()


def _calls(emulator: EmulatorHandle, conferences: list[Conference]) -> int:
    return sum(
        1
        for conference in conferences
        for entry in emulator.requests(conference.stripe_secret_key)
        if entry["path"].startswith("/v1/")
    )


def test_reconciliation_against_the_naive_sync(
    stripe_emulator: EmulatorHandle, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="invoicing")  # not 10,000 state-change lines
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    per_conference = N // CONFERENCES
    started = time.monotonic()
    conferences: list[Conference] = []
    pos_by_conference: dict[int, list[PurchaseOrder]] = {}
    cursors: dict[int, int] = {}
    for label in "ab"[:CONFERENCES]:
        key = stripe_emulator.new_secret_key()
        # The scene is set with raw requests, past the sandbox's 25/s; the measured run below
        # goes through our limiter, under it, and gets the limit back.
        stripe_emulator.configure(key, rate_limit=None)
        slug = f"recon-{label}-{uuid.uuid4().hex[:6]}"
        conference = Conference.objects.create(slug=slug, name=slug, stripe_secret_key=key)
        conferences.append(conference)
        uids = [uuid.uuid4() for _ in range(per_conference)]
        invoice_ids = _create_invoices(stripe_emulator, key, slug, uids)
        pos_by_conference[conference.pk] = _purchase_orders(conference, uids, invoice_ids)
        cursors[conference.pk] = int(stripe_emulator.now(secret_key=key))
    _reset_database(conferences, cursors)  # the last sync finished here
    paid_ids = [
        po.stripe_invoice_id
        for pos in pos_by_conference.values()
        for po in pos[::PAID_EVERY]
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(stripe_emulator.pay_invoice, paid_ids))
    for conference in conferences:
        stripe_emulator.configure(conference.stripe_secret_key, latency=LATENCY, rate_limit=25)
        stripe_emulator.clear_requests(conference.stripe_secret_key)
    print(f"\nsetup: {N} open invoices in {CONFERENCES} accounts, {len(paid_ids)} paid without "
          f"webhooks, {time.monotonic() - started:.0f} s; latency {LATENCY * 1000:.0f} ms; "
          f"limiter {settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND}/s; "
          f"load average {os.getloadavg()}")  # fmt: skip

    # 1. One sync-all: every conference the beat would fan out to, one after the other.
    profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    load_before = os.getloadavg()
    started = time.monotonic()
    if profiler is not None:
        profiler.enable()
    summaries = [
        reconciliation.reconcile_conference(conference=conference)
        for conference in reconciliation.conferences_to_reconcile()
        if conference in conferences
    ]
    ours_seconds = time.monotonic() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    ours_calls = _calls(stripe_emulator, conferences)
    ours_paid = _paid(conferences)
    print(f"  load average before/after sync-all: {load_before} / {os.getloadavg()}")

    # 2. Same state again; 3. the naive way on a sample.
    _reset_database(conferences, cursors)
    assert _paid(conferences) == 0
    for conference in conferences:
        stripe_emulator.clear_requests(conference.stripe_secret_key)
    sample = [
        po
        for conference in conferences
        for po in pos_by_conference[conference.pk][: SAMPLE // CONFERENCES]
    ]
    for po in sample:
        po.conference = next(c for c in conferences if c.pk == po.conference_id)
    load_before = os.getloadavg()
    started = time.monotonic()
    for po in sample:
        stripe_invoicing.sync_stripe_invoice_status(po)
    sample_seconds = time.monotonic() - started
    sample_calls = _calls(stripe_emulator, conferences)
    sample_paid = _paid(conferences)
    print(f"  load average before/after naive sample: {load_before} / {os.getloadavg()}")
    scale = N / len(sample)
    naive_calls, naive_seconds = sample_calls * scale, sample_seconds * scale

    print(f"naive:    {sample_calls} Stripe calls, {sample_seconds:.1f} s for {len(sample)} POs "
          f"({sample_seconds / len(sample) * 1000:.1f} ms each), repaired {sample_paid}; "
          f"x{scale:.0f} = {naive_calls:.0f} calls, {naive_seconds:.0f} s, "
          f"{sample_paid * scale:.0f} repaired")  # fmt: skip
    print(f"sync-all: {ours_calls} Stripe calls, {ours_seconds:.1f} s, repaired {ours_paid} "
          f"of {len(paid_ids)}")  # fmt: skip
    for summary in summaries:
        print(f"  {summary.conference}: {summary.event_pages} event page(s) ({summary.events} "
              f"events), {summary.invoice_pages} invoice page(s) ({summary.open_invoices} open), "
              f"{summary.retrieved} retrieve(s), {summary.money_pages} refund/credit note "
              f"page(s), {summary.money_lookups} lookup(s); {summary.applied} applied, "
              f"{summary.unchanged} unchanged; {summary.apply_seconds:.1f} s of "
              f"{summary.seconds:.1f} s in the ledger")  # fmt: skip
    calls_ratio, speedup = ours_calls / naive_calls, naive_seconds / ours_seconds

    # 4. Same state again; a full run.
    _reset_database(conferences, cursors)
    for conference in conferences:
        stripe_emulator.clear_requests(conference.stripe_secret_key)
    started = time.monotonic()
    full = [
        reconciliation.reconcile_conference(conference=conference, full=True)
        for conference in conferences
    ]
    full_seconds = time.monotonic() - started
    full_calls, full_paid = _calls(stripe_emulator, conferences), _paid(conferences)
    print(f"full:     {full_calls} Stripe calls ({full_calls / naive_calls:.2%} of naive), "
          f"{full_seconds:.1f} s ({naive_seconds / full_seconds:.1f}x faster than naive), "
          f"repaired {full_paid} of {len(paid_ids)}; "
          f"{sum(f.applied for f in full)} applied under the PO lock, "
          f"{sum(f.apply_seconds for f in full):.1f} s in the ledger")  # fmt: skip
    assert full_paid == len(paid_ids)
    print(f"ratio: {calls_ratio:.2%} of the naive calls (goal <= 2%), {speedup:.0f}x faster "
          f"(goal >= 20x), found {ours_paid}/{len(paid_ids)} (goal all)")  # fmt: skip
    assert ours_paid == len(paid_ids)
    assert sample_paid == len([po for po in sample if po.stripe_invoice_id in set(paid_ids)])
    assert sum(summary.stripe_calls for summary in summaries) == ours_calls
