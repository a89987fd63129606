"""The per-conference StripeClient factory: its key, retries, timeout and base address."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from invoicing.models import Conference
from invoicing.services.rate_limit import account_fingerprint
from invoicing.services.rate_limited_http import RateLimitedRequestsClient
from invoicing.services.stripe_client import (
    STRIPE_API_VERSION,
    StripeKeyMissing,
    build_http_client,
    build_stripe_client,
)
from tests.core.conftest import MakeConference
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db


def test_api_version_is_the_one_stripe_python_pins() -> None:
    assert STRIPE_API_VERSION == "2026-10-28.endive"


def test_no_key_is_a_clear_value_error(make_conference: MakeConference) -> None:
    conference = make_conference(secret_key="", slug="no-key-conf")
    with pytest.raises(ValueError, match="'no-key-conf' has no Stripe secret key") as raised:
        build_stripe_client(conference)
    assert isinstance(raised.value, StripeKeyMissing)


def test_http_client_is_rate_limited_with_the_configured_timeout(settings: Any) -> None:
    settings.STRIPE_TIMEOUT_SECONDS = 7.5
    http_client = build_http_client(secret_key="sk_test_timeout")
    assert isinstance(http_client, RateLimitedRequestsClient)
    assert isinstance(http_client, stripe.RequestsClient)
    assert http_client._timeout == 7.5
    assert http_client.account == account_fingerprint("sk_test_timeout")


def test_client_talks_to_the_configured_base_with_the_conference_key(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_conference: MakeConference,
) -> None:
    other_key = stripe_emulator.new_secret_key()
    other = make_conference(secret_key=other_key)
    build_stripe_client(stripe_conference).v1.customers.create({"email": "a@example.com"})
    build_stripe_client(other).v1.customers.list()
    assert [e["path"] for e in stripe_emulator.requests(stripe_secret_key)] == ["/v1/customers"]
    assert [e["method"] for e in stripe_emulator.requests(other_key)] == ["GET"]


def test_retries_follow_the_setting(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    settings: Any,
) -> None:
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    stripe_emulator.configure(stripe_secret_key, fail_next=["lock_timeout", "lock_timeout"])
    build_stripe_client(stripe_conference).v1.customers.create({"email": "a@example.com"})
    statuses = [entry["status"] for entry in stripe_emulator.requests(stripe_secret_key)]
    assert statuses == [429, 429, 200]

    stripe_emulator.clear_requests(stripe_secret_key)
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe_emulator.configure(stripe_secret_key, fail_next=["lock_timeout"])
    with pytest.raises(stripe.RateLimitError):
        build_stripe_client(stripe_conference).v1.customers.create({"email": "b@example.com"})
    assert len(stripe_emulator.requests(stripe_secret_key)) == 1


def test_timeout_follows_the_setting(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    settings: Any,
) -> None:
    settings.STRIPE_TIMEOUT_SECONDS = 0.3
    stripe_emulator.configure(stripe_secret_key, latency=1.0)
    try:
        with pytest.raises(stripe.APIConnectionError):
            build_stripe_client(stripe_conference).v1.customers.list()
    finally:
        stripe_emulator.configure(stripe_secret_key, latency=0.0)
