"""Approvals need a second person when the conference asks: whoever wrote a PO cannot approve it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from invoicing.errors import InvalidTransition
from invoicing.models import Conference, PurchaseOrder, Role
from invoicing.services import conference_access, purchase_orders
from tests.core.conftest import DEFAULT_LINES, MakeConference
from tests.ops.teams import lines_as_posted, po_form

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status


@pytest.fixture
def conference(make_conference: MakeConference) -> Conference:
    return make_conference(approvals_need_second_person=True)


def organizer(conference: Conference, name: str) -> User:
    person = User.objects.create_user(name, password="pw")
    conference_access.grant_conference_role(conference=conference, user=person, role=Role.ORGANIZER)
    return person


def new_po(conference: Conference, author: User | None) -> PurchaseOrder:
    return purchase_orders.create_purchase_order(
        conference=conference,
        reference="PO-2ND",
        organization_name="Initech",
        contact_email="ap@initech.example",
        lines=DEFAULT_LINES,
        created_by=author,
    )


def test_the_author_cannot_approve_and_a_second_person_can(conference: Conference) -> None:
    ada, bob = organizer(conference, "ada"), organizer(conference, "bob")
    po = new_po(conference, ada)
    with pytest.raises(InvalidTransition, match="need a second person"):
        purchase_orders.approve_purchase_order(po, approved_by=ada)
    with pytest.raises(InvalidTransition, match="nobody signed"):
        purchase_orders.approve_purchase_order(po)
    po.refresh_from_db()
    assert po.status == Status.DRAFT
    approved = purchase_orders.approve_purchase_order(po, approved_by=bob)
    assert (approved.status, approved.approved_by) == (Status.APPROVED, bob)


def test_the_last_editor_cannot_approve_in_the_admin(conference: Conference) -> None:
    ada, bob = organizer(conference, "ada"), organizer(conference, "bob")
    po = new_po(conference, ada)
    client = Client()
    client.force_login(bob)
    edited = client.post(
        reverse("admin:invoicing_purchaseorder_change", args=[po.pk]),
        {
            **po_form(po, contact_email="new-ap@initech.example", approve="on"),
            **lines_as_posted(po),
        },
        follow=True,
    )
    notes = [str(message) for message in edited.context["messages"]]
    assert any("not approved" in note and "second person" in note for note in notes), notes
    po.refresh_from_db()
    assert (po.status, po.last_edited_by) == (Status.DRAFT, bob)
    # Ada wrote it first, Bob edited it last: neither approves it.
    for person in (ada, bob):
        with pytest.raises(InvalidTransition):
            purchase_orders.approve_purchase_order(po, approved_by=person)


def test_without_the_setting_the_author_approves(make_conference: MakeConference) -> None:
    conference = make_conference()
    ada = organizer(conference, "ada")
    po = new_po(conference, ada)
    assert purchase_orders.approve_purchase_order(po, approved_by=ada).status == Status.APPROVED
