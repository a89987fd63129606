"""``manage.py grant_conference_access --conference <slug> --user <username> --role <role>``.

Gives a person a role in one conference (``viewer``, ``organizer`` or ``finance``), replacing the
role they held there, or takes it away with ``--revoke``. The admin's "Conference roles" page does
the same for superusers.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoicing.models import Conference, Role
from invoicing.services import conference_access


class Command(BaseCommand):
    help = "Grant (or with --revoke, take away) a person's role in one conference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conference", metavar="SLUG", required=True)
        parser.add_argument("--user", metavar="USERNAME", required=True)
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument(
            "--role",
            choices=Role.values,
            help="viewer: reads; organizer: also runs the POs; finance: also the money settings.",
        )
        action.add_argument(
            "--revoke", action="store_true", help="Take away the role the user holds there."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["conference"]
        username: str = options["user"]
        conference = Conference.objects.filter(slug=slug).first()
        if conference is None:
            raise CommandError(f"No conference {slug!r}.")
        user = get_user_model()._default_manager.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"No user {username!r}; a superuser creates it on the admin's Users page first."
            )
        if options["revoke"]:
            if conference_access.revoke_conference_role(conference=conference, user=user):
                self.stdout.write(f"{username} no longer has a role in {slug}.")
            else:
                self.stdout.write(f"{username} had no role in {slug}; nothing changed.")
            return
        role = Role(options["role"])
        was_staff = user.is_staff
        conference_access.grant_conference_role(conference=conference, user=user, role=role)
        self.stdout.write(f"{username} is now {role.label.lower()} of {slug}.")
        if not was_staff:
            self.stdout.write(f"{username} may now sign in to the admin (staff status set).")
