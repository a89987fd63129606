"""Stripe's rules for invoices with payments, which the emulator enforces as Stripe does.

Docs "Accept partial payments for invoices": finalizing creates a default payment that pays the
invoice in full; "When an invoice has open or paid payments, you can't void or edit the invoice";
"When an invoice has open payments, you can't mark it uncollectible". A part-paid invoice is
closed with a credit note for what remains, which leaves it ``paid``.
"""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle

from .conftest import PayPendingAch


def _payments(client: stripe.StripeClient, invoice_id: str) -> list[stripe.InvoicePayment]:
    return list(client.v1.invoice_payments.list(params={"invoice": invoice_id}).data)


def test_finalizing_creates_the_default_payment_in_step_with_what_remains(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    (default,) = _payments(client, open_invoice.id)
    assert (default.is_default, default.status, default.amount_requested) == (True, "open", 150050)
    assert default.amount_paid is None
    assert default.payment.type == "payment_intent"
    intent = client.v1.payment_intents.retrieve(str(default.payment.payment_intent))
    assert (intent.status, intent.amount) == ("requires_payment_method", 150050)

    stripe_emulator.pay_invoice(open_invoice.id, amount=50000)  # "Charge customer"
    assert client.v1.invoice_payments.retrieve(default.id).amount_requested == 100050
    client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 50})
    assert client.v1.invoice_payments.retrieve(default.id).amount_requested == 100000

    # The hosted page pays the default payment, the whole remainder.
    paid = stripe_emulator.pay_invoice(open_invoice.id)
    assert (paid["invoice_payment"]["id"], paid["invoice_payment"]["status"]) == (
        default.id,
        "paid",
    )
    assert paid["invoice"]["status"] == "paid"
    expanded = client.v1.invoices.retrieve(open_invoice.id, params={"expand": ["payments"]})
    assert expanded.payments is not None
    assert sorted(p.amount_paid or 0 for p in expanded.payments.data) == [50000, 100000]


def test_nothing_due_means_no_default_payment(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 3}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 0}]})
    assert client.v1.invoices.finalize_invoice(invoice.id).status == "paid"
    assert _payments(client, invoice.id) == []


def test_void_is_refused_with_a_paid_payment_and_a_credit_note_closes_the_rest(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    stripe_emulator.pay_invoice(open_invoice.id, amount=50000)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.void_invoice(open_invoice.id)
    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert (caught.value.error.type, caught.value.code) == (
        "invalid_request_error",
        "invoice_not_editable",
    )
    assert "open or paid payments" in str(caught.value.user_message)
    unchanged = client.v1.invoices.retrieve(open_invoice.id)
    assert (unchanged.status, unchanged.amount_remaining) == ("open", 100050)
    assert not client.v1.events.list(params={"type": "invoice.voided"}).data

    note = client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 100050})
    assert (note.pre_payment_amount, note.post_payment_amount) == (100050, 0)
    closed = client.v1.invoices.retrieve(open_invoice.id, params={"expand": ["payments"]})
    assert (closed.status, closed.amount_paid, closed.amount_remaining) == ("paid", 50000, 0)
    assert closed.payments is not None
    default = next(p for p in closed.payments.data if p.is_default)
    assert default.status == "canceled"  # nothing left to collect with it
    with pytest.raises(EmulatorError, match="already paid"):
        stripe_emulator.pay_invoice(open_invoice.id)
    with pytest.raises(stripe.InvalidRequestError, match="already paid"):
        client.v1.invoices.pay(open_invoice.id, params={"payment_method": "pm_card_visa"})


def test_an_unpaid_invoice_still_voids(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    stripe_emulator.pay_invoice(open_invoice.id, failure_code="card_declined")  # a failed try
    assert client.v1.invoices.void_invoice(open_invoice.id).status == "void"
    (default,) = _payments(client, open_invoice.id)
    assert (default.is_default, default.status) == (True, "canceled")


def test_mark_uncollectible_is_refused_while_a_payment_is_processing(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    pay_pending_ach: PayPendingAch,
    open_invoice: stripe.Invoice,
) -> None:
    payment = pay_pending_ach(20000)
    with pytest.raises(stripe.InvalidRequestError, match="open payments") as caught:
        client.v1.invoices.mark_uncollectible(open_invoice.id)
    assert caught.value.code == "invoice_not_editable"
    assert client.v1.invoices.retrieve(open_invoice.id).status == "open"
    stripe_emulator.settle_payment(payment["id"])
    # Paid payments only stop a void: an invoice with some money in can be written off.
    assert client.v1.invoices.mark_uncollectible(open_invoice.id).status == "uncollectible"
    with pytest.raises(stripe.InvalidRequestError, match="open or paid payments"):
        client.v1.invoices.void_invoice(open_invoice.id)
