"""Money paid back outside Stripe: the ledger entry, the status it gives, and every refusal.

No Stripe here: the conference has no key, so wire payments are never reported to an invoice
(the open-invoice rule is checked with a payment still waiting to be reported).
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from invoicing.errors import InvalidPayment
from invoicing.models import (
    Conference,
    ConferenceRole,
    NotificationSubscription,
    PurchaseOrder,
    PurchaseOrderPayment,
    Role,
)
from invoicing.selectors import cancel_refusal
from invoicing.selectors_paid_back import paid_back_refusal
from invoicing.services import ledger, purchase_orders
from invoicing.timeline import purchase_order_timeline
from tests.core.conftest import MakeConference, MakePurchaseOrder, offline_test_key

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind
TODAY = datetime.date(2026, 3, 2)


@pytest.fixture
def conference(make_conference: MakeConference) -> Conference:
    return make_conference()


@pytest.fixture
def make_po(conference: Conference, make_purchase_order: MakePurchaseOrder) -> MakePurchaseOrder:
    """Approved POs of ``conference``, which then loses its key: nothing is reported to Stripe."""

    def make(**fields: object) -> PurchaseOrder:
        Conference.objects.filter(pk=conference.pk).update(stripe_secret_key=offline_test_key())
        po = make_purchase_order(conference=conference, **fields)
        Conference.objects.filter(pk=conference.pk).update(stripe_secret_key="")
        po.conference.refresh_from_db()
        return po

    return make


@pytest.fixture
def finance(conference: Conference) -> User:
    user = User.objects.create_user(username="finance", email="fin@example.org", is_staff=True)
    ConferenceRole.objects.create(conference=conference, user=user, role=Role.FINANCE)
    return user


def wired(po: PurchaseOrder, amount: str, *, reason: str = "") -> PurchaseOrder:
    purchase_orders.record_payment(
        po,
        amount=Decimal(amount),
        method="wire",
        reference="WIRE-1",
        payment_date=TODAY,
        overpayment_reason=reason,
    )
    po.refresh_from_db()
    return po


def pay_back(po: PurchaseOrder, amount: str, by: User, **fields: object) -> PurchaseOrderPayment:
    entry = ledger.record_paid_back(
        po,
        amount=Decimal(amount),
        method=str(fields.pop("method", "wire")),
        reason=str(fields.pop("reason", "Paid twice by their AP")),
        payment_date=TODAY,
        recorded_by=by,
        **fields,  # type: ignore[arg-type]
    )
    po.refresh_from_db()
    return entry


def test_an_overpaid_by_wire_po_paid_back_its_excess_is_paid(
    conference: Conference, make_po: MakePurchaseOrder, finance: User
) -> None:
    po = wired(make_po(), "6450.00", reason="Paid twice")
    assert po.status == Status.OVERPAID
    entry = pay_back(po, "100.00", finance, reference="OUT-7")
    assert po.status == Status.PAID
    assert (entry.kind, entry.amount, entry.method, entry.reference) == (
        Kind.REFUND_OFF_STRIPE,
        Decimal("-100.00"),
        "wire",
        "OUT-7",
    )
    assert (entry.note, entry.created_by, entry.report_to_stripe) == (
        "Paid twice by their AP",
        finance,
        False,
    )
    assert po.amount_received == Decimal("6350.00")
    assert po.amount_refunded == Decimal("100.00")
    assert po.amount_given_back == Decimal("0.00")  # it gave back an overpayment
    assert po.balance_due == Decimal("0.00")
    # The history tells it, from the ledger entry, once.
    (line,) = [e for e in purchase_order_timeline(po) if e.what == "Paid back outside Stripe"]
    assert line.detail == "-100.00 USD by Wire transfer, reference OUT-7"
    assert line.who.startswith("finance")


def test_paid_in_full_by_wire_then_paid_back_in_full_is_refunded_and_can_be_cancelled(
    conference: Conference, make_po: MakePurchaseOrder, finance: User
) -> None:
    po = wired(make_po(), "6350.00")
    assert po.status == Status.PAID
    assert "record it (Record money paid back…), then cancel" in cancel_refusal(po)
    pay_back(po, "6000.00", finance, method="check")
    pay_back(po, "350.00", finance, method="other")
    assert po.status == Status.REFUNDED
    assert po.amount_received == 0
    assert po.amount_given_back == Decimal("6350.00")
    assert cancel_refusal(po) == ""
    purchase_orders.cancel_purchase_order(po, cancelled_by=finance, reason="Company withdrew")
    po.refresh_from_db()
    assert po.status == Status.CANCELLED


def test_a_double_submit_records_once(
    conference: Conference, make_po: MakePurchaseOrder, finance: User
) -> None:
    po = wired(make_po(), "1000.00")
    key = uuid.uuid4()
    first = pay_back(po, "400.00", finance, uid=key)
    again = pay_back(po, "400.00", finance, uid=key)
    assert (first.repeated_submit, again.repeated_submit, again.pk) == (False, True, first.pk)
    assert po.payments.filter(kind=Kind.REFUND_OFF_STRIPE).count() == 1
    with pytest.raises(InvalidPayment, match="already used for another entry"):
        pay_back(po, "300.00", finance, uid=key)


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("0", "the amount must be greater than zero."),
        ("-5", "the amount must be greater than zero."),
        ("10.005", "10.005 USD cannot be charged at Stripe: USD amounts have at most 2 decimal"),
        (
            "1000.01",
            "1000.01 USD is more than the PO holds from payments made outside Stripe, net of "
            "what was paid back that way (1000.00 USD); Stripe payments are given back with Refund "
            "payments…",
        ),
    ],
)
def test_each_amount_refusal_says_why_and_saves_nothing(
    conference: Conference,
    make_po: MakePurchaseOrder,
    finance: User,
    amount: str,
    words: str,
) -> None:
    po = wired(make_po(), "1000.00")
    assert words in paid_back_refusal(po, Decimal(amount), by=finance)
    with pytest.raises(InvalidPayment, match="Not recorded: "):
        pay_back(po, amount, finance)
    assert not po.payments.filter(kind=Kind.REFUND_OFF_STRIPE).exists()
    assert po.status == Status.PARTIALLY_PAID


def test_what_was_paid_back_already_cannot_be_paid_back_again(
    conference: Conference, make_po: MakePurchaseOrder, finance: User
) -> None:
    po = wired(make_po(), "1000.00")
    pay_back(po, "600.00", finance)
    assert "(400.00 USD)" in paid_back_refusal(po, Decimal("400.01"), by=finance)
    pay_back(po, "400.00", finance)
    assert "holds no payment made outside Stripe" in paid_back_refusal(po, by=finance)


def test_who_and_which_po_are_refused(
    conference: Conference, make_po: MakePurchaseOrder, finance: User
) -> None:
    po = wired(make_po(), "1000.00")
    for role in (Role.ORGANIZER, Role.VIEWER):
        user = User.objects.create_user(username=f"u-{role}", is_staff=True)
        ConferenceRole.objects.create(conference=conference, user=user, role=role)
        assert paid_back_refusal(po, by=user) == (
            f"only a finance admin of {conference} records money paid back."
        )
        with pytest.raises(InvalidPayment, match="only a finance admin"):
            pay_back(po, "10.00", user)
    assert paid_back_refusal(po, by=None).startswith("only a finance admin")
    draft = make_po(approve=False)
    assert paid_back_refusal(draft, Decimal("1"), by=finance) == (
        "it is a draft; nothing was paid on it."
    )
    # Stripe's money is refunded, not recorded as paid back.
    stripe_paid = make_po()
    ledger.record_payment(
        stripe_paid,
        amount=Decimal("500.00"),
        method="stripe",
        payment_date=TODAY,
        stripe_invoice_id="in_paid_back_test",
        stripe_amount_paid_after=50000,
    )
    assert "Stripe payments are given back with Refund payments…" in paid_back_refusal(
        stripe_paid, by=finance
    )
    with pytest.raises(InvalidPayment, match="wire, check or other"):
        pay_back(po, "10.00", finance, method="stripe")
    with pytest.raises(InvalidPayment, match="Give a reason"):
        pay_back(po, "10.00", finance, reason="  ")
    assert not PurchaseOrderPayment.objects.filter(kind=Kind.REFUND_OFF_STRIPE).exists()


def test_a_payment_an_invoice_counts_as_paid_is_not_paid_back(
    make_conference: MakeConference, make_purchase_order: MakePurchaseOrder
) -> None:
    """A wire on a PO whose invoice is being created is reported to it once it is sent."""
    conference = make_conference()  # a key: the wire waits for the invoice
    finance = User.objects.create_user(username="fin", is_staff=True)
    ConferenceRole.objects.create(conference=conference, user=finance, role=Role.FINANCE)
    po = wired(make_purchase_order(conference=conference), "1000.00")
    assert po.payments.get().report_to_stripe
    why = paid_back_refusal(po, by=finance)
    assert why.startswith("its payments made outside Stripe count as paid on invoice its invoice")
    assert "Stripe cannot take them back off it" in why
    with pytest.raises(InvalidPayment, match="Stripe cannot take them back"):
        pay_back(po, "10.00", finance)


def test_paying_back_tells_who_chose_refund_e_mails(
    conference: Conference, make_po: MakePurchaseOrder, finance: User
) -> None:
    NotificationSubscription.objects.create(
        user=finance, conference=conference, kinds=["refund_or_dispute"]
    )
    po = wired(make_po(), "1000.00")
    entry = pay_back(po, "250.00", finance)
    (mail,) = po.notifications.filter(kind="refund_or_dispute")
    assert mail.key == f"paid-back-{entry.uid}"
    assert "250.00 USD paid back outside Stripe by wire transfer" in mail.subject


def test_the_database_keeps_the_entry_s_shape(make_po: MakePurchaseOrder) -> None:
    from django.db import IntegrityError, transaction

    po = wired(make_po(), "1000.00")
    base = {
        "purchase_order": po,
        "kind": Kind.REFUND_OFF_STRIPE,
        "method": "wire",
        "payment_date": TODAY,
        "note": "why",
    }
    for bad in (
        {"amount": Decimal("10")},  # money out is negative
        {"amount": Decimal("-10"), "note": ""},  # a reason
        {"amount": Decimal("-10"), "method": "stripe"},
        {"amount": Decimal("-10"), "report_to_stripe": True},
        {"amount": Decimal("-10"), "stripe_object_id": "re_1"},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            PurchaseOrderPayment.objects.create(**{**base, **bad})
