"""The admin's "record a payment" row for money received outside Stripe (Stripe = the emulator)."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from html import unescape

import pytest
from django.test import Client

from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.services import off_stripe_reports
from invoicing.services.stripe_invoicing import sync_stripe_invoice_status
from tests.ops.teams import manual_payment
from tests.ops.teams import po_form as form_data
from tests.ops.test_admin import change_url, invoiced_po, messages_of, page_text
from tests.stripe_emulator.handle import EmulatorHandle

__all__ = ["invoiced_po"]

pytestmark = pytest.mark.django_db


def payment_form_key(client: Client, po: PurchaseOrder) -> str:
    """The key the PO page's new-payment row posts back (so a double submit records once)."""
    html = page_text(client.get(change_url(po)))
    key = re.search(r'name="payments-2-0-payment_uid" value="([0-9a-f-]{36})"', html)
    assert key is not None
    return key.group(1)


def test_the_form_carries_its_own_key_and_a_double_submit_records_one_payment(
    admin_client: Client, invoiced_po: PurchaseOrder
) -> None:
    key = payment_form_key(admin_client, invoiced_po)
    fields = form_data(
        invoiced_po,
        **manual_payment(amount="1000.00", reference="WIRE-9", payment_uid=key),
    )
    first, again = (admin_client.post(change_url(invoiced_po), fields, follow=True) for _ in "12")
    assert first.status_code == again.status_code == 200
    (wire,) = invoiced_po.payments.filter(method="wire")
    assert wire.uid == uuid.UUID(key)
    assert wire.applied_invoice_id == invoiced_po.stripe_invoice_id
    assert any(
        f"being reported to Stripe invoice {invoiced_po.stripe_invoice_id}" in message
        for message in messages_of(first)
    )


def test_a_repeated_submit_says_the_payment_was_already_recorded(
    admin_client: Client, invoiced_po: PurchaseOrder
) -> None:
    key = payment_form_key(admin_client, invoiced_po)
    fields = form_data(
        invoiced_po,
        **manual_payment(amount="100.00", reference="CHK-7", method="check", payment_uid=key),
    )
    first, again = (
        messages_of(admin_client.post(change_url(invoiced_po), fields, follow=True))
        for _ in range(2)
    )
    assert any("recorded a check payment of 100.00 USD" in message for message in first)
    assert not any("recorded a check payment" in message for message in again)
    assert any(
        "this payment (100.00 USD) was already recorded (a repeated submit); nothing new was "
        "recorded" in message
        for message in again
    )
    assert invoiced_po.payments.filter(method="check").count() == 1


def test_more_than_is_due_needs_a_reason_and_then_shows_where_it_went(
    admin_client: Client, invoiced_po: PurchaseOrder, stripe_emulator: EmulatorHandle
) -> None:
    too_much = manual_payment(amount="5400.00", reference="WIRE-10")
    fields = form_data(invoiced_po, **too_much, notes="Called their bank")
    response = admin_client.post(change_url(invoiced_po), fields, follow=True)
    said = messages_of(response)
    # Refused, in the admin's money format, and nothing else claimed or kept.
    assert any(
        "payment not recorded: 5,400.00 USD is more than the 5,350.00 USD still due" in message
        and message.endswith("Nothing on this page was saved.")
        for message in said
    )
    assert not any("successfully" in message for message in said), said
    assert not invoiced_po.payments.filter(method="wire").exists()
    invoiced_po.refresh_from_db()
    assert invoiced_po.notes != "Called their bank"

    on_purpose = {**too_much, "payments-2-0-overpayment_reason": "Bank charges included twice"}
    admin_client.post(change_url(invoiced_po), form_data(invoiced_po, **on_purpose), follow=True)
    wire = invoiced_po.payments.get(method="wire")
    assert wire.overpayment_reason == "Bank charges included twice"
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == PurchaseOrder.Status.OVERPAID

    assert off_stripe_reports.report_off_stripe_payment(wire) is True  # what the task runs
    html = page_text(admin_client.get(change_url(invoiced_po)))
    wire.refresh_from_db()
    assert f"reported ({wire.stripe_payment_record_id}) and attached to invoice" in html
    assert "overpayment on purpose: Bank charges included twice" in html
    invoice = stripe_emulator.client(invoiced_po.conference.stripe_secret_key).v1.invoices.retrieve(
        invoiced_po.stripe_invoice_id
    )
    assert (invoice.status, invoice.amount_overpaid) == ("paid", 5000)
    # The ledger: the ACH payment on Stripe, the wire off Stripe, and the 50.00 Stripe credited
    # to the customer's balance leaving the PO; nothing counted twice, and the PO is settled.
    assert sorted(invoiced_po.payments.values_list("method", "amount")) == [
        (PurchaseOrderPayment.Method.CREDIT_BALANCE, Decimal("-50.000")),
        (PurchaseOrderPayment.Method.STRIPE, Decimal("1000.000")),
        (PurchaseOrderPayment.Method.WIRE, Decimal("5400.000")),
    ]
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == PurchaseOrder.Status.PAID
    html = unescape(page_text(admin_client.get(change_url(invoiced_po))))
    assert (
        "50.00 USD moved to the customer's credit balance at Stripe "
        f"(invoice {invoiced_po.stripe_invoice_id})" in html
    )


def test_a_payment_on_a_paid_invoice_is_recorded_here_only_and_says_so(
    admin_client: Client, invoiced_po: PurchaseOrder, stripe_emulator: EmulatorHandle
) -> None:
    stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id)
    sync_stripe_invoice_status(invoiced_po)
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == PurchaseOrder.Status.PAID
    fields = manual_payment(
        amount="100.00", reference="CHK-1", method="check", overpayment_reason="Sent twice"
    )
    response = admin_client.post(
        change_url(invoiced_po), form_data(invoiced_po, **fields), follow=True
    )
    assert any(
        "it is not reported to Stripe (no invoice open for payments)" in message
        for message in messages_of(response)
    )
    check = invoiced_po.payments.get(method="check")
    assert (check.report_to_stripe, check.applied_invoice_id) == (False, "")
