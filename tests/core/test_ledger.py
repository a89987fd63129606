"""The ledger equals Stripe: invoice snapshots applied any number of times, in any order.

These tests feed the snapshot code invoices as Stripe serializes them, with
``amount_paid_off_stripe`` (as a retrieve with ``expand`` returns it: the ledger records money only
from a view that says how much was paid off Stripe; an event payload, which never does, is
retrieved again: ``tests/core/test_off_stripe_ledger.py``). The same code is exercised end to end
against the emulator in ``test_stripe_invoicing.py``.
"""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from invoicing.errors import EventRejected
from invoicing.models import PurchaseOrder, PurchaseOrderPayment, StripeEvent
from invoicing.services import invoice_sync, ledger, stripe_invoicing
from invoicing.services.invoice_sync import EventOutcome
from tests.core.conftest import MakeConference, MakePurchaseOrder

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
_ids = itertools.count(1)


def invoice_payload(
    po: PurchaseOrder,
    *,
    amount_paid: int,
    amount_due: int = 635000,
    status: str | None = None,
    invoice_id: str | None = None,
    currency: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    return {
        "id": invoice_id or po.stripe_invoice_id,
        "object": "invoice",
        "status": status or ("paid" if amount_paid >= amount_due else "open"),
        "currency": currency or po.currency,
        "livemode": livemode,
        "amount_due": amount_due,
        "amount_paid": amount_paid,
        "amount_remaining": amount_due - amount_paid,
        "amount_paid_off_stripe": 0,
        "number": "ACME-0001",
        "hosted_invoice_url": "https://invoice.stripe.test/i/acme",
        "customer": "cus_test",
        "metadata": {"po_uid": str(po.uid), "generation": str(po.generation)},
    }


def event(
    payload: dict[str, Any], event_type: str = "invoice.paid", livemode: bool = False
) -> dict[str, Any]:
    return {
        "id": f"evt_test_{next(_ids)}",
        "object": "event",
        "type": event_type,
        "livemode": livemode,
        "created": 1_790_000_000,
        "data": {"object": payload},
    }


@pytest.fixture
def invoiced_po(make_purchase_order: MakePurchaseOrder) -> PurchaseOrder:
    po = make_purchase_order()  # 6350.00 USD
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id=f"in_test_{po.pk}",
        stripe_invoice_status="open",
        invoice_sent_at=datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC),
    )
    ledger.update_po_status(po)
    po.refresh_from_db()
    assert po.status == Status.INVOICED
    return po


def stripe_ledger(po: PurchaseOrder) -> Decimal:
    return ledger.stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id)


def test_same_payload_five_times_records_once(invoiced_po: PurchaseOrder) -> None:
    payload = event(invoice_payload(invoiced_po, amount_paid=100000))
    for _ in range(5):
        stripe_invoicing.handle_invoice_paid_webhook(payload)
    assert stripe_ledger(invoiced_po) == Decimal("1000.00")
    assert PurchaseOrderPayment.objects.count() == 1
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PARTIALLY_PAID
    assert invoiced_po.stripe_amount_paid == Decimal("1000.00")


@pytest.mark.parametrize("order", list(itertools.permutations([100000, 300000, 635000])))
def test_snapshots_in_any_order_give_the_same_ledger(
    invoiced_po: PurchaseOrder, order: tuple[int, ...]
) -> None:
    for amount_paid in order:
        for _ in range(2):
            invoice_sync.handle_invoice_event(
                conference=invoiced_po.conference,
                event=event(
                    invoice_payload(invoiced_po, amount_paid=amount_paid), "invoice.updated"
                ),
            )
    invoiced_po.refresh_from_db()
    assert stripe_ledger(invoiced_po) == Decimal("6350.00")
    assert invoiced_po.status == Status.PAID
    # The mirror never moves backwards: the paid snapshot wins whatever came last.
    assert invoiced_po.stripe_invoice_status == "paid"
    assert invoiced_po.stripe_amount_paid == Decimal("6350.00")
    # Rows are exactly the growth steps seen, each keyed by the amount_paid it reached.
    keys = [
        row.stripe_amount_paid_after or 0 for row in PurchaseOrderPayment.objects.order_by("pk")
    ]
    assert keys == sorted(keys)
    assert set(keys) <= set(order)
    assert keys[-1] == 635000
    assert sum(PurchaseOrderPayment.objects.values_list("amount", flat=True)) == Decimal("6350.00")


def test_wire_payment_never_hides_a_stripe_payment(invoiced_po: PurchaseOrder) -> None:
    ledger.record_payment(
        invoiced_po,
        amount=Decimal("6350.00"),
        method="wire",
        payment_date=datetime.date(2026, 11, 26),
    )
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PAID
    stripe_invoicing.handle_invoice_paid_webhook(
        event(invoice_payload(invoiced_po, amount_paid=635000))
    )
    invoiced_po.refresh_from_db()
    assert stripe_ledger(invoiced_po) == Decimal("6350.00")
    assert invoiced_po.amount_received == Decimal("12700.00")
    assert invoiced_po.status == Status.OVERPAID


def test_event_of_another_conference_never_touches_the_po(
    invoiced_po: PurchaseOrder, make_conference: MakeConference
) -> None:
    other = make_conference()
    payload = event(invoice_payload(invoiced_po, amount_paid=635000))
    with pytest.raises(EventRejected, match="does not belong to conference"):
        invoice_sync.handle_invoice_event(conference=other, event=payload)
    # The same through the legacy entry point when the inbox row says it arrived for B.
    StripeEvent.objects.create(
        conference=other,
        stripe_event_id=payload["id"],
        type="invoice.paid",
        livemode=False,
        payload=payload,
    )
    with pytest.raises(EventRejected):
        stripe_invoicing.handle_invoice_paid_webhook(payload)
    assert not PurchaseOrderPayment.objects.exists()
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICED


def test_wrong_livemode_or_currency_is_refused(invoiced_po: PurchaseOrder) -> None:
    conference = invoiced_po.conference
    live = event(invoice_payload(invoiced_po, amount_paid=635000, livemode=True), livemode=True)
    with pytest.raises(EventRejected, match="livemode"):
        invoice_sync.handle_invoice_event(conference=conference, event=live)
    mixed = event(invoice_payload(invoiced_po, amount_paid=635000, livemode=True))
    with pytest.raises(EventRejected, match="livemode"):
        invoice_sync.handle_invoice_event(conference=conference, event=mixed)
    euros = event(invoice_payload(invoiced_po, amount_paid=635000, currency="eur"))
    with pytest.raises(EventRejected, match="'eur'"):
        invoice_sync.handle_invoice_event(conference=conference, event=euros)
    assert not PurchaseOrderPayment.objects.exists()


def test_foreign_invoice_and_unknown_types_are_ignored(invoiced_po: PurchaseOrder) -> None:
    conference = invoiced_po.conference
    foreign = invoice_payload(invoiced_po, amount_paid=500, invoice_id="in_not_ours")
    foreign["metadata"] = {}
    assert (
        invoice_sync.handle_invoice_event(conference=conference, event=event(foreign))
        == EventOutcome.IGNORED
    )
    assert (
        invoice_sync.handle_invoice_event(
            conference=conference, event=event({"id": "cus_1"}, "customer.created")
        )
        == EventOutcome.IGNORED
    )
    assert not PurchaseOrderPayment.objects.exists()


def test_malformed_payloads_are_refused(invoiced_po: PurchaseOrder) -> None:
    with pytest.raises(ValueError, match="no invoice id"):
        stripe_invoicing.handle_invoice_paid_webhook({"data": {"object": {"object": "invoice"}}})
    with pytest.raises(ValueError, match=r"data\.object"):
        stripe_invoicing.handle_invoice_paid_webhook({"type": "invoice.paid"})
    broken = invoice_payload(invoiced_po, amount_paid=100)
    broken["amount_paid"] = "100"
    with pytest.raises(EventRejected, match="amount_paid"):
        stripe_invoicing.handle_invoice_paid_webhook(event(broken))
    assert not PurchaseOrderPayment.objects.exists()


def test_void_and_uncollectible_move_the_po_where_organizers_act(
    invoiced_po: PurchaseOrder,
) -> None:
    conference = invoiced_po.conference
    invoice_sync.handle_invoice_event(
        conference=conference,
        event=event(
            invoice_payload(invoiced_po, amount_paid=100000, status="uncollectible"),
            "invoice.marked_uncollectible",
        ),
    )
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICE_UNCOLLECTIBLE
    assert stripe_ledger(invoiced_po) == Decimal("1000.00")
    # A stale "open" update arriving later does not undo it.
    invoice_sync.handle_invoice_event(
        conference=conference,
        event=event(invoice_payload(invoiced_po, amount_paid=0, status="open"), "invoice.updated"),
    )
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICE_UNCOLLECTIBLE
    invoice_sync.handle_invoice_event(
        conference=conference,
        event=event(
            invoice_payload(invoiced_po, amount_paid=100000, status="void"), "invoice.voided"
        ),
    )
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICE_VOIDED


def test_invoice_issued_for_another_conference_is_refused(invoiced_po: PurchaseOrder) -> None:
    payload = invoice_payload(invoiced_po, amount_paid=635000)
    payload["metadata"] = {**payload["metadata"], "conference": "someone-else"}
    with pytest.raises(EventRejected, match="issued for conference 'someone-else'"):
        invoice_sync.handle_invoice_event(conference=invoiced_po.conference, event=event(payload))
    assert not PurchaseOrderPayment.objects.exists()


def row_locks(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if "FOR UPDATE" in query["sql"]]


def test_a_snapshot_that_records_a_payment_locks_the_po_once(invoiced_po: PurchaseOrder) -> None:
    """Check, mirror, payment row and status all happen under the one lock the snapshot takes."""
    payload = invoice_payload(invoiced_po, amount_paid=100000)
    with CaptureQueriesContext(connection) as queries:
        recorded = ledger.apply_invoice_snapshot(
            purchase_order=invoiced_po, invoice=payload, source="test"
        )
    assert recorded == Decimal("1000.00")
    assert len(row_locks(queries)) == 1
    with CaptureQueriesContext(connection) as queries:
        invoice_sync.handle_invoice_event(
            conference=invoiced_po.conference,
            event=event(invoice_payload(invoiced_po, amount_paid=635000)),
        )
    assert len(row_locks(queries)) == 1
    invoiced_po.refresh_from_db()
    assert stripe_ledger(invoiced_po) == Decimal("6350.00")
    assert invoiced_po.status == Status.PAID


def test_record_payment_locks_the_po_once(invoiced_po: PurchaseOrder) -> None:
    with CaptureQueriesContext(connection) as queries:
        ledger.record_payment(
            invoiced_po,
            amount=Decimal("6350.00"),
            method="wire",
            payment_date=datetime.date(2026, 11, 26),
        )
    assert len(row_locks(queries)) == 1
    assert invoiced_po.status == Status.PAID
