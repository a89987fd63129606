"""Fixtures for the emulator's own tests: a StripeClient on a fresh account, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

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
