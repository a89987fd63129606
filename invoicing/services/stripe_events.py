"""The webhook inbox: claim each recorded event, dispatch and settle it once; retry, park, replay.

Events come in through :mod:`invoicing.services.webhook_intake` (the view's fast path), which
records the row and asks for it to be published. Everything after that is here:

1. :func:`enqueue_stripe_event` queues a row's processing; a row whose message the broker did not
   take is made due (:func:`mark_due`) for :func:`reenqueue_pending_stripe_events`. A batch the
   webhook's publisher thread sent as one ``queue_stripe_events`` message is fanned out by
   :func:`queue_stripe_events`.
2. :func:`process_stripe_event` claims the row (``SELECT ... FOR UPDATE SKIP LOCKED``, then
   ``processing`` with a claim that outlives the task's hard time limit), dispatches it by type
   (:func:`dispatch_stripe_event`: invoice events to ``handle_invoice_event``; refund, dispute
   and credit note events to ``money_events.handle_money_event``; everything else ``ignored``)
   and settles it: ``processed`` / ``ignored``; on a transient failure back to ``pending`` with
   ``next_attempt_at`` after an exponential backoff, until ``STRIPE_EVENT_MAX_ATTEMPTS``; on a
   permanent one (``EventRejected``, an unknown error...) ``failed`` at once. ``last_error``
   keeps the reason; failed events are replayed with :func:`replay_stripe_events` (admin
   action, ``manage.py replay_stripe_events``).

Every message may arrive twice (webhook retries are deduplicated by the insert; broker
redeliveries, the beat's re-enqueue and replays by the claim), and applying an invoice snapshot is
idempotent anyway (the ledger's own rule), so "at least once" everywhere adds up to "once".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from invoicing import background
from invoicing.background import Job
from invoicing.models import Conference, StripeEvent
from invoicing.retry import backoff_seconds, describe_error, has_known_cause, is_transient
from invoicing.services.event_types import MONEY_EVENTS
from invoicing.services.invoice_sync import EventOutcome, handle_invoice_event
from invoicing.services.money_events import handle_money_event

logger = logging.getLogger(__name__)

EventStatus = StripeEvent.Status


# --- Queuing -------------------------------------------------------------------------------------


def queue_stripe_events(*, stripe_event_ids: list[int]) -> int:
    """Queue one processing task per row: the worker's half of a batch published as one message.

    Returns how many were queued; the others were made due for the beat's re-enqueue.
    """
    return sum(enqueue_stripe_event(pk) for pk in stripe_event_ids)


def enqueue_stripe_event(stripe_event_pk: int) -> bool:
    """Queue the processing of one inbox row; if the broker refuses, make it due for the beat."""
    if background.request(Job.PROCESS_STRIPE_EVENT, stripe_event_pk):
        return True
    mark_due(stripe_event_pks=[stripe_event_pk])
    return False


def mark_due(*, stripe_event_pks: list[int]) -> None:
    """Rows whose message the broker did not take: due for the beat's re-enqueue at once."""
    try:
        StripeEvent.objects.filter(pk__in=stripe_event_pks, status=EventStatus.PENDING).update(
            next_attempt_at=timezone.now()
        )
    except DatabaseError as error:  # still recorded; due later instead of at the next run
        logger.warning(
            "stripe event row(s) %s: could not mark them due (%s)",
            stripe_event_pks,
            type(error).__name__,
        )


# --- Processing ----------------------------------------------------------------------------------


def claim_stripe_event(
    *, stripe_event_id: int, resume_claim: int | None = None
) -> StripeEvent | None:
    """Take the row for processing, or None when it is done, taken, or gone.

    ``SKIP LOCKED``: a row another worker is claiming right now is theirs. A ``processing`` row is
    taken over once its claim expired (its worker died; the claim outlives the hard limit), or at
    once when ``resume_claim`` is its ``attempts``: the caller is the retry of the run that made
    that claim and could not settle it (:class:`ClaimNotSettled`). Any later claim (a takeover)
    has another ``attempts``, so a stale retry never steals a row.
    """
    now = timezone.now()
    with transaction.atomic():
        row = (
            StripeEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("conference")
            .filter(pk=stripe_event_id)
            .first()
        )
        if row is None:
            return None
        claim_expired = row.status == EventStatus.PROCESSING and (
            row.next_attempt_at is None or row.next_attempt_at <= now
        )
        own_claim = (
            row.status == EventStatus.PROCESSING
            and resume_claim is not None
            and row.attempts == resume_claim
        )
        if row.status != EventStatus.PENDING and not (claim_expired or own_claim):
            return None
        if own_claim:
            logger.info(
                "stripe event %s: resuming our unsettled claim (attempt %s)",
                row.stripe_event_id,
                row.attempts,
            )
        elif claim_expired:
            logger.warning(
                "stripe event %s: taking over an expired claim (attempt %s)",
                row.stripe_event_id,
                row.attempts,
            )
        row.status = EventStatus.PROCESSING
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=settings.STRIPE_EVENT_CLAIM_SECONDS)
        row.save(update_fields=["status", "attempts", "next_attempt_at"])
    return row


def dispatch_stripe_event(stripe_event: StripeEvent) -> EventOutcome:
    """Route an event by type; types we do not act on are ``ignored``."""
    if stripe_event.type.startswith(("invoice.", "invoice_payment.")):
        return handle_invoice_event(conference=stripe_event.conference, event=stripe_event.payload)
    if stripe_event.type in MONEY_EVENTS:
        return handle_money_event(conference=stripe_event.conference, event=stripe_event.payload)
    return EventOutcome.IGNORED


@dataclass(frozen=True)
class ProcessResult:
    """What one processing run did: the row's status after it, and when to try again."""

    status: str
    retry_in: float | None = None
    error: str = ""
    skipped: bool = field(default=False)


def _settle(claimed: StripeEvent, **changes: Any) -> bool:
    """Write the outcome only if our claim still stands (nobody took the row over meanwhile)."""
    updated = StripeEvent.objects.filter(
        pk=claimed.pk, status=EventStatus.PROCESSING, attempts=claimed.attempts
    ).update(**changes)
    if not updated:
        logger.warning(
            "stripe event %s: claim lost before settling (another worker took it over)",
            claimed.stripe_event_id,
        )
    return bool(updated)


class ClaimNotSettled(DatabaseError):
    """The row was claimed but its outcome could not be written (the database went away).

    ``attempt`` is the claim's ``attempts``: a retry passes it back as ``resume_claim`` and takes
    the row over at once, instead of finding it "taken" until the claim expires (which outlives
    the task's hard time limit: minutes). ``__cause__`` is the database error itself.
    """

    def __init__(self, *, stripe_event_id: int, attempt: int) -> None:
        super().__init__(
            f"stripe event row {stripe_event_id}: claim {attempt} taken but not settled"
        )
        self.stripe_event_id = stripe_event_id
        self.attempt = attempt


def process_stripe_event(*, stripe_event_id: int, resume_claim: int | None = None) -> ProcessResult:
    """Claim, dispatch and settle one inbox row (``stripe_event_id`` is the row's primary key).

    Never raises for what the event's handler does: failures are recorded on the row. Database
    errors while claiming propagate as they are; once the row is claimed they propagate as
    :class:`ClaimNotSettled`, whose ``attempt`` the caller's retry passes back as
    ``resume_claim`` (see :func:`claim_stripe_event`). Without a retry the claim expires and the
    beat re-enqueues the row.
    """
    claimed = claim_stripe_event(stripe_event_id=stripe_event_id, resume_claim=resume_claim)
    if claimed is None:
        logger.debug("stripe event row %s: nothing to do (done, taken or gone)", stripe_event_id)
        return ProcessResult(status="", skipped=True)
    try:
        return _dispatch_and_settle(claimed)
    except DatabaseError as error:
        raise ClaimNotSettled(stripe_event_id=claimed.pk, attempt=claimed.attempts) from error


def _dispatch_and_settle(claimed: StripeEvent) -> ProcessResult:
    try:
        outcome = dispatch_stripe_event(claimed)
    except Exception as error:  # recorded on the row, never lost; see _settle_failure
        return _settle_failure(claimed, error)
    status = EventStatus.PROCESSED if outcome == EventOutcome.HANDLED else EventStatus.IGNORED
    if _settle(
        claimed,
        status=status,
        processed_at=timezone.now(),
        last_error="",
        next_attempt_at=None,
    ):
        logger.info(
            "stripe event %s (%s) for conference %s: %s (attempt %s)",
            claimed.stripe_event_id,
            claimed.type,
            claimed.conference.slug,
            status,
            claimed.attempts,
        )
    return ProcessResult(status=status)


def _settle_failure(claimed: StripeEvent, error: Exception) -> ProcessResult:
    message = describe_error(error)
    transient = is_transient(error)
    if transient and claimed.attempts < settings.STRIPE_EVENT_MAX_ATTEMPTS:
        delay = backoff_seconds(claimed.attempts)
        if _settle(
            claimed,
            status=EventStatus.PENDING,
            last_error=message,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
        ):
            logger.warning(
                "stripe event %s (%s): attempt %s failed, retrying in %.0f s: %s",
                claimed.stripe_event_id,
                claimed.type,
                claimed.attempts,
                delay,
                message,
            )
        return ProcessResult(status=EventStatus.PENDING, retry_in=delay, error=message)
    if _settle(claimed, status=EventStatus.FAILED, last_error=message, next_attempt_at=None):
        reason = (
            f"gave up after {claimed.attempts} attempts"
            if transient
            else "permanent error, not retried"
        )
        logger.error(
            "stripe event %s (%s) for conference %s: failed (%s): %s",
            claimed.stripe_event_id,
            claimed.type,
            claimed.conference.slug,
            reason,
            message,
            exc_info=not transient and not has_known_cause(error),
        )
    return ProcessResult(status=EventStatus.FAILED, error=message)


# --- Recovery ------------------------------------------------------------------------------------


def _due_for_reenqueue(now: Any) -> Q:
    pending_due = Q(status=EventStatus.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    claim_expired = Q(status=EventStatus.PROCESSING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    return pending_due | claim_expired


def reenqueue_pending_stripe_events(*, limit: int = 1000) -> int:
    """Queue again the recorded events no worker finished: lost messages, dead workers.

    Due rows are ``pending`` past their ``next_attempt_at`` (never queued, or a retry whose
    message is gone) and ``processing`` rows whose claim expired. Each is set ``pending`` with
    its next check ``STRIPE_EVENT_REENQUEUE_AFTER_SECONDS`` away, so a row is queued again at
    most once per that period however often this runs. Returns how many were queued.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            StripeEvent.objects.select_for_update(skip_locked=True)
            .filter(_due_for_reenqueue(now))
            .order_by("received_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if not due:
            return 0
        StripeEvent.objects.filter(pk__in=due).update(
            status=EventStatus.PENDING,
            next_attempt_at=now + timedelta(seconds=settings.STRIPE_EVENT_REENQUEUE_AFTER_SECONDS),
        )
    queued = 0
    for pk in due:
        if not enqueue_stripe_event(pk):
            # The broker is away: the rest stay due for the next run.
            StripeEvent.objects.filter(pk__in=due[queued:], status=EventStatus.PENDING).update(
                next_attempt_at=now
            )
            break
        queued += 1
    logger.info("re-enqueued %s of %s due stripe event(s)", queued, len(due))
    return queued


@dataclass(frozen=True)
class ReplayResult:
    """Which events a replay reset to ``pending`` (Stripe ids), and which it could not."""

    replayed: list[str]
    not_found: list[str]
    in_progress: list[str]


def replay_stripe_events(
    *,
    stripe_event_ids: Iterable[str] = (),
    failed: bool = False,
    queue: bool = True,
) -> ReplayResult:
    """Put events back to ``pending`` with a fresh retry budget, and queue them.

    ``stripe_event_ids`` (``evt_...``) replays those events whatever their state (replaying a
    processed event is harmless: snapshots apply once); ``failed=True`` adds every failed event.
    An event a worker is processing right now is left to it. ``queue=False`` only resets the rows
    (the caller processes them itself, e.g. ``manage.py replay_stripe_events --inline``).
    """
    wanted = list(dict.fromkeys(stripe_event_ids))
    selection = Q(stripe_event_id__in=wanted)
    if failed:
        selection |= Q(status=EventStatus.FAILED)
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            StripeEvent.objects.select_for_update()
            .filter(selection, payload_purged_at__isnull=True)  # nothing left to process
            .order_by("received_at", "pk")
            .only("pk", "stripe_event_id", "status", "next_attempt_at")
        )
        found = {row.stripe_event_id for row in rows}
        busy = [
            row
            for row in rows
            if row.status == EventStatus.PROCESSING
            and row.next_attempt_at is not None
            and row.next_attempt_at > now
        ]
        replay = [row for row in rows if row not in busy]
        StripeEvent.objects.filter(pk__in=[row.pk for row in replay]).update(
            status=EventStatus.PENDING,
            attempts=0,
            processed_at=None,
            next_attempt_at=now + timedelta(seconds=settings.STRIPE_EVENT_REENQUEUE_AFTER_SECONDS),
        )
        if queue:
            for row in replay:
                transaction.on_commit(partial(enqueue_stripe_event, row.pk), robust=True)
    for row in replay:
        logger.info("stripe event %s: replay requested (was %s)", row.stripe_event_id, row.status)
    return ReplayResult(
        replayed=[row.stripe_event_id for row in replay],
        not_found=[event_id for event_id in wanted if event_id not in found],
        in_progress=[row.stripe_event_id for row in busy],
    )


# --- Setup ---------------------------------------------------------------------------------------


def register_webhook_endpoint(*, conference: Conference, url: str) -> str:
    """Point the conference's Stripe account at our endpoint for it; store the signing secret.

    Kept for callers of the pipeline's first version; the one implementation (URL checks, the
    pinned API version, rotation without a gap) is
    :func:`invoicing.services.webhook_endpoints.register_webhook_endpoint`. Returns the endpoint id.
    """
    from invoicing.services.webhook_endpoints import register_webhook_endpoint as register

    return register(conference=conference, url=url).endpoint_id
