"""What we keep of Stripe itself: the webhook inbox and each conference's reconciliation cursor."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q

from invoicing.models.conferences import Conference


class StripeEvent(models.Model):
    """The webhook inbox: a verified event, durably stored before the view answers 2xx.

    The dispatcher (``services/stripe_events.py``) moves rows from ``pending`` to a final state;
    ``next_attempt_at`` drives retries with backoff and the scan that re-enqueues stuck rows.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    conference = models.ForeignKey(
        Conference, on_delete=models.PROTECT, related_name="stripe_events"
    )
    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    livemode = models.BooleanField()
    api_version = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Set when the retention purge emptied the payload (customer data): id, type, status and
    # times stay (services/event_retention.py).
    payload_purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("received_at", "pk")
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "processed", "ignored", "failed"]),
                name="stripe_event_status_valid",
            ),
        ]
        indexes: ClassVar = [
            # The re-enqueue scan: rows still to do, oldest due first.
            models.Index(
                fields=("status", "next_attempt_at"),
                name="stripe_event_due",
                condition=Q(status__in=["pending", "processing", "failed"]),
            ),
            models.Index(fields=("conference", "received_at"), name="stripe_event_conf_received"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_event_id} ({self.status})"


class StripeSyncState(models.Model):
    """Where reconciliation stands for one conference (``services/reconciliation.py``).

    ``events_cursor`` is the ``created`` time (Unix seconds, Stripe's clock) of the newest event the
    last successful run saw; the next run lists events from a little before it. ``lease_expires_at``
    keeps two runs for the same conference from overlapping.
    """

    conference = models.OneToOneField(
        Conference, on_delete=models.CASCADE, related_name="stripe_sync_state"
    )
    events_cursor = models.BigIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_summary = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"Stripe sync of conference {self.conference_id}"
