"""The webhook view: verify, record, queue. Every bad input answers 4xx and leaves no trace.

Each refusal test checks the inbox (no row) and the broker (no message, read from Redis in our own
database index) while no worker consumes, next to a control that a good event does add both.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models.fields.json import KT
from django.test import Client
from django.utils import timezone

from invoicing.models import Conference, StripeEvent
from tests.core.conftest import MakeConference
from tests.pipeline.conftest import PublishLog, queue_lengths, settle_publishes, signed_event
from tests.pipeline.conftest import post_webhook as post
from tests.pipeline.conftest import webhook_path as url

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("embedded_worker_paused"),
]

SECRET = "whsec_pipeline_test_secret_0123456789"
OTHER_SECRET = "whsec_other_conference_secret_9876543210"
PROCESS = "process_stripe_event"


@pytest.fixture
def conference(make_conference: MakeConference) -> Conference:
    return make_conference(stripe_webhook_secret=SECRET)


@pytest.fixture
def nothing_stored_or_queued(published: PublishLog) -> Iterator[None]:
    """After the test: no inbox row, no message in the queues, no task published."""
    before = queue_lengths()
    yield
    assert StripeEvent.objects.count() == 0
    assert queue_lengths() == before
    assert published.of(PROCESS) == []


def test_a_signed_event_is_recorded_and_queued_once(
    client: Client, conference: Conference, published: PublishLog
) -> None:
    before = queue_lengths()
    body, signature = signed_event(SECRET, event_type="invoice.paid")
    response = post(client, conference, body, signature)
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    row = StripeEvent.objects.get()
    assert row.conference == conference
    assert row.payload == json.loads(body)
    assert row.status == StripeEvent.Status.PENDING
    assert row.type == "invoice.paid"
    assert published.of(PROCESS, row.pk)
    assert queue_lengths()["stripe"] == before["stripe"] + 1

    # Stripe delivers it again: 200, nothing added, nothing queued.
    again = post(client, conference, body, signed_event(SECRET, body=body)[1])
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert StripeEvent.objects.count() == 1
    assert queue_lengths()["stripe"] == before["stripe"] + 1
    assert len(published.of(PROCESS)) == 1


@pytest.mark.usefixtures("nothing_stored_or_queued")
class TestRefusals:
    def test_wrong_secret(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(OTHER_SECRET)
        response = post(client, conference, body, signature)
        assert response.status_code == 400
        assert "Signature" in response.json()["error"]

    def test_missing_signature(self, client: Client, conference: Conference) -> None:
        body, _ = signed_event(SECRET)
        assert post(client, conference, body, None).status_code == 400

    def test_garbled_signature_header(self, client: Client, conference: Conference) -> None:
        body, _ = signed_event(SECRET)
        assert post(client, conference, body, "t=abc,v1=").status_code == 400

    def test_stale_timestamp(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(SECRET, timestamp=int(time.time()) - 301)
        response = post(client, conference, body, signature)
        assert response.status_code == 400
        assert "tolerance" in response.json()["error"]

    def test_a_body_changed_after_signing(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(SECRET)
        assert (
            post(client, conference, body.replace(b"cus_test", b"cus_evil"), signature).status_code
            == 400
        )

    def test_malformed_json(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(SECRET, body=b'{"id": "evt_1", "object": ')
        response = post(client, conference, body, signature)
        assert response.status_code == 400
        assert "JSON" in response.json()["error"]

    def test_not_utf8(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(SECRET, body=b'{"id": "\xff\xfe"}')
        assert post(client, conference, body, signature).status_code == 400

    @pytest.mark.parametrize(
        "payload",
        [
            [1, 2, 3],
            {"object": "customer", "id": "cus_1"},
            {"object": "event", "id": "not_an_event_id", "type": "x", "livemode": False},
            {"object": "event", "id": "evt_1", "livemode": False, "data": {"object": {}}},
            {"object": "event", "id": "evt_1", "type": "invoice.paid", "data": {"object": {}}},
            {"object": "event", "id": "evt_1", "type": "invoice.paid", "livemode": False},
            {"object": "v2.core.event", "id": "evt_1", "type": "v1.billing.meter.error"},
        ],
    )
    def test_signed_json_that_is_not_a_stripe_event(
        self, client: Client, conference: Conference, payload: Any
    ) -> None:
        body, signature = signed_event(SECRET, body=json.dumps(payload).encode())
        assert post(client, conference, body, signature).status_code == 400

    def test_livemode_not_matching_the_conference_key(
        self, client: Client, conference: Conference
    ) -> None:
        assert conference.stripe_livemode is False
        body, signature = signed_event(SECRET, livemode=True)
        response = post(client, conference, body, signature)
        assert response.status_code == 400
        assert "livemode" in response.json()["error"]

    def test_another_conferences_event_at_this_endpoint(
        self, client: Client, conference: Conference, make_conference: MakeConference
    ) -> None:
        other = make_conference(stripe_webhook_secret=OTHER_SECRET)
        body, signature = signed_event(OTHER_SECRET)
        assert post(client, conference, body, signature).status_code == 400
        assert other.pk != conference.pk

    def test_a_conference_without_a_signing_secret(
        self, client: Client, make_conference: MakeConference
    ) -> None:
        bare = make_conference(stripe_webhook_secret="")
        body, signature = signed_event(SECRET)
        response = post(client, bare, body, signature)
        assert response.status_code == 400
        assert "no webhook signing secret" in response.json()["error"]

    def test_unknown_conference(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(SECRET)
        assert post(client, "no-such-conference", body, signature).status_code == 404

    def test_inactive_conference(self, client: Client, conference: Conference) -> None:
        Conference.objects.filter(pk=conference.pk).update(is_active=False)
        body, signature = signed_event(SECRET)
        assert post(client, conference, body, signature).status_code == 404

    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
    def test_wrong_method(self, client: Client, conference: Conference, method: str) -> None:
        body, signature = signed_event(SECRET)
        response = client.generic(
            method, url(conference), body, content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )  # fmt: skip
        assert response.status_code == 405
        assert response["Allow"] == "POST"

    def test_too_large_by_content_length(
        self, client: Client, conference: Conference, settings: Any
    ) -> None:
        assert settings.STRIPE_WEBHOOK_MAX_BODY_BYTES == 1024 * 1024
        body, signature = signed_event(SECRET, body=b" " * (1024 * 1024 + 1))
        assert post(client, conference, body, signature).status_code == 413

    def test_too_large_chunked(self, client: Client, conference: Conference) -> None:
        event_body, _ = signed_event(SECRET)
        body = event_body + b" " * (1024 * 1024)  # valid JSON with trailing blanks, over 1 MiB
        _, signature = signed_event(SECRET, body=body)
        response = post_chunked(client, conference, body, signature)
        assert response.status_code == 413

    def test_invalid_content_length(self, client: Client, conference: Conference) -> None:
        body, signature = signed_event(SECRET)
        environ: dict[str, Any] = {
            "CONTENT_LENGTH": "12x",
            "HTTP_STRIPE_SIGNATURE": signature,
            "wsgi.input": io.BytesIO(body),
        }
        response = client.generic("POST", url(conference), b"", "application/json", **environ)
        assert response.status_code == 400


def post_chunked(client: Client, conference: Conference, body: bytes, signature: str) -> Any:
    """A body without Content-Length that the server says ends (gunicorn with chunked input)."""
    environ: dict[str, Any] = {
        "HTTP_STRIPE_SIGNATURE": signature,
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
    }
    return client.generic("POST", url(conference), b"", "application/json", **environ)


def test_a_chunked_body_within_the_limit_is_read_and_recorded(
    client: Client, conference: Conference
) -> None:
    body, signature = signed_event(SECRET)
    response = post_chunked(client, conference, body + b" " * 100_000, signature)
    # The padding changed the body after signing: the body is read whole and refused...
    assert response.status_code == 400
    _, signature = signed_event(SECRET, body=body + b" " * 100_000)
    # ...and once signed as sent, recorded.
    assert post_chunked(client, conference, body + b" " * 100_000, signature).status_code == 200
    assert StripeEvent.objects.count() == 1


def test_an_event_that_cannot_be_recorded_answers_503_and_queues_nothing(
    client: Client, conference: Conference, published: PublishLog, caplog: Any
) -> None:
    """The database refuses the row (a constraint added for the test): 5xx, so Stripe retries."""
    before = queue_lengths()
    table = StripeEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
    try:
        body, signature = signed_event(
            SECRET, obj={"id": "cus_x", "object": "customer", "name": "private-name-31"}
        )
        with caplog.at_level(logging.DEBUG):
            response = post(client, conference, body, signature)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT refuse_all")
    assert response.status_code == 503
    assert "could not be recorded (IntegrityError 23514)" in caplog.text
    assert "private-name-31" not in caplog.text  # the driver's DETAIL quotes the row
    assert StripeEvent.objects.count() == 0
    assert queue_lengths() == before
    assert published.of(PROCESS) == []


def test_the_inbox_stores_the_body_as_stripe_signed_it(
    client: Client, conference: Conference
) -> None:
    """The payload is the received text, not the parsed event encoded again: a number with more
    digits than a double holds keeps them (jsonb's numeric is exact), and unlike a re-encoded
    payload its text still reads as sent."""
    body, _ = signed_event(SECRET, obj={"id": "cus_digits", "object": "customer", "extra": "@"})
    body = body.replace(b'"@"', b"0.10000000000000000000000000001")
    assert post(client, conference, body, signed_event(SECRET, body=body)[1]).status_code == 200
    stored = StripeEvent.objects.values_list(KT("payload__data__object__extra"), flat=True).get()
    assert stored == "0.10000000000000000000000000001"


def test_a_nul_character_in_the_event_is_recorded_not_refused(
    client: Client, conference: Conference
) -> None:
    """jsonb cannot hold U+0000; such an event must still be stored, not refused forever."""
    body, signature = signed_event(
        SECRET, obj={"id": "cus_nul", "object": "customer", "name": "Acme\u0000Corp"}
    )
    assert b"\\u0000" in body
    response = post(client, conference, body, signature)
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert row.payload["data"]["object"]["name"] == "Acme\ufffdCorp"


def test_broker_down_still_answers_200_and_leaves_the_event_due(
    client: Client, conference: Conference, unreachable_broker: str, caplog: Any
) -> None:
    body, signature = signed_event(SECRET, event_type="invoice.paid")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        response = post(client, conference, body, signature)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    settle_publishes()  # the publisher thread meets the dead broker after the answer
    row = StripeEvent.objects.get()
    assert row.status == StripeEvent.Status.PENDING
    # Due at once for the re-enqueue task, instead of after the usual grace period.
    assert row.next_attempt_at is not None
    assert row.next_attempt_at <= timezone.now()
    assert "could not queue workers.tasks.process_stripe_event" in caplog.text
    print(f"webhook with the broker down answered in {elapsed * 1000:.0f} ms")


def test_no_log_line_carries_the_secret_or_the_body(
    client: Client, conference: Conference, caplog: Any
) -> None:
    marker = "sensitive-customer-name-4711"
    with caplog.at_level(logging.DEBUG):
        for secret in (SECRET, OTHER_SECRET):
            body, signature = signed_event(
                secret, obj={"id": "cus_x", "object": "customer", "name": marker}
            )
            post(client, conference, body, signature)
    assert caplog.records
    assert SECRET not in caplog.text
    assert OTHER_SECRET not in caplog.text
    assert marker not in caplog.text
