"""The PO page's "Record money paid back…": a finance admin records money given back by wire.

No Stripe: the conference loses its key after approval, so the wire is never reported to an
invoice (nothing here is ever sent to Stripe anyway).
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from html import unescape

import pytest
from django.urls import reverse

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, Role
from invoicing.services import purchase_orders
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.ops.test_admin import messages_of, page_text
from tests.ops.test_money_actions import signed_in

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
PAID_BACK = PurchaseOrderPayment.Kind.REFUND_OFF_STRIPE


@pytest.fixture
def overpaid(
    make_conference: MakeConference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    """6,350.00 USD owed, 6,450.00 received by wire (100.00 too much, on purpose)."""
    conference = make_conference(slug="paidback", name="Paid Back Conf")
    po = make_purchase_order(conference=conference, reference="PB-1")
    Conference.objects.filter(pk=conference.pk).update(stripe_secret_key="")
    po = PurchaseOrder.objects.get(pk=po.pk)
    purchase_orders.record_payment(
        po,
        amount=Decimal("6450.00"),
        method="wire",
        reference="WIRE-IN",
        payment_date=po.created_at.date(),
        overpayment_reason="Their AP added a fee",
    )
    po.refresh_from_db()
    assert po.status == Status.OVERPAID
    return po


def url(po: PurchaseOrder, kind: str = "change") -> str:
    return reverse(f"admin:invoicing_purchaseorder_{kind}", args=[po.pk])


def fields(page: str, **values: str) -> dict[str, str]:
    key = re.search(r'name="paid_back_uid" value="([0-9a-f-]{36})"', page)
    assert key is not None, "the form carries its own key"
    return {
        "amount": "100.00",
        "method": "wire",
        "payment_date": "2026-01-05",
        "reference": "WIRE-OUT",
        "reason": "Gave back their fee",
        "paid_back_uid": key.group(1),
        **values,
    }


def test_only_a_finance_admin_sees_and_uses_the_page(overpaid: PurchaseOrder) -> None:
    conference = overpaid.conference
    organizer = signed_in(conference, Role.ORGANIZER)
    viewer = signed_in(conference, Role.VIEWER)
    finance = signed_in(conference, Role.FINANCE)
    assert "money-action-paid_back" in page_text(finance.get(url(overpaid)))
    for client in (organizer, viewer):
        assert "money-action-paid_back" not in page_text(client.get(url(overpaid)))
        response = client.post(
            url(overpaid, "paid_back"), {"amount": "100.00", "reason": "x"}, follow=True
        )
        assert (
            f"PB-1: nothing recorded as paid back: only a finance admin of {conference} records "
            "money paid back." in messages_of(response)
        )
    assert not overpaid.payments.filter(kind=PAID_BACK).exists()


def test_paying_back_the_excess_makes_it_paid_and_a_double_submit_records_once(
    overpaid: PurchaseOrder,
) -> None:
    finance = signed_in(overpaid.conference, Role.FINANCE)
    form = page_text(finance.get(url(overpaid, "paid_back")))
    assert "Can be recorded as paid back: <strong>6,450.00 USD</strong>" in form
    data = fields(form)
    first = finance.post(url(overpaid, "paid_back"), data, follow=True)
    again = finance.post(url(overpaid, "paid_back"), data, follow=True)
    assert (
        "PB-1: recorded 100.00 USD paid back by wire transfer; the PO is now paid. Nothing was "
        "sent to Stripe." in messages_of(first)
    )
    assert (
        "PB-1: this money paid back (100.00 USD) was already recorded (a repeated submit); "
        "nothing new was recorded." in messages_of(again)
    )
    (entry,) = overpaid.payments.filter(kind=PAID_BACK)
    assert (entry.amount, entry.reference, entry.note) == (
        Decimal("-100.00"),
        "WIRE-OUT",
        "Gave back their fee",
    )
    overpaid.refresh_from_db()
    assert overpaid.status == Status.PAID
    page = unescape(page_text(finance.get(url(overpaid))))
    assert "Paid back outside Stripe" in page  # the ledger inline and the history


def test_refusals_say_why_on_the_form_and_save_nothing(overpaid: PurchaseOrder) -> None:
    finance = signed_in(overpaid.conference, Role.FINANCE)
    data = fields(page_text(finance.get(url(overpaid, "paid_back"))))
    for amount, words in (
        ("0", "The amount must be greater than zero."),
        ("10.005", "10.005 USD cannot be charged at Stripe"),
        ("6450.01", "6450.01 USD is more than the PO holds from payments made outside Stripe"),
    ):
        response = finance.post(url(overpaid, "paid_back"), {**data, "amount": amount})
        assert response.status_code == 200
        assert words in unescape(page_text(response))
    response = finance.post(url(overpaid, "paid_back"), {**data, "reason": ""})
    assert "This field is required." in page_text(response)
    assert not overpaid.payments.filter(kind=PAID_BACK).exists()


def _csv(response: object) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.DictReader(io.StringIO(body)))


def test_paid_back_in_full_shows_as_given_back_on_the_page_and_in_the_exports(
    overpaid: PurchaseOrder,
) -> None:
    finance = signed_in(overpaid.conference, Role.FINANCE)
    for amount in ("100.00", "6350.00"):
        form = page_text(finance.get(url(overpaid, "paid_back")))
        finance.post(url(overpaid, "paid_back"), fields(form, amount=amount), follow=True)
    overpaid.refresh_from_db()
    assert overpaid.status == Status.REFUNDED
    page = page_text(finance.get(url(overpaid)))
    given_back = re.search(
        r"Given back \(refunds owed no more\).*?<div class=\"readonly\">([^<]*)", page, re.S
    )
    assert given_back is not None
    assert given_back.group(1) == "6,350.00 USD"
    (row,) = _csv(finance.get(reverse("admin:invoicing_purchaseorder_export")))
    assert (row["given_back"], row["received"], row["balance"]) == ("6350.00", "0.00", "0.00")
    ledger = _csv(finance.get(reverse("admin:invoicing_purchaseorder_export_ledger")))
    assert sorted((r["kind"], r["amount"], r["method"]) for r in ledger) == [
        ("Paid back outside Stripe", "-100.00", "wire"),
        ("Paid back outside Stripe", "-6350.00", "wire"),
        ("Payment", "6450.00", "wire"),
    ]
    # Now it can be cancelled.
    assert "cancel_selected" in page
