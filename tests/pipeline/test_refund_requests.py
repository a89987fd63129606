"""An organizer's refund of an ACH payment, end to end: the worker sends it, Stripe keeps it
pending, the bank's answer (the emulator's control API) comes back by webhook through the inbox
and reaches the ledger, and the request's row (its state and error) says how it ended.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from invoicing import background
from invoicing.background import Job
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeWriteRequest
from invoicing.selectors import refundable_amount, write_request_outcome
from invoicing.services.stripe_invoicing import sync_stripe_invoice_status
from invoicing.services.stripe_write_requests import record_request
from tests.core.conftest import MakePurchaseOrder, invoiced_here
from tests.pipeline.conftest import wait_for, wait_for_events_settled, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
State = StripeWriteRequest.State
Entry = PurchaseOrderPayment.Kind


@pytest.fixture
def paid_by_ach(
    webhook_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> PurchaseOrder:
    po = make_purchase_order(conference=webhook_conference)
    wait_for_status(po, Status.INVOICED)
    stripe_emulator.pay_invoice(po.stripe_invoice_id, payment_method_type="us_bank_account")
    wait_for_status(po, Status.PAID)
    wait_for_events_settled(webhook_conference)
    return po


def refund_pending(po: PurchaseOrder, by: User, amount: str) -> StripeWriteRequest:
    row = record_request(
        purchase_order=po,
        kind=StripeWriteRequest.Kind.REFUND,
        amount=Decimal(amount),
        reason="Sponsor dropped out",
        requested_by=by,
    )
    assert background.request(Job.REFUND, row.pk)

    def sent() -> bool:
        row.refresh_from_db()
        return row.state != State.QUEUED

    wait_for(sent, message="the refund was never sent")
    assert row.state == State.PENDING, row.error
    assert write_request_outcome(row) == "Sent, waiting for the bank"
    assert not po.payments.filter(kind=Entry.REFUND).exists()
    return row


@pytest.mark.parametrize("bank_says", ["settled", "failed"])
def test_an_ach_refund_waits_for_the_bank_then_reaches_the_ledger(
    paid_by_ach: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    admin_user: User,
    bank_says: str,
) -> None:
    po = paid_by_ach
    row = refund_pending(po, admin_user, "6350.00")
    assert refundable_amount(po) == 0  # at the bank: spoken for
    (refund_id,) = row.refund_ids
    if bank_says == "settled":
        stripe_emulator.settle_refund(refund_id)
        wait_for_status(po, Status.REFUNDED)
        row.refresh_from_db()
        assert (row.state, row.error, write_request_outcome(row)) == (State.SUCCEEDED, "", "Done")
        assert po.amount_received == 0
    else:
        stripe_emulator.fail_refund(refund_id, failure_reason="insufficient_funds")
        wait_for(
            lambda: po.payments.filter(kind=Entry.REFUND_REVERSAL).exists(),
            message="the failed refund never reached the ledger",
        )
        row.refresh_from_db()  # written with the ledger entry, in the same transaction
        assert (row.state, write_request_outcome(row)) == (State.FAILED, "Failed at the bank")
        assert row.error.startswith(f"Stripe could not refund 6350.00 USD ({refund_id}): ")
        assert "(insufficient_funds)" in row.error
        assert PurchaseOrder.objects.get(pk=po.pk).amount_received == Decimal("6350.00")
        assert refundable_amount(po) == Decimal("6350.00")  # it may be refunded again
    wait_for_events_settled(po.conference)


def test_a_request_the_broker_refused_is_failed_and_nothing_is_sent(
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_client: Client,
    unreachable_broker: str,
) -> None:
    """The organizer is told, and the row can never run later behind their back."""
    po = invoiced_here(make_purchase_order(conference=stripe_conference, approve=False))
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=100000)
    sync_stripe_invoice_status(po)
    stripe_emulator.clear_requests(stripe_secret_key)
    response = admin_client.post(
        reverse("admin:invoicing_purchaseorder_refund", args=[po.pk]),
        {"amount": "100.00", "reason": "Dropped out"},
        follow=True,
    )
    messages = [str(message) for message in response.context["messages"]]
    assert f"{po.reference}: could not be queued (the broker did not answer)" in messages[0]
    row = StripeWriteRequest.objects.get()
    assert row.state == State.FAILED
    assert "nothing was sent to Stripe" in row.error
    assert refundable_amount(po) == Decimal("1000.00")  # nothing is spoken for
    assert stripe_emulator.requests(stripe_secret_key) == []
