"""Purchase order services on PostgreSQL: creation, approval, cancellation, ledger and status."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from invoicing.errors import InvalidPayment, InvalidPurchaseOrder, InvalidTransition
from invoicing.models import PurchaseOrder, PurchaseOrderLineItem, PurchaseOrderPayment
from invoicing.services import purchase_orders
from invoicing.services.purchase_orders import LineItemInput
from tests.core.conftest import MakeConference, MakePurchaseOrder

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
TODAY = datetime.date(2026, 11, 25)


def test_create_purchase_order_saves_draft_with_lines(make_conference: MakeConference) -> None:
    conference = make_conference(currency="eur")
    po = purchase_orders.create_purchase_order(
        conference=conference,
        reference=" PO-1 ",
        organization_name="Acme",
        contact_email="Billing@Acme.example",
        lines=[
            LineItemInput("Booth", 2, Decimal("1200.50")),
            LineItemInput("Ticket", 1, Decimal("99")),
        ],
    )
    assert po.status == Status.DRAFT
    assert po.reference == "PO-1"
    assert po.currency == "eur"
    assert [(line.position, line.quantity) for line in po.line_items.all()] == [(1, 2), (2, 1)]
    assert po.total == Decimal("2500.00")
    assert po.uid is not None
    assert po.generation == 1


@pytest.mark.parametrize(
    ("currency", "unit_price", "message"),
    [
        ("usd", Decimal("10.005"), "10.005 USD cannot be charged"),
        ("jpy", Decimal("1.5"), "1.5 JPY cannot be charged"),
        ("kwd", Decimal("1.001"), "KWD amounts must be multiples of 0.010"),
    ],
)
def test_unrepresentable_amount_is_refused_and_nothing_saved(
    make_conference: MakeConference, currency: str, unit_price: Decimal, message: str
) -> None:
    conference = make_conference()
    with pytest.raises(InvalidPurchaseOrder, match=message):
        purchase_orders.create_purchase_order(
            conference=conference,
            reference="PO-X",
            organization_name="Acme",
            contact_email="a@acme.example",
            currency=currency,
            lines=[LineItemInput("Booth", 1, unit_price)],
        )
    assert not PurchaseOrder.objects.exists()
    assert not PurchaseOrderLineItem.objects.exists()


def test_every_problem_is_reported_at_once(make_conference: MakeConference) -> None:
    conference = make_conference()
    with pytest.raises(InvalidPurchaseOrder) as raised:
        purchase_orders.create_purchase_order(
            conference=conference,
            reference="",
            organization_name=" ",
            contact_email="not-an-email",
            lines=[
                LineItemInput("", 0, Decimal("1")),
                LineItemInput("Ok", 1, Decimal("-5")),
                LineItemInput("Float", 1, 1.5),  # type: ignore[arg-type]
            ],
        )
    message = str(raised.value)
    for expected in (
        "reference is empty",
        "organization name is empty",
        "not a valid email",
        "Line 1: the description is empty",
        "Line 1: the quantity",
        "Line 2: the unit price is negative",
        "Line 3: the unit price must be a Decimal",
    ):
        assert expected in message
    assert not PurchaseOrder.objects.exists()


def test_no_lines_and_zero_total_are_refused(make_conference: MakeConference) -> None:
    conference = make_conference()
    for lines, message in [
        ([], "at least one line"),
        ([LineItemInput("Free", 1, Decimal("0"))], "greater than zero"),
    ]:
        with pytest.raises(InvalidPurchaseOrder, match=message):
            purchase_orders.create_purchase_order(
                conference=conference,
                reference="PO-0",
                organization_name="Acme",
                contact_email="a@acme.example",
                lines=lines,
            )
    assert not PurchaseOrder.objects.exists()


def test_duplicate_reference_is_refused_per_conference(
    make_conference: MakeConference, make_purchase_order: MakePurchaseOrder
) -> None:
    conference = make_conference()
    make_purchase_order(conference=conference, reference="PO-1", approve=False)
    with pytest.raises(InvalidPurchaseOrder, match="already has a purchase order 'PO-1'"):
        make_purchase_order(conference=conference, reference="PO-1", approve=False)
    # Another conference may use the same reference.
    make_purchase_order(reference="PO-1", approve=False)
    assert PurchaseOrder.objects.filter(reference="PO-1").count() == 2


def test_inactive_conference_takes_no_new_po(
    make_conference: MakeConference, make_purchase_order: MakePurchaseOrder
) -> None:
    with pytest.raises(InvalidPurchaseOrder, match="not active"):
        make_purchase_order(conference=make_conference(is_active=False), approve=False)


def test_approve_only_from_draft(make_purchase_order: MakePurchaseOrder) -> None:
    user = User.objects.create(username="staff")
    po = make_purchase_order(approve=False)
    approved = purchase_orders.approve_purchase_order(po, approved_by=user)
    assert approved.status == Status.APPROVED
    assert approved.approved_by == user
    assert approved.approved_at is not None
    with pytest.raises(InvalidTransition, match="only a draft can be approved"):
        purchase_orders.approve_purchase_order(po)


def test_approve_needs_a_stripe_key(
    make_conference: MakeConference, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order(conference=make_conference(secret_key=""), approve=False)
    with pytest.raises(InvalidTransition, match="no Stripe secret key"):
        purchase_orders.approve_purchase_order(po)
    po.refresh_from_db()
    assert po.status == Status.DRAFT


def test_wire_payments_drive_the_status(make_purchase_order: MakePurchaseOrder) -> None:
    po = make_purchase_order()  # total 6350.00
    assert po.total == Decimal("6350.00")
    purchase_orders.record_payment(
        po, amount=Decimal("350"), method="wire", payment_date=TODAY, reference="W1"
    )
    assert po.status == Status.PARTIALLY_PAID
    purchase_orders.record_payment(po, amount=Decimal("6000"), method="check", payment_date=TODAY)
    assert po.status == Status.PAID
    with pytest.raises(InvalidPayment, match=r"0\.01 USD is more than the 0\.00 USD still due"):
        purchase_orders.record_payment(
            po, amount=Decimal("0.01"), method="other", payment_date=TODAY
        )
    purchase_orders.record_payment(
        po,
        amount=Decimal("0.01"),
        method="other",
        payment_date=TODAY,
        overpayment_reason="Bank fee refunded twice",
    )
    po.refresh_from_db()
    assert po.status == Status.OVERPAID
    assert po.amount_received == Decimal("6350.01")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": Decimal("0"), "method": "wire"}, "greater than zero"),
        ({"amount": Decimal("-1"), "method": "wire"}, "greater than zero"),
        ({"amount": 10.5, "method": "wire"}, "must be a Decimal"),
        ({"amount": Decimal("1"), "method": "bitcoin"}, "Unknown payment method"),
        ({"amount": Decimal("1.001"), "method": "wire"}, "USD amounts have at most 2"),
        ({"amount": Decimal("1"), "method": "stripe"}, "needs stripe_invoice_id"),
        (
            {"amount": Decimal("1"), "method": "wire", "stripe_invoice_id": "in_1"},
            "Only a Stripe payment",
        ),
    ],
)
def test_bad_payments_are_refused_and_change_nothing(
    make_purchase_order: MakePurchaseOrder, kwargs: dict[str, object], message: str
) -> None:
    po = make_purchase_order()
    with pytest.raises(InvalidPayment, match=message):
        purchase_orders.record_payment(po, payment_date=TODAY, **kwargs)  # type: ignore[arg-type]
    assert not PurchaseOrderPayment.objects.exists()
    po.refresh_from_db()
    assert po.status == Status.APPROVED


def test_manual_payment_refused_on_draft_and_cancelled(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    draft = make_purchase_order(approve=False)
    with pytest.raises(InvalidPayment, match="draft"):
        purchase_orders.record_payment(
            draft, amount=Decimal("1"), method="wire", payment_date=TODAY
        )
    cancelled = make_purchase_order()
    purchase_orders.cancel_purchase_order(cancelled, reason="duplicate")
    with pytest.raises(InvalidPayment, match="cancelled"):
        purchase_orders.record_payment(
            cancelled, amount=Decimal("1"), method="wire", payment_date=TODAY
        )
    assert not PurchaseOrderPayment.objects.exists()


def test_stripe_payment_is_recorded_even_on_a_cancelled_po(
    make_purchase_order: MakePurchaseOrder, caplog: pytest.LogCaptureFixture
) -> None:
    po = make_purchase_order()
    purchase_orders.cancel_purchase_order(po, reason="Duplicate order")
    payment = purchase_orders.record_payment(
        po,
        amount=Decimal("10"),
        method="stripe",
        payment_date=TODAY,
        stripe_invoice_id="in_test_1",
        stripe_amount_paid_after=1000,
    )
    assert payment.pk is not None
    po.refresh_from_db()
    assert po.status == Status.CANCELLED
    assert "refund needed" in caplog.text


def test_replayed_stripe_payment_cannot_be_inserted_twice(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order()
    kwargs = {
        "amount": Decimal("10"),
        "method": "stripe",
        "payment_date": TODAY,
        "stripe_invoice_id": "in_test_1",
        "stripe_amount_paid_after": 1000,
    }
    purchase_orders.record_payment(po, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidPayment, match="already recorded"):
        purchase_orders.record_payment(po, **kwargs)  # type: ignore[arg-type]
    assert PurchaseOrderPayment.objects.count() == 1


def test_database_constraints_back_the_ledger(make_purchase_order: MakePurchaseOrder) -> None:
    """The constraints hold even for code that bypasses record_payment."""
    po = make_purchase_order()
    base = {"purchase_order": po, "payment_date": TODAY}
    PurchaseOrderPayment.objects.create(
        amount=Decimal("1"),
        method="stripe",
        stripe_invoice_id="in_1",
        stripe_amount_paid_after=100,
        **base,
    )
    bad_rows = [
        # Same (invoice, amount_paid_after) again.
        {
            "amount": Decimal("1"),
            "method": "stripe",
            "stripe_invoice_id": "in_1",
            "stripe_amount_paid_after": 100,
        },
        # Not positive.
        {"amount": Decimal("0"), "method": "wire"},
        # A Stripe row without its Stripe data; a wire row with Stripe data.
        {"amount": Decimal("1"), "method": "stripe"},
        {"amount": Decimal("1"), "method": "wire", "stripe_invoice_id": "in_2"},
        {"amount": Decimal("1"), "method": "bogus"},
    ]
    for row in bad_rows:
        with pytest.raises(IntegrityError), transaction.atomic():
            PurchaseOrderPayment.objects.create(**base, **row)
    # Wire rows are never constrained by the Stripe key.
    for _ in range(2):
        PurchaseOrderPayment.objects.create(amount=Decimal("1"), method="wire", **base)
    assert PurchaseOrderPayment.objects.count() == 3


def test_update_po_status_is_the_only_derivation(make_purchase_order: MakePurchaseOrder) -> None:
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(status=Status.PAID)  # a wrong stored status
    assert purchase_orders.update_po_status(po) == Status.APPROVED
    po.refresh_from_db()
    assert po.status == Status.APPROVED


def test_cancel_refuses_an_invoiced_po(make_purchase_order: MakePurchaseOrder) -> None:
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id="in_open", stripe_invoice_status="open"
    )
    with pytest.raises(InvalidTransition, match="voids the invoice first"):
        purchase_orders.cancel_purchase_order(po, reason="Duplicate order")
    po.refresh_from_db()
    assert po.status == Status.APPROVED


@pytest.mark.parametrize("reason", ["", "  \n "], ids=["empty", "blank"])
def test_cancel_without_a_reason_is_refused_and_changes_nothing(
    make_purchase_order: MakePurchaseOrder, reason: str
) -> None:
    po = make_purchase_order()
    with pytest.raises(InvalidTransition) as refused:
        purchase_orders.cancel_purchase_order(po, reason=reason)
    assert str(refused.value) == (
        f"PO {po.reference}: not cancelled: give a reason (it is kept with the PO and shown in "
        "its history)."
    )
    po.refresh_from_db()
    assert (po.status, po.cancelled_at, po.cancellation_reason) == (Status.APPROVED, None, "")
    assert not po.activities.filter(kind="cancelled").exists()
    kept = purchase_orders.cancel_purchase_order(po, reason="  Sponsor withdrew \n")
    assert (kept.status, kept.cancellation_reason) == (Status.CANCELLED, "Sponsor withdrew")


def test_cancel_is_idempotent_and_refused_when_paid(make_purchase_order: MakePurchaseOrder) -> None:
    po = make_purchase_order()
    first = purchase_orders.cancel_purchase_order(po, reason="duplicate order")
    second = purchase_orders.cancel_purchase_order(po, reason="again")
    assert first.status == second.status == Status.CANCELLED
    assert second.cancellation_reason == "duplicate order"
    paid = make_purchase_order()
    purchase_orders.record_payment(paid, amount=paid.total, method="wire", payment_date=TODAY)
    with pytest.raises(InvalidTransition, match="give the money back outside Stripe"):
        purchase_orders.cancel_purchase_order(paid, reason="Duplicate order")


@pytest.mark.parametrize(
    ("unit_price", "currency", "message"),
    [
        (Decimal("99999999999.99"), "usd", "more than Stripe can charge on one invoice"),
        (Decimal("1000000"), "usd", r"999,999\.99 USD at most"),
        (Decimal("0.49"), "usd", r"smallest amount Stripe charges in USD \(0\.50 USD\)"),
        (Decimal("49"), "jpy", r"\(50 JPY\)"),
    ],
)
def test_totals_beyond_stripes_charge_limits_are_refused_at_creation_and_approval(
    make_purchase_order: MakePurchaseOrder, unit_price: Decimal, currency: str, message: str
) -> None:
    lines = [LineItemInput("Booth", 1, unit_price)]
    with pytest.raises(InvalidPurchaseOrder, match=message):
        make_purchase_order(lines=lines, currency=currency, approve=False)
    assert not PurchaseOrder.objects.exists()
    # A draft whose price was changed afterwards (the admin's form, an old row): approval refuses.
    po = make_purchase_order(currency=currency, approve=False)
    PurchaseOrderLineItem.objects.filter(purchase_order=po).update(unit_price=unit_price)
    PurchaseOrderLineItem.objects.filter(purchase_order=po, position__gt=1).delete()
    with pytest.raises(InvalidPurchaseOrder, match=message):
        purchase_orders.approve_purchase_order(po)
    po.refresh_from_db()
    assert po.status == Status.DRAFT
    assert po.approved_at is None
