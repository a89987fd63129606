"""Reducing what a PO owes by line, against the emulator (services, no worker).

The organizer asks for quantities of PO lines; the request keeps them, the credit note credits
the Stripe invoice lines that bill those PO lines, once, however often the run is repeated or
wherever it stopped, and nothing beyond what a line still bills is ever asked of Stripe.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe
from django.contrib.auth.models import User

from invoicing.errors import InvalidTransition
from invoicing.models import (
    Conference,
    ConferenceRole,
    PurchaseOrder,
    Role,
    StripeWriteRequest,
)
from invoicing.selectors_credit_lines import creditable_lines
from invoicing.services.amount_owed import process_reduce_request
from invoicing.services.ledger import apply_credit_note
from invoicing.services.stripe_invoicing import sync_stripe_invoice_status
from invoicing.services.stripe_write_requests import InvalidStripeWriteRequest, record_request
from invoicing.timeline import purchase_order_timeline
from tests.core.conftest import MakePurchaseOrder, invoiced_here
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
Kind = StripeWriteRequest.Kind
State = StripeWriteRequest.State

SPONSORSHIP, TICKETS = 1, 2  # the default PO: 1 x 5,000.00 USD, 3 x 450.00 USD


@pytest.fixture
def invoiced(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    """An invoiced PO of 6,350.00 USD on a fresh emulator account (no webhooks: syncs only)."""
    return invoiced_here(make_purchase_order(conference=stripe_conference, approve=False))


@pytest.fixture
def organizer(invoiced: PurchaseOrder) -> User:
    user = User.objects.create_user(username="otto", is_staff=True)
    ConferenceRole.objects.create(conference=invoiced.conference, user=user, role=Role.ORGANIZER)
    return user


def ask(
    po: PurchaseOrder, by: User, lines: dict[int, int], amount: str | None = None
) -> StripeWriteRequest:
    return record_request(
        purchase_order=po,
        kind=Kind.REDUCE,
        amount=None if amount is None else Decimal(amount),
        reason="Two attendees cancelled",
        requested_by=by,
        lines=lines,
    )


def credit_note_posts(emulator: EmulatorHandle, key: str) -> list[dict[str, object]]:
    return [
        entry
        for entry in emulator.requests(key)
        if entry["method"] == "POST" and entry["path"] == "/v1/credit_notes"
    ]


def left(po: PurchaseOrder) -> dict[int, tuple[int, int]]:
    return {line.position: (line.credited, line.left) for line in creditable_lines(po)}


def test_a_reduction_by_line_credits_the_invoice_line_of_that_po_line_once(
    invoiced: PurchaseOrder,
    organizer: User,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    row = ask(invoiced, organizer, {TICKETS: 2})
    assert row.amount == Decimal("900.00")
    assert [(i["po_line"], i["quantity"], i["billed"]) for i in row.plan] == [(TICKETS, 2, 3)]
    assert left(invoiced) == {SPONSORSHIP: (0, 1), TICKETS: (2, 1)}  # queued counts already
    process_reduce_request(write_request=row)
    process_reduce_request(write_request=row)

    client = stripe_emulator.client(stripe_secret_key)
    (note,) = client.v1.credit_notes.list({"invoice": invoiced.stripe_invoice_id}).data
    invoice = client.v1.invoices.retrieve(invoiced.stripe_invoice_id)
    (tickets_line,) = [
        line
        for line in invoice.lines.data
        if line.metadata is not None and line.metadata.to_dict().get("po_line") == str(TICKETS)
    ]
    (credited,) = client.v1.credit_notes.line_items.list(note.id).data
    assert (credited.type, credited.invoice_line_item, credited.quantity, credited.amount) == (
        "invoice_line_item",
        tickets_line.id,
        2,
        90000,
    )
    assert (note.amount, note.reason, note.memo) == (90000, "order_change", row.reason)
    assert note.metadata is not None
    assert note.metadata.to_dict()["purpose"] == "reduce"
    assert (invoice.amount_remaining, invoice.status) == (635000 - 90000, "open")
    row.refresh_from_db()
    assert (row.state, row.stripe_credit_note_id) == (State.SUCCEEDED, note.id)
    assert row.plan[0]["invoice_line_item"] == tickets_line.id
    invoiced.refresh_from_db()
    assert (invoiced.amount_owed, invoiced.balance_due) == (Decimal("5450.00"), Decimal("5450.00"))
    assert left(invoiced) == {SPONSORSHIP: (0, 1), TICKETS: (2, 1)}
    (story,) = [e for e in purchase_order_timeline(invoiced) if e.what.startswith("Credit note")]
    assert "crediting Conference ticket: 2 of 3" in story.detail


def test_more_than_a_line_still_bills_is_refused_and_nothing_reaches_stripe(
    invoiced: PurchaseOrder,
    organizer: User,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    first = ask(invoiced, organizer, {TICKETS: 2})
    refusals = {
        "Conference ticket: 2 is more than the 1 not credited yet (3 on the invoice, 2 "
        "credited already).": {TICKETS: 2},
        "Gold sponsorship: 2 is more than the 1 not credited yet (1 on the invoice).": {
            SPONSORSHIP: 2
        },
        "give the quantity to credit on at least one line.": {TICKETS: 0},
        "line 7 is not one of its lines with a price.": {7: 1},
        "a quantity to credit cannot be negative.": {TICKETS: -1},
    }
    for message, lines in refusals.items():
        with pytest.raises(InvalidStripeWriteRequest) as caught:
            ask(invoiced, organizer, lines)
        assert str(caught.value) == f"{invoiced.reference}: not reduced: {message}"
    with pytest.raises(InvalidStripeWriteRequest, match="either by an amount or by lines"):
        ask(invoiced, organizer, {TICKETS: 1}, amount="10.00")
    # What the invoice still asks bounds the lines' total: pay all but 350.00 of it.
    stripe_emulator.pay_invoice(invoiced.stripe_invoice_id, amount=635000 - 90000 - 35000)
    sync_stripe_invoice_status(invoiced)
    invoiced.refresh_from_db()
    with pytest.raises(InvalidStripeWriteRequest, match=r"450.00 USD is more than what the"):
        ask(invoiced, organizer, {TICKETS: 1})
    assert list(StripeWriteRequest.objects.all()) == [first]
    assert credit_note_posts(stripe_emulator, stripe_secret_key) == []


def test_a_crash_between_stripes_answer_and_our_save_credits_once(
    invoiced: PurchaseOrder,
    organizer: User,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    row = ask(invoiced, organizer, {SPONSORSHIP: 1, TICKETS: 1})
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": "/v1/credit_notes$"}],
    )
    with pytest.raises(stripe.APIConnectionError):
        process_reduce_request(write_request=row)
    row.refresh_from_db()
    assert (row.state, row.stripe_credit_note_id) == (State.QUEUED, "")
    client = stripe_emulator.client(stripe_secret_key)
    assert len(client.v1.credit_notes.list({"invoice": invoiced.stripe_invoice_id}).data) == 1

    process_reduce_request(write_request=row)
    (note,) = client.v1.credit_notes.list({"invoice": invoiced.stripe_invoice_id}).data
    assert note.amount == 500000 + 45000
    row.refresh_from_db()
    assert (row.state, row.stripe_credit_note_id) == (State.SUCCEEDED, note.id)
    assert len(credit_note_posts(stripe_emulator, stripe_secret_key)) == 1
    invoiced.refresh_from_db()
    assert invoiced.amount_credited == Decimal("5450.00")


def test_a_voided_credit_note_gives_its_lines_back(
    invoiced: PurchaseOrder,
    organizer: User,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    row = ask(invoiced, organizer, {TICKETS: 3})
    process_reduce_request(write_request=row)
    assert left(invoiced)[TICKETS] == (3, 0)
    row.refresh_from_db()
    client = stripe_emulator.client(stripe_secret_key)
    voided = client.v1.credit_notes.void_credit_note(row.stripe_credit_note_id)
    apply_credit_note(purchase_order=invoiced, credit_note=voided, source="test")
    assert left(invoiced)[TICKETS] == (0, 3)
    again = ask(invoiced, organizer, {TICKETS: 3})
    process_reduce_request(write_request=again)
    again.refresh_from_db()
    assert again.state == State.SUCCEEDED, again.error


def test_an_invoice_with_tax_is_reduced_by_amount_not_by_line(
    invoiced: PurchaseOrder, organizer: User
) -> None:
    """Stripe credits a line's tax with it; we would not know the credit note's total before."""
    PurchaseOrder.objects.filter(pk=invoiced.pk).update(stripe_invoice_tax=Decimal("1206.50"))
    invoiced.refresh_from_db()
    assert creditable_lines(invoiced) == []  # the form offers no line to credit
    with pytest.raises(InvalidStripeWriteRequest, match=r"includes tax.*by an amount instead"):
        ask(invoiced, organizer, {TICKETS: 1})
    assert not StripeWriteRequest.objects.exists()


def test_a_po_line_the_invoice_does_not_bill_fails_the_request_before_stripe_is_asked(
    invoiced: PurchaseOrder,
    organizer: User,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    row = ask(invoiced, organizer, {TICKETS: 1})
    # As if the invoice had no line with our metadata for it (e.g. edited in the Dashboard).
    StripeWriteRequest.objects.filter(pk=row.pk).update(
        plan=[{**row.plan[0], "po_line": 9, "description": "Workshop seat"}]
    )
    with pytest.raises(InvalidTransition, match="has no line for Workshop seat"):
        process_reduce_request(write_request=row)
    row.refresh_from_db()
    assert row.state == State.FAILED
    assert credit_note_posts(stripe_emulator, stripe_secret_key) == []
