"""One rate-limited StripeClient per conference per process, rebuilt when its inputs change."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import stripe

from invoicing.models import Conference
from invoicing.services.rate_limit import get_rate_limiter
from invoicing.services.rate_limited_http import RateLimitedRequestsClient
from invoicing.services.stripe_client import build_stripe_client
from tests.core.conftest import MakeConference
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db


def http_client(client: stripe.StripeClient) -> Any:
    return client._requestor._client


def test_a_conference_reuses_its_client_across_calls_and_threads(
    stripe_conference: Conference,
) -> None:
    first = build_stripe_client(stripe_conference)
    seen: list[stripe.StripeClient] = []
    threads = [
        threading.Thread(target=lambda: seen.append(build_stripe_client(stripe_conference)))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(client is first for client in seen)
    assert Conference.objects.get(pk=stripe_conference.pk) is not stripe_conference
    assert build_stripe_client(Conference.objects.get(pk=stripe_conference.pk)) is first


def test_conferences_never_share_a_client(
    stripe_conference: Conference, make_conference: MakeConference
) -> None:
    other = make_conference()
    assert build_stripe_client(stripe_conference) is not build_stripe_client(other)


def test_a_new_key_or_changed_settings_build_a_new_client(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    settings: Any,
) -> None:
    original = build_stripe_client(stripe_conference)
    stripe_conference.stripe_secret_key = stripe_emulator.new_secret_key()
    stripe_conference.save()
    rotated = build_stripe_client(stripe_conference)
    assert rotated is not original
    rotated.v1.customers.list()  # talks with the new key
    assert stripe_emulator.requests(stripe_conference.stripe_secret_key)

    settings.STRIPE_TIMEOUT_SECONDS = 3.5
    slower = build_stripe_client(stripe_conference)
    assert slower is not rotated
    assert http_client(slower)._timeout == 3.5
    settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND = 7.0
    limited = build_stripe_client(stripe_conference)
    assert limited is not slower
    assert http_client(limited).limit.per_second == 7.0
    assert build_stripe_client(stripe_conference) is limited


def test_every_request_goes_through_the_shared_rate_limit(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, stripe_conference: Conference
) -> None:
    client = build_stripe_client(stripe_conference)
    limiter = http_client(client)
    assert isinstance(limiter, RateLimitedRequestsClient)
    stripe_emulator.configure(stripe_secret_key, fail_next=["429"])
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
    # Stripe said slow down: the whole account pauses, for every worker (shared in Redis).
    assert get_rate_limiter().cooldown_remaining(account=limiter.account) > 0
