"""Voiding an invoice gives the customer the balance it applied back (Stripe API changelog
2019-12-03), with the customer balance transactions Stripe records, in stripe-python's shapes."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .stripe_shapes import declared_fields, shape_problems


def _invoice(client: stripe.StripeClient, customer: stripe.Customer, amount: int) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 7}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": amount}]})
    return client.v1.invoices.finalize_invoice(invoice.id)


def test_void_returns_the_balance_the_invoice_applied(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, customer: stripe.Customer
) -> None:
    paid = _invoice(client, customer, 10000)
    stripe_emulator.pay_invoice(paid.id)
    client.v1.credit_notes.create(
        params={"invoice": paid.id, "amount": 10000, "credit_amount": 10000}
    )
    assert client.v1.customers.retrieve(customer.id).balance == -10000
    invoice = _invoice(client, customer, 50000)
    assert (invoice.starting_balance, invoice.ending_balance, invoice.amount_due) == (
        -10000,
        0,
        40000,
    )
    assert client.v1.customers.retrieve(customer.id).balance == 0

    voided = client.v1.invoices.void_invoice(invoice.id)

    # The invoice keeps what it showed at finalization; the customer has the credit again.
    assert (voided.status, voided.starting_balance, voided.ending_balance) == ("void", -10000, 0)
    assert client.v1.customers.retrieve(customer.id).balance == -10000
    txns = client.v1.customers.balance_transactions.list(
        customer.id, params={"invoice": invoice.id}
    ).data
    assert [(t.type, t.amount, t.ending_balance) for t in txns] == [
        ("unapplied_from_invoice", -10000, -10000),
        ("applied_to_invoice", 10000, 0),
    ]
    for txn in txns:  # list items carry no response of their own: their JSON as parsed
        assert shape_problems(txn.to_dict(), stripe.CustomerBalanceTransaction) == []
        assert set(txn.to_dict()) == set(declared_fields(stripe.CustomerBalanceTransaction))
    updated = client.v1.events.list(params={"type": "customer.updated", "limit": 1}).data[0]
    assert updated.data.object["balance"] == -10000
    assert updated.data.previous_attributes is not None
    assert updated.data.previous_attributes["balance"] == 0

    # Finalized again on the next invoice, as Stripe does.
    assert _invoice(client, customer, 30000).amount_due == 20000


def test_void_of_an_invoice_that_applied_nothing_moves_no_balance(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _invoice(client, customer, 50000)
    client.v1.invoices.void_invoice(invoice.id)
    assert client.v1.customers.retrieve(customer.id).balance == 0
    assert client.v1.customers.balance_transactions.list(customer.id).data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.balance_transactions.list(customer.id, params={"created": {"gte": 0}})
