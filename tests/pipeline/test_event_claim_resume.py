"""The database fails between claiming an inbox row and settling it: the retry resumes the claim.

Found by the reliability case "PostgreSQL restarted during processing": a restart that fell
between a worker's claim (committed: ``processing``, claim good for the hard time limit + 60 s)
and its settle left the row ``processing``; the task's retry then found the row "taken" (by its
own dead claim) and did nothing, so the event waited minutes for the claim to expire and the beat.

The failure is a real PostgreSQL error: a trigger refuses the settling UPDATE of one event with
SQLSTATE 08006 (connection_failure, an ``OperationalError`` like a restart's), as many times as
asked, counted by a sequence (sequences are not rolled back with the failed statement).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import OperationalError, connection

from invoicing.models import StripeEvent
from invoicing.services import stripe_events
from tests.pipeline.test_event_processing import plain_event, record, settled

pytestmark = pytest.mark.django_db(transaction=True)

EventStatus = StripeEvent.Status
ArmFault = Callable[[str, int], None]


@pytest.fixture
def settle_fault(django_db_blocker: Any) -> Iterator[ArmFault]:
    """``arm(event_id, times)``: the next ``times`` settling UPDATEs of that event fail (08006)."""
    table = StripeEvent._meta.db_table

    def arm(event_id: str, times: int) -> None:
        literal = "'" + event_id.replace("'", "''") + "'"
        with connection.cursor() as cursor:
            cursor.execute("CREATE SEQUENCE test_settle_fault_seq")
            cursor.execute(
                f"""
                CREATE FUNCTION test_settle_fault() RETURNS trigger AS $$
                BEGIN
                  IF NEW.stripe_event_id = {literal} AND NEW.status <> 'processing'
                     AND nextval('test_settle_fault_seq') <= {int(times)} THEN
                    RAISE EXCEPTION 'injected: connection lost while settling'
                      USING ERRCODE = '08006';
                  END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql
                """
            )
            cursor.execute(
                f"CREATE TRIGGER test_settle_fault BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION test_settle_fault()"
            )

    yield arm
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS test_settle_fault ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS test_settle_fault()")
        cursor.execute("DROP SEQUENCE IF EXISTS test_settle_fault_seq")


@pytest.mark.usefixtures("embedded_worker_paused")
def test_only_the_claims_own_retry_takes_an_unsettled_claim_back(
    make_conference: Any, settle_fault: ArmFault
) -> None:
    conference = make_conference()
    event_id = f"evt_claim_{uuid.uuid4().hex[:12]}"
    settle_fault(event_id, 1)
    row = record(conference, plain_event(event_id))

    with pytest.raises(stripe_events.ClaimNotSettled) as raised:
        stripe_events.process_stripe_event(stripe_event_id=row.pk)
    assert isinstance(raised.value.__cause__, OperationalError)
    assert raised.value.attempt == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == (EventStatus.PROCESSING, 1)

    # Anyone else (a redelivery, the beat before expiry, a stale retry) still sees it taken.
    assert stripe_events.process_stripe_event(stripe_event_id=row.pk).skipped
    assert stripe_events.process_stripe_event(stripe_event_id=row.pk, resume_claim=7).skipped
    # The retry of the run that claimed it resumes at once.
    result = stripe_events.process_stripe_event(stripe_event_id=row.pk, resume_claim=1)
    assert result.status == EventStatus.IGNORED
    row.refresh_from_db()
    assert (row.status, row.attempts) == (EventStatus.IGNORED, 2)


@pytest.mark.usefixtures("celery_worker")
def test_the_task_retry_settles_the_event_in_seconds_not_after_the_claim_expires(
    make_conference: Any, settle_fault: ArmFault
) -> None:
    conference = make_conference()
    event_id = f"evt_claim_{uuid.uuid4().hex[:12]}"
    settle_fault(event_id, 2)  # the first run and its first retry both fail to settle
    row = record(conference, plain_event(event_id))  # queued on commit; the worker takes it

    row = settled(row, timeout=15)
    assert (row.status, row.attempts) == (EventStatus.IGNORED, 3)
