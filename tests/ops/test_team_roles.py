"""Each role does exactly its list, on its own conference (DESIGN.md, invariant 7).

One row per thing a person can do in the admin, with the least role that may do it; every role
tries every row on its own conference, and it happens exactly when the role includes that least
role. "Happens" is read from the database or from the jobs queued for a worker, never from the
page's words alone. Superusers only: the team page (``None`` below).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from invoicing.models import Conference, PurchaseOrder, Role, StripeEvent
from tests.ops.teams import (
    PASSWORD,
    Team,
    conference_form,
    manual_payment,
    new_po_form,
    po_form,
)
from tests.pipeline.conftest import PublishLog, published  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("embedded_worker_paused")]

Status = PurchaseOrder.Status
PO = "admin:invoicing_purchaseorder"


def _changelist_action(client: Client, changelist: str, action: str, pk: int, **extra: str) -> Any:
    return client.post(
        reverse(f"admin:invoicing_{changelist}_changelist"),
        {"action": action, "_selected_action": [str(pk)], "confirm": "yes", **extra},
    )


def _status(po: PurchaseOrder) -> str:
    return PurchaseOrder.objects.values_list("status", flat=True).get(pk=po.pk)


def after(_request: object, happened: bool) -> bool:
    """``after(client.post(...), <check>)``: Python evaluates the request first, then the check."""
    return happened


def _shows(client: Client, path: str, text: str) -> bool:
    response = client.get(path)
    return response.status_code == 200 and text in response.content.decode()


# Each check does the thing as ``client`` and says whether it happened.
Check = Callable[[Client, Team, PublishLog], bool]


@dataclass(frozen=True)
class Capability:
    name: str
    least_role: Role | None  # None: superusers only
    check: Check


def _queued(log: PublishLog, task: str) -> bool:
    return any(message.task == f"workers.tasks.{task}" for message in log.messages)


CAPABILITIES = [
    Capability(
        "list the POs",
        Role.VIEWER,
        lambda c, t, p: _shows(c, reverse(f"{PO}_changelist"), t.invoiced.reference),
    ),
    Capability(
        "read a PO and its ledger",
        Role.VIEWER,
        lambda c, t, p: _shows(c, reverse(f"{PO}_change", args=[t.invoiced.pk]), "1,000.00 USD"),
    ),
    Capability(
        "read an event's payload",
        Role.VIEWER,
        lambda c, t, p: _shows(
            c,
            reverse("admin:invoicing_stripeevent_change", args=[t.event.pk]),
            t.invoiced.stripe_invoice_id,
        ),
    ),
    Capability(
        "list the customers",
        Role.VIEWER,
        lambda c, t, p: _shows(
            c, reverse("admin:invoicing_stripecustomer_changelist"), t.customer.email
        ),
    ),
    Capability(
        "read the conference page",
        Role.VIEWER,
        lambda c, t, p: _shows(
            c, reverse("admin:invoicing_conference_change", args=[t.conference.pk]), "Team"
        ),
    ),
    Capability(
        "create a PO",
        Role.ORGANIZER,
        lambda c, t, p: after(
            c.post(reverse(f"{PO}_add"), new_po_form(t.conference, "NEW-1")),
            PurchaseOrder.objects.filter(reference="NEW-1").exists(),
        ),
    ),
    Capability(
        "edit a draft",
        Role.ORGANIZER,
        lambda c, t, p: after(
            c.post(
                reverse(f"{PO}_change", args=[t.draft.pk]),
                po_form(t.draft, contact_email="new@acme.example"),
            ),
            PurchaseOrder.objects.get(pk=t.draft.pk).contact_email == "new@acme.example",
        ),
    ),
    Capability(
        "delete a draft",
        Role.ORGANIZER,
        lambda c, t, p: after(
            c.post(reverse(f"{PO}_delete", args=[t.draft.pk]), {"post": "yes"}),
            not PurchaseOrder.objects.filter(pk=t.draft.pk).exists(),
        ),
    ),
    Capability(
        "approve",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "purchaseorder", "approve_selected", t.draft.pk),
            _status(t.draft) == Status.APPROVED,
        ),
    ),
    Capability(
        "sync",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "purchaseorder", "sync_selected", t.invoiced.pk),
            _queued(p, "sync_purchase_order"),
        ),
    ),
    Capability(
        "void",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "purchaseorder", "void_selected", t.unpaid.pk),
            _queued(p, "void_purchase_order_invoice"),
        ),
    ),
    Capability(
        "re-issue",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "purchaseorder", "reissue_selected", t.voided.pk),
            _queued(p, "reissue_purchase_order_invoice"),
        ),
    ),
    Capability(
        "cancel",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "purchaseorder", "cancel_selected", t.draft.pk, reason="x"),
            _status(t.draft) == Status.CANCELLED,
        ),
    ),
    Capability(
        "record a wire payment",
        Role.ORGANIZER,
        lambda c, t, p: after(
            c.post(
                reverse(f"{PO}_change", args=[t.invoiced.pk]),
                {**po_form(t.invoiced), **manual_payment(amount="10.00")},
            ),
            t.invoiced.payments.filter(method="wire").exists(),
        ),
    ),
    Capability(
        "replay an event",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "stripeevent", "replay_selected", t.event.pk),
            StripeEvent.objects.get(pk=t.event.pk).status == StripeEvent.Status.PENDING,
        ),
    ),
    Capability(
        "be offered Replay (the change permission on events)",
        Role.ORGANIZER,
        lambda c, t, p: _shows(
            c, reverse("admin:invoicing_stripeevent_changelist"), 'value="replay_selected"'
        ),
    ),
    Capability(
        "reconcile the conference",
        Role.ORGANIZER,
        lambda c, t, p: after(
            _changelist_action(c, "conference", "reconcile_selected", t.conference.pk),
            _queued(p, "sync_conference_invoices"),
        ),
    ),
    Capability(
        "change the payment terms",
        Role.FINANCE,
        lambda c, t, p: after(
            c.post(
                reverse("admin:invoicing_conference_change", args=[t.conference.pk]),
                conference_form(t.conference, invoice_days_until_due="45"),
            ),
            Conference.objects.get(pk=t.conference.pk).invoice_days_until_due == 45,
        ),
    ),
    Capability(
        "change the invoice footer (with the password)",
        Role.FINANCE,
        lambda c, t, p: after(
            c.post(
                reverse("admin:invoicing_conference_change", args=[t.conference.pk]),
                conference_form(
                    t.conference, invoice_footer="Thank you!", current_password=PASSWORD
                ),
            ),
            Conference.objects.get(pk=t.conference.pk).invoice_footer == "Thank you!",
        ),
    ),
    Capability(
        "grant roles",
        None,
        lambda c, t, p: _shows(
            c, reverse("admin:invoicing_conferencerole_changelist"), t.conference.name
        ),
    ),
    Capability(
        "add a conference",
        None,
        lambda c, t, p: c.get(reverse("admin:invoicing_conference_add")).status_code == 200,
    ),
]


@pytest.mark.parametrize("capability", CAPABILITIES, ids=[c.name for c in CAPABILITIES])
@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
def test_each_role_does_exactly_its_list(
    make_team: Callable[[str], Team],
    published: PublishLog,  # noqa: F811
    role: Role,
    capability: Capability,
) -> None:
    team = make_team("Own")
    published.messages.clear()
    allowed = capability.least_role is not None and role.includes(capability.least_role)
    happened = capability.check(team.client(role), team, published)
    assert happened == allowed, (
        f"a {role.label.lower()} {'could not' if allowed else 'could'} {capability.name}"
    )


@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
def test_the_po_page_offers_action_buttons_only_to_whom_the_actions_allow(
    make_team: Callable[[str], Team], role: Role
) -> None:
    """The buttons a person sees are the actions that would not refuse them (their role, then the
    PO's state); the actions refuse anyone else either way (``sync`` and friends above)."""
    team = make_team("Own")
    pages = {
        po.reference: team.client(role).get(reverse(f"{PO}_change", args=[po.pk])).content.decode()
        for po in (team.invoiced, team.unpaid)
    }
    offered = {
        ref: set(re.findall(r'name="action" value="(\w+)"', page)) for ref, page in pages.items()
    }
    if role.includes(Role.ORGANIZER):
        assert {"sync_selected", "reissue_selected", "cancel_selected"} <= offered[
            team.invoiced.reference
        ]
        assert "void_selected" not in offered[team.invoiced.reference]  # part paid: Stripe refuses
        assert "void_selected" in offered[team.unpaid.reference]
    else:
        assert offered == {team.invoiced.reference: set(), team.unpaid.reference: set()}
        assert all("its organizers act on it" in page for page in pages.values())


@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
def test_the_po_list_offers_its_actions_only_to_whom_they_allow(
    make_team: Callable[[str], Team], role: Role
) -> None:
    """A viewer gets no action menu (each action takes the change permission, an organizer's);
    the actions still refuse on their own (``test_each_role_does_exactly_its_list``)."""
    team = make_team("Own")
    page = team.client(role).get(reverse(f"{PO}_changelist")).content.decode()
    offered = set(re.findall(r'<option value="(\w+_selected)"', page))
    expected = {
        "approve_selected",
        "retry_creation_selected",
        "sync_selected",
        "void_selected",
        "reissue_selected",
        "cancel_selected",
    }
    assert offered == (expected if role.includes(Role.ORGANIZER) else set())
