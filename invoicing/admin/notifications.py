"""E-mail notifications: each organizer's own choices per conference, and the log of what was sent.

A person chooses for themselves, in conferences they organize (superusers may set anyone's);
the services send only to people who are still organizers there (``services/notifications.py``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from invoicing import access
from invoicing.admin.common import ReadOnlyAdminMixin
from invoicing.admin.scoping import ConferenceScopedAdmin
from invoicing.models import Notification, NotificationKind, NotificationSubscription, Role


class NotificationSubscriptionForm(forms.ModelForm[NotificationSubscription]):
    kinds = forms.MultipleChoiceField(
        choices=NotificationKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="E-mail me when",
    )

    class Meta:
        model = NotificationSubscription
        fields = ("conference", "user", "kinds")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        conference, user = cleaned.get("conference"), cleaned.get("user", self.instance.user_id)
        user_id = getattr(user, "pk", user)
        duplicate = NotificationSubscription.objects.filter(conference=conference, user_id=user_id)
        if conference is not None and duplicate.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(
                "These e-mails are already chosen for this conference; change that entry instead."
            )
        return cleaned


class NotificationSubscriptionAdmin(ConferenceScopedAdmin[NotificationSubscription]):
    form = NotificationSubscriptionForm
    list_display = ("user", "conference", "kinds_display", "updated_at")
    list_filter = (("conference", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("conference", "user")

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationSubscription]:
        queryset = super().get_queryset(request)
        if access.is_superuser(request.user):
            return queryset
        return queryset.filter(user__pk=request.user.pk or 0)  # each person's own choices

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if access.is_superuser(request.user):
            return ["conference", "user", "kinds"]
        return ["conference", "kinds"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if not access.is_superuser(request.user):
            user_pk = request.user.pk

            class OwnChoicesForm(form):  # type: ignore[valid-type,misc]
                def __init__(self, *args: Any, **kw: Any) -> None:
                    super().__init__(*args, **kw)
                    self.instance.user_id = user_pk

            return OwnChoicesForm
        return form

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "conference":
            # Organizers choose e-mails about the conferences they organize, and no other.
            kwargs["queryset"] = access.conferences(request.user, role=Role.ORGANIZER)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.user_id != request.user.pk:
            return access.is_superuser(request.user)
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    @admin.display(description="E-mails")
    def kinds_display(self, obj: NotificationSubscription) -> str:
        labels = dict(NotificationKind.choices)
        return ", ".join(str(labels.get(kind, kind)) for kind in obj.kinds) or "none"


class NotificationAdmin(ReadOnlyAdminMixin, ConferenceScopedAdmin[Notification]):
    list_display = ("subject", "kind", "recipient", "status", "created_at", "sent_at")
    list_filter = ("kind", "status", ("conference", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("recipient", "conference")
    search_fields = ("subject", "key", "recipient__email")
    fields = (
        "kind",
        "key",
        "conference",
        "purchase_order",
        "recipient",
        "subject",
        "body",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
    )
