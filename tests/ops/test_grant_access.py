"""``grant_conference_access`` and the "Conference roles" page: a person's role in a conference."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from invoicing import access
from invoicing.models import ConferenceRole, Role
from tests.core.conftest import MakeConference

pytestmark = pytest.mark.django_db


def grant(*args: str) -> str:
    out = StringIO()
    call_command("grant_conference_access", *args, stdout=out)
    return out.getvalue()


def test_grant_lets_the_person_in_and_replaces_their_role(make_conference: MakeConference) -> None:
    conference = make_conference(slug="pycon")
    ada = User.objects.create_user("ada", password="pw")
    out = grant("--conference", "pycon", "--user", "ada", "--role", "viewer")
    assert (
        out == "ada is now viewer of pycon.\nada may now sign in to the admin (staff status set).\n"
    )
    ada.refresh_from_db()
    assert ada.is_staff
    assert access.role_in(ada, conference.pk) == Role.VIEWER

    grant("--conference", "pycon", "--user", "ada", "--role", "finance")
    assert list(ConferenceRole.objects.values_list("user__username", "role")) == [
        ("ada", "finance")
    ]

    assert grant("--conference", "pycon", "--user", "ada", "--revoke") == (
        "ada no longer has a role in pycon.\n"
    )
    assert not ConferenceRole.objects.exists()
    assert grant("--conference", "pycon", "--user", "ada", "--revoke") == (
        "ada had no role in pycon; nothing changed.\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--conference", "nope", "--user", "ada", "--role", "viewer"], "No conference 'nope'"),
        (["--conference", "pycon", "--user", "nobody", "--role", "viewer"], "No user 'nobody'"),
        (["--conference", "pycon", "--user", "ada", "--role", "owner"], "invalid choice"),
        (["--conference", "pycon", "--user", "ada"], "one of the arguments --role --revoke"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    make_conference: MakeConference, args: list[str], error: str
) -> None:
    make_conference(slug="pycon")
    User.objects.create_user("ada", password="pw")
    with pytest.raises(CommandError, match=error):
        grant(*args)
    assert not ConferenceRole.objects.exists()
    assert not User.objects.get(username="ada").is_staff


def test_superusers_grant_on_the_roles_page_and_nobody_else_sees_it(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference(slug="pycon")
    ada = User.objects.create_user("ada", password="pw")
    response = admin_client.post(
        reverse("admin:invoicing_conferencerole_add"),
        {"conference": str(conference.pk), "user": str(ada.pk), "role": "organizer"},
    )
    assert response.status_code == 302
    ada.refresh_from_db()
    assert ada.is_staff
    assert access.role_in(ada, conference.pk) == Role.ORGANIZER

    organizer = Client()
    organizer.force_login(ada)
    assert organizer.get(reverse("admin:invoicing_conferencerole_changelist")).status_code == 403
    assert "Conference roles" not in organizer.get(reverse("admin:index")).content.decode()

    role = ConferenceRole.objects.get()
    admin_client.post(
        reverse("admin:invoicing_conferencerole_delete", args=[role.pk]), {"post": "yes"}
    )
    assert not ConferenceRole.objects.exists()
