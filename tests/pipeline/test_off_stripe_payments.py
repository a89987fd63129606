"""Payments made outside Stripe reach Stripe: the whole stack, with a real worker and webhooks.

A wire recorded by staff is reported as a PaymentRecord attached to the PO's invoice, so Stripe's
invoice asks only for the balance and the PO ends *paid*, not overpaid; recorded or reported twice,
it reaches Stripe once; more than is due is refused, or recorded on purpose, and then Stripe
credits the excess to the customer's balance, which leaves that PO (paid) and pays part of their
next invoice.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
import stripe

from invoicing.errors import InvalidPayment
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import off_stripe_reports, purchase_orders
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import wait_for, wait_for_events_settled, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.consistency import compare_with_stripe

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method
TODAY = datetime.date(2026, 12, 1)
WITH_OFF_STRIPE: stripe.params.InvoiceRetrieveParams = {"expand": ["amount_paid_off_stripe"]}


def invoiced(make_purchase_order: MakePurchaseOrder, conference: Conference) -> PurchaseOrder:
    """A 6,350.00 USD PO whose invoice the worker created and sent."""
    po = make_purchase_order(conference=conference)

    def sent() -> bool:
        po.refresh_from_db()
        return po.invoice_sent_at is not None

    wait_for(sent, message=f"PO {po.reference} was never invoiced")
    wait_for_events_settled(conference)
    po.refresh_from_db()
    return po


def attached(payment: PurchaseOrderPayment) -> PurchaseOrderPayment:
    def done() -> bool:
        payment.refresh_from_db()
        return payment.stripe_attached_at is not None

    wait_for(done, message=f"payment {payment.pk} was never attached at Stripe")
    return payment


def stripe_writes(emulator: EmulatorHandle, key: str, suffix: str) -> int:
    return sum(
        1 for r in emulator.requests(key) if r["method"] == "POST" and r["path"].endswith(suffix)
    )


def record_wire(po: PurchaseOrder, amount: str, **kwargs: object) -> PurchaseOrderPayment:
    return purchase_orders.record_payment(
        po,
        amount=Decimal(amount),
        method=Method.WIRE,
        reference="WIRE-2026-118",
        payment_date=TODAY,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_wire_leaves_the_invoice_asking_the_balance_and_paying_it_makes_the_po_paid(
    stripe_emulator: EmulatorHandle,
    webhook_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    key = webhook_conference.stripe_secret_key
    client = stripe_emulator.client(key)
    po = invoiced(make_purchase_order, webhook_conference)
    assert po.status == Status.INVOICED

    wire = attached(record_wire(po, "1000.00"))
    assert wire.applied_invoice_id == po.stripe_invoice_id
    assert wire.stripe_payment_record_id.startswith("pr_")
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params=WITH_OFF_STRIPE)
    assert (invoice.amount_remaining, invoice.amount_paid_off_stripe) == (535000, 100000)
    assert "Pay 5,350.00 USD by card" in stripe_emulator.hosted_page(po.stripe_invoice_id)
    wait_for_events_settled(webhook_conference)
    po.refresh_from_db()
    assert po.status == Status.PARTIALLY_PAID
    assert po.stripe_amount_remaining == Decimal("5350.00")

    # The company pays what the hosted page asks for: the PO is paid, not overpaid.
    status, _, _ = stripe_emulator.post_form(
        f"/_emulator/invoices/{po.stripe_invoice_id}/payments",
        {"payment_method_type": "card", "return_to": "hosted"},
    )
    assert status == 303
    wait_for_status(po, Status.PAID)
    wait_for_events_settled(webhook_conference)
    ledger = sorted(
        (row.method, row.amount) for row in PurchaseOrderPayment.objects.filter(purchase_order=po)
    )
    assert ledger == [(Method.STRIPE, Decimal("5350.00")), (Method.WIRE, Decimal("1000.00"))]
    po.refresh_from_db()
    assert po.status == Status.PAID
    compare_with_stripe(emulator=stripe_emulator, conference=webhook_conference).assert_consistent()
    assert stripe_writes(stripe_emulator, key, "/report_payment") == 1
    assert stripe_writes(stripe_emulator, key, "/attach_payment") == 1


def test_the_same_wire_reaches_stripe_once(
    stripe_emulator: EmulatorHandle,
    webhook_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    key = webhook_conference.stripe_secret_key
    client = stripe_emulator.client(key)
    po = invoiced(make_purchase_order, webhook_conference)

    # A double submit: the form posts the same payment key twice.
    form_key = uuid.uuid4()
    first = record_wire(po, "1000.00", uid=form_key)
    again = record_wire(po, "1000.00", uid=form_key)
    assert again.pk == first.pk
    assert PurchaseOrderPayment.objects.filter(purchase_order=po).count() == 1
    with pytest.raises(InvalidPayment, match="already used for another payment"):
        record_wire(po, "999.00", uid=form_key)
    wire = attached(first)

    # A retried task, and the beat's re-queue, find it attached: no Stripe call of the report's.
    # (Only the report's own calls are counted: the worker may be applying the invoice's
    # webhooks meanwhile, which retrieve the invoice.)
    def report_calls() -> int:
        return sum(
            1
            for r in stripe_emulator.requests(key)
            if "/payment_records" in r["path"] or r["path"].endswith("/attach_payment")
        )

    before = report_calls()
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    assert report_calls() == before

    # A crash after Stripe answered, before our row said so: the same keys replay the answers.
    PurchaseOrderPayment.objects.filter(pk=wire.pk).update(
        stripe_payment_record_id="", stripe_attached_at=None
    )
    assert off_stripe_reports.report_off_stripe_payment(wire) is True
    wire.refresh_from_db()
    assert wire.stripe_payment_record_id == first.stripe_payment_record_id

    # Later than Stripe remembers the key (24 h): the record is stored, the attach is refused as
    # already attached, and that is recognised instead of failing.
    PurchaseOrderPayment.objects.filter(pk=wire.pk).update(
        stripe_attached_at=None, uid=uuid.uuid4()
    )
    assert off_stripe_reports.report_off_stripe_payment(wire) is True

    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params=WITH_OFF_STRIPE)
    assert (invoice.amount_paid_off_stripe, invoice.amount_remaining) == (100000, 535000)
    records = client.v1.invoice_payments.list(
        params={"invoice": po.stripe_invoice_id, "payment": {"type": "payment_record"}}
    )
    assert len(records.data) == 1
    wait_for_events_settled(webhook_conference)
    compare_with_stripe(emulator=stripe_emulator, conference=webhook_conference).assert_consistent()


def test_more_than_is_due_is_refused_or_an_overpayment_on_purpose_pays_the_next_invoice(
    stripe_emulator: EmulatorHandle,
    webhook_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    key = webhook_conference.stripe_secret_key
    client = stripe_emulator.client(key)
    po = invoiced(make_purchase_order, webhook_conference)
    calls = len(stripe_emulator.requests(key))

    with pytest.raises(
        InvalidPayment, match=r"7,000\.00 USD is more than the 6,350\.00 USD still due"
    ):
        record_wire(po, "7000.00")
    assert not PurchaseOrderPayment.objects.filter(purchase_order=po).exists()
    assert len(stripe_emulator.requests(key)) == calls

    wire = attached(
        record_wire(po, "7000.00", overpayment_reason="Paid two invoices' worth by mistake")
    )
    assert wire.overpayment_reason == "Paid two invoices' worth by mistake"
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params={"expand": ["customer"]})
    assert (invoice.status, invoice.amount_overpaid) == ("paid", 65000)
    assert isinstance(invoice.customer, stripe.Customer)
    assert invoice.customer.balance == -65000
    # Stripe moved the excess to the customer's balance: it left this PO, which Stripe settled.
    wait_for_status(po, Status.PAID)
    (moved,) = PurchaseOrderPayment.objects.filter(
        purchase_order=po, kind=PurchaseOrderPayment.Kind.TO_CREDIT_BALANCE
    )
    assert (moved.amount, moved.stripe_invoice_id) == (Decimal("-650.00"), po.stripe_invoice_id)
    po.refresh_from_db()
    assert po.amount_received == po.total == Decimal("6350.00")

    # The same organization's next PO: Stripe applies the credit when finalizing its invoice.
    second = invoiced(make_purchase_order, webhook_conference)
    assert second.stripe_customer_id == po.stripe_customer_id
    next_invoice = client.v1.invoices.retrieve(second.stripe_invoice_id)
    assert (next_invoice.starting_balance, next_invoice.amount_due) == (-65000, 570000)
    (credit,) = PurchaseOrderPayment.objects.filter(
        purchase_order=second, method=Method.CREDIT_BALANCE
    )
    assert (credit.amount, credit.applied_invoice_id) == (
        Decimal("650.00"),
        second.stripe_invoice_id,
    )
    second.refresh_from_db()
    assert second.status == Status.PARTIALLY_PAID

    stripe_emulator.pay_invoice(second.stripe_invoice_id)  # what remains: 5,700.00
    wait_for_status(second, Status.PAID)
    wait_for_events_settled(webhook_conference)
    assert second.amount_received == second.total == Decimal("6350.00")
    # The wire (7,000.00) and the card (5,700.00) are all the money that arrived, counted once.
    po.refresh_from_db()
    assert po.status == Status.PAID
    assert po.amount_received + second.amount_received == Decimal("12700.00")
    compare_with_stripe(emulator=stripe_emulator, conference=webhook_conference).assert_consistent()
