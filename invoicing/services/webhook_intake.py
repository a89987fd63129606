"""The webhook's fast path: verify a delivery, record it in the inbox, ask for its processing.

A delivery costs one database round trip and never waits for the broker: the conference is kept
per process, the row goes in with one hand-written ``INSERT ... ON CONFLICT DO NOTHING`` (the
ORM's query building cost the view more CPU than the query itself), and it is published after the
answer (``Job.PUBLISH_RECORDED_EVENT``). A :class:`WebhookRejected` stores nothing. What happens
to a recorded row next is the inbox's: :mod:`invoicing.services.stripe_events`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import stripe
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from invoicing import background
from invoicing.background import Job
from invoicing.errors import InvoicingError
from invoicing.models import Conference, StripeEvent

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# The longest values the inbox columns hold.
_MAX_ID_LENGTH = 255
# Stripe's events nest a dozen levels at most; deeper bodies are refused before they are walked
# (Python's JSON parser and encoder recurse, and would fail at about a thousand).
MAX_JSON_DEPTH = 64
# Escapes of what jsonb cannot store: U+0000 and lone UTF-16 surrogates (U+D800..U+DFFF).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE_CHARS = re.compile("[\\x00\\ud800-\\udfff]")


class WebhookRejected(InvoicingError):
    """The request is not a genuine, well-formed event for this conference; nothing was stored."""


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
    secrets decrypted by their field). Unknown and inactive slugs are not kept.
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
        isinstance(event_id, str)
        and event_id.startswith("evt_")
        and len(event_id) <= _MAX_ID_LENGTH,
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
    """Whether no container in ``value`` is nested deeper than ``limit``, level by level, without
    recursion. Its containers are as ``json.loads`` builds them (plain dicts and lists), so exact
    type checks do: cheaper than ``isinstance``, and this runs on every webhook."""
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
    message was lost, the beat re-enqueues it. ``event_json`` is ``event`` as JSON text when the
    caller has it (the webhook's :attr:`VerifiedEvent.json_text`): stored as it is, not encoded
    again.

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
    transaction.on_commit(partial(background.request, Job.PUBLISH_RECORDED_EVENT, pk), robust=True)
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
    view; each value still goes through its field's ``pre_save`` and ``get_db_prep_save``, as
    ``Model.save()`` does, except the payload when its JSON text is given: a JSON column takes the
    text as it is (jsonb parses it on PostgreSQL). The columns are the model's own, so the ORM and
    this statement store the same row (tests/pipeline/test_webhook_intake.py checks it).
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
