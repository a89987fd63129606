"""Each conference's team sees and touches its own conference's objects, and nothing else.

Every model admin and inline of the app derives from these two classes, so the changelist, its
search, filters and date drill-down, the change, delete and history pages, the inlines, the
actions and the autocomplete all start from one scoped queryset (:func:`invoicing.access.scope`)
and one permission rule per object (:func:`invoicing.access.may`). Another conference's object
is a 404, exactly like one that does not exist: its id tells nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from invoicing import access
from invoicing.models import Conference, Role

_M = TypeVar("_M", bound=Model)
_P = TypeVar("_P", bound=Model)


def conference_id_of(obj: Model) -> int | None:
    """The conference an admin object belongs to (a conference belongs to itself)."""
    if isinstance(obj, Conference):
        return obj.pk
    conference_id: int | None = getattr(obj, "conference_id", None)
    return conference_id


def _may(request: HttpRequest, obj: Model | None, role: Role) -> bool:
    """Without an object: whether some conference allows it (menus, buttons, action lists)."""
    if obj is None:
        return access.may_anywhere(request.user, role)
    return access.may(request.user, conference_id_of(obj), role)


class ConferenceScopedAdmin(admin.ModelAdmin[_M]):
    """A model admin whose rows each belong to one conference (``conference_lookup``)."""

    conference_lookup: ClassVar[str] = "conference"
    change_role: ClassVar[Role] = Role.ORGANIZER
    delete_role: ClassVar[Role] = Role.ORGANIZER
    # None: only superusers add (conferences: a new one has no team yet).
    add_role: ClassVar[Role | None] = Role.ORGANIZER

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        return access.scope(
            super().get_queryset(request), request.user, through=self.conference_lookup
        )

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> _M | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Django would redirect with "doesn't exist"; a 404 says the same for every id.
            raise Http404(f"No {self.opts.verbose_name} here.")
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.may_anywhere(request.user, Role.VIEWER)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, Role.VIEWER)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, self.change_role)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, self.delete_role)

    def has_add_permission(self, request: HttpRequest) -> bool:
        if self.add_role is None:
            return access.is_superuser(request.user)
        return access.may_anywhere(request.user, self.add_role)


class ConferenceScopedInline(InlineModelAdmin[_M, _P]):
    """An inline on a conference's object (``obj`` is the parent); rows scoped the same way."""

    conference_lookup: ClassVar[str] = "purchase_order__conference"
    change_role: ClassVar[Role] = Role.ORGANIZER

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        return access.scope(
            super().get_queryset(request), request.user, through=self.conference_lookup
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, Role.VIEWER)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, self.change_role)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, self.change_role)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, self.change_role)
