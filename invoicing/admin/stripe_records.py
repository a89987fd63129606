"""What Stripe sent us and we keep: customers, and the webhook inbox (with its replay).

Both are read by the conference's team; replaying an event is a change, so it takes an organizer.
A payload the retention purge emptied says so instead (``STRIPE_EVENT_RETENTION_DAYS``).
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import BigIntegerField, CharField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from invoicing import access
from invoicing.admin.common import ReadOnlyAdminMixin
from invoicing.admin.scoping import ConferenceScopedAdmin
from invoicing.models import (
    PurchaseOrder,
    PurchaseOrderActivity,
    Role,
    StripeCustomer,
    StripeEvent,
)
from invoicing.services import stripe_events


class StripeCustomerAdmin(ReadOnlyAdminMixin, ConferenceScopedAdmin[StripeCustomer]):
    list_display = ("name", "email", "conference", "stripe_customer_id", "created_at")
    list_filter = (("conference", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("conference",)
    search_fields = ("organization_key", "email", "name", "stripe_customer_id")


class StripeEventAdmin(ReadOnlyAdminMixin, ConferenceScopedAdmin[StripeEvent]):
    # Newest first; the event id under its type and the PO it is about: fits 1366 px.
    list_display = (
        "event_display",
        "purchase_order_display",
        "conference",
        "status",
        "attempts",
        "last_error_short",
        "received_at",
    )
    ordering = ("-received_at", "-pk")
    list_filter = (
        "status",
        "type",
        ("conference", admin.RelatedOnlyFieldListFilter),
        ("received_at", admin.DateFieldListFilter),
    )
    list_select_related = ("conference",)
    search_fields = ("stripe_event_id", "type", "payload__data__object__id")
    date_hierarchy = "received_at"
    fields = (
        "stripe_event_id",
        "type",
        "conference",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "received_at",
        "processed_at",
        "payload_purged_at",
        "livemode",
        "api_version",
        "payload_pretty",
    )
    readonly_fields = fields
    actions = ("replay_selected",)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying changes an event (its status, its retries): an organizer's right."""
        return access.may_anywhere(request.user, Role.ORGANIZER)

    @admin.action(description="Replay: reset and queue again", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        allowed = access.scope(queryset, request.user, role=Role.ORGANIZER)
        others = queryset.exclude(pk__in=allowed.values("pk")).select_related("conference")
        for event in others.order_by("received_at", "pk"):
            self.message_user(
                request,
                f"{event.stripe_event_id}: not replayed: you are not an organizer of "
                f"{event.conference}.",
                messages.WARNING,
            )
        purged = allowed.filter(payload_purged_at__isnull=False)
        for event in purged.order_by("received_at", "pk"):
            self.message_user(
                request,
                f"{event.stripe_event_id}: not replayed: its payload was purged "
                "(STRIPE_EVENT_RETENTION_DAYS); the reconciliation reads the invoice from Stripe.",
                messages.WARNING,
            )
        selected = list(allowed.exclude(pk__in=purged.values("pk")).order_by("received_at", "pk"))
        if not selected:
            return
        result = stripe_events.replay_stripe_events(
            stripe_event_ids=[event.stripe_event_id for event in selected]
        )
        by_id = {event.stripe_event_id: event for event in selected}
        for event_id in result.replayed:
            event = by_id[event_id]
            self.message_user(
                request,
                f"{event_id} ({event.type}, was {event.get_status_display().lower()}): queued "
                "again with a fresh retry budget.",
                messages.SUCCESS,
            )
        for event_id in result.in_progress:
            self.message_user(
                request,
                f"{event_id}: a worker is processing it right now; left alone.",
                messages.WARNING,
            )
        for event_id in result.not_found:
            self.message_user(request, f"{event_id}: no longer recorded.", messages.WARNING)
        if result.replayed:
            self.message_user(
                request, f"{len(result.replayed)} event(s) queued again.", messages.SUCCESS
            )

    def get_queryset(self, request: HttpRequest) -> QuerySet[StripeEvent]:
        # The PO of the invoice the event is about, in the same query as the rows: its current
        # invoice, or one it had before a re-issue (kept in its activity).
        invoice = Coalesce(KT("payload__data__object__invoice"), KT("payload__data__object__id"))
        current = PurchaseOrder.objects.filter(
            conference=OuterRef("conference"), stripe_invoice_id=OuterRef("about_invoice")
        )
        earlier = PurchaseOrderActivity.objects.filter(
            purchase_order__conference=OuterRef("conference"),
            stripe_invoice_id=OuterRef("about_invoice"),
        ).exclude(stripe_invoice_id="")
        return (
            super()
            .get_queryset(request)
            .annotate(about_invoice=invoice)
            .annotate(
                po_pk=Coalesce(
                    Subquery(current.values("pk")[:1]),
                    Subquery(earlier.values("purchase_order_id")[:1]),
                    output_field=BigIntegerField(),
                ),
                po_reference=Coalesce(
                    Subquery(current.values("reference")[:1]),
                    Subquery(earlier.values("purchase_order__reference")[:1]),
                    output_field=CharField(),
                ),
            )
        )

    @admin.display(description="Event", ordering="type")
    def event_display(self, obj: StripeEvent) -> SafeString:
        return format_html(
            '{}<br><span style="color:#666;font-size:11px">{}</span>',
            obj.type,
            obj.stripe_event_id,
        )

    @admin.display(description="PO")
    def purchase_order_display(self, obj: StripeEvent) -> SafeString | str:
        pk, reference = getattr(obj, "po_pk", None), getattr(obj, "po_reference", None)
        if pk is None or not reference:
            return "-"
        url = reverse("admin:invoicing_purchaseorder_change", args=[pk])
        return format_html('<a href="{}">{}</a>', url, reference)

    @admin.display(description="Last error")
    def last_error_short(self, obj: StripeEvent) -> str:
        text = obj.last_error.strip()
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="Payload")
    def payload_pretty(self, obj: StripeEvent) -> SafeString:
        if obj.payload_purged_at is not None:
            return format_html(
                "<em>Purged {}: a settled event keeps its payload STRIPE_EVENT_RETENTION_DAYS "
                "days.</em>",
                obj.payload_purged_at.date().isoformat(),
            )
        pretty = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', pretty)
