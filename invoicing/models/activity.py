"""What happened to a purchase order, who did it, and which invoice it was about: its story.

Payments are their own rows (the ledger); this keeps the rest, written by the services at the
moment they act (``services/activity.py``). Each row copies the PO's Stripe invoice as it stood, so
after a re-issue the voided invoice's number and link stay on the page.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from invoicing.models.purchase_orders import PurchaseOrder


class PurchaseOrderActivity(models.Model):
    """One thing that happened to a PO (append-only)."""

    class Kind(models.TextChoices):
        APPROVED = "approved", "Approved"
        INVOICE_SENT = "invoice_sent", "Invoice created and sent"
        ACTION_REQUESTED = "action_requested", "Action requested"
        VOIDED = "voided", "Invoice voided"
        REISSUED = "reissued", "Re-issue started"
        CANCELLED = "cancelled", "Cancelled"
        ERROR = "error", "Failed"
        RETRY = "retry", "Retry requested"

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.CASCADE, related_name="activities"
    )
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    detail = models.TextField(blank=True, default="")
    generation = models.PositiveIntegerField()
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_invoice_number = models.CharField(max_length=255, blank=True, default="")
    stripe_invoice_url = models.URLField(max_length=1000, blank=True, default="")

    class Meta:
        ordering = ("at", "pk")
        verbose_name_plural = "purchase order activities"
        indexes = (
            models.Index(fields=("purchase_order", "at"), name="po_activity_po_at"),
            # The events list finds the PO of an invoice replaced by a re-issue through it.
            models.Index(fields=("stripe_invoice_id",), name="po_activity_invoice"),
        )

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.at:%Y-%m-%d %H:%M})"
