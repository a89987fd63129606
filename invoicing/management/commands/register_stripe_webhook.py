"""``manage.py register_stripe_webhook --conference <slug> --url <public url>``.

Creates the conference's webhook endpoint through Stripe's API (``POST /v1/webhook_endpoints``,
with the conference's own key; the emulator when ``STRIPE_API_BASE`` is set) and stores the
signing secret Stripe returns, encrypted. The secret is never printed.
"""

from __future__ import annotations

from typing import Any

import stripe
from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoicing.logging import scrub_secrets
from invoicing.models import Conference
from invoicing.services.stripe_client import StripeKeyMissing
from invoicing.services.webhook_endpoints import (
    WEBHOOK_EVENT_TYPES,
    WebhookRegistrationError,
    register_webhook_endpoint,
)


def find_conference(slug: str) -> Conference:
    """The conference with ``slug``, or a CommandError that lists the ones that exist."""
    try:
        return Conference.objects.get(slug=slug)
    except Conference.DoesNotExist:
        known = ", ".join(Conference.objects.values_list("slug", flat=True)) or "none yet"
        raise CommandError(f"No conference {slug!r} (conferences: {known}).") from None


class Command(BaseCommand):
    help = (
        "Register the conference's Stripe webhook endpoint through the Stripe API and store its "
        "signing secret (never printed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conference", required=True, help="the conference's slug")
        parser.add_argument(
            "--url",
            required=True,
            help=(
                "public base URL of this site (https://invoicing.example.org) or the full "
                "endpoint URL (…/stripe/webhooks/<slug>/)"
            ),
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="create a new endpoint and secret even if the stored one is current",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        conference = find_conference(options["conference"])
        if not conference.has_stripe_key:
            raise CommandError(
                f"Conference {conference.slug!r} has no Stripe secret key: add it in the admin "
                "(Conferences) first; the endpoint is created in that conference's Stripe account."
            )
        try:
            result = register_webhook_endpoint(
                conference=conference, url=options["url"], replace=options["replace"]
            )
        except (WebhookRegistrationError, StripeKeyMissing) as error:
            raise CommandError(str(error)) from None
        except stripe.StripeError as error:
            message = error.user_message or str(error) or type(error).__name__
            raise CommandError(
                f"Stripe refused the registration ({type(error).__name__}): "
                f"{scrub_secrets(message)}"
            ) from None

        mode = "live" if conference.stripe_livemode else "test"
        if not result.created:
            self.stdout.write(
                f"Conference {conference.slug}: webhook endpoint {result.endpoint_id} is already "
                f"registered for {result.url} ({mode} mode); nothing changed."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Conference {conference.slug}: registered webhook endpoint {result.endpoint_id} "
                f"for {result.url} ({mode} mode, {len(WEBHOOK_EVENT_TYPES)} event types). "
                "Its signing secret is stored, encrypted."
            )
        )
        if result.replaced_endpoint_id:
            self.stdout.write(f"Deleted the previous endpoint {result.replaced_endpoint_id}.")
        if result.old_endpoint_left:
            self.stderr.write(
                self.style.WARNING(
                    f"Could not delete the previous endpoint {result.old_endpoint_left}; delete "
                    "it in the Stripe Dashboard (its events now fail signature checks here)."
                )
            )
