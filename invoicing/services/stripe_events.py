"""The webhook inbox: verify and record an event, queue it; then claim, dispatch and settle it once.

Receiving (the webhook view, nothing else):

1. :func:`verify_webhook` checks the ``Stripe-Signature`` header against the raw body with the
   secret of the conference in the URL (Stripe's 300 s tolerance), then that the body is a Stripe
   event whose ``livemode`` matches the conference's key. A :class:`WebhookRejected` stores nothing.
2. :func:`record_stripe_event` inserts the inbox row: one ``INSERT ... ON CONFLICT DO NOTHING``,
   unique on the Stripe event id, so a duplicate delivery adds nothing (in the view, the INSERT is
   its own transaction: no BEGIN and COMMIT round trips). After the commit it hands the row to
   the process's publisher thread (:func:`publish_recorded_event`), which queues it through
   :mod:`workers.enqueue` (short timeouts, no retry) after the view has answered: alone, as
   ``process_stripe_event``; rows that arrived while it was publishing share one
   ``queue_stripe_events`` message, which a worker fans out. If the broker does not take it, the
   row is already durable and is made due for :func:`reenqueue_pending_stripe_events`.

Processing (the worker):

3. :func:`process_stripe_event` claims the row (``SELECT ... FOR UPDATE SKIP LOCKED``, then
   ``processing`` with a claim that outlives the task's hard time limit), dispatches it by type
   (:func:`dispatch_stripe_event`: invoice events to ``handle_invoice_event``, everything else
   ``ignored``) and settles it: ``processed`` / ``ignored``; on a transient failure back to
   ``pending`` with ``next_attempt_at`` after an exponential backoff, until
   ``STRIPE_EVENT_MAX_ATTEMPTS``; on a permanent one (``EventRejected``, an unknown error...)
   ``failed`` at once. ``last_error`` keeps the reason; failed events are replayed with
   :func:`replay_stripe_events` (admin action, ``manage.py replay_stripe_events``).

Every message may arrive twice (webhook retries are deduplicated by the insert; broker
redeliveries, the beat's re-enqueue and replays by the claim), and applying an invoice snapshot is
idempotent anyway (the ledger's own rule), so "at least once" everywhere adds up to "once".
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import stripe
from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.utils import timezone

from invoicing import background
from invoicing.background import Job
from invoicing.models import Conference, StripeEvent
from invoicing.retry import backoff_seconds, describe_error, is_transient
from invoicing.services.invoice_sync import EventOutcome, handle_invoice_event
from workers.enqueue import Batcher

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

EventStatus = StripeEvent.Status

# The longest values the inbox columns hold.
_MAX_ID_LENGTH = 255
# Stripe's events nest a dozen levels at most; deeper bodies are refused before they are walked
# (Python's JSON parser and encoder recurse, and would fail at about a thousand).
MAX_JSON_DEPTH = 64
# Escapes of what jsonb cannot store: U+0000 and lone UTF-16 surrogates (U+D800..U+DFFF).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE_CHARS = re.compile("[\\x00\\ud800-\\udfff]")


class WebhookRejected(ValueError):
    """The request is not a genuine, well-formed event for this conference; nothing was stored."""


# --- Receiving -----------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise WebhookRejected(message)


def webhook_conference(*, slug: str) -> Conference | None:
    """The active conference a webhook URL names, with what the check needs (its two secrets).

    Kept per process for ``STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS`` (0: read every time): a
    delivery then costs one database round trip (its INSERT), not two. Saving a conference in
    this process forgets it at once (``invoicing.signals``); other processes see a deactivation
    or a new signing secret within that time. Stripe's own secret roll keeps the old secret valid
    meanwhile, and an event refused for a stale secret is resent by Stripe.

    Read with one plain SELECT of five columns, turned into a ``Conference`` as the ORM would (the
    secrets decrypted by their field): the ORM's query building cost the view more CPU than the
    query itself. Unknown and inactive slugs are not kept.
    """
    ttl: float = settings.STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS
    if ttl > 0:
        cached = _webhook_conferences.get(slug)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
    found = _without_health_check_round_trip(partial(_select_conference, slug=slug))
    if found is None:
        return None
    connection = transaction.get_connection()
    values = []
    for model_field, value in zip(_CONFERENCE_FIELDS, found, strict=True):
        column = model_field.get_col(Conference._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    conference = Conference.from_db(
        connection.alias, [f.attname for f in _CONFERENCE_FIELDS], values
    )
    if ttl > 0:
        _webhook_conferences[slug] = (time.monotonic(), conference)
    return conference


def forget_webhook_conferences() -> None:
    """Drop this process's kept conferences (a conference was saved or deleted here)."""
    _webhook_conferences.clear()


# slug -> (monotonic time read, the conference). Read-only once kept: threads share them.
_webhook_conferences: dict[str, tuple[float, Conference]] = {}


def _without_health_check_round_trip(run: Callable[[BaseDatabaseWrapper], _T]) -> _T:
    """Run a query of the view without Django's per-request health check before it.

    ``CONN_HEALTH_CHECKS`` costs a ``SELECT 1`` round trip per request; here the query itself is
    the check: a connection that died since the last request fails it, and outside a caller's
    transaction it is replaced and the query runs once more. (An INSERT whose commit reached the
    server just before the connection died finds its row on the second run: the event is then
    answered as a duplicate, and the beat queues it.)
    """
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        return run(connection)
    connection.health_check_done = True
    try:
        return run(connection)
    except (OperationalError, InterfaceError) as error:
        logger.warning("database connection lost (%s); reconnecting once", type(error).__name__)
        connection.close()
        return run(connection)


def _select_conference(connection: BaseDatabaseWrapper, *, slug: str) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(_conference_sql(connection), [slug, True])
        found: tuple[Any, ...] | None = cursor.fetchone()
    return found


# In the model's field order, as Model.from_db expects them.
_CONFERENCE_FIELDS = [
    model_field
    for model_field in Conference._meta.concrete_fields
    if model_field.name in {"id", "slug", "is_active", "stripe_secret_key", "stripe_webhook_secret"}
]
_CONFERENCE_SQL: dict[str, str] = {}


def _conference_sql(connection: BaseDatabaseWrapper) -> str:
    sql = _CONFERENCE_SQL.get(connection.vendor)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(model_field.column) for model_field in _CONFERENCE_FIELDS)
        meta = Conference._meta
        # Identifiers from the model, quoted by the backend; the values are parameters.
        sql = _CONFERENCE_SQL[connection.vendor] = (
            f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608
            f"WHERE {quote(meta.get_field('slug').column)} = %s "
            f"AND {quote(meta.get_field('is_active').column)} = %s"
        )
    return sql


@dataclass(frozen=True)
class VerifiedEvent:
    """A genuine event for the conference: parsed, and as the JSON text the inbox stores.

    ``json_text`` is the body exactly as Stripe signed it, unless characters jsonb refuses had to
    be replaced (then ``event`` encoded again): the inbox keeps what was received, and the view
    does not pay for encoding the event it just parsed.
    """

    event: dict[str, Any]
    json_text: str


def verify_webhook(
    *, conference: Conference, payload: bytes, signature_header: str | None
) -> VerifiedEvent:
    """Check the signature (with the conference's secret), the timestamp and the event's shape.

    Returns:
        The parsed event, with the text to store for it.

    Raises:
        WebhookRejected: no secret configured, a missing, wrong or stale signature, a body that is
            not a Stripe event, or a ``livemode`` that does not match the conference's key.
    """
    secret = conference.stripe_webhook_secret
    _require(bool(secret), "This conference has no webhook signing secret configured.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("The body is not UTF-8.") from None
    # stripe-python compares signatures with hmac.compare_digest, which raises TypeError on
    # non-ASCII text; a real server hands such header bytes over as latin-1.
    _require(
        signature_header is None or signature_header.isascii(),
        "Signature check failed: the Stripe-Signature header is not ASCII.",
    )
    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
    try:
        stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as error:
        # Stripe's messages name the problem (missing header, no match, outside the tolerance
        # zone) and never echo the secret; the header and body stay out of the message.
        raise WebhookRejected(f"Signature check failed: {error.user_message or error}") from None
    # stripe-python only refuses old timestamps; one beyond the tolerance ahead of our clock was
    # not signed by Stripe now, and would stay replayable for as long as it is in the future.
    _require(
        _signature_timestamp(signature_header or "") <= time.time() + tolerance,
        f"Signature check failed: the timestamp is in the future (beyond {tolerance} s).",
    )

    try:
        # NaN, Infinity and numbers that overflow to them are not JSON (RFC 8259) and jsonb
        # refuses them: refused here (400), not at the INSERT (which would answer 503 forever).
        # So are numbers too small for a double (jsonb's numeric stops at 1e-16383).
        event: dict[str, Any] = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise WebhookRejected(
            f"The body is not valid JSON for us: nested more than {MAX_JSON_DEPTH} levels."
        ) from None
    except ValueError:
        raise WebhookRejected("The body is not valid JSON.") from None
    _require(isinstance(event, dict), "The body is not a JSON object.")
    _require(
        _depth_within(event, MAX_JSON_DEPTH),
        f"The body is not valid JSON for us: nested more than {MAX_JSON_DEPTH} levels.",
    )
    json_text = text
    if _UNSTORABLE_ESCAPE.search(text):
        event = _storable(event)
        json_text = json.dumps(event)
    _require(event.get("object") == "event", "The body is not a Stripe event.")
    event_id = event.get("id")
    _require(
        isinstance(event_id, str) and event_id.startswith("evt_") and len(event_id) <= 255,
        "The event has no valid id.",
    )
    event_type = event.get("type")
    _require(
        isinstance(event_type, str) and 0 < len(event_type) <= _MAX_ID_LENGTH,
        "The event has no type.",
    )
    _require(isinstance(event.get("livemode"), bool), "The event has no livemode.")
    data = event.get("data")
    _require(
        isinstance(data, dict) and isinstance(data.get("object"), dict),
        "The event has no data.object.",
    )
    api_version = event.get("api_version")
    _require(
        api_version is None or (isinstance(api_version, str) and len(api_version) <= 64),
        "The event's api_version is malformed.",
    )
    expected = conference.stripe_livemode
    _require(
        expected is None or event["livemode"] is expected,
        f"The event's livemode={event['livemode']} does not match this conference's "
        f"{'live' if expected else 'test'} key.",
    )
    return VerifiedEvent(event=event, json_text=json_text)


def _signature_timestamp(header: str) -> int:
    """The ``t=`` of a header stripe-python already accepted (parsed the way it parses it)."""
    for item in header.split(","):
        parts = item.split("=", 2)
        if parts[0] == "t":
            return int(parts[1])
    raise WebhookRejected("Signature check failed: no timestamp.")  # pragma: no cover


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows")
    if value == 0 and _NONZERO_MANTISSA.match(text):
        raise ValueError(f"{text} underflows")
    return value


# A JSON number whose digits before any exponent are not all zeros.
_NONZERO_MANTISSA = re.compile(r"-?[0.]*[1-9]")


def _depth_within(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether no container in ``value`` is nested deeper than ``limit`` (level by level, without
    recursion, looking only at containers).

    ``value`` is as ``json.loads`` builds it: its containers are plain dicts and lists, so exact
    type checks do (4x faster than ``isinstance`` with a generator, on every webhook).
    """
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > limit:
            return False
        below: list[Any] = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1
    return True


def _storable(value: Any) -> Any:
    """PostgreSQL's jsonb refuses U+0000 and lone surrogates in strings: store U+FFFD instead of
    refusing the event (which Stripe would then resend for days, and never be processed)."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


@dataclass(frozen=True)
class RecordedEvent:
    """The inbox row for an event, and whether this delivery created it."""

    stripe_event: StripeEvent
    created: bool


def record_stripe_event(
    *, conference: Conference, event: Mapping[str, Any], event_json: str | None = None
) -> RecordedEvent:
    """Insert the verified event into the inbox (once per Stripe event id) and queue it on commit.

    A duplicate delivery inserts nothing and queues nothing: the row already exists, and if its
    message was lost, the beat re-enqueues it.

    Args:
        conference: The conference whose URL the event came to.
        event: The event, parsed.
        event_json: ``event`` as JSON text, when the caller has it (the webhook's
            :attr:`VerifiedEvent.json_text`): stored as it is instead of encoding ``event`` again.

    Raises:
        DatabaseError: the event could not be stored (the view answers 5xx: Stripe retries).
    """
    now = timezone.now()
    row = StripeEvent(
        conference=conference,
        stripe_event_id=event["id"],
        type=event["type"],
        livemode=event["livemode"],
        api_version=event.get("api_version") or "",
        payload=dict(event),
        # If the message never reaches a worker, the beat queues the event again from this time.
        next_attempt_at=now + timedelta(seconds=settings.STRIPE_EVENT_REENQUEUE_AFTER_SECONDS),
    )
    pk = _insert_unless_recorded(row, payload_json=event_json)
    if pk is None:
        existing = (
            StripeEvent.objects.filter(stripe_event_id=row.stripe_event_id)
            .only("pk", "conference_id", "status", "stripe_event_id")
            .first()
        )
        if existing is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise IntegrityError(f"stripe event {row.stripe_event_id} conflicts with no row")
        if existing.conference_id != conference.pk:
            # Stripe's event ids are global: two conferences share one Stripe account. The event
            # stays with the conference that recorded it; reconciliation covers the other one.
            logger.warning(
                "stripe event %s arrived for conference %s but is recorded for conference id %s",
                row.stripe_event_id,
                conference.slug,
                existing.conference_id,
            )
        else:
            logger.info(
                "stripe event %s (%s) for conference %s: duplicate delivery, already %s",
                row.stripe_event_id,
                row.type,
                conference.slug,
                existing.status,
            )
        return RecordedEvent(stripe_event=existing, created=False)
    # Committed (autocommit) or not yet (a caller's transaction): runs now, or after that commit.
    transaction.on_commit(partial(publish_recorded_event, pk), robust=True)
    logger.info(
        "stripe event %s (%s) for conference %s: recorded",
        row.stripe_event_id,
        row.type,
        conference.slug,
    )
    return RecordedEvent(stripe_event=row, created=True)


def _insert_unless_recorded(row: StripeEvent, *, payload_json: str | None) -> int | None:
    """``INSERT ... ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id``: the new row's pk, or
    None when the event is already recorded.

    The webhook's one write, in one statement and one round trip: outside a transaction it commits
    on its own (no BEGIN/COMMIT), inside a caller's it needs no savepoint (a duplicate is not an
    error). Written without the ORM's insert compiler, which cost more CPU than the rest of the
    view (tests/benchmarks/README.md, webhook ingest); each value still goes through its field's
    ``pre_save`` and ``get_db_prep_save``, as ``Model.save()`` does, except the payload when its
    JSON text is given: a JSON column takes the text as it is (jsonb parses it on PostgreSQL).
    """

    def insert(connection: BaseDatabaseWrapper) -> tuple[Any, ...] | None:
        values = [
            payload_json
            if payload_json is not None and model_field is _PAYLOAD_FIELD
            else model_field.get_db_prep_save(model_field.pre_save(row, True), connection)
            for model_field in _INSERT_FIELDS
        ]
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(connection), values)
            found: tuple[Any, ...] | None = cursor.fetchone()
        return found

    inserted = _without_health_check_round_trip(insert)
    connection = transaction.get_connection()
    if inserted is None:
        return None
    row.pk = int(inserted[0])
    row._state.adding = False
    row._state.db = connection.alias
    return row.pk


# Every column but the primary key, in the model's order.
_INSERT_FIELDS = [
    model_field
    for model_field in StripeEvent._meta.local_concrete_fields
    if not model_field.primary_key
]
_PAYLOAD_FIELD = StripeEvent._meta.get_field("payload")


def _insert_sql(connection: BaseDatabaseWrapper) -> str:
    sql = _INSERT_SQL.get(connection.vendor)
    if sql is None:
        quote = connection.ops.quote_name
        meta = StripeEvent._meta
        columns = ", ".join(quote(model_field.column) for model_field in _INSERT_FIELDS)
        # Identifiers from the model, quoted by the backend; the values are parameters.
        sql = _INSERT_SQL[connection.vendor] = (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(_INSERT_FIELDS))}) "
            f"ON CONFLICT ({quote(meta.get_field('stripe_event_id').column)}) DO NOTHING "
            f"RETURNING {quote(meta.pk.column)}"
        )
    return sql


_INSERT_SQL: dict[str, str] = {}


def publish_recorded_event(stripe_event_pk: int) -> None:
    """Queue a newly recorded row (the webhook's on-commit hook): hand it to this process's
    publisher thread and return at once (:class:`workers.enqueue.Batcher`).

    Publishing cost the view more CPU than verifying and recording together, and under load it
    capped the webhook's throughput: the thread publishes rows that arrive while it is busy in one
    message, and the answer to Stripe no longer waits for the broker. A row whose message is lost
    with the process is still recorded: the beat re-enqueues it.
    """
    _recorded_events.submit(stripe_event_pk)


def wait_for_published(timeout: float) -> bool:
    """Wait until this process has published (or made due) every row it recorded so far."""
    return _recorded_events.drain(timeout)


def queue_recorded_events(stripe_event_pks: list[int]) -> None:
    """One row: its processing task, as before. Several: one message that the worker fans out."""
    if len(stripe_event_pks) == 1:
        enqueue_stripe_event(stripe_event_pks[0])
        return
    if not background.request(Job.PROCESS_STRIPE_EVENTS, stripe_event_pks):
        _make_due(stripe_event_pks)


_recorded_events: Batcher[int] = Batcher(
    queue_recorded_events,
    name="stripe-event-publisher",
    linger=settings.STRIPE_EVENT_PUBLISH_LINGER_SECONDS,
)
# A process that exits (gunicorn's graceful restart) first publishes what it recorded.
atexit.register(wait_for_published, 5.0)


def queue_stripe_events(*, stripe_event_ids: list[int]) -> int:
    """Queue one processing task per row: the worker's half of a batch published as one message.

    Returns how many were queued; the others were made due for the beat's re-enqueue.
    """
    return sum(enqueue_stripe_event(pk) for pk in stripe_event_ids)


def enqueue_stripe_event(stripe_event_pk: int) -> bool:
    """Queue the processing of one inbox row; if the broker refuses, make it due for the beat."""
    if background.request(Job.PROCESS_STRIPE_EVENT, stripe_event_pk):
        return True
    _make_due([stripe_event_pk])
    return False


def _make_due(stripe_event_pks: list[int]) -> None:
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
            exc_info=not transient and not isinstance(error, ValueError | stripe.StripeError),
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
            .filter(selection)
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
