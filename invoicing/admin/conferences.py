"""Conferences: where each one's money goes (its Stripe key and webhook secret), kept write-only."""

from __future__ import annotations

import logging
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from invoicing import background
from invoicing.background import Job
from invoicing.logging import mask_secret
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services.webhook_endpoints import webhook_path

logger = logging.getLogger(__name__)

Method = PurchaseOrderPayment.Method

_SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secret")
_SECRET_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")


def _key_mode(key: str) -> str:
    return "live" if key.startswith(("sk_live_", "rk_live_")) else "test"


def _write_only_secret(*, label: str, help_text: str) -> forms.CharField:
    """An input that is never filled in from the stored value; blank means "keep it"."""
    return forms.CharField(
        required=False,
        strip=True,
        label=label,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=help_text,
    )


class ConferenceAdminForm(forms.ModelForm[Conference]):
    """Secrets are write-only: blank input keeps the stored value, which never reaches the page."""

    stripe_secret_key = _write_only_secret(
        label="New Stripe secret key",
        help_text=(
            "The conference's own secret key (sk_test_… / sk_live_…) or a restricted key "
            "(rk_…). Stored encrypted. Leave empty to keep the current key."
        ),
    )
    stripe_webhook_secret = _write_only_secret(
        label="New webhook signing secret",
        help_text=(
            "whsec_… Only needed when the endpoint was not registered with "
            "register_stripe_webhook (e.g. `stripe listen`). Leave empty to keep the current one."
        ),
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
            "invoice_days_until_due",
            "payment_method_types",
            "invoice_memo",
            "invoice_footer",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored plaintext must not even sit in the form's initial data.
        for name in _SECRET_FIELDS:
            self.initial.pop(name, None)

    def clean_stripe_secret_key(self) -> str:
        key: str = self.cleaned_data.get("stripe_secret_key") or ""
        if not key:
            return key
        if key.startswith("pk_"):
            raise ValidationError(
                "That is a publishable key (pk_…). Paste the secret key (sk_…) or a restricted "
                "key (rk_…) from the Stripe Dashboard, Developers > API keys."
            )
        if not key.startswith(_SECRET_KEY_PREFIXES) or not key.replace("_", "").isalnum():
            raise ValidationError(
                "A Stripe secret key looks like sk_test_… or sk_live_… (or rk_… when restricted)."
            )
        previous = self.instance.stripe_secret_key if self.instance.pk else ""
        if previous and _key_mode(previous) != _key_mode(key) and self._has_stripe_history():
            raise ValidationError(
                f"This conference has invoices in {_key_mode(previous)} mode; a "
                f"{_key_mode(key)}-mode key would make them unreachable and its webhooks would "
                "be refused. Use a new conference for the other mode."
            )
        return key

    def clean_stripe_webhook_secret(self) -> str:
        secret: str = self.cleaned_data.get("stripe_webhook_secret") or ""
        if secret and (not secret.startswith("whsec_") or not secret[6:].isalnum()):
            raise ValidationError("A webhook signing secret looks like whsec_….")
        return secret

    def _has_stripe_history(self) -> bool:
        return (
            PurchaseOrder.objects.filter(conference=self.instance)
            .exclude(stripe_invoice_id="")
            .exists()
            or PurchaseOrderPayment.objects.filter(
                purchase_order__conference=self.instance, method=Method.STRIPE
            ).exists()
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in _SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned

    @property
    def fields_to_save(self) -> list[str]:
        """Changed fields; a blank secret input is "keep", not a change."""
        return [
            name
            for name in self.changed_data
            if name not in _SECRET_FIELDS or self.data.get(name, "").strip()
        ]


class ConferenceAdmin(admin.ModelAdmin[Conference]):
    form = ConferenceAdminForm
    list_display = (
        "name",
        "slug",
        "currency",
        "is_active",
        "stripe_key_display",
        "webhook_secret_display",
        "webhook_path_display",
    )
    list_filter = ("is_active", "currency")
    search_fields = ("name", "slug")
    actions = ("reconcile_selected",)

    @admin.action(description="Reconcile with Stripe now", permissions=["change"])
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[Conference]) -> None:
        for conference in queryset.order_by("slug"):
            if not conference.is_active or not conference.has_stripe_key:
                self.message_user(
                    request,
                    f"{conference.slug}: not reconciled: it is inactive or has no Stripe key.",
                    messages.WARNING,
                )
                continue
            if background.request(Job.RECONCILE_CONFERENCE, conference.pk):
                self.message_user(
                    request,
                    f"{conference.slug}: reconciliation queued (Stripe's events and every open "
                    "invoice are compared with the ledger).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{conference.slug}: could not queue the reconciliation (the broker did not "
                    "answer); try again in a moment.",
                    messages.ERROR,
                )

    def get_readonly_fields(self, request: HttpRequest, obj: Conference | None = None) -> list[str]:
        fields = [
            "stripe_key_display",
            "webhook_secret_display",
            "stripe_webhook_endpoint_id",
            "created_at",
            "updated_at",
        ]
        if obj is not None:
            # The slug is in the webhook URL and in every invoice's metadata: it never changes.
            fields.insert(0, "slug")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Conference | None = None) -> Any:
        general: list[str] = ["slug", "name", "currency", "is_active"]
        stripe_fields = [
            "stripe_key_display",
            "stripe_secret_key",
            "webhook_secret_display",
            "stripe_webhook_secret",
            "stripe_webhook_endpoint_id",
        ]
        description = (
            "Each conference uses its own Stripe account. Give Stripe this webhook endpoint: "
            "<code>https://&lt;this site&gt;/stripe/webhooks/&lt;slug&gt;/</code>."
        )
        if obj is not None:
            endpoint = request.build_absolute_uri(webhook_path(obj))
            description = format_html(
                "Each conference uses its own Stripe account. Webhook endpoint to give Stripe: "
                "<code>{}</code><br>Register it (and store its signing secret) with "
                "<code>python manage.py register_stripe_webhook --conference {} --url {}</code>, "
                "or paste the secret of an endpoint made in the Dashboard or by "
                "<code>stripe listen</code> below.",
                endpoint,
                obj.slug,
                request.build_absolute_uri("/"),
            )
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": general}),
            ("Stripe", {"fields": stripe_fields, "description": description}),
            (
                "Invoices",
                {
                    "fields": [
                        "invoice_days_until_due",
                        "payment_method_types",
                        "invoice_memo",
                        "invoice_footer",
                    ]
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("History", {"fields": ["created_at", "updated_at"]}))
        return fieldsets

    @admin.display(description="Stripe secret key")
    def stripe_key_display(self, obj: Conference) -> str:
        key = obj.stripe_secret_key
        if not key:
            return "not set"
        return f"{mask_secret(key)} ({_key_mode(key)} mode)"

    @admin.display(description="Webhook signing secret")
    def webhook_secret_display(self, obj: Conference) -> str:
        return "set" if obj.stripe_webhook_secret else "not set"

    @admin.display(description="Webhook endpoint path")
    def webhook_path_display(self, obj: Conference) -> str:
        return webhook_path(obj)

    def save_model(self, request: HttpRequest, obj: Conference, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        fields = cast(ConferenceAdminForm, form).fields_to_save
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])
            logger.info(
                "conference %s: changed in the admin by %s (%s)",
                obj.slug,
                request.user,
                ", ".join(sorted(fields)),
            )
