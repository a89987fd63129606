"""Events recorded at the same moment share one message; the worker fans it out, nothing is lost.

``publish_recorded_event`` (the webhook's on-commit hook) hands each new inbox row to a
``Batcher``: a lone request publishes its own ``process_stripe_event`` as before, requests that
overlap share one ``queue_stripe_events`` message, which the worker turns into one
``process_stripe_event`` per row. Real worker, real Redis, rows recorded by the view's service.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.models import Conference, StripeEvent
from invoicing.services import webhook_intake
from tests.core.conftest import MakeConference
from tests.core.test_concurrency import run_in_threads
from tests.pipeline.conftest import PublishLog, post_webhook, signed_event, wait_for
from workers import webhook_publisher

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_batching_test_secret_0123456789"
EventStatus = StripeEvent.Status
PROCESS = "workers.tasks.process_stripe_event"
FAN_OUT = "workers.tasks.queue_stripe_events"


@pytest.fixture
def conference(make_conference: MakeConference) -> Conference:
    return make_conference(stripe_webhook_secret=SECRET)


def unpublished_rows(conference: Conference, count: int) -> list[int]:
    """Inbox rows as the view records them, without their publish (the test publishes them)."""
    now = timezone.now()
    return [
        StripeEvent.objects.create(
            conference=conference,
            stripe_event_id=f"evt_batch_{time.monotonic_ns()}_{n}",
            type="customer.created",
            livemode=False,
            payload={"id": "x", "object": "event", "data": {"object": {"id": "cus_1"}}},
            next_attempt_at=now + timedelta(minutes=5),
        ).pk
        for n in range(count)
    ]


def processing_messages(published: PublishLog, pks: list[int]) -> Counter[tuple[object, ...]]:
    """The ``process_stripe_event`` messages for these rows (not those of earlier tests' rows)."""
    wanted = set(pks)
    return Counter(m.args for m in published.of(PROCESS) if m.args and m.args[0] in wanted)


def all_settled(pks: list[int]) -> bool:
    statuses = set(StripeEvent.objects.filter(pk__in=pks).values_list("status", flat=True))
    return statuses == {EventStatus.IGNORED}


@pytest.mark.usefixtures("celery_worker")
def test_a_batch_is_one_message_and_every_row_is_processed_once(
    conference: Conference, published: PublishLog
) -> None:
    pks = unpublished_rows(conference, 5)
    webhook_publisher.queue_recorded_events(pks)
    wait_for(lambda: all_settled(pks), message="a batch's rows were not all processed")
    assert [m.args for m in published.of(FAN_OUT)] == [(pks,)]
    # The worker's fan-out: one processing message per row, none twice.
    assert processing_messages(published, pks) == {(pk,): 1 for pk in pks}
    assert set(StripeEvent.objects.filter(pk__in=pks).values_list("attempts", flat=True)) == {1}


@pytest.mark.usefixtures("embedded_worker_paused", "unreachable_broker")
def test_a_batch_the_broker_refuses_leaves_every_row_due(conference: Conference) -> None:
    pks = unpublished_rows(conference, 3)
    webhook_publisher.queue_recorded_events(pks)
    rows = StripeEvent.objects.filter(pk__in=pks)
    assert {row.status for row in rows} == {EventStatus.PENDING}
    assert all(row.next_attempt_at and row.next_attempt_at <= timezone.now() for row in rows)


@pytest.mark.usefixtures("celery_worker")
def test_concurrent_deliveries_are_each_recorded_and_processed_once(
    conference: Conference, published: PublishLog
) -> None:
    """Eight threads post 160 events at once, as gunicorn's threads would; however the publishes
    were shared, each row gets exactly one processing message and ends processed."""
    threads, per_thread = 8, 20
    bodies = [
        [signed_event(SECRET, event_type="customer.created") for _ in range(per_thread)]
        for _ in range(threads)
    ]
    statuses: list[int] = []

    def deliverer(batch: list[tuple[bytes, str]]) -> Callable[[], None]:
        def deliver() -> None:
            client = Client()
            for body, signature in batch:
                statuses.append(post_webhook(client, conference, body, signature).status_code)

        return deliver

    assert run_in_threads([deliverer(batch) for batch in bodies]) == []
    assert statuses == [200] * (threads * per_thread)
    pks = list(StripeEvent.objects.filter(conference=conference).values_list("pk", flat=True))
    assert len(pks) == threads * per_thread
    wait_for(lambda: all_settled(pks), timeout=60, message="not every delivery was processed")
    assert processing_messages(published, pks) == {(pk,): 1 for pk in pks}
    batched = [pk for m in published.of(FAN_OUT) for pk in m.args[0]]
    assert len(batched) == len(set(batched))
    print(
        f"{len(pks)} events: {len(pks) - len(batched)} published alone, {len(batched)} in "
        f"{len(published.of(FAN_OUT))} shared message(s)"
    )


def test_the_view_reads_the_conference_with_its_secrets(
    conference: Conference, settings: SettingsWrapper
) -> None:
    """The view's own lookup: secrets decrypted, inactive and unknown slugs not found."""
    settings.STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS = 0
    found = webhook_intake.webhook_conference(slug=conference.slug)
    assert found is not None
    assert (found.pk, found.slug, found.is_active) == (conference.pk, conference.slug, True)
    assert found.stripe_webhook_secret == SECRET
    assert found.stripe_secret_key == conference.stripe_secret_key
    assert found.stripe_livemode is False
    assert webhook_intake.webhook_conference(slug="no-such-conference") is None
    Conference.objects.filter(pk=conference.pk).update(is_active=False)
    assert webhook_intake.webhook_conference(slug=conference.slug) is None


def test_a_kept_conference_is_read_again_after_its_time_or_a_save_here(
    conference: Conference, settings: SettingsWrapper
) -> None:
    settings.STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS = 3600
    webhook_intake.forget_webhook_conferences()
    assert webhook_intake.webhook_conference(slug=conference.slug) is not None
    # Another process deactivates it (no signal here): this process keeps its copy...
    Conference.objects.filter(pk=conference.pk).update(is_active=False)
    kept = webhook_intake.webhook_conference(slug=conference.slug)
    assert kept is not None
    assert kept.stripe_webhook_secret == SECRET
    # ...until its time is up,
    settings.STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS = 1e-9
    assert webhook_intake.webhook_conference(slug=conference.slug) is None
    # and a save in this process is seen at once.
    settings.STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS = 3600
    conference.is_active = True
    conference.save()
    assert webhook_intake.webhook_conference(slug=conference.slug) is not None
    conference.stripe_webhook_secret = "whsec_rotated_in_the_admin"
    conference.save()
    fresh = webhook_intake.webhook_conference(slug=conference.slug)
    assert fresh is not None
    assert fresh.stripe_webhook_secret == "whsec_rotated_in_the_admin"


@pytest.mark.usefixtures("embedded_worker_paused")
def test_a_connection_that_died_between_deliveries_is_replaced_not_a_503(
    conference: Conference, settings: SettingsWrapper, caplog: Any
) -> None:
    """Without Django's per-request SELECT 1, the view's own queries notice a dead connection."""
    client = Client()

    def deliver() -> Any:
        body, signature = signed_event(SECRET, event_type="customer.created")
        return post_webhook(client, conference, body, signature)

    for cache_seconds in (0, 3600):  # the dead connection meets the SELECT, then the INSERT
        settings.STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS = cache_seconds
        assert deliver().status_code == 200  # the conference is kept (when kept at all)
        backend_pid = connection.connection.info.backend_pid
        with connections_to_kill() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        with caplog.at_level(logging.WARNING, logger="invoicing.services.webhook_intake"):
            response = deliver()
        assert response.status_code == 200, response.content
        assert "database connection lost" in caplog.text
        caplog.clear()
    assert StripeEvent.objects.filter(conference=conference).count() == 4


@contextlib.contextmanager
def connections_to_kill() -> Iterator[Any]:
    """A second connection of our own, to terminate the view's backend from outside."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        yield admin


def test_inbox_payloads_are_compressed_with_lz4() -> None:
    """Migration 0003: the INSERT's TOAST compression is lz4 where the server has it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        (available,) = cursor.fetchone() or (False,)
        cursor.execute(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'invoicing_stripeevent'::regclass AND attname = 'payload'"
        )
        (method,) = cursor.fetchone() or ("",)
    assert method == ("l" if available else "")
