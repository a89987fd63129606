"""What the admin's modules share: who is asking, how an amount is shown, rows nobody edits."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

from invoicing import money

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def staff_member(request: HttpRequest) -> User | None:
    """The signed-in staff member, for the ``*_by`` columns of the services."""
    user = request.user
    return user if user.is_authenticated else None


def amount_or_dash(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else money.format_display(amount, currency)


class ReadOnlyAdminMixin:
    """Rows only the services write: visible, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
