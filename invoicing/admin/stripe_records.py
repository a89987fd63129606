"""What Stripe sent us and we keep: customers, and the webhook inbox (with its replay)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from invoicing.admin.common import ReadOnlyAdminMixin
from invoicing.models import StripeCustomer, StripeEvent
from invoicing.services import stripe_events


class StripeCustomerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[StripeCustomer]):
    list_display = ("email", "name", "conference", "stripe_customer_id", "created_at")
    list_filter = ("conference",)
    list_select_related = ("conference",)
    search_fields = ("email", "name", "stripe_customer_id")


class StripeEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[StripeEvent]):
    list_display = (
        "stripe_event_id",
        "type",
        "conference",
        "status",
        "attempts",
        "last_error_short",
        "received_at",
        "processed_at",
    )
    list_filter = ("status", "type", "conference", ("received_at", admin.DateFieldListFilter))
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
        "livemode",
        "api_version",
        "payload_pretty",
    )
    readonly_fields = fields
    actions = ("replay_selected",)

    @admin.action(description="Replay: reset and queue again")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        selected = list(queryset.order_by("received_at", "pk"))
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

    @admin.display(description="Last error")
    def last_error_short(self, obj: StripeEvent) -> str:
        text = obj.last_error.strip()
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="Payload")
    def payload_pretty(self, obj: StripeEvent) -> SafeString:
        pretty = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', pretty)
