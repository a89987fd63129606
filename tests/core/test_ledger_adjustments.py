"""Money going back and amounts owed changing: refunds, disputes and credit notes in the ledger.

The views fed here have the shapes Stripe sends (``data.object`` of ``refund.*``,
``charge.dispute.*``, ``credit_note.*``), in every order and repeated; the same code runs end to
end against the emulator in ``tests/pipeline/test_money_events.py`` and the property test.
"""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from invoicing.errors import EventRejected, InvalidPayment
from invoicing.models import (
    Notification,
    NotificationKind,
    NotificationSubscription,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderDispute,
    PurchaseOrderPayment,
    Role,
)
from invoicing.services import ledger, purchase_orders
from invoicing.services.conference_access import grant_conference_role
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_ledger import invoice_payload

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind
_ids = itertools.count(1)
CREATED = 1_790_000_000


def refund(amount: int, status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    return {
        "id": fields.pop("id", f"re_test_{next(_ids)}"),
        "object": "refund",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "charge": "ch_test_1",
        "payment_intent": "pi_test_1",
        "created": CREATED,
        "reason": None,
        "metadata": {},
        **fields,
    }


def dispute(amount: int, status: str, movements: list[int], **fields: Any) -> dict[str, Any]:
    return {
        "id": fields.pop("id", "dp_test_1"),
        "object": "dispute",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "livemode": False,
        "charge": "ch_test_1",
        "payment_intent": "pi_test_1",
        "reason": "fraudulent",
        "created": CREATED,
        "balance_transactions": [
            {"id": f"txn_{n}", "object": "balance_transaction", "amount": amount_}
            for n, amount_ in enumerate(movements)
        ],
        "metadata": {},
        **fields,
    }


def credit_note(
    po: PurchaseOrder, amount: int, status: str = "issued", **fields: Any
) -> dict[str, Any]:
    return {
        "id": fields.pop("id", f"cn_test_{next(_ids)}"),
        "object": "credit_note",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "livemode": False,
        "invoice": po.stripe_invoice_id,
        "number": "ACME-0001-CN-01",
        "created": CREATED,
        "voided_at": CREATED + 60 if status == "void" else None,
        "reason": None,
        "memo": None,
        "metadata": {},
        **fields,
    }


@pytest.fixture
def paid_po(make_purchase_order: MakePurchaseOrder) -> PurchaseOrder:
    """6350.00 USD, paid in full at Stripe."""
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id=f"in_test_{po.pk}",
        stripe_invoice_status="open",
        invoice_sent_at=datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC),
    )
    po.refresh_from_db()
    ledger.apply_invoice_snapshot(
        purchase_order=po, invoice=invoice_payload(po, amount_paid=635000), source="test"
    )
    assert po.status == Status.PAID
    return po


def entries(po: PurchaseOrder) -> list[tuple[str, Decimal]]:
    return [(row.kind, row.amount) for row in po.payments.order_by("pk")]


def test_a_refund_is_recorded_once_however_often_it_is_seen(paid_po: PurchaseOrder) -> None:
    view = refund(100000)
    changes = [
        ledger.apply_refund(purchase_order=paid_po, refund=view, source="test") for _ in range(3)
    ]
    assert changes == [Decimal("-1000.00"), 0, 0]
    assert entries(paid_po)[1:] == [(Kind.REFUND, Decimal("-1000.000"))]
    assert paid_po.amount_received == Decimal("5350.000")
    # Given back, so owed no more: the PO stays paid (Stripe's invoice asks nothing either).
    assert (paid_po.amount_owed, paid_po.balance_due) == (Decimal("5350.000"), Decimal(0))
    assert paid_po.status == Status.PAID
    rest = refund(535000)
    ledger.apply_refund(purchase_order=paid_po, refund=rest, source="test")
    assert paid_po.amount_received == 0
    assert paid_po.status == Status.REFUNDED


def test_a_pending_refund_records_nothing_and_a_failed_one_nets_to_zero(
    paid_po: PurchaseOrder,
) -> None:
    pending = refund(50000, "pending", id="pyr_test_ach")
    failed = refund(50000, "failed", id="pyr_test_ach", failure_reason="declined")
    succeeded = refund(50000, "succeeded", id="pyr_test_ach")
    assert ledger.apply_refund(purchase_order=paid_po, refund=pending, source="t") == 0
    assert entries(paid_po)[1:] == []
    # The failure arrives; then a stale "succeeded" view: nothing may come out of it.
    for view in (failed, succeeded, pending, failed):
        ledger.apply_refund(purchase_order=paid_po, refund=view, source="t")
    assert entries(paid_po)[1:] == [
        (Kind.REFUND, Decimal("-500.000")),
        (Kind.REFUND_REVERSAL, Decimal("500.000")),
    ]
    assert paid_po.amount_received == Decimal("6350.000")
    assert paid_po.status == Status.PAID


def test_a_refund_failing_after_it_succeeded_is_reversed(paid_po: PurchaseOrder) -> None:
    ledger.apply_refund(purchase_order=paid_po, refund=refund(635000, id="re_x"), source="t")
    assert paid_po.status == Status.REFUNDED
    ledger.apply_refund(
        purchase_order=paid_po, refund=refund(635000, "failed", id="re_x"), source="t"
    )
    assert paid_po.status == Status.PAID
    assert [kind for kind, _ in entries(paid_po)] == [
        Kind.PAYMENT,
        Kind.REFUND,
        Kind.REFUND_REVERSAL,
    ]


def test_a_lost_dispute_withdraws_once_and_the_po_shows_it_while_open(
    paid_po: PurchaseOrder,
) -> None:
    created = dispute(200000, "needs_response", [])
    withdrawn = dispute(200000, "needs_response", [-200000])
    lost = dispute(200000, "lost", [-200000])
    ledger.apply_dispute(purchase_order=paid_po, dispute=created, source="t")
    assert paid_po.has_open_dispute
    assert entries(paid_po)[1:] == []
    for view in (withdrawn, lost, created, withdrawn):
        ledger.apply_dispute(purchase_order=paid_po, dispute=view, source="t")
    assert entries(paid_po)[1:] == [(Kind.DISPUTE, Decimal("-2000.000"))]
    # The stale "needs_response" views did not reopen it.
    assert not PurchaseOrder.objects.get(pk=paid_po.pk).has_open_dispute
    assert PurchaseOrderDispute.objects.get().status == "lost"
    assert paid_po.status == Status.PARTIALLY_PAID


def test_a_won_dispute_reinstates_whatever_order_its_views_arrive_in(
    paid_po: PurchaseOrder,
) -> None:
    reinstated = dispute(635000, "won", [-635000, 635000])
    withdrawn = dispute(635000, "needs_response", [-635000])
    ledger.apply_dispute(purchase_order=paid_po, dispute=reinstated, source="t")
    ledger.apply_dispute(purchase_order=paid_po, dispute=withdrawn, source="t")
    assert entries(paid_po)[1:] == [
        (Kind.DISPUTE, Decimal("-6350.000")),
        (Kind.DISPUTE_REINSTATEMENT, Decimal("6350.000")),
    ]
    assert paid_po.status == Status.PAID
    assert not paid_po.has_open_dispute


def test_while_funds_are_withdrawn_a_fully_disputed_po_holds_nothing(
    paid_po: PurchaseOrder,
) -> None:
    ledger.apply_dispute(
        purchase_order=paid_po, dispute=dispute(635000, "under_review", [-635000]), source="t"
    )
    assert paid_po.status == Status.REFUNDED
    assert paid_po.has_open_dispute


def test_credit_notes_lower_what_is_owed_and_voiding_restores_it(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id=f"in_test_{po.pk}",
        stripe_invoice_status="open",
        invoice_sent_at=datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC),
    )
    po.refresh_from_db()
    ledger.apply_invoice_snapshot(
        purchase_order=po,
        invoice=invoice_payload(po, amount_paid=500000, amount_due=635000),
        source="t",
    )
    assert po.status == Status.PARTIALLY_PAID
    reduce = credit_note(po, 135000, metadata={"purpose": "reduce", "purchase_order": po.reference})
    assert ledger.apply_credit_note(purchase_order=po, credit_note=reduce, source="t") == Decimal(
        "1350.00"
    )
    assert ledger.apply_credit_note(purchase_order=po, credit_note=reduce, source="t") == 0
    assert po.amount_credited == Decimal("1350.000")
    assert po.balance_due == 0
    assert po.status == Status.PAID
    # A re-issue's remainder is recorded, never counted.
    moved = credit_note(po, 1000, metadata={"purpose": "reissue"})
    assert ledger.apply_credit_note(purchase_order=po, credit_note=moved, source="t") == 0
    assert PurchaseOrderCredit.objects.filter(purchase_order=po).count() == 2
    assert po.status == Status.PAID
    # Voided: owed again. A stale "issued" view afterwards changes nothing.
    voided = {**reduce, "status": "void", "voided_at": CREATED + 60}
    for view in (voided, reduce, voided):
        ledger.apply_credit_note(purchase_order=po, credit_note=view, source="t")
    assert po.amount_credited == 0
    assert po.status == Status.PARTIALLY_PAID


def test_a_credit_note_voided_before_it_was_seen_is_recorded_void(paid_po: PurchaseOrder) -> None:
    voided = credit_note(paid_po, 1000, "void")
    assert ledger.apply_credit_note(purchase_order=paid_po, credit_note=voided, source="t") == 0
    issued = {**voided, "status": "issued", "voided_at": None}
    assert ledger.apply_credit_note(purchase_order=paid_po, credit_note=issued, source="t") == 0
    assert PurchaseOrderCredit.objects.get().voided_at is not None


def test_a_credit_note_made_in_the_dashboard_counts(paid_po: PurchaseOrder) -> None:
    """On a paid invoice, refunded as Stripe's Dashboard does it: the credit note and its refund
    are two objects, each reaching the ledger on its own."""
    given_back = refund(35000)
    note = credit_note(
        paid_po,
        35000,
        pre_payment_amount=0,
        post_payment_amount=35000,
        refunds=[{"refund": given_back["id"], "amount_refunded": 35000}],
    )
    ledger.apply_credit_note(purchase_order=paid_po, credit_note=note, source="t")
    row = PurchaseOrderCredit.objects.get()
    assert row.purpose == PurchaseOrderCredit.Purpose.EXTERNAL
    assert paid_po.status == Status.OVERPAID  # owes 350.00 less; the refund is on its way
    ledger.apply_refund(purchase_order=paid_po, refund=given_back, source="t")
    assert (paid_po.status, paid_po.amount_received) == (Status.PAID, Decimal("6000.00"))


def test_a_cancelled_po_stays_cancelled_whatever_is_recorded(paid_po: PurchaseOrder) -> None:
    PurchaseOrder.objects.filter(pk=paid_po.pk).update(status=Status.CANCELLED)
    paid_po.refresh_from_db()
    ledger.apply_refund(purchase_order=paid_po, refund=refund(635000), source="t")
    assert paid_po.status == Status.CANCELLED
    assert paid_po.amount_received == 0


@pytest.mark.parametrize(
    ("apply", "view"),
    [
        ("refund", {"currency": "eur"}),
        ("refund", {"metadata": {"purchase_order": "PO-SOMEONE-ELSE"}}),
        ("refund", {"amount": 0}),
        ("refund", {"status": "reversed"}),
        ("dispute", {"livemode": True}),
        ("dispute", {"currency": "eur"}),
        ("credit_note", {"invoice": "in_not_this_pos"}),
        ("credit_note", {"object": "invoice"}),
    ],
)
def test_views_that_do_not_fit_the_po_are_refused_and_change_nothing(
    paid_po: PurchaseOrder, apply: str, view: dict[str, Any]
) -> None:
    before = (entries(paid_po), paid_po.status)

    def attempt() -> None:
        if apply == "refund":
            ledger.apply_refund(purchase_order=paid_po, refund={**refund(100), **view}, source="t")
        elif apply == "dispute":
            ledger.apply_dispute(
                purchase_order=paid_po, dispute={**dispute(100, "lost", [-100]), **view}, source="t"
            )
        else:
            ledger.apply_credit_note(
                purchase_order=paid_po,
                credit_note={**credit_note(paid_po, 100), **view},
                source="t",
            )

    with pytest.raises(EventRejected):
        attempt()
    paid_po.refresh_from_db()
    assert (entries(paid_po), paid_po.status) == before
    assert not PurchaseOrderCredit.objects.exists()
    assert not PurchaseOrderDispute.objects.exists()


def test_another_pos_refund_is_refused(
    paid_po: PurchaseOrder, make_purchase_order: MakePurchaseOrder
) -> None:
    ledger.apply_refund(purchase_order=paid_po, refund=refund(100, id="re_shared"), source="t")
    other = make_purchase_order(conference=paid_po.conference)
    with pytest.raises(EventRejected, match="another purchase order"):
        ledger.apply_refund(purchase_order=other, refund=refund(100, id="re_shared"), source="t")
    assert not other.payments.exists()


def test_database_constraints_back_refunds_disputes_and_credits(paid_po: PurchaseOrder) -> None:
    """Code that bypasses the ledger still cannot write a wrong sign or a second entry."""
    base = {"purchase_order": paid_po, "payment_date": datetime.date(2026, 12, 1)}
    stripe = {"method": "stripe", "stripe_invoice_id": paid_po.stripe_invoice_id}
    PurchaseOrderPayment.objects.create(
        kind=Kind.REFUND, amount=Decimal("-1"), stripe_object_id="re_1", **stripe, **base
    )
    bad_rows: list[dict[str, Any]] = [
        {"kind": Kind.REFUND, "amount": Decimal("-1"), "stripe_object_id": "re_1", **stripe},
        {"kind": Kind.REFUND, "amount": Decimal("1"), "stripe_object_id": "re_2", **stripe},
        {"kind": Kind.REFUND_REVERSAL, "amount": Decimal("-1"), "stripe_object_id": "re_1"},
        {"kind": Kind.DISPUTE, "amount": Decimal("0"), "stripe_object_id": "dp_1", **stripe},
        {"kind": Kind.DISPUTE, "amount": Decimal("-1"), "stripe_object_id": "", **stripe},
        {"kind": Kind.DISPUTE, "amount": Decimal("-1"), "method": "wire", "stripe_object_id": "x"},
        {"kind": Kind.PAYMENT, "amount": Decimal("-1"), "method": "wire"},
        {"kind": "gift", "amount": Decimal("1"), "method": "wire"},
    ]
    for row in bad_rows:
        with pytest.raises(IntegrityError), transaction.atomic():
            PurchaseOrderPayment.objects.create(**base, **row)
    credit = {
        "purchase_order": paid_po,
        "stripe_invoice_id": paid_po.stripe_invoice_id,
        "purpose": "reduce",
    }
    PurchaseOrderCredit.objects.create(stripe_credit_note_id="cn_1", amount=Decimal("1"), **credit)
    for bad in (
        {"stripe_credit_note_id": "cn_1", "amount": Decimal("1")},
        {"stripe_credit_note_id": "cn_2", "amount": Decimal("0")},
        {"stripe_credit_note_id": "cn_3", "amount": Decimal("1"), "purpose": "gift"},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            PurchaseOrderCredit.objects.create(**{**credit, **bad})
    assert PurchaseOrderPayment.objects.count() == 2
    assert PurchaseOrderCredit.objects.count() == 1


def test_a_wire_on_a_refunded_po_is_recorded_on_purpose_and_the_po_is_paid(
    paid_po: PurchaseOrder,
) -> None:
    """The card payment was given back, so the PO owes nothing: a wire then (the company pays
    another way) is more than is due and needs its reason; the refund then counts as giving back
    what was paid twice, and the PO is paid."""
    ledger.apply_refund(purchase_order=paid_po, refund=refund(635000), source="t")
    assert paid_po.status == Status.REFUNDED
    assert paid_po.balance_due == 0
    day = datetime.date(2026, 12, 2)
    with pytest.raises(InvalidPayment, match=r"more than the 0\.00 USD still due"):
        purchase_orders.record_payment(
            paid_po, amount=Decimal("6350"), method="wire", payment_date=day
        )
    purchase_orders.record_payment(
        paid_po,
        amount=Decimal("6350"),
        method="wire",
        payment_date=day,
        overpayment_reason="Paid by wire after the card refund",
    )
    paid_po.refresh_from_db()
    assert paid_po.status == Status.PAID
    assert paid_po.balance_due == 0


def test_the_po_page_shows_refunds_credits_and_the_open_dispute_read_only(
    admin_client: Client, paid_po: PurchaseOrder, settings: Any, tmp_path: Path
) -> None:
    settings.STATIC_ROOT = tmp_path  # WhiteNoise: collectstatic never ran
    ledger.apply_refund(purchase_order=paid_po, refund=refund(100000, id="re_shown_1"), source="t")
    ledger.apply_credit_note(
        purchase_order=paid_po,
        credit_note=credit_note(paid_po, 35000, number="ACME-0001-CN-07"),
        source="t",
    )
    ledger.apply_dispute(
        purchase_order=paid_po,
        dispute=dispute(50000, "needs_response", [-50000], id="dp_shown_1"),
        source="t",
    )
    url = reverse("admin:invoicing_purchaseorder_change", args=[paid_po.pk])
    page = admin_client.get(url).content.decode()
    assert "Ledger: payments, refunds, disputes (read-only)" in page
    assert "re_shown_1" in page
    assert "-1,000.00" in page or "-1000.00" in page
    assert "ACME-0001-CN-07" in page
    assert "OPEN: dp_shown_1 (needs response, fraudulent)" in page
    # Net received 6350 - 1000 - 500 = 4850; owed 6350 - 350 - 1000 given back = 5000.
    assert "4,850.00" in page or "4850.00" in page
    assert "Given back (refunds owed no more)" in page
    assert "150.00" in page  # the balance
    assert "1,150.00" not in page
    assert "1150.00" not in page
    assert "Lowers what is owed" in page
    # Read-only: tables, not forms (nothing about them is posted with the PO's form).
    assert 'name="credits-' not in page
    assert 'name="disputes-' not in page
    ledger.apply_dispute(
        purchase_order=paid_po,
        dispute=dispute(50000, "won", [-50000, 50000], id="dp_shown_1"),
        source="t",
    )
    assert "OPEN: dp_shown_1" not in admin_client.get(url).content.decode()


def test_a_refund_recorded_without_its_invoice_learns_it_from_a_later_view(
    paid_po: PurchaseOrder,
) -> None:
    """Our own refund call may not know the invoice; the webhook that follows finds it."""
    view = refund(1000, id="re_ours")
    ledger.apply_refund(purchase_order=paid_po, refund=view, source="admin refund")
    entry = paid_po.payments.get(kind=Kind.REFUND)
    assert entry.stripe_invoice_id == ""
    ledger.apply_refund(
        purchase_order=paid_po,
        refund=view,
        source="refund.created",
        stripe_invoice_id=paid_po.stripe_invoice_id,
    )
    entry.refresh_from_db()
    assert entry.stripe_invoice_id == paid_po.stripe_invoice_id
    assert paid_po.payments.filter(kind=Kind.REFUND).count() == 1


def test_refunds_and_disputes_tell_subscribed_organizers_once_per_entry(
    paid_po: PurchaseOrder,
) -> None:
    organizer = User.objects.create_user("olga", "olga@example.com", "not-used")
    grant_conference_role(conference=paid_po.conference, user=organizer, role=Role.ORGANIZER)
    NotificationSubscription.objects.create(
        conference=paid_po.conference,
        user=organizer,
        kinds=[NotificationKind.REFUND_OR_DISPUTE],
    )
    view = refund(100000)
    for _ in range(3):  # replays of the same refund
        ledger.apply_refund(purchase_order=paid_po, refund=view, source="test")
    lost = dispute(50000, "lost", [-50000])
    for _ in range(2):
        ledger.apply_dispute(purchase_order=paid_po, dispute=lost, source="test")

    told = Notification.objects.filter(kind=NotificationKind.REFUND_OR_DISPUTE)
    assert sorted((row.recipient_id, row.key) for row in told) == sorted(
        [
            (organizer.pk, f"{view['id']}-refund"),
            (organizer.pk, f"{lost['id']}-dispute"),
        ]
    )
