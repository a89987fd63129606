"""Conferences are separate teams (DESIGN.md, invariant 7): a walk over every admin URL and action.

Conference A's viewer, organizer and finance admin try every page, form, filter, search,
autocomplete and action of the admin against conference B's objects, and B's people against A's.
Each step must answer 404 (the object does not exist for them), 403, or a page without any of the
other conference's data; after the walk the database is the same to the last column, nothing was
queued for a worker and the other conference's Stripe account saw no request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from invoicing.models import Role
from invoicing.services import conference_access
from tests.ops.teams import (
    PASSWORD,
    Team,
    conference_form,
    database_state,
    manual_payment,
    new_po_form,
    po_form,
)
from tests.pipeline.conftest import PublishLog, published  # noqa: F401 (fixture)
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("embedded_worker_paused")]

PO = "admin:invoicing_purchaseorder"
CONFERENCE = "admin:invoicing_conference"
EVENT = "admin:invoicing_stripeevent"
CUSTOMER = "admin:invoicing_stripecustomer"
ROLE = "admin:invoicing_conferencerole"

NOT_FOUND = {404}
REFUSED = {403, 404}
# A 200 or a redirect back to the list is fine as long as nothing of the other team shows.
ANSWERED = {200, 302}


@dataclass(frozen=True)
class Step:
    name: str
    request: Callable[[Client, Team, Team], Any]  # (client, own team, other team)
    allowed: set[int]


def url(name: str, *args: object) -> str:
    return reverse(name, args=args)


def searched(value: str) -> str:
    """Most of ``value``: the search matches it, while the page's echo of the term is no leak."""
    return value[:-3]


def action(changelist: str, name: str, *pks: int, **extra: str) -> Callable[..., Any]:
    def post(client: Client, own: Team, other: Team) -> Any:
        return client.post(
            url(f"{changelist}_changelist"),
            {"action": name, "_selected_action": [str(pk) for pk in pks], **extra},
        )

    return post


def action_on(changelist: str, name: str, pick: Callable[[Team], int], **extra: str) -> Step:
    def post(client: Client, own: Team, other: Team) -> Any:
        return action(changelist, name, pick(other), **extra)(client, own, other)

    return Step(f"action {name} on the other team's object", post, ANSWERED | REFUSED)


STEPS = [
    # Purchase orders: pages of the other team's objects.
    Step("PO change page", lambda c, o, x: c.get(url(f"{PO}_change", x.invoiced.pk)), NOT_FOUND),
    Step("PO history", lambda c, o, x: c.get(url(f"{PO}_history", x.invoiced.pk)), NOT_FOUND),
    Step("PO delete page", lambda c, o, x: c.get(url(f"{PO}_delete", x.draft.pk)), NOT_FOUND),
    Step(
        "PO delete",
        lambda c, o, x: c.post(url(f"{PO}_delete", x.draft.pk), {"post": "yes"}),
        NOT_FOUND,
    ),
    Step(
        "PO edit (move B's draft to A, change its contact)",
        lambda c, o, x: c.post(
            url(f"{PO}_change", x.draft.pk),
            po_form(x.draft, conference=str(o.conference.pk), contact_email="me@evil.example"),
        ),
        NOT_FOUND,
    ),
    Step(
        "PO wire payment",
        lambda c, o, x: c.post(
            url(f"{PO}_change", x.invoiced.pk),
            {**po_form(x.invoiced), **manual_payment(amount="5000.00", reference="IBAN")},
        ),
        NOT_FOUND,
    ),
    Step(
        "PO add in the other conference",
        lambda c, o, x: c.post(url(f"{PO}_add"), new_po_form(x.conference, "SNEAKY-1")),
        ANSWERED | REFUSED,
    ),
    Step(
        "own draft moved to the other conference",
        lambda c, o, x: c.post(
            url(f"{PO}_change", o.draft.pk), po_form(o.draft, conference=str(x.conference.pk))
        ),
        ANSWERED | REFUSED,
    ),
    # Purchase orders: lists, filters, search.
    Step("PO list", lambda c, o, x: c.get(url(f"{PO}_changelist")), ANSWERED),
    Step(
        "PO list filtered by the other conference",
        lambda c, o, x: c.get(
            url(f"{PO}_changelist"), {"conference__id__exact": str(x.conference.pk)}
        ),
        ANSWERED,
    ),
    Step(
        "PO search for the other team's invoice",
        lambda c, o, x: c.get(
            url(f"{PO}_changelist"), {"q": searched(x.invoiced.stripe_invoice_id)}
        ),
        ANSWERED,
    ),
    Step("PO add page", lambda c, o, x: c.get(url(f"{PO}_add")), ANSWERED | REFUSED),
    # Purchase orders: every action, confirmed.
    action_on(PO, "approve_selected", lambda t: t.draft.pk, confirm="yes"),
    action_on(PO, "sync_selected", lambda t: t.invoiced.pk),
    action_on(PO, "void_selected", lambda t: t.invoiced.pk, confirm="yes"),
    action_on(PO, "reissue_selected", lambda t: t.voided.pk, confirm="yes"),
    action_on(PO, "cancel_selected", lambda t: t.invoiced.pk, confirm="yes", reason="x"),
    action_on(PO, "cancel_selected", lambda t: t.draft.pk, confirm="yes", reason="x"),
    action_on(PO, "delete_selected", lambda t: t.draft.pk, post="yes"),
    # Conferences.
    Step(
        "conference page",
        lambda c, o, x: c.get(url(f"{CONFERENCE}_change", x.conference.pk)),
        NOT_FOUND,
    ),
    Step(
        "conference history",
        lambda c, o, x: c.get(url(f"{CONFERENCE}_history", x.conference.pk)),
        NOT_FOUND,
    ),
    Step(
        "conference delete",
        lambda c, o, x: c.post(url(f"{CONFERENCE}_delete", x.conference.pk), {"post": "yes"}),
        NOT_FOUND,
    ),
    Step(
        "conference key and footer replaced",
        lambda c, o, x: c.post(
            url(f"{CONFERENCE}_change", x.conference.pk),
            conference_form(
                x.conference,
                stripe_secret_key=o.key,
                invoice_footer="Wire to IBAN XX00 EVIL",
                current_password=PASSWORD,
            ),
        ),
        NOT_FOUND,
    ),
    Step("conference list", lambda c, o, x: c.get(url(f"{CONFERENCE}_changelist")), ANSWERED),
    Step(
        "conference search",
        lambda c, o, x: c.get(url(f"{CONFERENCE}_changelist"), {"q": searched(x.conference.slug)}),
        ANSWERED,
    ),
    action_on(CONFERENCE, "reconcile_selected", lambda t: t.conference.pk),
    # The webhook inbox and the customers.
    Step("event page", lambda c, o, x: c.get(url(f"{EVENT}_change", x.event.pk)), NOT_FOUND),
    Step("event list", lambda c, o, x: c.get(url(f"{EVENT}_changelist")), ANSWERED),
    Step(
        "event search by the other team's invoice",
        lambda c, o, x: c.get(
            url(f"{EVENT}_changelist"), {"q": searched(x.invoiced.stripe_invoice_id)}
        ),
        ANSWERED,
    ),
    Step(
        "event list filtered by the other conference",
        lambda c, o, x: c.get(
            url(f"{EVENT}_changelist"), {"conference__id__exact": str(x.conference.pk)}
        ),
        ANSWERED,
    ),
    action_on(EVENT, "replay_selected", lambda t: t.event.pk),
    Step(
        "customer page", lambda c, o, x: c.get(url(f"{CUSTOMER}_change", x.customer.pk)), NOT_FOUND
    ),
    Step("customer list", lambda c, o, x: c.get(url(f"{CUSTOMER}_changelist")), ANSWERED),
    # Autocomplete (the role page's conference field) and the team page itself.
    Step(
        "conference autocomplete",
        lambda c, o, x: c.get(
            reverse("admin:autocomplete"),
            {
                "app_label": "invoicing",
                "model_name": "conferencerole",
                "field_name": "conference",
                "term": "",
            },
        ),
        ANSWERED | REFUSED,
    ),
    Step("conference roles list", lambda c, o, x: c.get(url(f"{ROLE}_changelist")), REFUSED),
    Step("admin index", lambda c, o, x: c.get(reverse("admin:index")), ANSWERED),
]


def leaks(other: Team) -> list[str]:
    """What of the other team must never appear on any page."""
    return [
        other.conference.name,
        other.conference.slug,
        other.draft.reference,
        other.invoiced.reference,
        other.invoiced.stripe_invoice_id,
        other.event.stripe_event_id,
        other.customer.stripe_customer_id,
    ]


@pytest.mark.parametrize("direction", ["A against B", "B against A"])
@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
def test_no_step_reaches_the_other_conference(
    stripe_emulator: EmulatorHandle,
    make_team: Callable[[str], Team],
    published: PublishLog,  # noqa: F811
    direction: str,
    role: Role,
) -> None:
    a, b = make_team("Alpha"), make_team("Beta")
    own, other = (a, b) if direction == "A against B" else (b, a)
    client = own.client(role)
    before = database_state()
    other_requests = len(stripe_emulator.requests(other.key))

    for step in STEPS:
        response = step.request(client, own, other)
        assert response.status_code in step.allowed, (
            f"{step.name}: {response.status_code} for {role.value} of {own.conference.slug}"
        )
        body = response.content.decode()
        for leak in leaks(other):
            assert leak not in body, f"{step.name}: the page shows {leak!r} of the other team"

    assert database_state() == before, "the walk changed the database"
    assert published.messages == [], "the walk queued work for a worker"
    assert len(stripe_emulator.requests(other.key)) == other_requests


def test_an_organizer_elsewhere_is_only_a_viewer_here(
    make_team: Callable[[str], Team],
    published: PublishLog,  # noqa: F811
) -> None:
    """Actions are allowed by the person's role in each selected PO's own conference."""
    a, b = make_team("Alpha"), make_team("Beta")
    person = a.people[Role.VIEWER]
    conference_access.grant_conference_role(
        conference=b.conference, user=person, role=Role.ORGANIZER
    )
    client = a.client(Role.VIEWER)
    before = database_state()

    pos = [a.draft.pk, a.invoiced.pk]
    for name, extra in [
        ("approve_selected", {"confirm": "yes"}),
        ("sync_selected", {}),
        ("void_selected", {"confirm": "yes"}),
        ("cancel_selected", {"confirm": "yes", "reason": "x"}),
    ]:
        response = action(PO, name, *pos, **extra)(client, b, a)
        assert response.status_code == 302
    action(PO, "reissue_selected", a.voided.pk, confirm="yes")(client, b, a)
    action(EVENT, "replay_selected", a.event.pk)(client, b, a)
    action(CONFERENCE, "reconcile_selected", a.conference.pk)(client, b, a)
    edit = client.post(url(f"{PO}_change", a.draft.pk), po_form(a.draft, notes="mine now"))
    assert edit.status_code == 403

    assert database_state() == before
    assert published.messages == []
    # The same person organizes B: the same action works there.
    action(PO, "sync_selected", b.invoiced.pk)(client, b, a)
    assert [message.task for message in published.messages] == ["workers.tasks.sync_purchase_order"]
