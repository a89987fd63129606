"""Issue 6, case 6: bad input, generated, at the webhook endpoint and in the event handlers.

Every generated input belongs to one *class* with one expected answer (status code and message,
or the handler's ``EventRejected`` / ``IGNORED``); the README's reliability table lists them.
For each input: never a 5xx (never an unexpected exception in a handler), and nothing that is
refused changes the database: the inbox, the POs (every column) and the ledger are compared
before and after. Accepted inputs are the controls that show the checks can see a change.

- The view: Django's test client against the real view, generated bodies, headers, signatures,
  timestamps, sizes and encodings; and a few requests over real HTTP to gunicorn (the Procfile's
  ``web``) with broken chunked encodings, which only a real server's reader can produce.
- The handlers: ``handle_invoice_event`` and ``process_stripe_event`` with invoice snapshots bent
  out of shape (missing fields, wrong types, negative or huge amounts, unknown or other currency,
  ``amount_paid`` over ``amount_due``, another conference's invoice) on a PO whose invoice is real
  (created and partly paid at the emulator). The legitimate shapes a stricter check could wrongly
  refuse (stale snapshots, paid after uncollectible, void with a partial payment, paid out of
  band, a re-issued invoice, out-of-order deliveries) are tested explicitly.
"""

from __future__ import annotations

import copy
import io
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import Model
from django.test import Client
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.errors import EventRejected
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeEvent
from invoicing.services import stripe_events, webhook_intake
from invoicing.services.invoice_sync import EventOutcome, handle_invoice_event
from invoicing.services.stripe_invoicing import (
    create_stripe_invoice,
    handle_invoice_paid_webhook,
    sync_stripe_invoice_status,
)
from tests.core.conftest import (  # the core's factories, shared with this directory
    MakeConference,
    MakePurchaseOrder,
    make_conference,
    make_purchase_order,
    stripe_conference,
)
from tests.pipeline.conftest import service_processes, wait_for_http
from tests.reliability.conftest import RecordFigures, size
from tests.stripe_emulator.handle import EmulatorHandle
from tests.stripe_emulator.webhooks import signature_header
from tests.support.redis_server import free_port

__all__ = ["make_conference", "make_purchase_order", "service_processes", "stripe_conference"]

SECRET = "whsec_reliability_bad_input_0123456789abcdef"
OTHER_SECRET = "whsec_reliability_other_conference_9876543210"
TOLERANCE = 300
SMALL_LIMIT = 8 * 1024  # the body limit while sizes are generated (the real 1 MiB is tested once)


def examples(count: int) -> hypothesis_settings:
    """Hypothesis settings for ``count`` examples: no deadline (real database), no example store."""
    return hypothesis_settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


# --- State snapshots --------------------------------------------------------------------------


def database_state(
    models: tuple[type[Model], ...] = (
        StripeEvent,
        PurchaseOrder,
        PurchaseOrderPayment,
        Conference,
    ),
) -> tuple[tuple[int, str], ...]:
    """Everything a refused input must leave as it was: inbox, POs (every column), ledger.

    Each table as (row count, md5 of all its rows as text, in primary key order), computed by
    PostgreSQL: exact, and cheap however many events the accepted examples added.
    """
    digests = []
    with connection.cursor() as cursor:
        for model in models:
            table = connection.ops.quote_name(model._meta.db_table)
            # Table names come from our models, not from input.
            digest = "coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '')"
            query = f"SELECT count(*), {digest} FROM {table} t"  # noqa: S608
            cursor.execute(query)
            row = cursor.fetchone()
            assert row is not None
            digests.append((int(row[0]), str(row[1])))
    return tuple(digests)


# --- The view: classes of requests and their answers ------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The answer a class of requests gets: status, and a fragment of the ``error`` message."""

    status: int
    message: str = ""


OK = Answer(200)
BAD_SIGNATURE = Answer(400, "Signature check failed")
NOT_UTF8 = Answer(400, "The body is not UTF-8.")
NOT_JSON = Answer(400, "The body is not valid JSON")
TOO_DEEP = Answer(400, "nested more than")
NOT_OBJECT = Answer(400, "The body is not a JSON object.")
NOT_EVENT = Answer(400, "The ")  # one of the shape messages, each names the field
STALE = Answer(400, "Timestamp outside the tolerance zone")
FUTURE = Answer(400, "in the future")
WRONG_LIVEMODE = Answer(400, "livemode")
TOO_LARGE = Answer(413, "larger than")
BAD_LENGTH = Answer(400, "Invalid Content-Length.")
UNKNOWN_CONFERENCE = Answer(404, "No active conference here.")
NOT_POST = Answer(405)


def base_event(event_id: str, event_type: str = "customer.created") -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "data": {"object": {"id": "cus_bad_input", "object": "customer", "name": "Acme"}},
    }


event_ids = st.builds(lambda: f"evt_{uuid.uuid4().hex}")  # unique: duplicates are not under test
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def put_in_object(event: dict[str, Any], key: str, raw: str) -> bytes:
    """The event's JSON with ``"<key>": <raw JSON text>`` added to ``data.object``."""
    text = json.dumps(event)
    marker = '"name": "Acme"'
    assert marker in text
    return text.replace(marker, f"{marker}, {json.dumps(key)}: {raw}").encode()


@st.composite
def signed_bodies(draw: st.DrawFn) -> tuple[str, bytes, Answer]:
    """A body signed with the conference's secret: (class, body, expected answer)."""
    event = base_event(draw(event_ids))
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "not utf-8",
                "non-finite number",
                "deep nesting",
                "moderate nesting",
                "lone surrogate",
                "garbage text",
                "not an object",
                "not an event",
                "wrong livemode",
                "any event type",
                "huge integer",
                "byte order mark",
            ]
        )
    )
    if kind == "valid":
        return kind, dumps(event), OK
    if kind == "not utf-8":
        bad = draw(
            st.sampled_from(
                [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"]
            )
        )
        body = dumps(event).replace(b"Acme", b"Ac" + bad + b"me")
        return kind, body, NOT_UTF8
    if kind == "non-finite number":
        raw = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "[NaN]"]))
        return kind, put_in_object(event, draw(st.text(max_size=5)), raw), NOT_JSON
    if kind == "deep nesting":
        depth = draw(st.integers(min_value=65, max_value=150_000))  # under 1 MiB
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        raw = opener * depth + "1" + closer * depth
        return kind, put_in_object(event, "deep", raw), TOO_DEEP
    if kind == "moderate nesting":
        depth = draw(st.integers(min_value=1, max_value=50))
        return kind, put_in_object(event, "nested", "[" * depth + "1" + "]" * depth), OK
    if kind == "lone surrogate":
        escape = "\\u" + format(draw(st.integers(0xD800, 0xDFFF)), "x")
        where = draw(st.sampled_from(["value", "key", "type"]))
        if where == "type":
            event["type"] = "customer.updated"
            return kind, dumps(event).replace(b"customer.updated", escape.encode()), OK
        if where == "key":
            return kind, put_in_object(event, "k", "1").replace(b'"k"', f'"{escape}"'.encode()), OK
        return kind, put_in_object(event, "v", f'"x{escape}y"'), OK
    if kind == "garbage text":
        text = draw(st.text(max_size=200))
        try:
            json.loads(text)
        except ValueError:
            return kind, text.encode(), NOT_JSON
        assume(False)
    if kind == "not an object":
        value = draw(json_values.filter(lambda value: not isinstance(value, dict)))
        return kind, dumps(value), NOT_OBJECT
    if kind == "not an event":
        field = draw(
            st.sampled_from(["object", "id", "type", "livemode", "data", "data.object", "api"])
        )
        if field == "data.object":
            event["data"]["object"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        elif field == "api":
            event["api_version"] = draw(
                st.one_of(st.text(min_size=65, max_size=80), json_values.filter(is_not_str))
            )
        elif draw(st.booleans()):
            del event[field]
        else:
            event[field] = draw(json_values.filter(lambda v: not is_valid_field(field, v)))
        return kind, dumps(event), NOT_EVENT
    if kind == "wrong livemode":
        event["livemode"] = True
        return kind, dumps(event), WRONG_LIVEMODE
    if kind == "any event type":
        event["type"] = draw(st.text(min_size=1, max_size=255))
        return kind, dumps(event), OK
    if kind == "huge integer":
        digits = draw(st.integers(min_value=20, max_value=6000))
        body = put_in_object(event, "big", "9" * digits)
        return kind, body, OK if digits <= 4300 else NOT_JSON
    assert kind == "byte order mark"
    return kind, "\ufeff".encode() + dumps(event), NOT_JSON


def is_not_str(value: Any) -> bool:
    return not isinstance(value, str) and value is not None


def is_valid_field(field: str, value: Any) -> bool:
    if field == "object":
        return bool(value == "event")
    if field == "id":
        return isinstance(value, str) and value.startswith("evt_") and len(value) <= 255
    if field == "type":
        return isinstance(value, str) and 0 < len(value) <= 255
    if field == "livemode":
        return isinstance(value, bool)
    assert field == "data"
    return isinstance(value, dict) and isinstance(value.get("object"), dict)


@st.composite
def signature_headers(draw: st.DrawFn, body: bytes) -> tuple[str, str | None, Answer]:
    """A ``Stripe-Signature`` header for ``body``: (class, header or None, expected answer)."""
    now = int(time.time())
    # Half the examples carry a good signature, so that the body classes are reached often.
    kind = (
        "fresh"
        if draw(st.booleans())
        else draw(
            st.sampled_from(
                [
                    "missing",
                    "random text",
                    "random signature",
                    "other secret",
                    "stale",
                    "future",
                    "fresh",
                    "rotated secrets",
                    "other scheme",
                    "not ascii",
                ]
            )
        )
    )
    if kind == "missing":
        return kind, None, BAD_SIGNATURE
    if kind == "random text":
        return kind, draw(st.text(min_size=1, max_size=300)), BAD_SIGNATURE
    if kind == "random signature":
        sig = draw(st.text(alphabet="0123456789abcdef", min_size=0, max_size=64))
        return kind, f"t={now},v1={sig}", BAD_SIGNATURE
    if kind == "other secret":
        return kind, signature_header(body, OTHER_SECRET, now), BAD_SIGNATURE
    if kind == "stale":
        age = draw(st.integers(min_value=TOLERANCE + 2, max_value=10**12))
        return kind, signature_header(body, SECRET, now - age), STALE
    if kind == "future":
        ahead = draw(st.integers(min_value=TOLERANCE + 2, max_value=10**12))
        return kind, signature_header(body, SECRET, now + ahead), FUTURE
    if kind == "fresh":
        skew = draw(st.integers(min_value=-(TOLERANCE - 5), max_value=TOLERANCE - 5))
        return kind, signature_header(body, SECRET, now + skew), OK
    if kind == "rotated secrets":
        good = signature_header(body, SECRET, now).split(",")[1]
        bad = signature_header(body, OTHER_SECRET, now).split(",")[1]
        return kind, f"t={now},{bad},{good}", OK
    if kind == "not ascii":
        good = signature_header(body, SECRET, now)
        junk = draw(st.text(min_size=1, max_size=10).filter(lambda text: not text.isascii()))
        return kind, f"{good},v1={junk}", BAD_SIGNATURE
    assert kind == "other scheme"
    return kind, signature_header(body, SECRET, now).replace("v1=", "v0="), BAD_SIGNATURE


def webhook_url(slug: str) -> str:
    return f"/stripe/webhooks/{slug}/"


def check_answer(response: Any, expected: Answer, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.content!r}"
    got = f"{response.status_code} {response.content[:300]!r}"
    assert response.status_code == expected.status, f"{label}: expected {expected.status}, {got}"
    if expected.message:
        error = response.json()["error"]
        assert expected.message in error, f"{label}: {error!r}"


@pytest.fixture
def webhook_conference(make_conference: MakeConference) -> Conference:
    return make_conference(stripe_webhook_secret=SECRET)


@pytest.mark.django_db
@pytest.mark.timeout(1800)  # the full size, on a loaded machine
class TestWebhookView:
    def test_generated_bodies_and_signatures(
        self, client: Client, webhook_conference: Conference, record_figures: RecordFigures
    ) -> None:
        seen: Counter[str] = Counter()

        @examples(size(ci=400, full=6000))
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            body_class, body, body_answer = data.draw(signed_bodies(), label="body")
            header_class, header, header_answer = data.draw(
                signature_headers(body), label="signature"
            )
            # A body that is not UTF-8 cannot be checked at all; then the signature answers first.
            if body_answer == NOT_UTF8 or header_answer == OK:
                expected = body_answer
            else:
                expected = header_answer
            label = f"{header_class} / {body_class}"
            before = database_state()
            extra: dict[str, Any] = {"HTTP_STRIPE_SIGNATURE": header} if header else {}
            response = client.post(
                webhook_url(webhook_conference.slug),
                data=body,
                content_type="application/json",
                **extra,
            )
            check_answer(response, expected, label)
            after = database_state()
            if expected.status == 200:
                assert after[0][0] == before[0][0] + 1, label
                stored = StripeEvent.objects.order_by("-pk").first()
                assert stored is not None
                assert_storable(stored.payload)
            else:
                assert after == before, f"{label}: a refused request changed the database"
            if header_answer == OK or body_answer == NOT_UTF8:
                seen[f"{expected.status} body: {body_class}"] += 1
            else:
                seen[f"{expected.status} signature: {header_class}"] += 1

        check()
        record_figures(
            view_examples=sum(seen.values()),
            view_classes=dict(sorted(seen.items())),
        )

    def test_sizes_methods_lengths_and_slugs(
        self,
        client: Client,
        webhook_conference: Conference,
        settings: SettingsWrapper,
        record_figures: RecordFigures,
    ) -> None:
        settings.STRIPE_WEBHOOK_MAX_BODY_BYTES = SMALL_LIMIT
        seen: Counter[str] = Counter()

        @examples(size(ci=200, full=3000))
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            kind = data.draw(
                st.sampled_from(
                    ["size", "chunked size", "method", "content-length", "slug", "inactive"]
                )
            )
            event = base_event(data.draw(event_ids))
            body = dumps(event)
            slug = webhook_conference.slug
            before = database_state()
            if kind in {"size", "chunked size"}:
                length = data.draw(st.integers(min_value=len(body), max_value=3 * SMALL_LIMIT))
                body = body + b" " * (length - len(body))  # still the same JSON event
                header = signature_header(body, SECRET, int(time.time()))
                expected = OK if length <= SMALL_LIMIT else TOO_LARGE
                if kind == "size":
                    response = client.post(
                        webhook_url(slug),
                        data=body,
                        content_type="application/json",
                        HTTP_STRIPE_SIGNATURE=header,
                    )
                else:
                    chunked: dict[str, Any] = {
                        "HTTP_STRIPE_SIGNATURE": header,
                        "HTTP_TRANSFER_ENCODING": "chunked",
                        "wsgi.input": io.BytesIO(body),
                        "wsgi.input_terminated": True,
                    }
                    response = client.generic(
                        "POST", webhook_url(slug), b"", "application/json", **chunked
                    )
            elif kind == "method":
                method = data.draw(st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]))
                header = signature_header(body, SECRET, int(time.time()))
                response = client.generic(
                    method, webhook_url(slug), body, "application/json",
                    HTTP_STRIPE_SIGNATURE=header,
                )  # fmt: skip
                expected = NOT_POST
            elif kind == "content-length":
                value = data.draw(
                    st.one_of(
                        st.integers(max_value=-1).map(str),
                        st.text(min_size=1, max_size=12).filter(not_an_int),
                    )
                )
                environ: dict[str, Any] = {
                    "CONTENT_LENGTH": value,
                    "HTTP_STRIPE_SIGNATURE": signature_header(body, SECRET, int(time.time())),
                    "wsgi.input": io.BytesIO(body),
                }
                response = client.generic(
                    "POST", webhook_url(slug), b"", "application/json", **environ
                )
                expected = BAD_LENGTH
            elif kind == "slug":
                other = data.draw(st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s))
                assume(other != slug)
                header = signature_header(body, SECRET, int(time.time()))
                response = client.post(
                    f"/stripe/webhooks/{quote(other, safe='')}/",  # '#', '?' are in the path too
                    data=body,
                    content_type="application/json",
                    HTTP_STRIPE_SIGNATURE=header,
                )
                expected = (
                    UNKNOWN_CONFERENCE
                    if response.get("Content-Type", "").startswith("application/json")
                    else Answer(404)
                )
            else:
                # Saved here, so this process's webhook view forgets its kept copy at once
                # (STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS bounds what other processes keep).
                webhook_conference.is_active = False
                webhook_conference.save(update_fields=["is_active"])
                try:
                    response = client.post(
                        webhook_url(slug),
                        data=body,
                        content_type="application/json",
                        HTTP_STRIPE_SIGNATURE=signature_header(body, SECRET, int(time.time())),
                    )
                finally:
                    webhook_conference.is_active = True
                    webhook_conference.save(update_fields=["is_active"])
                expected = UNKNOWN_CONFERENCE
            check_answer(response, expected, kind)
            after = database_state()
            if expected.status == 200:
                assert after[0][0] == before[0][0] + 1, kind
            else:
                assert after == before, f"{kind}: a refused request changed the database"
            seen[f"{response.status_code} {kind}"] += 1

        check()
        record_figures(request_examples=sum(seen.values()), request_classes=dict(seen))

    def test_the_real_limit_is_one_mebibyte(
        self, client: Client, webhook_conference: Conference
    ) -> None:
        body = dumps(base_event(f"evt_{uuid.uuid4().hex}"))
        for length, expected in ((1024 * 1024, OK), (1024 * 1024 + 1, TOO_LARGE)):
            padded = body + b" " * (length - len(body))
            response = client.post(
                webhook_url(webhook_conference.slug),
                data=padded,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=signature_header(padded, SECRET, int(time.time())),
            )
            check_answer(response, expected, f"{length} bytes")


def not_an_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return bool(text.strip())
    return False


def assert_storable(value: Any) -> None:
    """What the inbox stores has no U+0000 and no lone surrogate (jsonb refuses both)."""
    if isinstance(value, str):
        assert "\x00" not in value
        assert not any(0xD800 <= ord(char) <= 0xDFFF for char in value), repr(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_storable(key)
            assert_storable(item)
    elif isinstance(value, list):
        for item in value:
            assert_storable(item)


# --- Over real HTTP: gunicorn, as the Procfile runs it, and broken chunked encodings -----------


def raw_request(port: int, head: bytes, body: bytes, *, close_after: bool = True) -> int:
    """Send ``head`` + ``body`` as they are over a socket; return the status code answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head + body)
        if close_after:
            sock.shutdown(socket.SHUT_WR)  # the client is done: whatever is missing never comes
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1."), f"no HTTP answer: {answer[:200]!r}"
    return int(answer.split(b" ", 2)[1])


def chunked_head(slug: str, signature: str) -> bytes:
    return (
        f"POST /stripe/webhooks/{slug}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nStripe-Signature: {signature}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()


def chunks(body: bytes, size: int = 100) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


BROKEN_CHUNKED: dict[str, Callable[[bytes], bytes]] = {
    "chunk size not hex": lambda body: b"zz\r\n" + body + b"\r\n0\r\n\r\n",
    "chunk without its CRLF": lambda body: b"%x\r\n%sXX0\r\n\r\n" % (len(body), body),
    "chunk longer than the data, then closed": lambda body: b"%x\r\n%s" % (len(body) + 50, body),
    "no last chunk, then closed": lambda body: chunks(body)[: -len(b"0\r\n\r\n")],
    "negative chunk size": lambda body: b"-5\r\n" + body + b"\r\n0\r\n\r\n",
    "garbage chunk extension": lambda body: b"%x;\x00\x01\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    "huge chunk size": lambda body: b"f" * 40 + b"\r\n" + body + b"\r\n0\r\n\r\n",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("embedded_worker_paused")
def test_broken_chunked_bodies_over_real_http_get_a_4xx(
    make_conference: MakeConference, service_processes: Any, record_figures: RecordFigures
) -> None:
    conference = make_conference(stripe_webhook_secret=SECRET)
    port = free_port()
    web = service_processes(
        "web", env={"PORT": str(port), "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"}
    )
    wait_for_http(f"http://127.0.0.1:{port}/health/", service=web)

    answers: dict[str, int] = {}
    for name, encode in BROKEN_CHUNKED.items():
        body = dumps(base_event(f"evt_{uuid.uuid4().hex}"))
        before = database_state()
        status = raw_request(port, chunked_head(conference.slug, sign(body)), encode(body))
        answers[name] = status
        assert 400 <= status < 500, f"{name}: {status}\n{web.log_text()[-3000:]}"
        assert database_state() == before, f"{name}: a refused request changed the database"

    # Cut short with a Content-Length: the body never comes whole.
    body = dumps(base_event(f"evt_{uuid.uuid4().hex}"))
    head = (
        f"POST {webhook_url(conference.slug)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Stripe-Signature: {sign(body)}\r\nContent-Length: {len(body) + 100}\r\n\r\n"
    ).encode()
    before = database_state()
    answers["content-length longer than the body, then closed"] = status = raw_request(
        port, head, body
    )
    assert 400 <= status < 500, status
    assert database_state() == before

    # Over the limit while chunked, and the controls: the same bodies, well chunked, are recorded.
    big = dumps(base_event(f"evt_{uuid.uuid4().hex}"))
    big += b" " * (1024 * 1024 + 1 - len(big))
    answers["chunked, over 1 MiB"] = status = raw_request(
        port, chunked_head(conference.slug, sign(big)), chunks(big, 64 * 1024)
    )
    assert status == 413
    good = dumps(base_event(f"evt_{uuid.uuid4().hex}"))
    answers["well chunked (control)"] = status = raw_request(
        port, chunked_head(conference.slug, sign(good)), chunks(good)
    )
    assert status == 200
    assert StripeEvent.objects.filter(conference=conference).count() == 1
    assert " 500 " not in web.log_text()
    record_figures(http_answers=answers)


def sign(body: bytes, secret: str = SECRET) -> str:
    return signature_header(body, secret, int(time.time()))


# --- The handlers: impossible invoice shapes on a real invoice ---------------------------------

REQUIRED_INVOICE_FIELDS = (
    "id",
    "status",
    "currency",
    "livemode",
    "amount_due",
    "amount_paid",
    "amount_remaining",
)
INT_FIELDS = ("amount_due", "amount_paid", "amount_remaining")
SNAPSHOT_TYPES = (
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.updated",
    "invoice.finalized",
    "invoice.sent",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
wrong_for_int = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
)
wrong_for_str = st.one_of(
    st.none(), st.just(""), st.integers(), st.booleans(), st.lists(st.text(), max_size=2)
)


@dataclass
class InvoicedWorld:
    """Conference A with a PO whose real invoice is part paid (ledger has a row); B likewise."""

    conference: Conference
    other: Conference
    purchase_order: PurchaseOrder
    other_purchase_order: PurchaseOrder
    invoice: dict[str, Any]  # A's invoice as Stripe serializes it (the base of every shape)


@pytest.fixture
def invoiced_world(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
) -> InvoicedWorld:
    other = make_conference(secret_key=stripe_emulator.new_secret_key())
    po = make_purchase_order(conference=stripe_conference)
    other_po = make_purchase_order(conference=other)
    for each in (po, other_po):
        create_stripe_invoice(each)
        stripe_emulator.pay_invoice(each.stripe_invoice_id, amount=100_00)
        sync_stripe_invoice_status(each)
    assert PurchaseOrderPayment.objects.filter(purchase_order=po).count() == 1
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id).to_dict()
    return InvoicedWorld(
        stripe_conference, other, po, other_po, json.loads(json.dumps(invoice, default=str))
    )


@st.composite
def bad_invoice_events(draw: st.DrawFn, world: InvoicedWorld) -> tuple[str, dict[str, Any], str]:
    """(class, event, expected outcome: ``rejected`` or ``ignored``) for conference A."""
    obj = copy.deepcopy(world.invoice)
    event_type = draw(st.sampled_from(SNAPSHOT_TYPES))
    event: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    kind = draw(
        st.sampled_from(
            [
                "missing field",
                "wrong type",
                "negative amount",
                "huge amount",
                "other currency",
                "amount_paid over amount_due",
                "amount_remaining over amount_due",
                "another conference's invoice",
                "not an invoice status",
                "livemode flipped",
                "issued for another conference",
                "not an invoice",
                "data.object not an object",
                "created is no date",
                "unknown invoice",
                "unknown event type",
                "invoice payment without invoice",
                "invoice payment for another conference",
                "invoice payment in another currency",
            ]
        )
    )
    due = obj["amount_due"]
    if kind == "missing field":
        del obj[draw(st.sampled_from(REQUIRED_INVOICE_FIELDS))]
    elif kind == "wrong type":
        field = draw(st.sampled_from(REQUIRED_INVOICE_FIELDS))
        if field in INT_FIELDS:
            obj[field] = draw(wrong_for_int)
        elif field == "livemode":
            obj[field] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5)))
        else:
            obj[field] = draw(wrong_for_str)
    elif kind == "negative amount":
        obj[draw(st.sampled_from(INT_FIELDS))] = draw(st.integers(max_value=-1))
    elif kind == "huge amount":
        huge = draw(st.integers(min_value=10**13, max_value=10**40))
        obj["amount_due"] = obj["amount_paid"] = huge
        obj["amount_remaining"] = 0
    elif kind == "other currency":
        obj["currency"] = draw(
            st.one_of(
                st.text(max_size=6), st.sampled_from(["eur", "jpy", "kwd", "xyz", "US"])
            ).filter(lambda code: bool(code) and code.lower() != "usd")
        )
    elif kind == "amount_paid over amount_due":
        obj["amount_paid"] = due + draw(st.integers(min_value=1, max_value=10**9))
        obj["amount_remaining"] = 0
    elif kind == "amount_remaining over amount_due":
        obj["amount_remaining"] = due + draw(st.integers(min_value=1, max_value=10**9))
    elif kind == "another conference's invoice":
        obj["id"] = world.other_purchase_order.stripe_invoice_id
        obj["metadata"] = {}
    elif kind == "not an invoice status":
        obj["status"] = draw(
            st.text(min_size=1, max_size=12).filter(
                lambda text: text not in {"draft", "open", "paid", "uncollectible", "void"}
            )
        )
    elif kind == "livemode flipped":
        obj["livemode"] = True
        event["livemode"] = draw(st.sampled_from([True, None, "false", 0]))
    elif kind == "issued for another conference":
        obj["metadata"]["conference"] = world.other.slug
    elif kind == "not an invoice":
        obj["object"] = draw(st.sampled_from(["customer", "invoiceitem", "charge", 7]))
    elif kind == "data.object not an object":
        event["data"] = draw(
            st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.just({"object": "x"}))
        )
    elif kind == "created is no date":
        event["created"] = draw(
            st.one_of(st.integers(min_value=10**12), st.integers(max_value=-(10**12)))
        )
    elif kind == "unknown invoice":
        obj["id"] = f"in_{uuid.uuid4().hex}"
        obj["metadata"] = {}
        return kind, event, "ignored"
    elif kind == "unknown event type":
        event["type"] = draw(
            st.text(min_size=1, max_size=40).filter(
                lambda text: text not in SNAPSHOT_TYPES and text != "invoice_payment.paid"
            )
        )
        obj["amount_paid"] = due  # would be a payment, if the type were handled
        return kind, event, "ignored"
    else:
        event["type"] = "invoice_payment.paid"
        payment: dict[str, Any] = {
            "id": f"inpay_{uuid.uuid4().hex[:14]}",
            "object": "invoice_payment",
            "amount_paid": 500,
            "currency": "usd",
            "invoice": world.purchase_order.stripe_invoice_id,
            "livemode": False,
        }
        if kind == "invoice payment without invoice":
            payment["invoice"] = draw(st.one_of(st.none(), st.just(""), st.integers()))
        elif kind == "invoice payment for another conference":
            payment["invoice"] = world.other_purchase_order.stripe_invoice_id
        else:
            payment["currency"] = "eur"
        event["data"] = {"object": payment}
    return kind, event, "rejected"


def deliver(world: InvoicedWorld, event: dict[str, Any], route: str) -> str:
    """Hand ``event`` to a handler; returns ``rejected``, ``ignored`` or ``handled``."""
    if route == "handle_invoice_event":
        try:
            outcome = handle_invoice_event(conference=world.conference, event=event)
        except EventRejected:
            return "rejected"
        return "ignored" if outcome == EventOutcome.IGNORED else "handled"
    if route == "handle_invoice_paid_webhook":
        before = PurchaseOrderPayment.objects.count()
        try:
            handle_invoice_paid_webhook(event)
        except EventRejected:
            return "rejected"
        except ValueError as error:  # the public function's own refusal: no invoice id
            return "rejected" if "no invoice id" in str(error) else f"raised {error!r}"
        return "handled" if PurchaseOrderPayment.objects.count() > before else "ignored"
    # The inbox, as the view and the worker run it: signed, verified (a 400 there is a refusal
    # too), recorded, processed; an event refused there is parked as failed, with the reason.
    body = json.dumps(event).encode()
    try:
        verified = webhook_intake.verify_webhook(
            conference=world.conference,
            payload=body,
            signature_header=signature_header(
                body, world.conference.stripe_webhook_secret, int(time.time())
            ),
        )
    except webhook_intake.WebhookRejected:
        return "rejected"
    recorded = webhook_intake.record_stripe_event(
        conference=world.conference, event=verified.event, event_json=verified.json_text
    )
    result = stripe_events.process_stripe_event(stripe_event_id=recorded.stripe_event.pk)
    row = StripeEvent.objects.get(pk=recorded.stripe_event.pk)
    if result.status == StripeEvent.Status.FAILED:
        assert row.last_error, "a failed event says why"
        return "rejected"
    return "ignored" if result.status == StripeEvent.Status.IGNORED else "handled"


def business_state() -> tuple[tuple[int, str], ...]:
    """POs (every column), the ledger and conferences: what no refused event may touch."""
    return database_state((PurchaseOrder, PurchaseOrderPayment, Conference))


@pytest.mark.django_db
@pytest.mark.timeout(1800)  # the full size
def test_impossible_invoice_shapes_are_refused_before_any_write(
    invoiced_world: InvoicedWorld, record_figures: RecordFigures
) -> None:
    seen: Counter[str] = Counter()

    @examples(size(ci=250, full=4000))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        kind, event, expected = data.draw(bad_invoice_events(invoiced_world), label="event")
        if kind.startswith("invoice payment") or event["type"] == "invoice_payment.paid":
            routes = ["handle_invoice_event", "inbox"]
        else:
            routes = ["handle_invoice_event", "handle_invoice_paid_webhook", "inbox"]
        route = data.draw(st.sampled_from(routes), label="route")
        if route == "handle_invoice_paid_webhook" and kind in {
            "unknown event type",
            "livemode flipped",
            "another conference's invoice",
        }:
            # That function *is* the invoice.paid handler (it sets the type) and, without an
            # inbox row, takes the conference from the invoice's owner: no "other" conference.
            assume(False)
        before = business_state()
        outcome = deliver(invoiced_world, event, route)
        assert outcome == expected, f"{kind} via {route}: {outcome}, expected {expected}"
        assert business_state() == before, f"{kind} via {route} changed the PO or the ledger"
        seen[f"{outcome}: {kind}"] += 1

    check()
    po = invoiced_world.purchase_order
    po.refresh_from_db()
    assert po.amount_received == Decimal("100.00")
    record_figures(handler_examples=sum(seen.values()), handler_classes=dict(sorted(seen.items())))
