"""Granting and revoking a person's role in a conference (the command and the admin's team page).

A grant also lets the person into the admin (``is_staff``): a role they could not reach would be a
puzzle. Revoking leaves ``is_staff`` alone, since the person may hold roles elsewhere.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction

from invoicing import access
from invoicing.models import Conference, ConferenceRole, Role

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def grant_conference_role(
    *, conference: Conference, user: User, role: Role, granted_by: User | None = None
) -> ConferenceRole:
    """Give ``user`` the ``role`` in ``conference``, replacing the role they held there."""
    with transaction.atomic():
        granted, _ = ConferenceRole.objects.update_or_create(
            conference=conference,
            user=user,
            defaults={"role": role, "granted_by": granted_by},
        )
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    access.forget_roles(user)
    logger.info(
        "conference %s: %s is now %s (granted by %s)",
        conference.slug,
        user.get_username(),
        role.label.lower(),
        granted_by.get_username() if granted_by else "a command",
    )
    return granted


def revoke_conference_role(
    *, conference: Conference, user: User, revoked_by: User | None = None
) -> bool:
    """Take away ``user``'s role in ``conference``; False when they held none."""
    deleted, _ = ConferenceRole.objects.filter(conference=conference, user=user).delete()
    access.forget_roles(user)
    if deleted:
        logger.info(
            "conference %s: %s no longer holds a role (revoked by %s)",
            conference.slug,
            user.get_username(),
            revoked_by.get_username() if revoked_by else "a command",
        )
    return bool(deleted)
