"""Where a conference's money goes changes only by its finance admin, password typed again, and
never silently to another Stripe account while invoices are open; every attempt is on record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from invoicing.models import Conference, ConferenceSettingsChange, Role
from tests.ops.teams import PASSWORD, Team, conference_form
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

Outcome = ConferenceSettingsChange.Outcome


@pytest.fixture
def team(make_team: Callable[[str], Team]) -> Team:
    """A conference with open invoices (one part paid), and its finance admin."""
    return make_team("Money")


def post_settings(client: Client, conference: Conference, **fields: str) -> Any:
    return client.post(
        reverse("admin:invoicing_conference_change", args=[conference.pk]),
        conference_form(conference, **fields),
    )


def stored(conference: Conference) -> Conference:
    return Conference.objects.get(pk=conference.pk)


def history(conference: Conference) -> list[tuple[str, list[str], str]]:
    return [
        (change.outcome, change.fields, change.changed_by.username if change.changed_by else "")
        for change in ConferenceSettingsChange.objects.filter(conference=conference).order_by("pk")
    ]


def test_a_change_with_the_password_is_applied_and_on_record(team: Team) -> None:
    client = team.client(Role.FINANCE)
    response = post_settings(
        client,
        team.conference,
        invoice_footer="Thank you for sponsoring!",
        invoice_days_until_due="45",
        current_password=PASSWORD,
    )
    assert response.status_code == 302
    conference = stored(team.conference)
    assert conference.invoice_footer == "Thank you for sponsoring!"
    assert history(conference) == [
        (Outcome.APPLIED, ["invoice_days_until_due", "invoice_footer"], "money-finance")
    ]
    page = client.get(reverse("admin:invoicing_conference_change", args=[conference.pk]))
    table = page.content.decode().split('id="settings-changes"')[1].split("</table>")[0]
    assert "money-finance" in table
    assert "invoice_days_until_due, invoice_footer" in table
    assert "Thank you for sponsoring" not in table  # names, never values


def test_terms_alone_need_no_password(team: Team) -> None:
    response = post_settings(
        team.client(Role.FINANCE), team.conference, invoice_days_until_due="60"
    )
    assert response.status_code == 302
    assert stored(team.conference).invoice_days_until_due == 60


@pytest.mark.parametrize("password", ["", "not-my-password"], ids=["missing", "wrong"])
def test_a_key_change_without_the_password_is_refused_and_recorded(
    team: Team, stripe_emulator: EmulatorHandle, password: str
) -> None:
    requests_before = len(stripe_emulator.requests())
    response = post_settings(
        team.client(Role.FINANCE),
        team.conference,
        stripe_secret_key=stripe_emulator.new_secret_key(),
        invoice_footer="Wire to IBAN XX00 0000",
        current_password=password,
    )
    assert response.status_code == 200
    assert "Type your password again" in response.content.decode()
    conference = stored(team.conference)
    assert conference.stripe_secret_key == team.key
    assert conference.invoice_footer == ""
    assert history(conference) == [
        (Outcome.REFUSED, ["invoice_footer", "stripe_secret_key"], "money-finance")
    ]
    # Refused before Stripe was asked anything.
    assert len(stripe_emulator.requests()) == requests_before


def test_wrong_passwords_here_count_as_failed_logins(team: Team, settings: Any) -> None:
    client = team.client(Role.FINANCE)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        post_settings(client, team.conference, invoice_memo="x", current_password="guess")
    assert AccessAttempt.objects.filter(username="money-finance").exists()
    # Locked out (django-axes answers 429): even the right password no longer confirms anything.
    response = post_settings(client, team.conference, invoice_memo="x", current_password=PASSWORD)
    assert response.status_code == 429
    assert stored(team.conference).invoice_memo == ""


def test_the_secret_never_reaches_a_read_only_page(team: Team) -> None:
    for role in (Role.VIEWER, Role.ORGANIZER):
        page = team.client(role).get(
            reverse("admin:invoicing_conference_change", args=[team.conference.pk])
        )
        html = page.content.decode()
        assert page.status_code == 200
        assert team.key not in html
        assert "whsec_team" not in html
        assert 'name="current_password"' not in html


def test_a_key_change_without_open_invoices_asks_stripe_nothing(
    stripe_emulator: EmulatorHandle, settings: Any, make_conference: Any, admin_client: Client
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    conference = make_conference(secret_key=stripe_emulator.new_secret_key())
    requests_before = len(stripe_emulator.requests())
    new_key = stripe_emulator.new_secret_key()
    response = post_settings(
        admin_client, conference, stripe_secret_key=new_key, current_password="password"
    )
    assert response.status_code == 302
    assert stored(conference).stripe_secret_key == new_key
    assert len(stripe_emulator.requests()) == requests_before


# --- the account behind a new key (GET /v1/account, and the Dashboard's key roll) ---------------


def post_key(team: Team, key: str, **fields: str) -> Any:
    """The finance admin, password typed again, gives the conference ``key``."""
    return post_settings(
        team.client(Role.FINANCE),
        team.conference,
        stripe_secret_key=key,
        current_password=PASSWORD,
        **fields,
    )


def test_another_account_is_refused_while_invoices_are_open(
    team: Team, stripe_emulator: EmulatorHandle
) -> None:
    response = post_key(team, stripe_emulator.new_secret_key())
    assert response.status_code == 200
    assert "belongs to another Stripe account" in response.content.decode()
    assert stored(team.conference).stripe_secret_key == team.key
    assert history(team.conference) == [(Outcome.REFUSED, ["stripe_secret_key"], "money-finance")]


def test_a_rolled_key_of_the_same_account_is_accepted(
    team: Team, stripe_emulator: EmulatorHandle
) -> None:
    rolled = stripe_emulator.roll_key(team.key, expires_in=3600)
    assert post_key(team, rolled).status_code == 302
    conference = stored(team.conference)
    assert conference.stripe_secret_key == rolled
    assert conference.stripe_account_id.startswith("acct_")


def test_switching_accounts_takes_the_explicit_confirmation(
    team: Team, stripe_emulator: EmulatorHandle
) -> None:
    other_account = stripe_emulator.new_secret_key()
    assert post_key(team, other_account, switch_stripe_account="on").status_code == 302
    assert stored(team.conference).stripe_secret_key == other_account
    change = ConferenceSettingsChange.objects.get(conference=team.conference)
    assert change.switched_stripe_account


def test_a_key_rolled_after_the_old_one_expired_needs_the_known_account(
    team: Team, stripe_emulator: EmulatorHandle
) -> None:
    """With the old key already dead, only the account stored at the last check can vouch."""
    first = stripe_emulator.roll_key(team.key, expires_in=3600)
    assert post_key(team, first).status_code == 302  # checked: the account is now stored
    second = stripe_emulator.roll_key(first, expires_in=0)  # the Dashboard's "expire now"
    assert post_key(team, second).status_code == 302
    assert stored(team.conference).stripe_secret_key == second

    Conference.objects.filter(pk=team.conference.pk).update(stripe_account_id="")
    third = stripe_emulator.roll_key(second, expires_in=0)
    response = post_key(team, third)
    assert response.status_code == 200
    assert "cannot be compared with the current key" in response.content.decode()
    assert stored(team.conference).stripe_secret_key == second
