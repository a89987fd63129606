"""``manage.py sync_stripe_invoices [--conference <slug>] [--full]``: reconcile now, here.

The same reconciliation the beat runs (``invoicing/services/reconciliation.py``), for one
conference or every active conference with a Stripe key; prints what each run did. ``--full``
reads every invoice, refund, credit note and dispute of the account, not only what changed since
the last run: after an upgrade that records more of Stripe's money, or when in doubt.
"""

from __future__ import annotations

from typing import Any

import stripe
from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoicing.models import Conference
from invoicing.retry import describe_error
from invoicing.services import reconciliation


class Command(BaseCommand):
    help = "Reconcile open Stripe invoices with the purchase orders (one conference or all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conference", metavar="SLUG", help="Only this conference.")
        parser.add_argument(
            "--full",
            action="store_true",
            help=(
                "Read every invoice, refund, credit note and dispute at Stripe, not only what "
                "changed since the last run (one call per 100 objects)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str | None = options["conference"]
        full: bool = options["full"]
        if slug:
            conference = Conference.objects.filter(slug=slug).first()
            if conference is None:
                raise CommandError(f"No conference {slug!r}.")
            if not conference.has_stripe_key:
                raise CommandError(f"Conference {slug!r} has no Stripe secret key.")
            conferences = [conference]
        else:
            conferences = reconciliation.conferences_to_reconcile()
        failures = 0
        for conference in conferences:
            try:
                summary = reconciliation.reconcile_conference(conference=conference, full=full)
            except (stripe.StripeError, ValueError) as error:
                failures += 1
                self.stderr.write(f"{conference.slug}: failed: {describe_error(error)}")
                continue
            if summary.skipped:
                self.stdout.write(f"{conference.slug}: skipped (another run is in progress)")
                continue
            self.stdout.write(
                f"{conference.slug}: {'full run, ' if full else ''}"
                f"{summary.stripe_calls} Stripe call(s), {summary.open_invoices} open invoice(s), "
                f"{summary.events} event(s), "
                f"{summary.retrieved} retrieved, {summary.applied} applied, "
                f"{summary.money_applied} refund/dispute/credit note(s) applied, "
                f"{summary.unchanged} unchanged, {summary.errors} error(s)"
            )
        if failures:
            raise CommandError(f"{failures} conference(s) failed.")
