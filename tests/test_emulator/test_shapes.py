"""Objects carry exactly the fields the installed stripe-python declares for the pinned API."""

from __future__ import annotations

from typing import Any

import stripe

from tests.stripe_emulator.handle import EmulatorHandle

# Fields stripe-python declares that Stripe only sends when expanded, or on deleted objects.
NOT_SENT_BY_DEFAULT: dict[type, set[str]] = {
    stripe.Customer: {
        "cash_balance",
        "deleted",
        "invoice_credit_balance",
        "sources",
        "subscriptions",
        "tax",
        "tax_ids",
    },
    stripe.Invoice: {"deleted", "payments"},
    stripe.InvoiceItem: {"deleted"},
    stripe.InvoiceLineItem: set(),
    stripe.InvoicePayment: set(),
    stripe.WebhookEndpoint: {"deleted"},
    stripe.Event: {"account", "context"},  # Connect only
}


def _declared(cls: type) -> set[str]:
    return {name for name, hint in cls.__annotations__.items() if "ClassVar" not in str(hint)}


def test_field_sets_match_the_installed_library(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    customer = client.v1.customers.create(params={"email": "shape@example.com"})
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}
    )
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    item = client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": invoice.id, "amount": 100}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    payment = stripe_emulator.pay_invoice(invoice.id)["invoice_payment"]
    rendered_invoice = client.v1.invoices.retrieve(invoice.id).to_dict()
    objects: dict[type, dict[str, Any]] = {
        stripe.Customer: customer.to_dict(),
        stripe.Invoice: rendered_invoice,
        stripe.InvoiceItem: client.v1.invoice_items.retrieve(item.id).to_dict(),
        stripe.InvoiceLineItem: rendered_invoice["lines"]["data"][0],
        stripe.InvoicePayment: payment,
        stripe.WebhookEndpoint: endpoint.to_dict(),
        stripe.Event: client.v1.events.list().data[0].to_dict(),
    }
    for cls, obj in objects.items():
        declared = _declared(cls)
        assert set(obj) - declared == set(), f"{cls.__name__} sends undeclared fields"
        assert declared - set(obj) == NOT_SENT_BY_DEFAULT[cls], f"{cls.__name__} misses fields"


def test_deleted_objects_are_stubs(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    assert client.v1.invoices.delete(invoice.id).to_dict() == {
        "id": invoice.id,
        "object": "invoice",
        "deleted": True,
    }
    assert client.v1.customers.delete(customer.id).to_dict() == {
        "id": customer.id,
        "object": "customer",
        "deleted": True,
    }
