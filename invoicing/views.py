"""``POST /stripe/webhooks/<conference_slug>/``: verify, record, queue. Nothing else.

The view never calls Stripe and never processes an event: it checks the signature with the secret
of the conference in the URL, stores the event in the inbox (one INSERT) and hands it to this
process's publisher thread, which queues it without making the answer wait for the broker.
Answers, as Stripe reads them (it retries anything but 2xx):

- 200: recorded (or a duplicate of a recorded event: nothing added). Also when the broker is down:
  the event is durable, and the beat queues it once the broker is back.
- 400: missing, wrong, stale or future-dated signature; not a JSON Stripe event (including NaN,
  Infinity, numbers beyond a double's range and nesting deeper than 64 levels); livemode not
  matching the conference's key; no signing secret configured for the conference; a body that
  cannot be read (broken chunked encoding, cut short); an invalid ``Content-Length``.
- 404: no active conference with that slug. 405: not a POST. 413: body over
  ``STRIPE_WEBHOOK_MAX_BODY_BYTES``, by its ``Content-Length`` or while reading a chunked body.
- 503: the event could not be stored (database down): Stripe retries later.

No answer stores anything but the 200's, and no log line carries the body or a secret.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from invoicing.services import webhook_intake

logger = logging.getLogger(__name__)

_READ_CHUNK_BYTES = 64 * 1024


class _BodyTooLarge(Exception):
    pass


class _BadLength(Exception):
    pass


class _Unreadable(Exception):
    pass


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """The raw body, refused past ``limit`` bytes without reading (much) more than that.

    With a ``Content-Length`` the size is known before reading. A chunked body has none: Django's
    request stream then reads nothing, so it is read from the server's input (when the server
    says it ends, ``wsgi.input_terminated``, as gunicorn does) chunk by chunk up to the limit.
    """
    raw_length = request.META.get("CONTENT_LENGTH") or ""
    if raw_length.strip():
        try:
            length = int(raw_length)
        except ValueError:
            raise _BadLength from None
        if length < 0:
            raise _BadLength
        if length > limit:
            raise _BodyTooLarge
        try:
            body = request.read(length)
        except Exception:  # the server's reader failed: the client closed early, ...
            raise _Unreadable from None
        if len(body) != length:  # cut short: what was signed is not what was announced
            raise _Unreadable
        return body
    if not request.META.get("wsgi.input_terminated"):
        return b""
    stream = request.META["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = stream.read(min(_READ_CHUNK_BYTES, limit + 1 - size))
        except Exception:  # gunicorn's InvalidChunkSize, ChunkMissingTerminator, NoMoreData...
            raise _Unreadable from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest, conference_slug: str) -> JsonResponse:
    """Receive one Stripe event for one conference (see the module docstring for the answers)."""
    conference = webhook_intake.webhook_conference(slug=conference_slug)
    if conference is None:
        logger.warning("webhook for unknown or inactive conference %r refused", conference_slug)
        return _error(404, "No active conference here.")

    limit: int = settings.STRIPE_WEBHOOK_MAX_BODY_BYTES
    try:
        payload = _read_body(request, limit)
    except _BodyTooLarge:
        logger.warning(
            "webhook for conference %s refused: body over %s bytes", conference.slug, limit
        )
        return _error(413, f"The body is larger than {limit} bytes.")
    except _BadLength:
        return _error(400, "Invalid Content-Length.")
    except _Unreadable:
        logger.warning("webhook for conference %s refused: unreadable body", conference.slug)
        return _error(400, "The body could not be read (broken chunked encoding or cut short).")

    try:
        verified = webhook_intake.verify_webhook(
            conference=conference,
            payload=payload,
            signature_header=request.headers.get("Stripe-Signature"),
        )
    except webhook_intake.WebhookRejected as rejection:
        logger.warning("webhook for conference %s refused: %s", conference.slug, rejection)
        return _error(400, str(rejection))

    try:
        recorded = webhook_intake.record_stripe_event(
            conference=conference, event=verified.event, event_json=verified.json_text
        )
    except DatabaseError as error:
        # The class and SQLSTATE only: the driver's message can quote the row, i.e. the body.
        logger.error(
            "webhook for conference %s: event %s could not be recorded (%s %s); Stripe retries",
            conference.slug,
            verified.event["id"],
            type(error).__name__,
            getattr(error.__cause__, "sqlstate", None) or "",
        )
        return _error(503, "The event could not be recorded; retry later.")
    return JsonResponse({"received": True, "duplicate": not recorded.created})
