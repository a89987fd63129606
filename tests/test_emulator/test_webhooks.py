"""Webhook endpoints and signed delivery, checked with stripe-python's own verifier."""

from __future__ import annotations

import json

import pytest
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


def _endpoint(client: stripe.StripeClient, receiver: Receiver, events: list[str]) -> str:
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": events}  # type: ignore[typeddict-item]
    )
    assert endpoint.secret is not None
    return endpoint.secret


def test_non_2xx_is_retried_with_backoff_until_delivered(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    stripe_emulator.configure(stripe_secret_key, webhook_retry_schedule=[0.05, 0.1, 0.1])
    receiver.respond = lambda index: 500 if index < 2 else 200
    _endpoint(client, receiver, ["customer.created"])
    client.v1.customers.create()
    attempts = stripe_emulator.wait_for_deliveries(stripe_secret_key)
    assert [(a["attempt"], a["status"], a["succeeded"]) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert attempts[1]["time"] - attempts[0]["time"] >= 0.05
    event = client.v1.events.list().data[0]
    assert event.pending_webhooks == 0
    assert [e.id for e in client.v1.events.list(params={"delivery_success": True}).data] == [
        event.id
    ]


def test_a_delivery_that_never_succeeds_is_given_up(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    stripe_emulator.configure(stripe_secret_key, webhook_retry_schedule=[0.01, 0.01])
    receiver.respond = lambda index: 503
    _endpoint(client, receiver, ["*"])
    client.v1.customers.create()
    attempts = stripe_emulator.wait_for_deliveries(stripe_secret_key)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[-1]["final"] is True
    failed = client.v1.events.list(params={"delivery_success": False}).data
    assert [event.type for event in failed] == ["customer.created"]
    assert failed[0].pending_webhooks == 1


def test_timeouts_count_as_failures(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    import time

    def slow(index: int) -> int:
        if index == 0:
            time.sleep(0.5)
        return 200

    receiver.respond = slow
    stripe_emulator.configure(stripe_secret_key, webhook_timeout=0.1, webhook_retry_schedule=[0.05])
    _endpoint(client, receiver, ["*"])
    client.v1.customers.create()
    attempts = stripe_emulator.wait_for_deliveries(stripe_secret_key)
    assert attempts[0]["succeeded"] is False
    assert "timed out" in (attempts[0]["error"] or "")
    assert attempts[-1]["succeeded"] is True


def test_duplicates(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    stripe_emulator.configure(stripe_secret_key, webhook_duplicate_rate=1.0)
    secret = _endpoint(client, receiver, ["customer.created"])
    client.v1.customers.create()
    received = receiver.wait_for(2)
    stripe_emulator.wait_for_deliveries(stripe_secret_key)
    ids = [
        stripe.Webhook.construct_event(r.body.decode(), r.headers["Stripe-Signature"], secret).id
        for r in received
    ]
    assert len(ids) == 2
    assert ids[0] == ids[1]
    event = client.v1.events.list().data[0]
    assert event.pending_webhooks == 0


def test_drops_leave_the_event_listable_and_undelivered(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    stripe_emulator.configure(stripe_secret_key, webhook_drop_rate=1.0)
    _endpoint(client, receiver, ["*"])
    customer = client.v1.customers.create()
    attempts = stripe_emulator.wait_for_deliveries(stripe_secret_key)
    assert [a["error"] for a in attempts] == ["dropped by chaos"]
    assert receiver.received == []
    undelivered = client.v1.events.list(params={"delivery_success": False}).data
    assert [event.data.object["id"] for event in undelivered] == [customer.id]


def test_reordering_window_shuffles_arrival(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    stripe_emulator.configure(stripe_secret_key, seed=7, webhook_reorder_window=1.0)
    _endpoint(client, receiver, ["customer.created"])
    created = [client.v1.customers.create().id for _ in range(10)]
    received = receiver.wait_for(10)
    arrived = [json.loads(r.body)["data"]["object"]["id"] for r in received]
    assert sorted(arrived) == sorted(created)
    assert arrived != created


def test_delay_and_pause(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    stripe_emulator.configure(stripe_secret_key, webhook_delay=0.2, webhooks_paused=True)
    _endpoint(client, receiver, ["customer.created"])
    client.v1.customers.create()
    assert stripe_emulator.pending_deliveries(stripe_secret_key) == 1
    assert receiver.received == []
    stripe_emulator.configure(stripe_secret_key, webhooks_paused=False)
    attempts = stripe_emulator.wait_for_deliveries(stripe_secret_key)
    created_at = stripe_emulator.requests(stripe_secret_key)[-1]["time"]
    assert attempts[0]["time"] - created_at >= 0.2
    assert len(receiver.received) == 1


def test_endpoint_crud_and_event_selection(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    receiver: Receiver,
) -> None:
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["invoice.paid"], "description": "PO"}
    )
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [endpoint.id]
    client.v1.customers.create()  # not subscribed
    updated = client.v1.webhook_endpoints.update(
        endpoint.id, params={"enabled_events": ["customer.created"]}
    )
    assert updated.enabled_events == ["customer.created"]
    client.v1.customers.create()
    stripe_emulator.wait_for_deliveries(stripe_secret_key)
    assert len(receiver.received) == 1
    client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
    client.v1.customers.create()
    assert client.v1.webhook_endpoints.delete(endpoint.id).deleted is True
    client.v1.customers.create()
    stripe_emulator.wait_for_deliveries(stripe_secret_key)
    assert len(receiver.received) == 1
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create(params={"url": "ftp://x", "enabled_events": ["*"]})
    assert caught.value.param == "url"
