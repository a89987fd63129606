"""Two refunds asked at once cannot both spend the same money: the request is checked and saved
under the PO's row lock (deterministic: the second is seen waiting for the first's lock)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from invoicing.models import PurchaseOrder, PurchaseOrderPayment, StripeWriteRequest
from invoicing.services import ledger
from invoicing.services.stripe_write_requests import InvalidStripeWriteRequest, record_request
from tests.core.conftest import MakePurchaseOrder
from tests.support.locks import Contention

pytestmark = pytest.mark.django_db(transaction=True)

Kind = StripeWriteRequest.Kind


def test_a_second_refund_waits_for_the_first_and_finds_the_money_spoken_for(
    contention: Contention, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order()
    ledger.record_payment(
        po,
        amount=Decimal("1000.00"),
        method=PurchaseOrderPayment.Method.STRIPE,
        payment_date=datetime.date(2026, 12, 1),
        stripe_invoice_id=f"in_lock_{po.pk}",
        stripe_amount_paid_after=100000,
    )
    finance = User.objects.create_superuser(username="fin", email="fin@example.org")

    def first_request() -> None:
        locked = PurchaseOrder.objects.select_for_update().get(pk=po.pk)
        StripeWriteRequest.objects.create(
            purchase_order=locked,
            kind=Kind.REFUND,
            amount=Decimal("1000.00"),
            reason="first",
            requested_by=finance,
        )

    def second_request() -> StripeWriteRequest:
        return record_request(
            purchase_order=po,
            kind=Kind.REFUND,
            amount=Decimal("600.00"),
            reason="second",
            requested_by=finance,
        )

    with contention.hold(first_request) as first:
        second = contention.start(second_request)
        second.wait_until_blocked(first, at="SELECT")
    with pytest.raises(InvalidStripeWriteRequest, match="refunded already"):
        second.outcome()
    assert list(StripeWriteRequest.objects.values_list("reason", flat=True)) == ["first"]
