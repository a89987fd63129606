"""Fixtures for the emulator's own tests: a StripeClient on a fresh account, a webhook receiver,
a customer and an open invoice of 1,500.50 USD (two lines) to pay, refund and credit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .receiver import Receiver, start_receiver


@pytest.fixture
def client(stripe_emulator: EmulatorHandle, stripe_secret_key: str) -> stripe.StripeClient:
    return stripe_emulator.client(stripe_secret_key)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server, receiver = start_receiver()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(
        params={"email": "ap@acme.example", "name": "Acme Corp", "metadata": {"org": "acme"}}
    )


SendInvoice = Callable[[list[stripe.params.InvoiceAddLinesParamsLine]], stripe.Invoice]


@pytest.fixture
def send_invoice(client: stripe.StripeClient, customer: stripe.Customer) -> SendInvoice:
    """Finalize a ``send_invoice`` invoice (30 days) with these lines for the customer."""

    def send(lines: list[stripe.params.InvoiceAddLinesParamsLine]) -> stripe.Invoice:
        invoice = client.v1.invoices.create(
            params={
                "customer": customer.id,
                "collection_method": "send_invoice",
                "days_until_due": 30,
            }
        )
        client.v1.invoices.add_lines(invoice.id, params={"lines": lines})
        return client.v1.invoices.finalize_invoice(invoice.id)

    return send


@pytest.fixture
def open_invoice(send_invoice: SendInvoice) -> stripe.Invoice:
    return send_invoice(
        [
            {"amount": 120000, "description": "Silver sponsorship"},
            {"amount": 30050, "description": "Booth <power> & wifi"},
        ]
    )


PayPendingAch = Callable[[int], dict[str, Any]]


@pytest.fixture
def pay_pending_ach(stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice) -> PayPendingAch:
    """An ACH debit of ``amount`` on ``open_invoice`` that stays processing: its invoice payment."""

    def pay(amount: int) -> dict[str, Any]:
        result = stripe_emulator.pay_invoice(
            open_invoice.id, amount=amount, payment_method_type="us_bank_account", pending=True
        )
        payment: dict[str, Any] = result["invoice_payment"]
        return payment

    return pay
