"""The "Conference roles" page: who holds which role in which conference (superusers only).

Adding, changing and deleting a row go through the same services as ``grant_conference_access``,
so a grant also lets the person into the admin and both leave the same log line.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from invoicing import access
from invoicing.admin.common import staff_member
from invoicing.models import ConferenceRole, Role
from invoicing.services import conference_access


class ConferenceRoleAdmin(admin.ModelAdmin[ConferenceRole]):
    list_display = ("user", "conference", "role", "granted_by", "granted_at")
    list_filter = ("role", "conference")
    list_select_related = ("user", "conference", "granted_by")
    search_fields = ("user__username", "user__email", "conference__name", "conference__slug")
    autocomplete_fields = ("user", "conference")
    fields = ("conference", "user", "role", "granted_by", "granted_at")
    readonly_fields = ("granted_by", "granted_at")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.is_superuser(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.is_superuser(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.is_superuser(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.is_superuser(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.is_superuser(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: ConferenceRole | None = None) -> Any:
        # A row is one person in one conference: to move it, revoke it and grant another.
        if obj is not None:
            return ("conference", "user", *self.readonly_fields)
        return self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: ConferenceRole, form: Any, change: bool
    ) -> None:
        granted = conference_access.grant_conference_role(
            conference=obj.conference,
            user=obj.user,
            role=Role(obj.role),
            granted_by=staff_member(request),
        )
        obj.pk, obj.granted_at, obj.granted_by = granted.pk, granted.granted_at, granted.granted_by

    def delete_model(self, request: HttpRequest, obj: ConferenceRole) -> None:
        conference_access.revoke_conference_role(
            conference=obj.conference, user=obj.user, revoked_by=staff_member(request)
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ConferenceRole]) -> None:
        for role in queryset.select_related("conference", "user"):
            self.delete_model(request, role)
