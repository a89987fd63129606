"""Minimal admin registration; the organizer's admin (actions, inlines) comes in a later issue.

Secrets are write-only here: the form never renders a stored Stripe key or webhook secret, and
leaving the field empty keeps the stored value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import django_stubs_ext
from django import forms
from django.contrib import admin, messages

from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
    StripeCustomer,
    StripeEvent,
)
from invoicing.services import purchase_orders, stripe_events

# Lets ModelAdmin[...] / ModelForm[...] be subscripted at runtime, as django-stubs types them.
django_stubs_ext.monkeypatch()

_SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secret")


class ConferenceAdminForm(forms.ModelForm[Conference]):
    """Masks the secrets: blank input keeps the stored value, which is never sent to the browser."""

    stripe_secret_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current key.",
    )
    stripe_webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current secret.",
    )

    class Meta:
        model = Conference
        fields = (
            "slug",
            "name",
            "currency",
            "is_active",
            "stripe_secret_key",
            "stripe_webhook_secret",
            "stripe_webhook_endpoint_id",
            "invoice_days_until_due",
            "payment_method_types",
            "invoice_memo",
            "invoice_footer",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in _SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned


@admin.register(Conference)
class ConferenceAdmin(admin.ModelAdmin[Conference]):
    form = ConferenceAdminForm
    list_display = ("name", "slug", "currency", "is_active")
    search_fields = ("name", "slug")


def _is_locked(obj: PurchaseOrder | None) -> bool:
    """Once approved, a PO's lines and terms are what the invoice says: no more edits."""
    return obj is not None and obj.status != PurchaseOrder.Status.DRAFT


class LineItemInline(admin.TabularInline[PurchaseOrderLineItem, PurchaseOrder]):
    model = PurchaseOrderLineItem
    extra = 0

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return not _is_locked(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return not _is_locked(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return not _is_locked(obj) and super().has_delete_permission(request, obj)


class PaymentInline(admin.TabularInline[PurchaseOrderPayment, PurchaseOrder]):
    model = PurchaseOrderPayment
    extra = 0
    can_delete = False
    readonly_fields: ClassVar = [
        "amount",
        "method",
        "reference",
        "payment_date",
        "stripe_invoice_id",
        "stripe_amount_paid_after",
        "recorded_at",
    ]

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class PurchaseOrderAdminForm(forms.ModelForm[PurchaseOrder]):
    """Adds "approve on save" to a draft's form: approval then queues the invoice (signals.py)."""

    approve = forms.BooleanField(
        required=False,
        help_text="Approve when saving: the invoice is then created and sent automatically.",
    )

    class Meta:
        model = PurchaseOrder
        # The admin passes its own field list (get_fields); these are the editable ones.
        fields = (
            "conference",
            "reference",
            "organization_name",
            "contact_name",
            "contact_email",
            "currency",
            "notes",
            "cancellation_reason",
        )


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(admin.ModelAdmin[PurchaseOrder]):
    form = PurchaseOrderAdminForm
    list_display = ("reference", "organization_name", "conference", "status", "stripe_invoice_id")
    list_filter = ("conference", "status")
    search_fields = ("reference", "organization_name", "contact_email", "stripe_invoice_id")
    inlines = (LineItemInline, PaymentInline)
    actions = ("approve_selected",)
    readonly_fields: ClassVar = [
        "uid",
        "generation",
        "status",
        "stripe_invoice_id",
        "stripe_invoice_url",
        "stripe_invoice_number",
        "stripe_invoice_status",
        "stripe_amount_due",
        "stripe_amount_paid",
        "stripe_amount_remaining",
        "invoice_credit",
        "approved_at",
        "approved_by",
        "cancelled_at",
        "cancelled_by",
        "invoice_create_started_at",
        "invoice_created_at",
        "invoice_lines_added_at",
        "invoice_finalized_at",
        "invoice_sent_at",
        "last_synced_at",
        "invoice_error",
        "invoice_error_at",
        "invoice_creation_blocked",
    ]

    def get_readonly_fields(self, request: Any, obj: PurchaseOrder | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if _is_locked(obj):
            fields += ["conference", "reference", "currency", "organization_name", "contact_email"]
        return fields

    def get_fields(self, request: Any, obj: PurchaseOrder | None = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if _is_locked(obj) and "approve" in fields:
            fields.remove("approve")
        return fields

    def save_related(self, request: Any, form: Any, formsets: Any, change: bool) -> None:
        # After the inlines: approval checks the lines as saved.
        super().save_related(request, form, formsets, change)
        po = form.instance
        if form.cleaned_data.get("approve") and po.status == PurchaseOrder.Status.DRAFT:
            self._approve(request, po)

    def _approve(self, request: Any, po: PurchaseOrder) -> bool:
        try:
            purchase_orders.approve_purchase_order(po, approved_by=request.user)
        except ValueError as refusal:  # InvalidTransition, InvalidPurchaseOrder: nothing changed
            self.message_user(request, str(refusal), level=messages.ERROR)
            return False
        return True

    @admin.action(description="Approve selected purchase orders (their invoices are sent)")
    def approve_selected(self, request: Any, queryset: Any) -> None:
        approved = sum(self._approve(request, po) for po in queryset)
        if approved:
            self.message_user(
                request,
                f"{approved} purchase order(s) approved; their invoices are being created.",
                level=messages.SUCCESS,
            )


@admin.register(StripeCustomer)
class StripeCustomerAdmin(admin.ModelAdmin[StripeCustomer]):
    list_display = ("email", "conference", "stripe_customer_id")
    readonly_fields: ClassVar = ["uid", "stripe_customer_id"]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    list_display = ("stripe_event_id", "type", "conference", "status", "attempts", "received_at")
    list_filter = ("status", "type", "conference")
    actions = ("replay_selected",)

    @admin.action(description="Replay selected events (reset and queue them again)")
    def replay_selected(self, request: Any, queryset: Any) -> None:
        result = stripe_events.replay_stripe_events(
            stripe_event_ids=list(queryset.values_list("stripe_event_id", flat=True))
        )
        self.message_user(
            request,
            f"{len(result.replayed)} event(s) queued again."
            + (
                f" {len(result.in_progress)} being processed right now were left alone."
                if result.in_progress
                else ""
            ),
            level=messages.SUCCESS,
        )

    readonly_fields: ClassVar = [
        "conference",
        "stripe_event_id",
        "type",
        "livemode",
        "api_version",
        "payload",
        "received_at",
    ]
