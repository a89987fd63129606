"""Issue 6, case 5: the ledger equals Stripe whatever the order, duplication and concurrency.

Hypothesis draws a history for one PO whose invoice really exists at the emulator (created by
``create_stripe_invoice`` in a fresh emulator account per example): full and partial payments by
card and ACH (ACH debits pending, then settled or failed days later), the invoice marked
uncollectible and paid anyway, voided at Stripe or through our ``void_stripe_invoice``, wires
recorded by staff (reported to Stripe at once or in a later step, as the worker would), the
invoice marked paid outside Stripe at Stripe; between
those steps it delivers the events the emulator really produced (read from its ``/v1/events``,
the bodies Stripe would POST) in a shuffled order with duplicates, either through the inbox
(``record_stripe_event`` + ``process_stripe_event``, as the worker does) or straight to
``handle_invoice_event``; some steps run deliveries and ``sync_stripe_invoice_status`` at the same
time in threads, each with its own PostgreSQL connection, so the PO's row lock is what keeps them
apart.

After every step the ledger never holds more than Stripe collected; after the last delivery the
sum of the PO's Stripe payments for the invoice equals the emulator's ``amount_paid -
amount_paid_off_stripe``, its off-Stripe entries equal ``amount_paid_off_stripe``, the PO's status
is the one those amounts and the invoice's status imply, and ``compare_with_stripe`` finds nothing
to report.
"""

from __future__ import annotations

import datetime
import functools
import json
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import stripe
from django.db import connections
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing import money
from invoicing.errors import InvalidPayment, InvalidTransition
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeEvent
from invoicing.services import (
    ledger,
    ledger_off_stripe,
    off_stripe_reports,
    purchase_orders,
    stripe_events,
    webhook_intake,
)
from invoicing.services.invoice_lifecycle import void_stripe_invoice
from invoicing.services.invoice_sync import handle_invoice_event
from invoicing.services.stripe_invoicing import create_stripe_invoice, sync_stripe_invoice_status
from tests.core.conftest import (  # the core's factories, shared with this directory
    MakeConference,
    MakePurchaseOrder,
    make_conference,
    make_purchase_order,
)
from tests.reliability.conftest import RecordFigures, size
from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle
from tests.support.consistency import compare_with_stripe

__all__ = ["make_conference", "make_purchase_order"]

pytestmark = [
    pytest.mark.django_db(transaction=True),  # threads need committed rows and their own locks
    pytest.mark.usefixtures("embedded_worker_paused"),  # we are the worker here
    pytest.mark.timeout(3600),  # the full size
]

Status = PurchaseOrder.Status

# One step of a history. Amounts are fractions of what is left to pay (1.0 pays all of it).
Step = tuple[str, Any]

steps = st.one_of(
    st.tuples(
        st.just("pay"),
        st.tuples(st.sampled_from(["card", "us_bank_account"]), st.sampled_from([0.1, 0.3, 1.0])),
    ),
    st.tuples(st.just("ach_pending"), st.sampled_from([0.2, 0.5, 1.0])),
    st.tuples(st.just("ach_settle"), st.integers(0, 3)),
    st.tuples(st.just("ach_fail"), st.integers(0, 3)),
    st.tuples(st.just("mark_uncollectible"), st.none()),
    st.tuples(st.just("void"), st.sampled_from(["at stripe", "our service"])),
    st.tuples(st.just("deliver"), st.integers(1, 8)),
    st.tuples(st.just("sync"), st.none()),
    st.tuples(st.just("concurrent"), st.integers(2, 6)),
    st.tuples(st.just("wire"), st.tuples(st.sampled_from([0.1, 0.5, 1.0]), st.booleans())),
    st.tuples(st.just("report"), st.none()),
    st.tuples(st.just("out_of_band"), st.none()),
)

WITH_OFF_STRIPE: stripe.params.InvoiceRetrieveParams = {"expand": ["amount_paid_off_stripe"]}


@dataclass
class History:
    """What one example did, for the figures and the failure message."""

    events_seen: set[str] = field(default_factory=set)
    pool: list[dict[str, Any]] = field(default_factory=list)  # every event, as Stripe sends it
    pending_ach: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def sync_po(pk: int) -> None:
    sync_stripe_invoice_status(PurchaseOrder.objects.get(pk=pk))


def stripe_sum(po: PurchaseOrder) -> Decimal:
    return ledger.stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id)


def expected_status(invoice: dict[str, Any], total_minor: int, elsewhere: int = 0) -> str:
    """The PO status the invoice implies (the README's table), computed independently.

    ``elsewhere``: staff payments that never reached the invoice (it was void or paid first).
    What Stripe credited to the customer's balance from an overpaid invoice (``amount_overpaid``)
    left the PO: the customer's next invoice counts it.
    """
    paid = invoice["amount_paid"] + elsewhere - invoice["amount_overpaid"]
    if paid == total_minor:
        return Status.PAID
    if paid > total_minor:
        return Status.OVERPAID
    if invoice["status"] == "void":
        return Status.INVOICE_VOIDED
    if invoice["status"] == "uncollectible":
        return Status.INVOICE_UNCOLLECTIBLE
    return Status.PARTIALLY_PAID if paid > 0 else Status.INVOICED


def test_the_ledger_always_equals_stripe(
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    record_figures: RecordFigures,
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    totals: Counter[str] = Counter()

    @hypothesis_settings(
        max_examples=size(ci=12, full=1000),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    # Found in CI: wires reported late and an ACH debit settling after them overpay the invoice;
    # Stripe credits the excess to the customer's balance, which leaves the PO (paid, not over).
    @example(
        history_steps=[
            ("wire", (0.1, False)),
            ("ach_pending", 0.5),
            ("mark_uncollectible", None),
            ("wire", (0.5, False)),
            ("ach_settle", 0),
        ],
        seed=0,
    )
    @given(history_steps=st.lists(steps, min_size=1, max_size=12), seed=st.integers(0, 2**32))
    def run(history_steps: list[Step], seed: int) -> None:
        rng = random.Random(seed)
        key = stripe_emulator.new_secret_key()
        # The test's own reads between steps (the "Dashboard" side) go past the sandbox's 25
        # requests/s; the property is about the ledger, not the rate limit.
        stripe_emulator.configure(key, rate_limit=None)
        conference = make_conference(secret_key=key)
        po = make_purchase_order(conference=conference)
        create_stripe_invoice(po)
        po.refresh_from_db()
        client = stripe_emulator.client(key)
        total_minor = money.to_minor_units(po.total, po.currency)
        history = History()

        def refresh_pool() -> None:
            for event in stripe_emulator.raw_events(key):
                if event["id"] not in history.events_seen:
                    history.events_seen.add(event["id"])
                    history.pool.append(event)

        def deliver(event: dict[str, Any]) -> None:
            if rng.random() < 0.5:
                recorded = webhook_intake.record_stripe_event(conference=conference, event=event)
                result = stripe_events.process_stripe_event(
                    stripe_event_id=recorded.stripe_event.pk
                )
                assert result.status != StripeEvent.Status.FAILED, result.error
                history.counts["via inbox"] += 1
            else:
                handle_invoice_event(
                    conference=Conference.objects.get(pk=conference.pk), event=event
                )
                history.counts["straight to the handler"] += 1

        def sample(count: int) -> list[dict[str, Any]]:
            # Duplicates on purpose: at-least-once delivery, in no particular order.
            return [rng.choice(history.pool) for _ in range(count)] if history.pool else []

        def in_thread(work: Callable[[], None]) -> None:
            try:
                work()
            finally:
                connections.close_all()  # this thread's own connection

        def report_wires() -> None:
            for wire in PurchaseOrderPayment.objects.filter(purchase_order=po, method="wire"):
                if ledger_off_stripe.awaits_report(wire):
                    off_stripe_reports.report_off_stripe_payment(wire)

        for name, argument in history_steps:
            remaining = client.v1.invoices.retrieve(po.stripe_invoice_id).amount_remaining
            try:
                if name == "pay" and remaining > 0:
                    method, fraction = argument
                    amount = max(1, int(remaining * fraction))
                    stripe_emulator.pay_invoice(
                        po.stripe_invoice_id, amount=amount, payment_method_type=method
                    )
                elif name == "ach_pending" and remaining > 0:
                    amount = max(1, int(remaining * argument))
                    paid = stripe_emulator.pay_invoice(
                        po.stripe_invoice_id,
                        amount=amount,
                        payment_method_type="us_bank_account",
                        pending=True,
                    )
                    history.pending_ach.append(paid["invoice_payment"]["id"])
                elif name in {"ach_settle", "ach_fail"} and history.pending_ach:
                    payment_id = history.pending_ach.pop(argument % len(history.pending_ach))
                    if name == "ach_settle":
                        stripe_emulator.settle_payment(payment_id)
                    else:
                        stripe_emulator.fail_payment(payment_id)
                elif name == "mark_uncollectible":
                    client.v1.invoices.mark_uncollectible(po.stripe_invoice_id)
                elif name == "void" and argument == "at stripe":
                    client.v1.invoices.void_invoice(po.stripe_invoice_id)
                elif name == "void":
                    void_stripe_invoice(PurchaseOrder.objects.get(pk=po.pk))
                elif name == "deliver":
                    refresh_pool()
                    for event in sample(argument):
                        deliver(event)
                elif name == "sync":
                    sync_stripe_invoice_status(PurchaseOrder.objects.get(pk=po.pk))
                elif name == "wire" and remaining > 0:
                    fraction, report_now = argument
                    wire = purchase_orders.record_payment(
                        PurchaseOrder.objects.get(pk=po.pk),
                        amount=money.from_minor_units(
                            max(1, int(remaining * fraction)), po.currency
                        ),
                        method="wire",
                        payment_date=datetime.date(2026, 12, 1),
                    )
                    if report_now:
                        off_stripe_reports.report_off_stripe_payment(wire)
                elif name == "report":
                    report_wires()
                elif name == "out_of_band":
                    client.v1.invoices.pay(po.stripe_invoice_id, {"paid_out_of_band": True})
                elif name == "concurrent":
                    refresh_pool()
                    work: list[Callable[[], None]] = [
                        functools.partial(deliver, event) for event in sample(argument)
                    ]
                    work.append(functools.partial(sync_po, po.pk))
                    rng.shuffle(work)
                    with ThreadPoolExecutor(max_workers=3) as pool:
                        for future in [pool.submit(in_thread, item) for item in work]:
                            future.result()
                    history.counts["concurrent batches"] += 1
                else:
                    continue
            except (EmulatorError, stripe.InvalidRequestError, InvalidTransition, InvalidPayment):
                history.counts["illegal steps refused"] += 1  # e.g. paying a void invoice
                continue
            history.counts[name] += 1
            # At every point: never more in the ledger than Stripe collected.
            now = client.v1.invoices.retrieve(po.stripe_invoice_id, params=WITH_OFF_STRIPE)
            po.refresh_from_db()
            on_stripe = now.amount_paid - (now.amount_paid_off_stripe or 0)
            assert money.to_minor_units(stripe_sum(po), po.currency) <= on_stripe

        # Every wire is finally reported, every event delivered at least once, shuffled, some twice.
        report_wires()
        refresh_pool()
        final = list(history.pool) + sample(len(history.pool) // 3)
        rng.shuffle(final)
        for event in final:
            deliver(event)

        invoice = json.loads(
            json.dumps(
                client.v1.invoices.retrieve(po.stripe_invoice_id, params=WITH_OFF_STRIPE).to_dict(),
                default=str,
            )
        )
        po.refresh_from_db()
        ledger = money.to_minor_units(stripe_sum(po), po.currency)
        off_stripe = invoice["amount_paid_off_stripe"]
        assert ledger == invoice["amount_paid"] - off_stripe, (
            f"ledger {ledger} != Stripe {invoice['amount_paid']} - {off_stripe} off Stripe"
        )
        ours_off = ledger_off_stripe.off_stripe_total(po, invoice_id=po.stripe_invoice_id)
        assert money.to_minor_units(ours_off, po.currency) == off_stripe
        elsewhere = sum(
            money.to_minor_units(row.amount, po.currency)
            for row in PurchaseOrderPayment.objects.filter(
                purchase_order=po, method="wire", applied_invoice_id=""
            )
        )
        rows = PurchaseOrderPayment.objects.filter(purchase_order=po, method="stripe")
        afters = [row.stripe_amount_paid_after for row in rows]
        assert len(afters) == len(set(afters)), "a payment was recorded twice"
        assert po.status == expected_status(invoice, total_minor, elsewhere), (
            f"PO {po.status}, invoice {invoice['status']} paid {invoice['amount_paid']}"
            f" of {total_minor}"
        )
        assert po.stripe_invoice_status == invoice["status"]
        compare_with_stripe(emulator=stripe_emulator, conference=conference).assert_consistent()

        totals["examples"] += 1
        totals["events produced"] += len(history.pool)
        totals["deliveries"] += (
            history.counts["via inbox"] + history.counts["straight to the handler"]
        )
        totals["final status " + po.status] += 1
        for name, count in history.counts.items():
            totals[name] += count

    run()
    record_figures(**{key.replace(" ", "_"): value for key, value in sorted(totals.items())})
