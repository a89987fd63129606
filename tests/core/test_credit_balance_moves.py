"""Money Stripe moves off an invoice without a refund leaves the PO it came from.

An overpaid invoice's excess goes to the customer's credit balance (``amount_overpaid``), and a
credit note on a paid invoice credits the balance or records a payment back outside Stripe: each
is a negative entry on the PO, keyed so replays, stale and reordered views record it once, and the
PO is *paid* (Stripe settled it), not *overpaid*. The views have the shapes Stripe sends; the
same code runs against the emulator in ``tests/pipeline/test_credit_balance_moves.py``.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from invoicing.admin.exports import ledger_rows
from invoicing.errors import EventRejected
from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.selectors_overview import receivables_overview, with_money_totals
from invoicing.services import ledger
from invoicing.timeline import purchase_order_timeline
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_ledger import invoice_payload
from tests.core.test_ledger_adjustments import credit_note

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind


def sent(make_purchase_order: MakePurchaseOrder) -> PurchaseOrder:
    """6,350.00 USD, its invoice open at Stripe, nothing paid yet."""
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id=f"in_test_{po.pk}",
        stripe_invoice_status="open",
        invoice_sent_at=datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC),
    )
    po.refresh_from_db()
    return po


@pytest.fixture
def sent_po(make_purchase_order: MakePurchaseOrder) -> PurchaseOrder:
    return sent(make_purchase_order)


def overpaid_view(po: PurchaseOrder, *, paid: int) -> dict[str, Any]:
    """The invoice paid ``paid`` of its 6,350.00 due; Stripe credits the excess to the balance."""
    view = invoice_payload(po, amount_paid=paid)
    return {
        **view,
        "amount_remaining": max(view["amount_remaining"], 0),
        "amount_overpaid": max(paid - 635000, 0),
    }


def apply(po: PurchaseOrder, view: dict[str, Any]) -> Decimal:
    return ledger.apply_invoice_snapshot(purchase_order=po, invoice=view, source="t")


def apply_note(po: PurchaseOrder, view: dict[str, Any]) -> Decimal:
    return ledger.apply_credit_note(purchase_order=po, credit_note=view, source="t")


def moves(po: PurchaseOrder) -> list[tuple[str, Decimal]]:
    rows = po.payments.exclude(kind=Kind.PAYMENT).order_by("pk")
    return [(row.kind, row.amount) for row in rows]


def paid(po: PurchaseOrder) -> PurchaseOrder:
    apply(po, invoice_payload(po, amount_paid=635000))
    assert po.status == Status.PAID
    return po


def test_an_overpaid_invoice_moves_its_excess_off_the_po_once(sent_po: PurchaseOrder) -> None:
    view = overpaid_view(sent_po, paid=700000)
    assert apply(sent_po, view) == Decimal("7000.00") - Decimal("650.00")
    for _ in range(2):  # replayed
        assert apply(sent_po, view) == 0
    assert moves(sent_po) == [(Kind.TO_CREDIT_BALANCE, Decimal("-650.000"))]
    assert sent_po.amount_received == Decimal("6350.000")
    assert sent_po.status == Status.PAID
    entry = sent_po.payments.get(kind=Kind.TO_CREDIT_BALANCE)
    assert (entry.method, entry.stripe_invoice_id, entry.overpaid_after) == (
        PurchaseOrderPayment.Method.CREDIT_BALANCE,
        sent_po.stripe_invoice_id,
        65000,
    )
    # An older view arriving late (part paid, nothing overpaid) changes nothing.
    assert apply(sent_po, invoice_payload(sent_po, amount_paid=500000)) == 0
    assert sent_po.status == Status.PAID


def test_growth_of_amount_overpaid_moves_only_the_growth_in_any_order(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    in_order, reordered = sent(make_purchase_order), sent(make_purchase_order)
    for po, paid_views in ((in_order, (700000, 705000, 700000)), (reordered, (705000, 700000))):
        for amount in paid_views:
            apply(po, overpaid_view(po, paid=amount))
        assert po.status == Status.PAID
    assert moves(in_order) == [
        (Kind.TO_CREDIT_BALANCE, Decimal("-650.000")),
        (Kind.TO_CREDIT_BALANCE, Decimal("-50.000")),
    ]
    keys = in_order.payments.exclude(overpaid_after=None).values_list("overpaid_after", flat=True)
    assert set(keys) == {65000, 70000}
    # Seen after the larger figure, the smaller one is stale: one entry for all of it.
    assert moves(reordered) == [(Kind.TO_CREDIT_BALANCE, Decimal("-700.000"))]


def test_a_credit_note_crediting_the_balance_after_payment_leaves_the_po_paid(
    sent_po: PurchaseOrder,
) -> None:
    po = paid(sent_po)
    note = credit_note(po, 35000, post_payment_amount=35000, pre_payment_amount=0)
    assert apply_note(po, note) == Decimal("350.00")  # the credit that counts
    assert apply_note(po, note) == 0
    assert moves(po) == [(Kind.TO_CREDIT_BALANCE, Decimal("-350.000"))]
    assert (po.amount_owed, po.amount_received) == (Decimal("6000.000"), Decimal("6000.000"))
    assert po.status == Status.PAID


def test_out_of_band_and_linked_refunds_split_the_post_payment_part(
    sent_po: PurchaseOrder,
) -> None:
    po = paid(sent_po)
    note = credit_note(
        po,
        60000,
        post_payment_amount=60000,
        out_of_band_amount=20000,
        refunds=[{"refund": "re_test_cn", "amount_refunded": 10000, "type": "refund"}],
    )
    apply_note(po, note)
    apply_note(po, note)
    assert moves(po) == [
        (Kind.TO_CREDIT_BALANCE, Decimal("-300.000")),
        (Kind.PAID_BACK_OFF_STRIPE, Decimal("-200.000")),
    ]
    # The refunded 100.00 arrives as a refund; until then the PO holds it.
    assert po.status == Status.OVERPAID
    ledger.apply_refund(
        purchase_order=po,
        refund={
            "id": "re_test_cn",
            "object": "refund",
            "amount": 10000,
            "currency": "usd",
            "status": "succeeded",
            "payment_intent": "pi_test_1",
            "metadata": {},
        },
        source="t",
    )
    assert po.status == Status.PAID


def test_voiding_the_credit_note_reverses_its_entries_whatever_the_order(
    sent_po: PurchaseOrder,
) -> None:
    po = paid(sent_po)
    issued = credit_note(po, 30000, post_payment_amount=30000, out_of_band_amount=10000)
    voided = {**issued, "status": "void", "voided_at": issued["created"] + 60}
    for view in (voided, issued, voided, issued):  # the void seen first, then replays
        apply_note(po, view)
    assert sorted(moves(po)) == sorted(
        [
            (Kind.TO_CREDIT_BALANCE, Decimal("-200.000")),
            (Kind.PAID_BACK_OFF_STRIPE, Decimal("-100.000")),
            (Kind.TO_CREDIT_BALANCE_REVERSAL, Decimal("200.000")),
            (Kind.PAID_BACK_OFF_STRIPE_REVERSAL, Decimal("100.000")),
        ]
    )
    assert po.amount_received == po.amount_owed == Decimal("6350.000")
    assert po.status == Status.PAID


def test_all_of_it_to_the_balance_is_settled_and_all_of_it_paid_back_is_refunded(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    def whole(**fields: Any) -> PurchaseOrder:
        po = paid(sent(make_purchase_order))
        apply_note(po, credit_note(po, 635000, post_payment_amount=635000, **fields))
        return po

    assert whole().status == Status.PAID  # kept for the customer's next invoice
    assert whole(out_of_band_amount=635000).status == Status.REFUNDED  # given back


def test_views_whose_post_payment_parts_do_not_add_up_are_refused(sent_po: PurchaseOrder) -> None:
    po = paid(sent_po)
    for bad in (
        {"post_payment_amount": 1000, "out_of_band_amount": 2000},
        {"post_payment_amount": 9000},  # beyond the note's amount
        {"post_payment_amount": -5},
        {"post_payment_amount": 1000, "refunds": [{"amount_refunded": 1500}]},
    ):
        with pytest.raises(EventRejected):
            apply_note(po, credit_note(po, 5000, **bad))
    assert moves(po) == []
    assert not po.credits.exists()
    with pytest.raises(EventRejected, match="amount_overpaid"):
        apply(po, {**overpaid_view(po, paid=700000), "amount_overpaid": 700001})


def test_the_po_page_history_export_and_overview_show_what_left(sent_po: PurchaseOrder) -> None:
    apply(sent_po, overpaid_view(sent_po, paid=735000))
    invoice_id = sent_po.stripe_invoice_id
    said = f"1,000.00 USD moved to the customer's credit balance at Stripe (invoice {invoice_id})"
    assert said in [entry.detail for entry in purchase_order_timeline(sent_po)]
    assert str(sent_po.payments.get(kind=Kind.TO_CREDIT_BALANCE)) == said

    header, *rows = ledger_rows(PurchaseOrder.objects.filter(pk=sent_po.pk))
    kinds = {row[header.index("amount")]: row[header.index("kind")] for row in rows}
    assert kinds == {
        "7350.00": "Payment",
        "-1000.00": "Moved to the customer's credit balance (Stripe)",
    }

    row = with_money_totals(PurchaseOrder.objects.filter(pk=sent_po.pk)).get()
    assert (row.admin_paid, row.admin_balance) == (Decimal("6350.000"), 0)  # type: ignore[attr-defined]
    (figures,) = receivables_overview(sent_po.conference).currencies
    assert figures.collected == Decimal("6350.000")
    assert figures.needs_attention == 0  # no longer overpaid


def test_the_database_refuses_entries_of_the_wrong_sign_or_twice(sent_po: PurchaseOrder) -> None:
    po = paid(sent_po)
    base = {
        "purchase_order": po,
        "method": PurchaseOrderPayment.Method.CREDIT_BALANCE,
        "payment_date": datetime.date(2026, 12, 1),
        "stripe_invoice_id": po.stripe_invoice_id,
    }
    for fields in (
        {"kind": Kind.TO_CREDIT_BALANCE, "amount": Decimal("5"), "overpaid_after": 500},
        {"kind": Kind.TO_CREDIT_BALANCE, "amount": Decimal("-5")},  # no key
        {"kind": Kind.PAYMENT, "amount": Decimal("5"), "overpaid_after": 500},
        {
            "kind": Kind.TO_CREDIT_BALANCE_REVERSAL,
            "amount": Decimal("-5"),
            "stripe_object_id": "cn",
        },
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            PurchaseOrderPayment.objects.create(**base, **fields)
    PurchaseOrderPayment.objects.create(
        **base, kind=Kind.TO_CREDIT_BALANCE, amount=Decimal("-5"), overpaid_after=500
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        PurchaseOrderPayment.objects.create(
            **base, kind=Kind.TO_CREDIT_BALANCE, amount=Decimal("-1"), overpaid_after=500
        )
