"""The admin and the services give one answer to "may this PO be synced, voided, re-issued,
cancelled?": a service refuses with the reason the admin shows, before any Stripe call."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest

from invoicing.errors import InvalidTransition
from invoicing.models import PurchaseOrder
from invoicing.selectors import cancel_refusal, reissue_refusal, sync_refusal, void_refusal
from invoicing.services import invoice_lifecycle, ledger, stripe_invoicing
from tests.core.conftest import MakePurchaseOrder

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status


@pytest.mark.parametrize(
    ("refusal", "service", "verb", "reason"),
    [
        (
            sync_refusal,
            stripe_invoicing.sync_stripe_invoice_status,
            "synced",
            "it has no Stripe invoice yet.",
        ),
        (
            void_refusal,
            invoice_lifecycle.void_stripe_invoice,
            "voided",
            "it has no Stripe invoice to void.",
        ),
        (
            reissue_refusal,
            invoice_lifecycle.reissue_stripe_invoice,
            "re-issued",
            "it is “Approved (invoice being created)”; only a part-paid PO or one whose "
            "invoice is void or uncollectible is re-issued (void an unpaid invoice first).",
        ),
    ],
)
def test_a_po_without_an_invoice_is_refused_with_the_admins_reason(
    make_purchase_order: MakePurchaseOrder,
    refusal: Callable[[PurchaseOrder], str],
    service: Callable[[PurchaseOrder], object],
    verb: str,
    reason: str,
) -> None:
    po = make_purchase_order()  # approved; its conference's key reaches no Stripe account
    assert refusal(po) == reason
    with pytest.raises(InvalidTransition) as refused:
        service(po)
    assert str(refused.value) == f"PO {po.reference}: not {verb}: {reason}"


def test_a_paid_po_is_not_cancelled_by_the_admin_nor_the_service(
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order()
    ledger.record_payment(
        po, amount=po.total, method="wire", payment_date=datetime.date(2026, 11, 26)
    )
    assert po.status == Status.PAID
    # Paid by wire: no Stripe refund can give it back, so the words point at recording it.
    reason = (
        "it is paid by wire, check or other payments: give the money back outside Stripe and "
        "record it (Record money paid back…), then cancel."
    )
    assert cancel_refusal(po) == reason
    with pytest.raises(InvalidTransition) as refused:
        invoice_lifecycle.cancel_invoiced_purchase_order(po, reason="Sponsor withdrew")
    assert str(refused.value) == f"PO {po.reference}: not cancelled: {reason}"
    po.refresh_from_db()
    assert po.status == Status.PAID
    assert cancel_refusal(make_purchase_order()) == ""
