"""Register a conference's webhook endpoint at Stripe and keep its signing secret.

Stripe shows an endpoint's signing secret (``whsec_...``) once, in the answer to
``POST /v1/webhook_endpoints``. Registering through the API (instead of pasting from the Dashboard)
means the secret goes straight from Stripe's answer into the conference's encrypted field and is
never printed, logged or copied by hand. The same call works against real Stripe and against the
emulator (``STRIPE_API_BASE``).

Registering again is safe: when the stored endpoint still exists at Stripe with the same URL and
every event we need, nothing changes. Otherwise a new endpoint is created, its secret stored, and
only then is the previous endpoint deleted, so there is never a moment without a verifiable
endpoint (events the old one did not deliver are still caught by reconciliation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import stripe
from django.db import transaction
from django.urls import reverse

from invoicing.errors import InvoicingError
from invoicing.models import Conference, ConferenceSettingsChange
from invoicing.services.stripe_client import STRIPE_API_VERSION, build_stripe_client

if TYPE_CHECKING:
    from stripe.params import WebhookEndpointCreateParams

logger = logging.getLogger(__name__)

# The events this project handles (event_types.HANDLED_EVENT_TYPES; a test keeps the two
# equal). Spelled out so that mypy checks each name against stripe-python's list of event types.
WebhookEventType = Literal[
    "charge.dispute.closed",
    "charge.dispute.created",
    "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn",
    "charge.refunded",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "invoice.deleted",
    "invoice.finalized",
    "invoice.marked_uncollectible",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.sent",
    "invoice.updated",
    "invoice.voided",
    "invoice_payment.paid",
    "refund.created",
    "refund.failed",
    "refund.updated",
]
WEBHOOK_EVENT_TYPES: Final[tuple[WebhookEventType, ...]] = get_args(WebhookEventType)


class WebhookRegistrationError(InvoicingError):
    """The endpoint cannot be registered as asked; nothing was changed (at Stripe or here)."""


@dataclass(frozen=True)
class WebhookRegistration:
    """What :func:`register_webhook_endpoint` did."""

    endpoint_id: str
    url: str
    created: bool  # False: the stored endpoint already pointed there, nothing changed
    replaced_endpoint_id: str = ""  # the previous endpoint, deleted at Stripe
    old_endpoint_left: str = ""  # a previous endpoint that could not be deleted (see the log)


def webhook_path(conference: Conference) -> str:
    """The path of the conference's webhook endpoint on this site."""
    return reverse("stripe-webhook", kwargs={"conference_slug": conference.slug})


def webhook_url(conference: Conference, url: str) -> str:
    """The full endpoint URL: ``url`` may be the site's base (the path is added) or the full URL.

    Raises:
        WebhookRegistrationError: not an absolute http(s) URL, a path that is not this
            conference's endpoint, or plain http for a live-mode key.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise WebhookRegistrationError(
            f"{url!r} is not an absolute http(s) URL, e.g. https://invoicing.example.org"
        )
    if parts.query or parts.fragment:
        raise WebhookRegistrationError(f"{url!r}: the URL must not carry a query or fragment.")
    expected = webhook_path(conference)
    path = parts.path
    if path in {"", "/"}:
        path = expected
    elif path.rstrip("/") + "/" != expected:
        raise WebhookRegistrationError(
            f"{url!r} is not the webhook endpoint of conference {conference.slug!r}: its path "
            f"must be {expected} (or give only the site's base URL)."
        )
    else:
        path = expected
    if conference.stripe_livemode and parts.scheme != "https":
        raise WebhookRegistrationError(
            f"{url!r}: a live-mode endpoint must use https (Stripe sends live events over TLS)."
        )
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _is_missing(error: stripe.InvalidRequestError) -> bool:
    return error.code == "resource_missing" or error.http_status == 404


def _retrieve_endpoint(
    client: stripe.StripeClient, endpoint_id: str
) -> stripe.WebhookEndpoint | None:
    try:
        return client.v1.webhook_endpoints.retrieve(endpoint_id)
    except stripe.InvalidRequestError as error:
        if _is_missing(error):
            return None
        raise


def _is_current(endpoint: stripe.WebhookEndpoint | None, url: str) -> bool:
    return (
        endpoint is not None
        and endpoint.url == url
        and endpoint.status == "enabled"
        and set(WEBHOOK_EVENT_TYPES) <= set(endpoint.enabled_events)
    )


def register_webhook_endpoint(
    *, conference: Conference, url: str, replace: bool = False
) -> WebhookRegistration:
    """Make sure Stripe sends this conference's events to ``url``, with the secret stored here.

    Args:
        conference: whose Stripe account (its own key) gets the endpoint.
        url: the site's base URL or the full endpoint URL (see :func:`webhook_url`).
        replace: create a new endpoint (and a new secret) even if the stored one is current,
            e.g. after the secret may have leaked.

    Raises:
        StripeKeyMissing: the conference has no Stripe secret key (a ``ValueError``).
        WebhookRegistrationError: the URL is refused, or Stripe answered without a secret.
        stripe.StripeError: Stripe refused or failed; nothing was stored.
    """
    full_url = webhook_url(conference, url)
    client = build_stripe_client(conference)
    previous_id = conference.stripe_webhook_endpoint_id
    if previous_id:
        existing = _retrieve_endpoint(client, previous_id)
        if existing is None:  # deleted at Stripe (or an emulator that restarted): nothing to keep
            previous_id = ""
        elif conference.stripe_webhook_secret and not replace and _is_current(existing, full_url):
            logger.info(
                "conference %s: webhook endpoint %s already registered for %s",
                conference.slug,
                previous_id,
                full_url,
            )
            return WebhookRegistration(endpoint_id=previous_id, url=full_url, created=False)

    params: WebhookEndpointCreateParams = {
        "url": full_url,
        # A fresh list built in this context: a list is invariant, so the constant's narrower
        # Literal type would not pass as stripe-python's list of every event type.
        "enabled_events": list(WEBHOOK_EVENT_TYPES),
        # Events are rendered in the version our parsing follows, whatever the account's default.
        "api_version": STRIPE_API_VERSION,  # type: ignore[typeddict-item]
        "description": f"PO invoicing, conference {conference.slug}",
        "metadata": {"conference": conference.slug},
    }
    endpoint = client.v1.webhook_endpoints.create(params)
    secret = endpoint.secret
    if not secret or not secret.startswith("whsec_"):
        _delete_quietly(client, conference, endpoint.id)
        raise WebhookRegistrationError(
            f"Stripe created endpoint {endpoint.id} but returned no signing secret; deleted it."
        )
    try:
        with transaction.atomic():
            locked = Conference.objects.select_for_update().get(pk=conference.pk)
            locked.stripe_webhook_secret = secret
            locked.stripe_webhook_endpoint_id = endpoint.id
            locked.save(
                update_fields=["stripe_webhook_secret", "stripe_webhook_endpoint_id", "updated_at"]
            )
            # On the conference's record like a change in the admin (by a command: nobody).
            ConferenceSettingsChange.objects.create(
                conference=locked,
                fields=["stripe_webhook_endpoint_id", "stripe_webhook_secret"],
                outcome=ConferenceSettingsChange.Outcome.APPLIED,
            )
    except Exception:
        # We could not keep the secret: an endpoint whose secret nobody has only produces failures.
        _delete_quietly(client, conference, endpoint.id)
        raise
    conference.stripe_webhook_secret = secret
    conference.stripe_webhook_endpoint_id = endpoint.id
    logger.info(
        "conference %s: webhook endpoint %s registered for %s (%d event types)",
        conference.slug,
        endpoint.id,
        full_url,
        len(WEBHOOK_EVENT_TYPES),
    )

    replaced = ""
    left = ""
    if previous_id and previous_id != endpoint.id:
        if _delete_quietly(client, conference, previous_id):
            replaced = previous_id
        else:
            left = previous_id
    return WebhookRegistration(
        endpoint_id=endpoint.id,
        url=full_url,
        created=True,
        replaced_endpoint_id=replaced,
        old_endpoint_left=left,
    )


def _delete_quietly(client: stripe.StripeClient, conference: Conference, endpoint_id: str) -> bool:
    """Delete an endpoint we no longer use; True when it is gone (or was already)."""
    try:
        client.v1.webhook_endpoints.delete(endpoint_id)
    except stripe.InvalidRequestError as error:
        if _is_missing(error):
            return True
        logger.warning(
            "conference %s: could not delete old webhook endpoint %s (%s); delete it in the "
            "Stripe Dashboard",
            conference.slug,
            endpoint_id,
            error.user_message or type(error).__name__,
        )
        return False
    except stripe.StripeError as error:
        logger.warning(
            "conference %s: could not delete old webhook endpoint %s (%s); delete it in the "
            "Stripe Dashboard",
            conference.slug,
            endpoint_id,
            type(error).__name__,
        )
        return False
    logger.info("conference %s: old webhook endpoint %s deleted", conference.slug, endpoint_id)
    return True
