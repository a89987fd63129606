"""Webhook endpoints and signed delivery, checked with stripe-python's own verifier."""

from __future__ import annotations

import json

import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .receiver import Receiver


def test_endpoint_returns_secret_and_deliveries_verify(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["invoice.paid", "customer.created"]}
    )
    assert endpoint.secret is not None
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id).to_dict()

    customer = client.v1.customers.create(params={"email": "w@example.com"})
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 3}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 4200}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    stripe_emulator.pay_invoice(invoice.id)

    received = receiver.wait_for(2)
    stripe_emulator.wait_for_deliveries(stripe_secret_key)
    events = [
        stripe.Webhook.construct_event(
            item.body.decode(), item.headers["Stripe-Signature"], endpoint.secret
        )
        for item in received
    ]
    assert sorted(event.type for event in events) == ["customer.created", "invoice.paid"]
    paid = next(event for event in events if event.type == "invoice.paid")
    assert paid.data.object["id"] == invoice.id
    assert paid.data.object["amount_paid"] == 4200
    assert json.loads(received[0].body)["object"] == "event"

    listed = client.v1.events.list(params={"delivery_success": True, "type": "invoice.paid"})
    assert [event.id for event in listed.data] == [paid.id]
    assert client.v1.events.retrieve(paid.id).pending_webhooks == 0


def test_wrong_secret_fails_verification(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, receiver: Receiver
) -> None:
    client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
    client.v1.customers.create(params={"email": "w@example.com"})
    item = receiver.wait_for(1)[0]
    try:
        stripe.Webhook.construct_event(
            item.body.decode(), item.headers["Stripe-Signature"], "whsec_wrong"
        )
    except stripe.SignatureVerificationError:
        pass
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("a wrong secret verified")
