"""Regressions found by the generated bad-input tests (tests/reliability/test_bad_input.py).

Each of these answered 5xx (or accepted what it should refuse) before: NaN/Infinity (jsonb refused
the INSERT: 503 forever, Stripe retrying for days), deep nesting (RecursionError: 500), a lone
surrogate escape (psycopg could not encode it), a non-ASCII signature header (TypeError in
``hmac.compare_digest``: 500), a body the server could not read (gunicorn's chunked-encoding
errors: 500) or shorter than its Content-Length, and a signature dated in the future (accepted).
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.test import Client

from invoicing.models import Conference, StripeEvent
from invoicing.services.webhook_intake import MAX_JSON_DEPTH, _depth_within
from tests.core.conftest import MakeConference
from tests.pipeline.conftest import post_webhook as post
from tests.pipeline.conftest import signed_event
from tests.pipeline.conftest import webhook_path as url

pytestmark = pytest.mark.django_db

SECRET = "whsec_hostile_input_regressions_0123456789"


@pytest.fixture
def conference(make_conference: MakeConference) -> Conference:
    return make_conference(stripe_webhook_secret=SECRET)


def event_with(raw_value: str) -> bytes:
    """A customer event whose ``data.object.extra`` is ``raw_value`` (JSON text, as sent)."""
    body, _ = signed_event(SECRET, obj={"id": "cus_1", "object": "customer", "extra": "@"})
    return body.replace(b'"@"', raw_value.encode())


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400", "[1, -1e999]"])
def test_non_finite_numbers_are_refused_as_not_json(
    client: Client, conference: Conference, raw: str
) -> None:
    body = event_with(raw)
    response = post(client, conference, body, signed_event(SECRET, body=body)[1])
    assert response.status_code == 400
    assert response.json() == {"error": "The body is not valid JSON."}
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize("raw", ["1e-400", "-2.5E-99999", "[0.5, 0.00001e-330]"])
def test_numbers_too_small_for_a_double_are_refused_as_not_json(
    client: Client, conference: Conference, raw: str
) -> None:
    """They would become 0.0 in Python but are stored as sent, and jsonb's numeric refuses the
    smallest of them: the INSERT would fail (503) for every one of Stripe's retries."""
    body = event_with(raw)
    response = post(client, conference, body, signed_event(SECRET, body=body)[1])
    assert response.status_code == 400
    assert response.json() == {"error": "The body is not valid JSON."}
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize("raw", ["0.0", "-0e-400", "0.000E+5", "5e-324"])
def test_zero_and_the_smallest_double_are_recorded(
    client: Client, conference: Conference, raw: str
) -> None:
    body = event_with(raw)
    assert post(client, conference, body, signed_event(SECRET, body=body)[1]).status_code == 200
    assert StripeEvent.objects.get().payload["data"]["object"]["extra"] == float(raw)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 2_000, 100_000])
def test_deep_nesting_is_refused(client: Client, conference: Conference, depth: int) -> None:
    body = event_with("[" * depth + "]" * depth)
    response = post(client, conference, body, signed_event(SECRET, body=body)[1])
    assert response.status_code == 400
    assert f"nested more than {MAX_JSON_DEPTH} levels" in response.json()["error"]
    assert not StripeEvent.objects.exists()


def nested(depth: int, shape: str) -> Any:
    """A value ``depth`` containers deep: lists, dicts, or both in turn, with scalars beside."""
    value: Any = 1
    for level in range(depth):
        as_list = shape == "list" or (shape == "mixed" and level % 2 == 0)
        value = ["x", value, 2.5] if as_list else {"a": None, "b": value, "c": "y"}
    return value


@pytest.mark.parametrize("shape", ["list", "dict", "mixed"])
def test_the_depth_check_counts_containers_exactly(shape: str) -> None:
    assert _depth_within(nested(MAX_JSON_DEPTH, shape), MAX_JSON_DEPTH)
    assert not _depth_within(nested(MAX_JSON_DEPTH + 1, shape), MAX_JSON_DEPTH)
    wide = {"k": [nested(3, shape)] * 50, "deep": nested(MAX_JSON_DEPTH - 1, shape)}
    assert _depth_within(wide, MAX_JSON_DEPTH)
    assert not _depth_within({"k": [1], "deep": [nested(MAX_JSON_DEPTH, shape)]}, MAX_JSON_DEPTH)


def test_nesting_as_deep_as_stripe_goes_is_recorded(client: Client, conference: Conference) -> None:
    body = event_with("[" * 30 + "]" * 30)  # data.object.extra sits at level 4
    assert post(client, conference, body, signed_event(SECRET, body=body)[1]).status_code == 200
    assert StripeEvent.objects.count() == 1


def test_a_lone_surrogate_is_recorded_as_a_replacement_character(
    client: Client, conference: Conference
) -> None:
    body = event_with('"Acme \\ud83d Corp \\udc00"')
    response = post(client, conference, body, signed_event(SECRET, body=body)[1])
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert row.payload["data"]["object"]["extra"] == "Acme \ufffd Corp \ufffd"


def test_a_surrogate_pair_is_kept(client: Client, conference: Conference) -> None:
    body = event_with('"\\ud83d\\ude00"')
    assert post(client, conference, body, signed_event(SECRET, body=body)[1]).status_code == 200
    assert StripeEvent.objects.get().payload["data"]["object"]["extra"] == "\U0001f600"


def test_a_non_ascii_signature_header_is_refused(client: Client, conference: Conference) -> None:
    body, signature = signed_event(SECRET)
    response = post(client, conference, body, "t=1,v1=\u00e9\u00e9")
    assert response.status_code == 400
    assert "not ASCII" in response.json()["error"]
    assert post(client, conference, body, signature + ",v1=\u00e9").status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_signature_from_the_future_is_refused_beyond_the_tolerance(
    client: Client, conference: Conference
) -> None:
    body, far = signed_event(SECRET, timestamp=int(time.time()) + 400)
    response = post(client, conference, body, far)
    assert response.status_code == 400
    assert "in the future" in response.json()["error"]
    assert not StripeEvent.objects.exists()
    # Clock skew within the tolerance is still accepted.
    _, near = signed_event(SECRET, body=body, timestamp=int(time.time()) + 200)
    assert post(client, conference, body, near).status_code == 200


class _BrokenChunks(io.RawIOBase):
    """The server's input stream failing mid-body, as gunicorn's chunked reader does."""

    def read(self, size: int = -1) -> bytes:
        from gunicorn.http.errors import InvalidChunkSize  # type: ignore[import-untyped]

        raise InvalidChunkSize(b"zz")


def test_an_unreadable_chunked_body_is_a_400(client: Client, conference: Conference) -> None:
    _, signature = signed_event(SECRET)
    environ: dict[str, Any] = {
        "HTTP_STRIPE_SIGNATURE": signature,
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": _BrokenChunks(),
        "wsgi.input_terminated": True,
    }
    response = client.generic("POST", url(conference), b"", "application/json", **environ)
    assert response.status_code == 400
    assert "could not be read" in response.json()["error"]
    assert not StripeEvent.objects.exists()


def test_a_body_shorter_than_its_content_length_is_a_400(
    client: Client, conference: Conference
) -> None:
    body, signature = signed_event(SECRET)
    environ: dict[str, Any] = {
        "CONTENT_LENGTH": str(len(body) + 10),
        "HTTP_STRIPE_SIGNATURE": signature,
        "wsgi.input": io.BytesIO(body),
    }
    response = client.generic("POST", url(conference), b"", "application/json", **environ)
    assert response.status_code == 400
    assert "could not be read" in response.json()["error"]
    assert not StripeEvent.objects.exists()
    assert json.loads(body)["object"] == "event"
