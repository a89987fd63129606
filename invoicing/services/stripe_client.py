"""One ``stripe.StripeClient`` per conference, built from that conference's own key.

Every Stripe call in the project goes through :func:`build_stripe_client`, so the isolation rule
(a PO is only ever touched with its conference's key) has a single place to hold.

The HTTP client (:func:`build_http_client`) reserves a slot in the account's shared rate limit
before every attempt (:mod:`invoicing.services.rate_limit`). Clients are reused: one per conference
per process, so connections stay alive between calls. The cache is keyed by the conference and a
fingerprint of everything the client was built from (its key, base address, retries, timeout, rate
limits), so a rotated key or a changed setting builds a new client on the next call.
"""

from __future__ import annotations

import hashlib
import threading

import stripe
from django.conf import settings
from stripe._api_version import _ApiVersion

from invoicing.errors import InvoicingError
from invoicing.models import Conference
from invoicing.services.rate_limited_http import build_stripe_http_client

# The API version the installed stripe-python is generated for (stripe 16.1.0: 2026-10-28.endive).
# Pinned explicitly so a global ``stripe.api_version`` set elsewhere can never change it.
STRIPE_API_VERSION: str = _ApiVersion.CURRENT


class StripeKeyMissing(InvoicingError):
    """The conference has no Stripe secret key, so nothing can be done at Stripe for it."""


def build_http_client(*, secret_key: str) -> stripe.HTTPClient:
    """The HTTP client for one account: requests, the timeout, the shared rate limit."""
    return build_stripe_http_client(secret_key=secret_key, timeout=settings.STRIPE_TIMEOUT_SECONDS)


# conference pk -> (fingerprint of what the client was built from, the client)
_clients: dict[int, tuple[str, stripe.StripeClient]] = {}
_clients_lock = threading.Lock()


def _client_fingerprint(secret_key: str) -> str:
    """A digest of the key and every setting the client depends on (never the key itself)."""
    parts = [
        secret_key,
        settings.STRIPE_API_BASE,
        str(settings.STRIPE_MAX_NETWORK_RETRIES),
        str(settings.STRIPE_TIMEOUT_SECONDS),
        settings.STRIPE_RATE_LIMIT_REDIS_URL,
        str(settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND),
        str(settings.STRIPE_RATE_LIMIT_LIVE_PER_SECOND),
        str(settings.STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS),
        str(settings.STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS),
        str(settings.STRIPE_RATE_LIMIT_COOLDOWN_SECONDS),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def _new_client(secret_key: str) -> stripe.StripeClient:
    api_base: str = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        secret_key,
        stripe_version=STRIPE_API_VERSION,
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
        http_client=build_http_client(secret_key=secret_key),
        base_addresses={"api": api_base} if api_base else None,
    )


def build_stripe_client(conference: Conference) -> stripe.StripeClient:
    """The client for ``conference``'s Stripe account: its key, the pinned API version, retries.

    Reused across calls and threads (stripe-python's client keeps one HTTP session per thread).

    Raises:
        StripeKeyMissing: the conference has no secret key (a ``ValueError``).
    """
    secret_key = conference.stripe_secret_key
    if not secret_key:
        raise StripeKeyMissing(
            f"Conference {conference.slug!r} has no Stripe secret key; add it in the admin."
        )
    fingerprint = _client_fingerprint(secret_key)
    with _clients_lock:
        cached = _clients.get(conference.pk)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        client = _new_client(secret_key)
        if conference.pk is not None:
            _clients[conference.pk] = (fingerprint, client)
        return client


def build_stripe_client_for_key(secret_key: str) -> stripe.StripeClient:
    """A client for a key no conference holds yet (checking a new key before it is stored)."""
    return _new_client(secret_key)


def clear_stripe_clients() -> None:
    """Forget every cached client (the next call builds new ones)."""
    with _clients_lock:
        _clients.clear()
