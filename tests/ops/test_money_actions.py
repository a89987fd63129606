"""Refund and Reduce amount owed from the PO's page, end to end through the real worker.

A finance admin sees both buttons, an organizer only "Reduce amount owed", a viewer neither; a
refused request says why on the form and saves nothing; an accepted one is queued and the worker
makes exactly the Stripe call asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from invoicing.models import Conference, ConferenceRole, PurchaseOrder, Role, StripeWriteRequest
from invoicing.services.stripe_client import clear_stripe_clients
from invoicing.services.stripe_invoicing import sync_stripe_invoice_status
from tests.core.conftest import MakePurchaseOrder, invoiced_here
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
State = StripeWriteRequest.State


@pytest.fixture(autouse=True)
def _fresh_stripe_clients() -> Iterator[None]:
    yield
    clear_stripe_clients()


@pytest.fixture
def part_paid(
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> PurchaseOrder:
    """6,350.00 USD invoiced, 2,000.00 paid by card: something to refund and something owed."""
    po = invoiced_here(make_purchase_order(conference=stripe_conference, approve=False))
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=200000)
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    assert po.status == Status.PARTIALLY_PAID
    return po


def signed_in(conference: Conference, role: Role) -> Client:
    user = User.objects.create_user(username=f"{role}-{conference.slug}", is_staff=True)
    ConferenceRole.objects.create(conference=conference, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def page(po: PurchaseOrder, kind: str = "change") -> str:
    return reverse(f"admin:invoicing_purchaseorder_{kind}", args=[po.pk])


def notes(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def settled(row: StripeWriteRequest, timeout: float = 20) -> StripeWriteRequest:
    deadline = time.monotonic() + timeout
    while True:
        row.refresh_from_db()
        if row.state != State.QUEUED:
            return row
        if time.monotonic() > deadline:
            pytest.fail(f"request {row.pk} still queued")
        time.sleep(0.1)


def test_each_role_sees_the_money_actions_it_may_take(part_paid: PurchaseOrder) -> None:
    conference = part_paid.conference
    finance = signed_in(conference, Role.FINANCE)
    organizer = signed_in(conference, Role.ORGANIZER)
    viewer = signed_in(conference, Role.VIEWER)

    def buttons(client: Client) -> set[str]:
        html = client.get(page(part_paid)).content.decode()
        return {kind for kind in ("refund", "reduce") if f"money-action-{kind}" in html}

    assert buttons(finance) == {"refund", "reduce"}
    assert buttons(organizer) == {"reduce"}
    assert buttons(viewer) == set()
    # The URL without the button refuses the same way, and saves nothing.
    response = organizer.post(
        page(part_paid, "refund"), {"amount": "10.00", "reason": "x"}, follow=True
    )
    assert (
        f"{part_paid.reference}: not refunded: only a finance admin of {conference} refunds "
        "payments." in notes(response)
    )
    assert viewer.get(page(part_paid, "reduce"), follow=True).status_code == 200
    assert not StripeWriteRequest.objects.exists()
    # Another conference's team gets the 404 of an id that does not exist.
    other = Conference.objects.create(
        slug="elsewhere", name="Elsewhere", stripe_secret_key="sk_test_elsewhere"
    )
    assert signed_in(other, Role.FINANCE).get(page(part_paid, "refund")).status_code == 404


def test_a_finance_admin_refunds_from_the_po_page(
    part_paid: PurchaseOrder, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    finance = signed_in(part_paid.conference, Role.FINANCE)
    form = finance.get(page(part_paid, "refund"))
    assert "Can still be refunded: <strong>2,000.00 USD</strong>" in form.content.decode()
    # The refund's own words (it has no credit note), and only USD's cents in the browser.
    assert "stored on each refund at Stripe (its metadata" in form.content.decode()
    assert "memo)" not in form.content.decode()
    assert 'step="0.01"' in form.content.decode()
    refused = finance.post(page(part_paid, "refund"), {"amount": "2500", "reason": "Dropped out"})
    assert "2500.00 USD is more than what can still be refunded (2000.00 USD)." in (
        refused.content.decode()
    )
    zero = finance.post(page(part_paid, "refund"), {"amount": "0", "reason": "Dropped out"})
    assert "The amount must be greater than zero." in zero.content.decode()
    assert not StripeWriteRequest.objects.exists()

    response = finance.post(
        page(part_paid, "refund"), {"amount": "750.00", "reason": "Dropped out"}, follow=True
    )
    assert f"{part_paid.reference}: refund of 750.00 USD queued" in " ".join(notes(response))
    row = settled(StripeWriteRequest.objects.get())
    assert row.state == State.SUCCEEDED, row.error
    (refund,) = stripe_emulator.client(stripe_secret_key).v1.refunds.list().data
    assert (refund.id, refund.amount) == (row.refund_ids[0], 75000)
    part_paid.refresh_from_db()
    assert part_paid.amount_received == Decimal("1250.00")  # 2,000.00 paid, 750.00 given back
    listed = finance.get(page(part_paid)).content.decode()
    assert "Refunds and reductions" in listed
    assert refund.id in listed


def test_an_organizer_reduces_what_the_invoice_asks(
    part_paid: PurchaseOrder, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    organizer = signed_in(part_paid.conference, Role.ORGANIZER)
    form = organizer.get(page(part_paid, "reduce")).content.decode()
    assert "sent to Stripe (the credit note&#x27;s memo)" in form
    assert 'step="0.01"' in form
    response = organizer.post(
        page(part_paid, "reduce"), {"amount": "350.00", "reason": "Booth cancelled"}, follow=True
    )
    assert f"{part_paid.reference}: reduction of 350.00 USD queued" in " ".join(notes(response))
    row = settled(StripeWriteRequest.objects.get())
    assert row.state == State.SUCCEEDED, row.error
    invoice = stripe_emulator.client(stripe_secret_key).v1.invoices.retrieve(
        part_paid.stripe_invoice_id
    )
    assert invoice.amount_remaining == 400000
    part_paid.refresh_from_db()
    assert part_paid.stripe_amount_remaining == Decimal("4000.00")
    assert (part_paid.amount_owed, part_paid.balance_due) == (
        Decimal("6000.00"),
        Decimal("4000.00"),
    )


def test_the_worker_retries_a_refund_whose_answer_was_lost_and_refunds_once(
    part_paid: PurchaseOrder, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    """Stripe refunds, the connection drops before the answer: the task retries and finds it."""
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": "/v1/refunds$"}],
    )
    finance = signed_in(part_paid.conference, Role.FINANCE)
    finance.post(page(part_paid, "refund"), {"amount": "2000.00", "reason": "Dropped out"})
    row = settled(StripeWriteRequest.objects.get())
    assert row.state == State.SUCCEEDED, row.error
    (refund,) = stripe_emulator.client(stripe_secret_key).v1.refunds.list().data
    assert refund.amount == 200000
    faults = [e for e in stripe_emulator.requests(stripe_secret_key) if e["fault"]]
    assert len(faults) == 1
    part_paid.refresh_from_db()
    assert part_paid.amount_received == 0
    assert part_paid.status == Status.REFUNDED


def test_an_organizer_reduces_by_line_and_sees_what_each_line_has_left(
    part_paid: PurchaseOrder, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    """The default PO: line 1, 1 x Gold sponsorship 5,000.00; line 2, 3 x Conference ticket."""
    organizer = signed_in(part_paid.conference, Role.ORGANIZER)
    form = organizer.get(page(part_paid, "reduce")).content.decode()
    assert "Credit of “Conference ticket”" in form
    assert "3 on the invoice at 450.00 USD; 3 can still be credited." in form
    assert "1 on the invoice at 5,000.00 USD; 1 can still be credited." in form

    def refused(data: dict[str, str]) -> str:
        response = organizer.post(page(part_paid, "reduce"), {"reason": "Two cancelled", **data})
        assert response.status_code == 200
        return str(response.context["form"].non_field_errors()[0])

    assert refused({}) == "Enter an amount, or how many to credit on at least one line."
    assert refused({"amount": "10", "line_2": "1"}) == (
        "Reduce either by an amount or by lines, not both."
    )
    assert refused({"line_2": "4"}) == (
        "Conference ticket: 4 is more than the 3 not credited yet (3 on the invoice)."
    )
    assert refused({"line_1": "1"}) == (  # 5,000.00 of a remaining 4,350.00
        "5000.00 USD is more than what the invoice still asks (4350.00 USD)."
    )
    assert refused({"line_2": "-1"}) == "A quantity to credit cannot be negative."
    assert not StripeWriteRequest.objects.exists()

    response = organizer.post(
        page(part_paid, "reduce"), {"line_2": "2", "reason": "Two cancelled"}, follow=True
    )
    assert (
        f"{part_paid.reference}: reduction of 900.00 USD (Conference ticket: 2 of 3) queued"
        in " ".join(notes(response))
    )
    row = settled(StripeWriteRequest.objects.get())
    assert row.state == State.SUCCEEDED, row.error
    client = stripe_emulator.client(stripe_secret_key)
    (credited,) = client.v1.credit_notes.line_items.list(row.stripe_credit_note_id).data
    assert (credited.invoice_line_item, credited.quantity) == (
        row.plan[0]["invoice_line_item"],
        2,
    )
    assert client.v1.invoices.retrieve(part_paid.stripe_invoice_id).amount_remaining == 345000

    again = organizer.get(page(part_paid, "reduce")).content.decode()
    assert "3 on the invoice at 450.00 USD; 2 credited already, 1 can still be credited." in again
    assert refused({"line_2": "2"}) == (
        "Conference ticket: 2 is more than the 1 not credited yet (3 on the invoice, 2 "
        "credited already)."
    )
    po_page = organizer.get(page(part_paid)).content.decode()
    assert "Conference ticket: 2 of 3" in po_page  # the request's row
    assert "crediting Conference ticket: 2 of 3" in po_page  # the history


def test_the_worker_retries_a_reduction_by_line_whose_answer_was_lost_and_credits_once(
    part_paid: PurchaseOrder, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    """Stripe issues the credit note, the connection drops before the answer: the task retries,
    finds the note by its request and saves it; the invoice line is credited once."""
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": "/v1/credit_notes$"}],
    )
    organizer = signed_in(part_paid.conference, Role.ORGANIZER)
    organizer.post(page(part_paid, "reduce"), {"line_2": "3", "reason": "Tickets returned"})
    row = settled(StripeWriteRequest.objects.get())
    assert row.state == State.SUCCEEDED, row.error
    client = stripe_emulator.client(stripe_secret_key)
    (note,) = client.v1.credit_notes.list({"invoice": part_paid.stripe_invoice_id}).data
    assert (note.id, note.amount) == (row.stripe_credit_note_id, 135000)
    faults = [e for e in stripe_emulator.requests(stripe_secret_key) if e["fault"]]
    assert len(faults) == 1
    part_paid.refresh_from_db()
    assert (part_paid.amount_owed, part_paid.balance_due) == (
        Decimal("5000.00"),
        Decimal("3000.00"),
    )
