"""``manage.py replay_stripe_events (--failed | evt_... [evt_...]) [--inline]``.

Puts events back to ``pending`` with a fresh retry budget and queues them for the workers, or with
``--inline`` processes them right here (when no worker runs). Replaying a processed event is
harmless: invoice snapshots are applied once.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoicing.models import StripeEvent
from invoicing.services import stripe_events


class Command(BaseCommand):
    help = "Replay recorded Stripe events: all failed ones (--failed) and/or the given evt_ ids."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("event_ids", nargs="*", metavar="evt_...", help="Stripe event ids.")
        parser.add_argument("--failed", action="store_true", help="Replay every failed event.")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Process the events in this process instead of queuing them for the workers.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        event_ids: list[str] = options["event_ids"]
        if not event_ids and not options["failed"]:
            raise CommandError("Give event ids (evt_...) or --failed.")
        malformed = [event_id for event_id in event_ids if not event_id.startswith("evt_")]
        if malformed:
            raise CommandError(f"Not Stripe event ids: {', '.join(malformed)}")
        result = stripe_events.replay_stripe_events(
            stripe_event_ids=event_ids, failed=options["failed"], queue=not options["inline"]
        )
        for event_id in result.not_found:
            self.stderr.write(f"{event_id}: no such event recorded")
        for event_id in result.in_progress:
            self.stderr.write(f"{event_id}: a worker is processing it right now; left alone")
        if options["inline"]:
            rows = StripeEvent.objects.filter(stripe_event_id__in=result.replayed).values_list(
                "pk", "stripe_event_id"
            )
            for pk, event_id in rows:
                outcome = stripe_events.process_stripe_event(stripe_event_id=pk)
                detail = f": {outcome.error}" if outcome.error else ""
                self.stdout.write(f"{event_id}: {outcome.status or 'skipped'}{detail}")
        else:
            for event_id in result.replayed:
                self.stdout.write(f"{event_id}: queued")
        self.stdout.write(
            f"{len(result.replayed)} event(s) replayed, {len(result.not_found)} not found, "
            f"{len(result.in_progress)} in progress."
        )
        if result.not_found:
            raise CommandError("Some events were not found.")
