"""Who may see and do what, conference by conference (DESIGN.md, invariant 7).

A person holds at most one role in a conference (:class:`~invoicing.models.teams.Role`): a
**viewer** reads its POs, ledger, events and customers; an **organizer** also creates and edits
drafts, approves, syncs, voids, re-issues, cancels, reduces what a PO owes, records payments and
replays events; a **finance admin** also changes the conference's settings, where its money goes
included, and refunds payments (money leaving the conference's account, like its settings).
Superusers hold every role everywhere. Nothing else opens a conference: Django's model permissions
and groups do not (they still govern users, groups and the beat's schedule).

Selectors only: the admin filters every queryset and checks every object through them, and the
services ask :func:`second_approver_refusal` before approving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar

from django.db.models import Model, QuerySet

from invoicing.models import Conference, ConferenceRole, PurchaseOrder, Role

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    Person = AbstractBaseUser | AnonymousUser

_M = TypeVar("_M", bound=Model)

# The least role that takes the PO admin's actions (approve, retry creation, sync, void, re-issue,
# cancel): the actions refuse anyone else, and the PO page offers their buttons to no one else.
PURCHASE_ORDER_ACTIONS_ROLE: Final = Role.ORGANIZER

# Cached on the user object, as Django's ModelBackend caches permissions: one query per request.
_CACHE_ATTRIBUTE = "_conference_roles_cache"


def is_superuser(user: Person) -> bool:
    return bool(user.is_active and getattr(user, "is_superuser", False))


def roles_of(user: Person) -> dict[int, Role]:
    """The user's role in each conference where they hold one (conference pk -> role)."""
    if not user.is_authenticated or not user.is_active:
        return {}
    cached: dict[int, Role] | None = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is None:
        cached = {
            conference_id: Role(role)
            for conference_id, role in ConferenceRole.objects.filter(user_id=user.pk).values_list(
                "conference_id", "role"
            )
        }
        setattr(user, _CACHE_ATTRIBUTE, cached)
    return cached


def forget_roles(user: Any) -> None:
    """Drop the cached roles (after a grant or a revoke for this very user object)."""
    if hasattr(user, _CACHE_ATTRIBUTE):
        delattr(user, _CACHE_ATTRIBUTE)


def role_in(user: Person, conference_id: int | None) -> Role | None:
    """The user's role in the conference (superusers: finance admin everywhere)."""
    if is_superuser(user):
        return Role.FINANCE
    if conference_id is None:
        return None
    return roles_of(user).get(conference_id)


def may(user: Person, conference_id: int | None, role: Role) -> bool:
    """Whether the user may do, in that conference, what ``role`` may."""
    held = role_in(user, conference_id)
    return held is not None and held.includes(role)


def may_anywhere(user: Person, role: Role) -> bool:
    """Whether some conference lets the user do what ``role`` may (menus, action lists)."""
    return is_superuser(user) or any(held.includes(role) for held in roles_of(user).values())


def conference_ids(user: Person, role: Role) -> list[int]:
    """The conferences where the user may do what ``role`` may (not meaningful for superusers)."""
    return sorted(pk for pk, held in roles_of(user).items() if held.includes(role))


def scope(
    queryset: QuerySet[_M], user: Person, *, role: Role = Role.VIEWER, through: str = "conference"
) -> QuerySet[_M]:
    """Only the rows of conferences where the user may do what ``role`` may.

    ``through`` is the lookup from the queryset's model to its conference (``"pk"`` for
    conferences themselves).
    """
    if is_superuser(user):
        return queryset
    return queryset.filter(**{f"{through}__in": conference_ids(user, role)})


def conferences(user: Person, *, role: Role = Role.VIEWER) -> QuerySet[Conference]:
    """The conferences the user may act on as ``role`` (choices of a PO's conference field)."""
    return scope(Conference.objects.all(), user, role=role, through="pk")


def second_approver_refusal(purchase_order: PurchaseOrder, approver: Person | None) -> str:
    """Why ``approver`` may not approve the PO under the second-approver rule ("" when they may).

    When the conference asks for a second person, whoever created or last edited the PO cannot
    approve it, and neither can an approval nobody signs (a script, a test).
    """
    if not purchase_order.conference.approvals_need_second_person:
        return ""
    if approver is None or approver.pk is None:
        return "approvals in this conference need a second person, and nobody signed this one."
    if approver.pk in {purchase_order.created_by_id, purchase_order.last_edited_by_id}:
        return (
            "approvals in this conference need a second person: whoever created or last edited "
            "a purchase order cannot approve it; ask another organizer."
        )
    return ""


def may_refund(user: Person, conference_id: int | None) -> bool:
    """Whether the user may give a PO's money back: finance admins only.

    A refund sends money out of the conference's Stripe account, the same decision as where that
    money goes (the conference's Stripe settings), so it takes the same role.
    """
    return may(user, conference_id, Role.FINANCE)


def may_reduce(user: Person, conference_id: int | None) -> bool:
    """Whether the user may lower what a PO's open invoice asks (organizers, as void and cancel,
    which already stop the invoice asking anything; no money leaves the account)."""
    return may(user, conference_id, Role.ORGANIZER)
