"""The PaymentIntents and charges behind invoice payments, as stripe-python reads them."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .conftest import PayPendingAch
from .stripe_shapes import wire


def _intent_of(client: stripe.StripeClient, payment: dict[str, object]) -> stripe.PaymentIntent:
    details = payment["payment"]
    assert isinstance(details, dict)
    assert details["type"] == "payment_intent"
    return client.v1.payment_intents.retrieve(str(details["payment_intent"]))


def test_a_card_payment_is_a_succeeded_intent_with_its_charge(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    payment = stripe_emulator.pay_invoice(open_invoice.id, amount=50000)["invoice_payment"]
    intent = _intent_of(client, payment)
    assert intent.status == "succeeded"
    assert (intent.amount, intent.amount_received, intent.currency) == (50000, 50000, "usd")
    assert intent.customer == open_invoice.customer
    assert intent.payment_method_types == ["card"]
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert charge.id.startswith("ch_")
    assert (charge.status, charge.paid, charge.captured) == ("succeeded", True, True)
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (50000, 0, False)
    assert charge.disputed is False
    assert charge.payment_intent == intent.id
    assert charge.balance_transaction is not None
    # charges stopped embedding their refunds in 2022-11-15: only when expanded
    assert "refunds" not in wire(charge)
    expanded = client.v1.charges.retrieve(charge.id, params={"expand": ["refunds"]})
    assert wire(expanded)["refunds"]["data"] == []
    # the invoice's payment and the intent agree; neither object names the invoice (basil)
    assert "invoice" not in wire(intent)
    assert "invoice" not in wire(charge)


def test_an_ach_debit_is_processing_until_it_settles(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, pay_pending_ach: PayPendingAch
) -> None:
    payment = pay_pending_ach(20000)
    intent = client.v1.payment_intents.retrieve(
        payment["payment"]["payment_intent"], params={"expand": ["latest_charge"]}
    )
    assert intent.status == "processing"
    assert intent.amount_received == 0
    charge = wire(intent)["latest_charge"]
    assert charge["id"].startswith("py_")
    assert (charge["status"], charge["paid"], charge["balance_transaction"]) == (
        "pending",
        False,
        None,
    )
    assert charge["payment_method_details"]["type"] == "us_bank_account"
    stripe_emulator.settle_payment(payment["id"])
    settled = client.v1.payment_intents.retrieve(intent.id)
    assert (settled.status, settled.amount_received) == ("succeeded", 20000)
    assert client.v1.charges.retrieve(charge["id"]).status == "succeeded"


def test_a_failed_ach_debit_fails_its_charge(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, pay_pending_ach: PayPendingAch
) -> None:
    payment = pay_pending_ach(150050)
    stripe_emulator.fail_payment(payment["id"], failure_code="insufficient_funds")
    intent = _intent_of(client, payment)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.message
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.status, charge.failure_code, charge.paid) == (
        "failed",
        "insufficient_funds",
        False,
    )


def test_a_declined_card_leaves_the_intent_waiting(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    payment = stripe_emulator.pay_invoice(open_invoice.id, failure_code="card_declined")[
        "invoice_payment"
    ]
    intent = _intent_of(client, payment)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.code == "card_declined"
    assert client.v1.charges.retrieve(str(intent.latest_charge)).status == "failed"


def test_voiding_is_refused_while_a_payment_is_open_and_cancels_the_default(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    pay_pending_ach: PayPendingAch,
    open_invoice: stripe.Invoice,
) -> None:
    payment = pay_pending_ach(100)
    # Stripe: "When an invoice has open or paid payments, you can't void or edit the invoice".
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.void_invoice(open_invoice.id)
    assert caught.value.error is not None
    assert (caught.value.error.type, caught.value.code) == (
        "invalid_request_error",
        "invoice_not_editable",
    )
    assert client.v1.invoices.retrieve(open_invoice.id).status == "open"
    stripe_emulator.fail_payment(payment["id"])
    voided = client.v1.invoices.void_invoice(open_invoice.id, params={"expand": ["payments"]})
    assert voided.status == "void"
    assert voided.payments is not None
    default = next(p for p in voided.payments.data if p.is_default)
    assert default.status == "canceled"
    assert default.payment.payment_intent is not None
    intent = client.v1.payment_intents.retrieve(str(default.payment.payment_intent))
    assert (intent.status, intent.cancellation_reason) == ("canceled", "void_invoice")
    assert intent.canceled_at is not None


def test_lists_filter_and_unknown_ids(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    first = stripe_emulator.pay_invoice(open_invoice.id, amount=100)["invoice_payment"]
    second = stripe_emulator.pay_invoice(open_invoice.id, amount=200)["invoice_payment"]
    intents = client.v1.payment_intents.list(params={"customer": str(open_invoice.customer)})
    # newest first; the last is the default payment's, made at finalization, asking what remains
    assert [intent.amount for intent in intents.data] == [200, 100, 150050 - 300]
    second_intent = second["payment"]["payment_intent"]
    charges = client.v1.charges.list(params={"payment_intent": second_intent})
    assert [charge.amount for charge in charges.data] == [200]
    by_intent = client.v1.invoice_payments.list(
        params={"payment": {"type": "payment_intent", "payment_intent": second_intent}}
    )
    assert [payment.id for payment in by_intent.data] == [second["id"]]
    assert first["id"] != second["id"]
    for retrieve in (client.v1.payment_intents.retrieve, client.v1.charges.retrieve):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            retrieve("pi_unknown")
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
