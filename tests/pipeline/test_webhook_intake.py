"""The webhook's hand-written INSERT stores the same inbox row as the ORM would.

``record_stripe_event`` skips the ORM's insert compiler for speed. Whatever the model gains (a
column, a default, a field that prepares its value), the row it stores must stay the one
``StripeEvent.objects.create`` stores: every column is compared, read back by PostgreSQL itself
(``to_jsonb`` of the whole row), so a column the statement leaves out or fills differently fails.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, models
from django.utils import timezone

from invoicing.models import Conference, StripeEvent
from invoicing.services import webhook_intake
from tests.core.conftest import MakeConference
from tests.pipeline.conftest import signed_event

# One transaction per test: the on-commit publish never runs, nothing reaches the broker.
pytestmark = pytest.mark.django_db

SECRET = "whsec_intake_agreement_secret_0123456789"
# Timestamps are "now" on each side: set on both, and a moment apart at most.
TIMESTAMP_SLACK = timedelta(seconds=30)
TIMESTAMP_COLUMNS = {
    model_field.column
    for model_field in StripeEvent._meta.concrete_fields
    if isinstance(model_field, models.DateTimeField)
}


@pytest.fixture
def conference(make_conference: MakeConference) -> Conference:
    return make_conference(stripe_webhook_secret=SECRET)


def stored_row(pk: int) -> dict[str, Any]:
    """Every column of the row as PostgreSQL holds it (jsonb values compare as values)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_jsonb(stored), jsonb_typeof(stored.payload) "
            "FROM invoicing_stripeevent AS stored WHERE stored.id = %s",
            [pk],
        )
        found = cursor.fetchone()
    assert found is not None, f"no inbox row {pk}"
    row, payload_type = found
    columns: dict[str, Any] = json.loads(row) if isinstance(row, str) else row
    assert payload_type == "object"  # a JSON document, not a JSON string holding one
    columns.pop("id")
    return columns


def through_the_orm(conference: Conference, event: dict[str, Any]) -> int:
    row = StripeEvent.objects.create(
        conference=conference,
        stripe_event_id=event["id"],
        type=event["type"],
        livemode=event["livemode"],
        api_version=event.get("api_version") or "",
        payload=event,
        next_attempt_at=timezone.now()
        + timedelta(seconds=settings.STRIPE_EVENT_REENQUEUE_AFTER_SECONDS),
    )
    return row.pk


def assert_same_row(fast: dict[str, Any], orm: dict[str, Any]) -> None:
    model_columns = {f.column for f in StripeEvent._meta.concrete_fields if not f.primary_key}
    assert set(fast) == set(orm) == model_columns
    for column in sorted(TIMESTAMP_COLUMNS):
        if orm[column] is None:
            assert fast[column] is None, column
            continue
        assert fast[column] is not None, f"{column} is set by the ORM, not by the SQL"
        apart = abs(datetime.fromisoformat(fast[column]) - datetime.fromisoformat(orm[column]))
        assert apart <= TIMESTAMP_SLACK, column
    others = sorted(model_columns - TIMESTAMP_COLUMNS)
    assert {c: fast[c] for c in others} == {c: orm[c] for c in others}


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"id": "in_1", "object": "invoice", "amount_paid": 1050}, id="plain"),
        pytest.param(
            {"id": "in_1", "object": "invoice", "memo": "nul \u0000 and lone \ud800 surrogate"},
            id="characters-jsonb-refuses",
        ),
    ],
)
@pytest.mark.parametrize("with_json_text", [True, False], ids=["view", "parsed-event-only"])
def test_the_fast_path_stores_what_the_orm_stores(
    conference: Conference, obj: dict[str, Any], with_json_text: bool
) -> None:
    body, signature = signed_event(SECRET, event_type="invoice.paid", obj=obj)
    verified = webhook_intake.verify_webhook(
        conference=conference, payload=body, signature_header=signature
    )
    recorded = webhook_intake.record_stripe_event(
        conference=conference,
        event=verified.event,
        event_json=verified.json_text if with_json_text else None,
    )
    assert recorded.created
    fast = stored_row(recorded.stripe_event.pk)
    StripeEvent.objects.filter(pk=recorded.stripe_event.pk).delete()

    orm = stored_row(through_the_orm(conference, verified.event))

    assert_same_row(fast, orm)
    # What the comparison stands on: the values the event carried.
    assert orm["stripe_event_id"] == verified.event["id"]
    assert orm["type"] == "invoice.paid"
    assert orm["conference_id"] == conference.pk
    assert orm["livemode"] is False
    assert orm["payload"] == verified.event
    assert orm["status"] == StripeEvent.Status.PENDING
    assert orm["received_at"] is not None
    assert orm["next_attempt_at"] is not None


def test_the_row_the_fast_path_hands_back_is_the_stored_one(conference: Conference) -> None:
    """The view and callers use the returned instance as if ``save()`` had made it."""
    body, signature = signed_event(SECRET, event_type="invoice.paid")
    verified = webhook_intake.verify_webhook(
        conference=conference, payload=body, signature_header=signature
    )
    returned = webhook_intake.record_stripe_event(
        conference=conference, event=verified.event, event_json=verified.json_text
    ).stripe_event
    assert not returned._state.adding
    assert returned._state.db == connection.alias
    reloaded = StripeEvent.objects.get(pk=returned.pk)
    for model_field in StripeEvent._meta.concrete_fields:
        assert getattr(returned, model_field.attname) == getattr(reloaded, model_field.attname), (
            model_field.name
        )
