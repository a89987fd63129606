"""Inbox retention: settled events lose their payload (customer data) after the retention, failed
ones keep it; the row, its id, type, status and times stay."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from invoicing.models import Conference, StripeEvent
from invoicing.services import event_retention, stripe_events
from tests.core.conftest import MakeConference

pytestmark = pytest.mark.django_db

EventStatus = StripeEvent.Status
PAYLOAD = {"id": "evt", "data": {"object": {"customer_email": "ap@initech.example"}}}


def event(conference: Conference, name: str, status: str, *, age_days: float) -> StripeEvent:
    row = StripeEvent.objects.create(
        conference=conference,
        stripe_event_id=f"evt_{name}",
        type="invoice.paid",
        livemode=False,
        payload=PAYLOAD,
        status=status,
    )
    when = timezone.now() - datetime.timedelta(days=age_days)
    StripeEvent.objects.filter(pk=row.pk).update(
        received_at=when,
        processed_at=when if status in {EventStatus.PROCESSED, EventStatus.IGNORED} else None,
    )
    return row


def test_settled_events_past_the_retention_lose_their_payload(
    make_conference: MakeConference, settings: Any
) -> None:
    settings.STRIPE_EVENT_RETENTION_DAYS = 90
    conference = make_conference()
    old_processed = event(conference, "old_processed", EventStatus.PROCESSED, age_days=91)
    old_ignored = event(conference, "old_ignored", EventStatus.IGNORED, age_days=120)
    old_failed = event(conference, "old_failed", EventStatus.FAILED, age_days=200)
    recent = event(conference, "recent", EventStatus.PROCESSED, age_days=89)

    assert event_retention.purge_event_payloads(batch_size=1) == 2
    rows = {row.stripe_event_id: row for row in StripeEvent.objects.all()}
    for purged in (old_processed, old_ignored):
        row = rows[purged.stripe_event_id]
        assert row.payload == {}
        assert row.payload_purged_at is not None
        assert (row.type, row.status) == ("invoice.paid", purged.status)
    for kept in (old_failed, recent):
        assert rows[kept.stripe_event_id].payload == PAYLOAD
        assert rows[kept.stripe_event_id].payload_purged_at is None
    assert event_retention.purge_event_payloads() == 0  # once


def test_a_purged_event_says_so_and_is_not_replayed(
    admin_client: Client, make_conference: MakeConference, tmp_path: Any, settings: Any
) -> None:
    settings.STATIC_ROOT = tmp_path
    row = event(make_conference(), "purged", EventStatus.PROCESSED, age_days=365)
    event_retention.purge_event_payloads()
    page = admin_client.get(reverse("admin:invoicing_stripeevent_change", args=[row.pk]))
    assert "Purged" in page.content.decode()
    replay = admin_client.post(
        reverse("admin:invoicing_stripeevent_changelist"),
        {"action": "replay_selected", "_selected_action": [str(row.pk)]},
        follow=True,
    )
    assert [str(message) for message in replay.context["messages"]] == [
        f"{row.stripe_event_id}: not replayed: its payload was purged "
        "(STRIPE_EVENT_RETENTION_DAYS); the reconciliation reads the invoice from Stripe."
    ]
    result = stripe_events.replay_stripe_events(stripe_event_ids=[row.stripe_event_id])
    assert result.replayed == []
    row.refresh_from_db()
    assert row.status == EventStatus.PROCESSED
