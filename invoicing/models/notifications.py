"""E-mail notifications: who asked for which, and each one decided (and sent) exactly once.

They name the conference and the PO by label: this module imports no other model module.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class NotificationKind(models.TextChoices):
    """What an organizer can ask to be told about, per conference."""

    PAYMENT_RECEIVED = "payment_received", "Payment received"
    PO_PAID = "po_paid", "Purchase order paid in full"
    REFUND_OR_DISPUTE = "refund_or_dispute", "Refund or dispute"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    INVOICE_OVERDUE = "invoice_overdue", "Invoice overdue"
    CREATION_BLOCKED = "creation_blocked", "Invoice creation blocked"


def validate_notification_kinds(value: object) -> None:
    if not isinstance(value, list) or any(item not in NotificationKind.values for item in value):
        raise ValidationError(f"Choose among {', '.join(NotificationKind.values)}.")


class NotificationSubscription(models.Model):
    """One person's choice of e-mails about one conference (opt-in: no row, no e-mail)."""

    conference = models.ForeignKey(
        "invoicing.Conference", on_delete=models.CASCADE, related_name="notification_subscriptions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_subscriptions",
    )
    kinds = models.JSONField(default=list, validators=[validate_notification_kinds])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("conference", "user")
        verbose_name = "e-mail notification choice"
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("conference", "user"), name="notification_subscription_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} about {self.conference}"


class Notification(models.Model):
    """One e-mail to one person about one happening; unique, so a replay decides nothing twice.

    ``key`` names the happening within its kind (a ledger row, an event id, an invoice...).
    """

    Kind = NotificationKind

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    key = models.CharField(max_length=255)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    conference = models.ForeignKey(
        "invoicing.Conference", on_delete=models.CASCADE, related_name="notifications"
    )
    purchase_order = models.ForeignKey(
        "invoicing.PurchaseOrder",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notifications",
    )
    subject = models.CharField(max_length=255)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-pk")
        verbose_name = "e-mail notification"
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("kind", "key", "recipient"), name="notification_unique_per_recipient"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed"]),
                name="notification_status_valid",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=("status", "created_at"), name="notification_status_created"),
        ]

    def __str__(self) -> str:
        return self.subject
