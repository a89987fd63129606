"""Conferences: their team, their settings (where the money goes, kept write-only) and the record
of every change to them.

A conference's page is for its team: viewers and organizers read it, its finance admins change it
(the form is in :mod:`invoicing.admin.conference_forms`). Only superusers add or delete
conferences; the team itself is on the "Conference roles" page (:mod:`invoicing.admin.teams`).
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from invoicing import access, background
from invoicing.admin.common import staff_member
from invoicing.admin.conference_forms import (
    CONFIRMATION_FIELDS,
    SECRET_FIELDS,
    ConferenceAdminForm,
    key_mode,
)
from invoicing.admin.receivables import ReceivablesViews
from invoicing.admin.scoping import ConferenceScopedAdmin
from invoicing.background import Job
from invoicing.logging import mask_secret
from invoicing.models import Conference, Role
from invoicing.services import conference_settings
from invoicing.services.webhook_endpoints import webhook_path

# The newest settings changes shown on a conference's page.
_HISTORY_ROWS = 50


class ConferenceAdmin(ReceivablesViews, ConferenceScopedAdmin[Conference]):
    form = ConferenceAdminForm
    conference_lookup = "pk"
    change_role = Role.FINANCE
    add_role = None
    list_display = (
        "name",
        "slug",
        "currency",
        "is_active",
        "stripe_key_display",
        "webhook_secret_display",
        "webhook_path_display",
        "receivables_link",
    )
    list_filter = ("is_active", "currency")
    search_fields = ("name", "slug")
    actions = ("reconcile_selected",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.is_superuser(request.user)

    def has_reconcile_permission(self, request: HttpRequest) -> bool:
        """Reconciling is a sync: an organizer's right."""
        return access.may_anywhere(request.user, Role.ORGANIZER)

    @admin.action(description="Reconcile with Stripe now", permissions=["reconcile"])
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[Conference]) -> None:
        allowed = access.scope(queryset, request.user, role=Role.ORGANIZER, through="pk")
        for conference in queryset.exclude(pk__in=allowed.values("pk")).order_by("slug"):
            self.message_user(
                request,
                f"{conference.slug}: not reconciled: you are not one of its organizers.",
                messages.WARNING,
            )
        for conference in allowed.order_by("slug"):
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

    def get_form(
        self,
        request: HttpRequest,
        obj: Conference | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[ConferenceAdminForm]:
        form = cast(type[ConferenceAdminForm], super().get_form(request, obj, change, **kwargs))
        # The form re-checks the password of the person saving: it needs their request.
        return type(form.__name__, (form,), {"request": request})

    def get_readonly_fields(self, request: HttpRequest, obj: Conference | None = None) -> list[str]:
        fields = [
            "stripe_key_display",
            "webhook_secret_display",
            "stripe_webhook_endpoint_id",
            "stripe_account_id",
            "team_display",
            "settings_changes_display",
            "created_at",
            "updated_at",
        ]
        if obj is not None:
            # The slug is in the webhook URL and in every invoice's metadata: it never changes.
            fields.insert(0, "slug")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Conference | None = None) -> Any:
        editable = (
            self.has_change_permission(request, obj)
            if obj is not None
            else self.has_add_permission(request)
        )
        general: list[str] = [
            "slug",
            "name",
            "currency",
            "is_active",
            "approvals_need_second_person",
        ]
        stripe_fields = [
            "stripe_key_display",
            "stripe_secret_key",
            "webhook_secret_display",
            "stripe_webhook_secret",
            "stripe_webhook_endpoint_id",
            "stripe_account_id",
        ]
        confirm = list(CONFIRMATION_FIELDS)
        if obj is None:
            confirm.remove("switch_stripe_account")  # a new conference has no invoices to strand
        if not editable:
            # A read-only page would print an input's value: the secret inputs are for editors.
            stripe_fields = [name for name in stripe_fields if name not in SECRET_FIELDS]
            confirm = []
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": general}),
            ("Stripe", {"fields": stripe_fields, "description": self._stripe_help(request, obj)}),
            (
                "Invoices",
                {
                    "fields": [
                        "invoice_days_until_due",
                        "payment_method_types",
                        "invoice_memo",
                        "invoice_footer",
                        "invoice_shows_our_reference",
                        "automatic_tax",
                    ]
                },
            ),
        ]
        if confirm:
            fieldsets.append(("Confirm a change of where the money goes", {"fields": confirm}))
        if obj is not None:
            fieldsets.append(
                (
                    "Team and history",
                    {
                        "fields": [
                            "team_display",
                            "settings_changes_display",
                            "created_at",
                            "updated_at",
                        ]
                    },
                )
            )
        return fieldsets

    @staticmethod
    def _stripe_help(request: HttpRequest, obj: Conference | None) -> str:
        if obj is None:
            return (
                "Each conference uses its own Stripe account. Give Stripe this webhook endpoint: "
                "<code>https://&lt;this site&gt;/stripe/webhooks/&lt;slug&gt;/</code>."
            )
        return format_html(
            "Each conference uses its own Stripe account. Webhook endpoint to give Stripe: "
            "<code>{}</code><br>Register it (and store its signing secret) with "
            "<code>python manage.py register_stripe_webhook --conference {} --url {}</code>, "
            "or paste the secret of an endpoint made in the Dashboard or by "
            "<code>stripe listen</code> below.",
            request.build_absolute_uri(webhook_path(obj)),
            obj.slug,
            request.build_absolute_uri("/"),
        )

    @admin.display(description="Stripe secret key")
    def stripe_key_display(self, obj: Conference) -> str:
        key = obj.stripe_secret_key
        if not key:
            return "not set"
        return f"{mask_secret(key)} ({key_mode(key)} mode)"

    @admin.display(description="Webhook signing secret")
    def webhook_secret_display(self, obj: Conference) -> str:
        return "set" if obj.stripe_webhook_secret else "not set"

    @admin.display(description="Webhook endpoint path")
    def webhook_path_display(self, obj: Conference) -> str:
        return webhook_path(obj)

    @admin.display(description="Team")
    def team_display(self, obj: Conference) -> SafeString | str:
        roles = obj.roles.select_related("user").order_by("role", "user__username")
        if not roles:
            return "nobody yet (superusers only): a superuser grants roles on “Conference roles”"
        return format_html_join(
            ", ", "{} ({})", ((role.user.get_username(), role.get_role_display()) for role in roles)
        )

    @admin.display(description="Settings changes")
    def settings_changes_display(self, obj: Conference) -> SafeString | str:
        """Who changed or tried to change which settings, when: field names, never values."""
        changes = obj.settings_changes.select_related("changed_by")[:_HISTORY_ROWS]
        if not changes:
            return "none recorded"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    localtime(change.changed_at).strftime("%Y-%m-%d %H:%M:%S %Z"),
                    change.changed_by.get_username() if change.changed_by else "a command",
                    ", ".join(change.fields),
                    change.get_outcome_display()
                    + (" (switched Stripe account)" if change.switched_stripe_account else ""),
                    change.reason or "",
                )
                for change in changes
            ),
        )
        return format_html(
            '<table id="settings-changes"><thead><tr><th>When</th><th>Who</th><th>Fields</th>'
            "<th>Outcome</th><th>Why refused</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request: HttpRequest, obj: Conference, form: Any, change: bool) -> None:
        conference_form = cast(ConferenceAdminForm, form)
        conference_settings.save_conference_settings(
            conference=obj,
            fields=conference_form.fields_to_save,
            changed_by=staff_member(request),
            account_check=conference_form.account_check,
        )
