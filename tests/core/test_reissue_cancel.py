"""Void, uncollectible, re-issue and cancel, against the emulator."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from functools import partial

import pytest
import stripe

from invoicing.errors import InvalidTransition, InvoiceMismatch, PurchaseOrderNotInvoiceable
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import invoice_lifecycle, purchase_orders, stripe_invoicing
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_stripe_invoicing import (
    account_invoices,
    deliver_all,
    stripe_events,
    stripe_ledger,
)
from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle

Status = PurchaseOrder.Status


@pytest.fixture
def invoiced_po(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    po = make_purchase_order(conference=stripe_conference)
    stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    return po


@pytest.mark.django_db
def test_uncollectible_invoice_is_voided_and_reissued(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    old_id = invoiced_po.stripe_invoice_id
    client.v1.invoices.mark_uncollectible(old_id)  # the organizer, in Stripe's dashboard
    deliver_all(invoiced_po.conference, stripe_events(stripe_emulator, stripe_secret_key))
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICE_UNCOLLECTIBLE

    invoice_lifecycle.reissue_stripe_invoice(invoiced_po)

    invoiced_po.refresh_from_db()
    assert client.v1.invoices.retrieve(old_id).status == "void"
    new = client.v1.invoices.retrieve(invoiced_po.stripe_invoice_id)
    assert (new.status, new.amount_due) == ("open", 635000)
    assert invoiced_po.status == Status.INVOICED


@pytest.mark.django_db
def test_an_uncollectible_invoice_with_payments_is_neither_voided_nor_reissued(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    old_id = invoiced_po.stripe_invoice_id
    stripe_emulator.pay_invoice(old_id, amount=100000)
    client.v1.invoices.mark_uncollectible(old_id)
    deliver_all(invoiced_po.conference, stripe_events(stripe_emulator, stripe_secret_key))
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICE_UNCOLLECTIBLE
    for action in (
        invoice_lifecycle.reissue_stripe_invoice,
        partial(invoice_lifecycle.cancel_invoiced_purchase_order, reason="Sponsor withdrew"),
    ):
        with pytest.raises(InvalidTransition, match="neither voids nor credits"):
            action(invoiced_po)
    invoiced_po.refresh_from_db()
    assert (invoiced_po.status, invoiced_po.generation) == (Status.INVOICE_UNCOLLECTIBLE, 1)
    assert client.v1.invoices.retrieve(old_id).status == "uncollectible"


@pytest.mark.django_db
def test_a_part_paid_invoice_is_reissued_for_the_balance_after_a_credit_note(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    old_id = invoiced_po.stripe_invoice_id
    stripe_emulator.pay_invoice(old_id, amount=100000)  # the Dashboard's "Charge customer"
    deliver_all(invoiced_po.conference, stripe_events(stripe_emulator, stripe_secret_key))
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PARTIALLY_PAID
    assert stripe_ledger(invoiced_po) == Decimal("1000.00")

    url = invoice_lifecycle.reissue_stripe_invoice(invoiced_po)

    invoiced_po.refresh_from_db()
    old = client.v1.invoices.retrieve(old_id)
    # Stripe never voids an invoice with payments: a credit note closes the unpaid rest.
    assert (old.status, old.amount_paid, old.amount_remaining) == ("paid", 100000, 0)
    assert old.pre_payment_credit_notes_amount == 535000
    (note,) = client.v1.credit_notes.list(params={"invoice": old_id}).data
    assert (note.amount, note.pre_payment_amount, note.post_payment_amount) == (535000, 535000, 0)
    assert note.metadata is not None
    assert note.metadata.to_dict() == {
        "purchase_order": invoiced_po.reference,
        "purpose": "reissue",
    }
    with pytest.raises(EmulatorError, match="already paid"):
        stripe_emulator.pay_invoice(old_id)  # no second collection on the old invoice
    # Recorded (our credits equal Stripe's credit notes) but not lowering what is owed: the new
    # invoice asks for that rest again.
    assert list(invoiced_po.credits.values_list("stripe_credit_note_id", "purpose")) == [
        (note.id, "reissue")
    ]
    assert invoiced_po.amount_credited == 0
    new = client.v1.invoices.retrieve(invoiced_po.stripe_invoice_id)
    assert new.id != old_id
    assert url == new.hosted_invoice_url
    assert new.status == "open"
    assert new.amount_due == 635000 - 100000
    assert [(line.description, line.amount) for line in new.lines.data] == [
        ("Gold sponsorship", 500000),
        ("Conference ticket", 135000),
        (f"Payments already received for purchase order {invoiced_po.reference}", -100000),
    ]
    assert new.metadata is not None
    assert new.metadata["generation"] == "2"
    assert invoiced_po.generation == 2
    assert invoiced_po.invoice_credit == Decimal("1000.00")
    assert invoiced_po.status == Status.PARTIALLY_PAID
    # The old invoice's payment stays in the ledger under the old invoice.
    assert stripe_ledger(invoiced_po, old_id) == Decimal("1000.00")

    stripe_emulator.pay_invoice(new.id)
    # Everything again, old invoice's events included, in reverse: nothing counted twice.
    deliver_all(
        invoiced_po.conference, list(reversed(stripe_events(stripe_emulator, stripe_secret_key)))
    )
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PAID
    assert invoiced_po.stripe_invoice_status == "paid"
    assert stripe_ledger(invoiced_po, old_id) == Decimal("1000.00")
    assert stripe_ledger(invoiced_po, new.id) == Decimal("5350.00")
    assert invoiced_po.amount_received == invoiced_po.total
    assert len(account_invoices(stripe_emulator, stripe_secret_key)) == 2


@pytest.mark.django_db
def test_voided_invoice_is_reissued_in_full(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    client.v1.invoices.void_invoice(invoiced_po.stripe_invoice_id)
    deliver_all(invoiced_po.conference, stripe_events(stripe_emulator, stripe_secret_key))
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.INVOICE_VOIDED

    invoice_lifecycle.reissue_stripe_invoice(invoiced_po)

    invoiced_po.refresh_from_db()
    new = client.v1.invoices.retrieve(invoiced_po.stripe_invoice_id)
    assert new.amount_due == 635000
    assert len(new.lines.data) == 2
    assert invoiced_po.status == Status.INVOICED
    with pytest.raises(InvalidTransition, match="void an unpaid invoice first"):
        invoice_lifecycle.reissue_stripe_invoice(invoiced_po)


@pytest.mark.django_db
def test_cancel_voids_an_unpaid_invoice(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    invoice_lifecycle.cancel_invoiced_purchase_order(invoiced_po, reason="sponsor withdrew")
    invoiced_po.refresh_from_db()
    client = stripe_emulator.client(stripe_secret_key)
    assert client.v1.invoices.retrieve(invoiced_po.stripe_invoice_id).status == "void"
    assert not client.v1.credit_notes.list().data
    assert invoiced_po.status == Status.CANCELLED
    with pytest.raises(EmulatorError, match="void and can no longer be paid"):
        stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id)


@pytest.mark.django_db
def test_cancel_of_a_part_paid_po_credits_the_unpaid_rest(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id, amount=50000)
    # The payment's events are still in flight when staff cancel.
    invoice_lifecycle.cancel_invoiced_purchase_order(invoiced_po, reason="sponsor withdrew")

    invoiced_po.refresh_from_db()
    client = stripe_emulator.client(stripe_secret_key)
    invoice = client.v1.invoices.retrieve(invoiced_po.stripe_invoice_id)
    # Stripe refuses to void it (a paid payment); the credit note leaves it paid.
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 50000, 0)
    (note,) = client.v1.credit_notes.list(params={"invoice": invoice.id}).data
    assert (note.amount, note.pre_payment_amount) == (585000, 585000)
    assert note.metadata is not None
    assert note.metadata.to_dict() == {
        "purchase_order": invoiced_po.reference,
        "purpose": "cancel",
    }
    assert invoiced_po.status == Status.CANCELLED
    # The credit note is in the ledger at once, as a credit that lowers what is owed.
    assert list(invoiced_po.credits.values_list("stripe_credit_note_id", "amount", "purpose")) == [
        (note.id, Decimal("5850.00"), "cancel")
    ]
    assert invoiced_po.amount_credited == Decimal("5850.00")
    # A repeat (the task ran twice) writes nothing more at Stripe.
    invoice_lifecycle.cancel_invoiced_purchase_order(invoiced_po, reason="sponsor withdrew")
    assert len(client.v1.credit_notes.list(params={"invoice": invoice.id}).data) == 1
    assert invoiced_po.cancellation_reason == "sponsor withdrew"
    # The payment that happened is in the ledger (a refund is the organizer's call).
    assert stripe_ledger(invoiced_po) == Decimal("500.00")
    deliver_all(invoiced_po.conference, stripe_events(stripe_emulator, stripe_secret_key))
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.CANCELLED
    assert stripe_ledger(invoiced_po) == Decimal("500.00")
    with pytest.raises(EmulatorError, match="already paid"):
        stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id)


@pytest.mark.django_db
def test_cancel_without_a_reason_asks_nothing_of_stripe(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    stripe_emulator.clear_requests(stripe_secret_key)
    with pytest.raises(InvalidTransition, match="not cancelled: give a reason"):
        invoice_lifecycle.cancel_invoiced_purchase_order(invoiced_po, reason=" ")
    assert stripe_emulator.requests(stripe_secret_key) == []
    invoiced_po.refresh_from_db()
    assert (invoiced_po.status, invoiced_po.stripe_invoice_status) == (Status.INVOICED, "open")


@pytest.mark.django_db
def test_cancel_refuses_a_paid_invoice(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, invoiced_po: PurchaseOrder
) -> None:
    stripe_emulator.pay_invoice(invoiced_po.stripe_invoice_id)
    with pytest.raises(InvalidTransition, match="refund"):
        invoice_lifecycle.cancel_invoiced_purchase_order(invoiced_po, reason="Sponsor withdrew")
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == Status.PAID
    assert stripe_ledger(invoiced_po) == Decimal("6350.00")


@pytest.mark.django_db
def test_cancel_during_creation_deletes_the_draft(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": "500", "method": "POST", "path": "/add_lines$"}]
    )
    with pytest.raises(stripe.APIError):
        stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    assert po.stripe_invoice_status == "draft"
    with pytest.raises(InvalidTransition, match="voids the invoice first"):
        purchase_orders.cancel_purchase_order(po, reason="Booked twice")

    invoice_lifecycle.cancel_invoiced_purchase_order(po, reason="Booked twice")

    po.refresh_from_db()
    assert po.status == Status.CANCELLED
    assert po.stripe_invoice_status == "deleted"
    assert account_invoices(stripe_emulator, stripe_secret_key) == []
    with pytest.raises(PurchaseOrderNotInvoiceable, match="cancelled"):
        stripe_invoicing.create_stripe_invoice(po)


@pytest.mark.django_db(transaction=True)
def test_cancel_racing_the_invoice_create_call_leaves_no_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """Staff cancel while Stripe is creating the invoice: the draft is deleted on arrival."""
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(stripe_secret_key, latency=0.8)
    outcome: list[BaseException | str] = []

    def create() -> None:
        try:
            outcome.append(stripe_invoicing.create_stripe_invoice(po))
        except BaseException as exc:  # reported below
            outcome.append(exc)
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=create)
    thread.start()
    deadline = time.monotonic() + 10
    while not PurchaseOrder.objects.get(pk=po.pk).invoice_create_started_at:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    purchase_orders.cancel_purchase_order(po, reason="Booked twice")  # no invoice id yet
    thread.join(timeout=30)
    stripe_emulator.configure(stripe_secret_key, latency=0.0)

    assert len(outcome) == 1
    assert isinstance(outcome[0], PurchaseOrderNotInvoiceable)
    po.refresh_from_db()
    assert po.status == Status.CANCELLED
    assert po.stripe_invoice_status == "deleted"
    assert account_invoices(stripe_emulator, stripe_secret_key) == []
    assert not PurchaseOrderPayment.objects.exists()


@pytest.mark.django_db
def test_draft_deleted_at_stripe_mid_creation_asks_for_a_reissue(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": "500", "method": "POST", "path": "/add_lines$"}]
    )
    with pytest.raises(stripe.APIError):
        stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    stripe_emulator.client(stripe_secret_key).v1.invoices.delete(po.stripe_invoice_id)

    with pytest.raises(InvoiceMismatch, match="deleted at Stripe"):
        stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    assert po.status == Status.INVOICE_VOIDED

    invoice_lifecycle.reissue_stripe_invoice(po)
    po.refresh_from_db()
    assert po.status == Status.INVOICED
    (invoice,) = account_invoices(stripe_emulator, stripe_secret_key)
    assert invoice.id == po.stripe_invoice_id
    assert invoice.amount_due == 635000
