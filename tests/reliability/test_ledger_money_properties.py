"""Issue 15, case 5 both ways: the ledger equals Stripe with money going back, whatever the order.

Hypothesis draws a history for one PO whose invoice really exists at the emulator (created by
``create_stripe_invoice`` in a fresh emulator account per example): partial payments by card and
ACH (some ACH debits failing days later), full and partial refunds made in the Dashboard (ACH
refunds pending, then settled or failed), credit notes before and after payment (the part beyond
what is still owed refunded, credited to the customer's balance or paid back outside Stripe;
some voided), disputes opened on card charges and won or lost. Between those steps it delivers
events the emulator really produced (read from its ``/v1/events``, the bodies Stripe would POST)
in a shuffled order with duplicates, through the inbox or straight to the handlers, and runs the
reconciliation at random points. At the end every event is delivered 0 to 3 times in random
order; when some were never delivered, a last reconciliation must catch them.

Then, for the invoice: our net Stripe entries equal Stripe's ``amount_paid`` minus succeeded
refunds minus disputed funds withdrawn and not reinstated, our credits equal its credit notes
that are not void, the PO's status is the one those amounts imply (computed here from Stripe's
side, what credit notes moved to the customer's balance or paid back outside Stripe included),
and ``compare_with_stripe`` finds nothing to report.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing import money
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderCredit, StripeEvent
from invoicing.services import stripe_events, webhook_intake
from invoicing.services.event_types import MONEY_EVENTS
from invoicing.services.invoice_sync import handle_invoice_event
from invoicing.services.money_events import handle_money_event
from invoicing.services.reconciliation import reconcile_conference
from invoicing.services.stripe_invoicing import create_stripe_invoice
from tests.core.conftest import (  # the core's factories, shared with this directory
    MakeConference,
    MakePurchaseOrder,
    make_conference,
    make_purchase_order,
)
from tests.reliability.conftest import RecordFigures, size
from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle
from tests.support.consistency import compare_with_stripe, money_going_back

__all__ = ["make_conference", "make_purchase_order"]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("embedded_worker_paused"),  # we are the worker here
    pytest.mark.timeout(3600),
]

Status = PurchaseOrder.Status
Step = tuple[str, Any]
FRACTIONS = st.sampled_from([0.1, 0.3, 0.5, 1.0])

steps = st.one_of(
    st.tuples(st.just("pay"), st.tuples(st.sampled_from(["card", "us_bank_account"]), FRACTIONS)),
    st.tuples(st.just("ach_pending"), FRACTIONS),
    st.tuples(st.just("ach_settle"), st.integers(0, 3)),
    st.tuples(st.just("ach_fail"), st.integers(0, 3)),
    st.tuples(st.just("refund"), st.tuples(st.integers(0, 3), FRACTIONS)),
    st.tuples(st.just("refund_settle"), st.integers(0, 3)),
    st.tuples(st.just("refund_fail"), st.integers(0, 3)),
    st.tuples(
        st.just("credit_note"),
        st.tuples(FRACTIONS, st.sampled_from(["refund", "out_of_band", "credit"])),
    ),
    st.tuples(st.just("void_credit_note"), st.integers(0, 3)),
    st.tuples(st.just("dispute"), st.tuples(st.integers(0, 3), FRACTIONS)),
    st.tuples(st.just("close_dispute"), st.tuples(st.integers(0, 3), st.booleans())),
    st.tuples(st.just("deliver"), st.integers(1, 10)),
    st.tuples(st.just("reconcile"), st.none()),
)


# Where a credit note's part beyond what is still owed goes (Stripe's create parameters).
POST_PAYMENT_PARAMS = {
    "refund": "refund_amount",
    "out_of_band": "out_of_band_amount",
    "credit": "credit_amount",
}


@dataclass
class History:
    """What one example did, for the figures and the failure message."""

    events_seen: set[str] = field(default_factory=set)
    pool: list[dict[str, Any]] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)
    pending_ach: list[str] = field(default_factory=list)  # invoice payments
    intents: list[str] = field(default_factory=list)  # succeeded PaymentIntents
    card_intents: list[str] = field(default_factory=list)
    pending_refunds: list[str] = field(default_factory=list)
    credit_notes: list[str] = field(default_factory=list)
    disputes: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def expected_status(*, total: int, paid: int, refunds: int, disputes: int, credits: int,
                    to_balance: int, paid_back: int, invoice_status: str) -> str:  # fmt: skip
    """The PO status Stripe's amounts imply (README, the ledger section), from Stripe's side.

    What credit notes credited to the customer's balance or paid back outside Stripe left the PO;
    money that went to the balance was not given back, so it never makes the PO refunded."""
    net = paid - refunds - disputes - to_balance - paid_back
    # A refund gives back first what was held beyond the credited total; the rest is owed no more
    # (Stripe's invoice never asks refunded money again). Disputed money is still owed.
    held_beyond = max(0, net + refunds - (total - credits))
    owed = total - credits - max(0, refunds - held_beyond)
    if paid > 0 and net + to_balance <= 0:
        return Status.REFUNDED
    if net == owed and (net > 0 or credits > 0):
        return Status.PAID
    if net > owed:
        return Status.OVERPAID
    if invoice_status == "void":
        return Status.INVOICE_VOIDED
    if invoice_status == "uncollectible":
        return Status.INVOICE_UNCOLLECTIBLE
    return Status.PARTIALLY_PAID if net > 0 else Status.INVOICED


def pick(items: list[str], index: int, *, pop: bool = False) -> str | None:
    if not items:
        return None
    position = index % len(items)
    return items.pop(position) if pop else items[position]


def test_refunds_disputes_and_credit_notes_reach_the_ledger_exactly_once(
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
        max_examples=size(ci=15, full=300),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(
        # Money must come in before it can go back: every history opens with a payment or two.
        opening=st.lists(
            st.tuples(
                st.just("pay"),
                st.tuples(st.sampled_from(["card", "card", "us_bank_account"]), FRACTIONS),
            ),
            min_size=1,
            max_size=2,
        ),
        history_steps=st.lists(steps, min_size=1, max_size=14),
        seed=st.integers(0, 2**32),
    )
    def run(opening: list[Step], history_steps: list[Step], seed: int) -> None:
        rng = random.Random(seed)
        key = stripe_emulator.new_secret_key()
        # The "Dashboard" side below fires back to back outside our limiter, past the sandbox's
        # 25 requests/s; the property is about the ledger, not the rate limit.
        stripe_emulator.configure(key, rate_limit=None)
        conference = make_conference(secret_key=key)
        po = make_purchase_order(conference=conference)
        create_stripe_invoice(po)
        po.refresh_from_db()
        invoice_id = po.stripe_invoice_id
        dashboard = stripe_emulator.client(
            key
        )  # not our code: the Dashboard, the bank, the network
        history = History()

        def refresh_pool() -> None:
            for event in stripe_emulator.raw_events(key):
                if event["id"] not in history.events_seen:
                    history.events_seen.add(event["id"])
                    history.pool.append(event)

        def deliver(event: dict[str, Any]) -> None:
            history.delivered.add(event["id"])
            if rng.random() < 0.5:
                recorded = webhook_intake.record_stripe_event(conference=conference, event=event)
                result = stripe_events.process_stripe_event(
                    stripe_event_id=recorded.stripe_event.pk
                )
                assert result.status != StripeEvent.Status.FAILED, result.error
                history.counts["via inbox"] += 1
                return
            fresh = Conference.objects.get(pk=conference.pk)
            if event["type"] in MONEY_EVENTS:
                handle_money_event(conference=fresh, event=event)
            else:
                handle_invoice_event(conference=fresh, event=event)
            history.counts["straight to the handler"] += 1

        def reconcile() -> None:
            summary = reconcile_conference(conference=Conference.objects.get(pk=conference.pk))
            assert summary.errors == 0, summary.error_samples
            history.counts["reconciliations"] += 1

        def charge_of(intent: str) -> stripe.Charge:
            latest = dashboard.v1.payment_intents.retrieve(intent).latest_charge
            return dashboard.v1.charges.retrieve(str(latest))

        for name, argument in [*opening, *history_steps]:
            invoice = dashboard.v1.invoices.retrieve(invoice_id)
            remaining = invoice.amount_remaining
            try:
                if name == "pay" and remaining > 0 and invoice.status == "open":
                    method, fraction = argument
                    paid = stripe_emulator.pay_invoice(
                        invoice_id,
                        amount=max(1, int(remaining * fraction)),
                        payment_method_type=method,
                    )
                    intent = paid["invoice_payment"]["payment"]["payment_intent"]
                    history.intents.append(intent)
                    if method == "card":
                        history.card_intents.append(intent)
                elif name == "ach_pending" and remaining > 0 and invoice.status == "open":
                    paid = stripe_emulator.pay_invoice(
                        invoice_id,
                        amount=max(1, int(remaining * argument)),
                        payment_method_type="us_bank_account",
                        pending=True,
                    )
                    history.pending_ach.append(paid["invoice_payment"]["id"])
                elif name in {"ach_settle", "ach_fail"} and history.pending_ach:
                    payment_id = pick(history.pending_ach, argument, pop=True)
                    assert payment_id is not None
                    if name == "ach_settle":
                        settled = stripe_emulator.settle_payment(payment_id)
                        intent = settled["invoice_payment"]["payment"]["payment_intent"]
                        history.intents.append(intent)
                    else:
                        stripe_emulator.fail_payment(payment_id)
                elif name == "refund" and history.intents:
                    index, fraction = argument
                    intent = pick(history.intents, index)
                    charge = charge_of(str(intent))
                    left = charge.amount - charge.amount_refunded
                    amount = left if fraction == 1.0 else max(1, int(left * fraction))
                    refund = dashboard.v1.refunds.create(
                        params={"payment_intent": str(intent), "amount": amount}
                    )
                    if refund.status == "pending":
                        history.pending_refunds.append(refund.id)
                elif name in {"refund_settle", "refund_fail"} and history.pending_refunds:
                    refund_id = pick(history.pending_refunds, argument, pop=True)
                    assert refund_id is not None
                    if name == "refund_settle":
                        stripe_emulator.settle_refund(refund_id)
                    else:
                        stripe_emulator.fail_refund(refund_id)
                elif name == "credit_note" and invoice.status in {"open", "paid"}:
                    fraction, beyond = argument
                    creditable = (
                        invoice.total
                        - invoice.pre_payment_credit_notes_amount
                        - invoice.post_payment_credit_notes_amount
                    )
                    amount = max(1, int(creditable * fraction))
                    params: dict[str, Any] = {"invoice": invoice_id, "amount": amount}
                    post = amount - min(amount, remaining)
                    if post:
                        params[POST_PAYMENT_PARAMS[beyond]] = post
                    note = dashboard.v1.credit_notes.create(params=params)  # type: ignore[arg-type]
                    history.credit_notes.append(note.id)
                elif name == "void_credit_note" and history.credit_notes:
                    note_id = pick(history.credit_notes, argument)
                    dashboard.v1.credit_notes.void_credit_note(str(note_id))
                elif name == "dispute" and history.card_intents:
                    index, fraction = argument
                    charge = charge_of(str(pick(history.card_intents, index)))
                    left = charge.amount - charge.amount_refunded
                    opened = stripe_emulator.open_dispute(
                        charge.id, amount=max(1, int(left * fraction))
                    )
                    history.disputes.append(opened["dispute"]["id"])
                elif name == "close_dispute" and history.disputes:
                    index, won = argument
                    dispute_id = pick(history.disputes, index, pop=True)
                    stripe_emulator.close_dispute(str(dispute_id), won=won)
                elif name == "deliver":
                    refresh_pool()
                    for event in [rng.choice(history.pool) for _ in range(argument)]:
                        deliver(event)
                elif name == "reconcile":
                    reconcile()
                else:
                    continue
            except (EmulatorError, stripe.InvalidRequestError):
                history.counts["illegal steps refused"] += 1  # e.g. refunding a disputed charge
                continue
            history.counts[name] += 1

        # Every event 0 (in half the examples) or 1 to 3 times, in any order; a last
        # reconciliation if some never came.
        refresh_pool()
        fewest = rng.choice([0, 1])
        final = [event for event in history.pool for _ in range(rng.randint(fewest, 3))]
        rng.shuffle(final)
        for event in final:
            deliver(event)
        if history.delivered != history.events_seen:
            reconcile()
            history.counts["examples needing the last reconciliation"] += 1

        # Stripe sends amount_paid_off_stripe only when asked for.
        invoice = dashboard.v1.invoices.retrieve(
            invoice_id, params={"expand": ["amount_paid_off_stripe"]}
        )
        stripe_side = money_going_back(dashboard, {invoice_id})[invoice_id]
        po.refresh_from_db()
        currency = po.currency

        def minor(amount: Decimal) -> int:
            return money.to_minor_units(amount, currency)

        net_stripe = (
            invoice.amount_paid
            - (invoice.amount_paid_off_stripe or 0)
            - stripe_side["refunds"]
            - stripe_side["disputes"]
        )
        ours = po.payments.filter(method="stripe", stripe_invoice_id=invoice_id)
        assert minor(sum((row.amount for row in ours), Decimal(0))) == net_stripe, (
            f"ledger {[(row.kind, row.amount) for row in ours]} vs Stripe net {net_stripe}"
        )
        credits = PurchaseOrderCredit.objects.filter(purchase_order=po, voided_at__isnull=True)
        assert minor(sum((row.amount for row in credits), Decimal(0))) == stripe_side["credits"]
        expected = expected_status(
            total=minor(po.total),
            paid=invoice.amount_paid,
            refunds=stripe_side["refunds"],
            disputes=stripe_side["disputes"],
            credits=stripe_side["credits"],
            to_balance=stripe_side["credited to balance"],
            paid_back=stripe_side["paid back outside Stripe"],
            invoice_status=str(invoice.status),
        )
        assert po.status == expected, f"PO {po.status}, expected {expected}: {history.counts}"
        compare_with_stripe(emulator=stripe_emulator, conference=conference).assert_consistent()

        totals["examples"] += 1
        totals["events produced"] += len(history.pool)
        totals["deliveries"] += (
            history.counts["via inbox"] + history.counts["straight to the handler"]
        )
        totals["final status " + po.status] += 1
        if stripe_side["refunds"]:
            totals["examples with refunds"] += 1
        if stripe_side["disputes"]:
            totals["examples with disputes lost or open"] += 1
        if stripe_side["credits"]:
            totals["examples with credit notes"] += 1
        for step_name, count in history.counts.items():
            totals[step_name] += count

    run()
    record_figures(**{key.replace(" ", "_"): value for key, value in sorted(totals.items())})
