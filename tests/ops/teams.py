"""Conference teams for the access tests: a conference on its own emulator account, its objects in
every state an action cares about, and its three people (viewer, organizer, finance admin), none
of them a superuser.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from invoicing import billing_details
from invoicing.models import (
    Conference,
    PurchaseOrder,
    Role,
    StripeCustomer,
    StripeEvent,
)
from invoicing.services import conference_access
from invoicing.services.stripe_invoicing import sync_stripe_invoice_status
from tests.core.conftest import MakePurchaseOrder, invoiced_here
from tests.stripe_emulator.handle import EmulatorHandle

PASSWORD = "a-team-members-password"
Status = PurchaseOrder.Status


@dataclass
class Team:
    conference: Conference
    key: str
    draft: PurchaseOrder
    invoiced: PurchaseOrder  # open invoice, part paid
    voided: PurchaseOrder  # invoice voided at Stripe: may be re-issued
    unpaid: PurchaseOrder  # open invoice, nothing paid: may be voided (Stripe voids no payments)
    event: StripeEvent  # failed: may be replayed
    customer: StripeCustomer
    people: dict[Role, User] = field(default_factory=dict)

    def client(self, role: Role) -> Client:
        client = Client()
        client.force_login(self.people[role])
        return client


def _invoiced(make: MakePurchaseOrder, conference: Conference, reference: str) -> PurchaseOrder:
    return invoiced_here(make(conference=conference, approve=False, reference=reference))


def build_team(
    name: str, *, emulator: EmulatorHandle, make_purchase_order: MakePurchaseOrder
) -> Team:
    """A conference called ``name`` with a draft, a part-paid, a voided and an unpaid invoiced PO,
    an event, a customer."""
    key = emulator.new_secret_key()
    slug = f"{name.lower()}-{uuid.uuid4().hex[:6]}"
    conference = Conference.objects.create(
        slug=slug, name=f"{name}Con", stripe_secret_key=key, stripe_webhook_secret="whsec_team"
    )
    draft = make_purchase_order(conference=conference, approve=False, reference=f"{name}-DRAFT")
    invoiced = _invoiced(make_purchase_order, conference, f"{name}-OPEN")
    emulator.pay_invoice(invoiced.stripe_invoice_id, amount=100000)
    sync_stripe_invoice_status(invoiced)
    unpaid = _invoiced(make_purchase_order, conference, f"{name}-UNPAID")
    voided = _invoiced(make_purchase_order, conference, f"{name}-VOID")
    emulator.client(key).v1.invoices.void_invoice(voided.stripe_invoice_id)
    sync_stripe_invoice_status(voided)
    for po in (invoiced, voided):
        po.refresh_from_db()
    assert (invoiced.status, voided.status) == (Status.PARTIALLY_PAID, Status.INVOICE_VOIDED)
    event = StripeEvent.objects.create(
        conference=conference,
        stripe_event_id=f"evt_{name.lower()}_{uuid.uuid4().hex[:10]}",
        type="invoice.updated",
        livemode=False,
        payload={
            "id": "evt",
            "type": "invoice.updated",
            "data": {"object": {"id": invoiced.stripe_invoice_id, "customer_email": "x"}},
        },
        status=StripeEvent.Status.FAILED,
        attempts=10,
        last_error="APIError: the emulator was down",
    )
    customer = StripeCustomer.objects.get(conference=conference)
    team = Team(conference, key, draft, invoiced, voided, unpaid, event, customer)
    for role in Role:
        person = User.objects.create_user(
            f"{name.lower()}-{role.value}", f"{role.value}@{slug}.example", PASSWORD
        )
        conference_access.grant_conference_role(conference=conference, user=person, role=role)
        team.people[role] = person
    return team


def database_state() -> dict[str, Any]:
    """Every row of the app's tables (and the users), to compare before and after a walk."""
    tables = [
        model._meta.db_table
        for model in (
            Conference,
            PurchaseOrder,
            StripeCustomer,
            StripeEvent,
        )
    ] + [
        "invoicing_purchaseorderlineitem",
        "invoicing_purchaseorderpayment",
        "invoicing_conferencerole",
        "invoicing_conferencesettingschange",
        "invoicing_stripesyncstate",
        "auth_user",
    ]
    state: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in tables:
            # Whole rows as JSON (encrypted columns included): any change to any column shows.
            cursor.execute(f"SELECT to_jsonb(t) FROM {connection.ops.quote_name(table)} t")  # noqa: S608
            state[table] = sorted(str(row[0]) for row in cursor.fetchall())
    return state


def manual_payment(**fields: str) -> dict[str, str]:
    """The row "Record a wire, check or other payment" of a PO's page, filled in."""
    data = {
        "payments-2-TOTAL_FORMS": "1",
        "payments-2-0-amount": "",
        "payments-2-0-method": "wire",
        "payments-2-0-payment_date": timezone.localdate().isoformat(),
        "payments-2-0-reference": "",
        "payments-2-0-note": "",
    }
    data.update({f"payments-2-0-{name}": value for name, value in fields.items()})
    return data


def po_form(po: PurchaseOrder, **overrides: Any) -> dict[str, Any]:
    """A PO's change form as the browser posts it (inline management forms included)."""
    data = {
        "conference": str(po.conference_id),
        "reference": po.reference,
        "organization_name": po.organization_name,
        "contact_name": po.contact_name,
        "contact_email": po.contact_email,
        "currency": po.currency,
        "notes": po.notes,
        "buyer_po_number": po.buyer_po_number,
        "legal_name": po.legal_name,
        **{
            f"billing_address_{index}": po.billing_address.get(key, "")
            for index, key in enumerate(billing_details.ADDRESS_KEYS)
        },
        "tax_ids": billing_details.format_tax_ids(po.tax_ids),
        "line_items-TOTAL_FORMS": "0",
        "line_items-INITIAL_FORMS": "0",
        "line_items-MIN_NUM_FORMS": "0",
        "line_items-MAX_NUM_FORMS": "1000",
        "payments-TOTAL_FORMS": "0",
        "payments-INITIAL_FORMS": "0",
        "payments-MIN_NUM_FORMS": "0",
        "payments-MAX_NUM_FORMS": "1000",
        "payments-2-TOTAL_FORMS": "0",
        "payments-2-INITIAL_FORMS": "0",
        "payments-2-MIN_NUM_FORMS": "0",
        "payments-2-MAX_NUM_FORMS": "1",
        "stripe_write_requests-TOTAL_FORMS": "0",
        "stripe_write_requests-INITIAL_FORMS": "0",
        "stripe_write_requests-MIN_NUM_FORMS": "0",
        "stripe_write_requests-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def lines_as_posted(po: PurchaseOrder) -> dict[str, str]:
    """The PO's lines as its page posts them back, unchanged."""
    lines = list(po.line_items.all())
    data = {
        "line_items-TOTAL_FORMS": str(len(lines)),
        "line_items-INITIAL_FORMS": str(len(lines)),
        "line_items-MIN_NUM_FORMS": "1",
        "line_items-MAX_NUM_FORMS": "1000",
    }
    for number, line in enumerate(lines):
        data |= {
            f"line_items-{number}-id": str(line.pk),
            f"line_items-{number}-purchase_order": str(po.pk),
            f"line_items-{number}-description": line.description,
            f"line_items-{number}-quantity": str(line.quantity),
            f"line_items-{number}-unit_price": str(line.unit_price),
        }
    return data


def new_po_form(conference: Conference, reference: str) -> dict[str, str]:
    """The "Add purchase order" form with one line."""
    return {
        "conference": str(conference.pk),
        "reference": reference,
        "organization_name": "Initech",
        "contact_name": "",
        "contact_email": "ap@initech.example",
        "currency": "",
        "notes": "",
        "line_items-TOTAL_FORMS": "1",
        "line_items-INITIAL_FORMS": "0",
        "line_items-MIN_NUM_FORMS": "1",
        "line_items-MAX_NUM_FORMS": "1000",
        "line_items-0-description": "Booth",
        "line_items-0-quantity": "1",
        "line_items-0-unit_price": "100.00",
    }


def conference_form(conference: Conference, **overrides: Any) -> dict[str, Any]:
    """A conference's change form as its finance admin's browser posts it."""
    data = {
        "name": conference.name,
        "currency": conference.currency,
        "is_active": "on",
        "stripe_secret_key": "",
        "stripe_webhook_secret": "",
        "invoice_days_until_due": str(conference.invoice_days_until_due),
        "payment_method_types": ["card", "us_bank_account"],
        "invoice_memo": conference.invoice_memo,
        "invoice_footer": conference.invoice_footer,
        "current_password": "",
    }
    data.update(overrides)
    return data
