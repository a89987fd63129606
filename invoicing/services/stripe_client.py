"""One ``stripe.StripeClient`` per conference, built from that conference's own key.

Every Stripe call in the project goes through :func:`build_stripe_client`, so the isolation rule
(a PO is only ever touched with its conference's key) has a single place to hold. The HTTP client is
built separately in :func:`build_http_client` so it can be swapped (e.g. for a rate-limited one)
without touching the rest.
"""

from __future__ import annotations

import stripe
from django.conf import settings
from stripe._api_version import _ApiVersion

from invoicing.models import Conference

# The API version the installed stripe-python is generated for (stripe 16.1.0: 2026-10-28.endive).
# Pinned explicitly so a global ``stripe.api_version`` set elsewhere can never change it.
STRIPE_API_VERSION: str = _ApiVersion.CURRENT


class StripeKeyMissing(ValueError):
    """The conference has no Stripe secret key, so nothing can be done at Stripe for it."""


def build_http_client() -> stripe.HTTPClient:
    """The HTTP client every StripeClient uses: requests, with the configured timeout."""
    return stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS)


def build_stripe_client(conference: Conference) -> stripe.StripeClient:
    """A client for ``conference``'s Stripe account: its key, the pinned API version, retries.

    Raises:
        StripeKeyMissing: the conference has no secret key (a ``ValueError``).
    """
    secret_key = conference.stripe_secret_key
    if not secret_key:
        raise StripeKeyMissing(
            f"Conference {conference.slug!r} has no Stripe secret key; add it in the admin."
        )
    api_base: str = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        secret_key,
        stripe_version=STRIPE_API_VERSION,
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
        http_client=build_http_client(),
        base_addresses={"api": api_base} if api_base else None,
    )
