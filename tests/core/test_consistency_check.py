"""The whole-stack tests' final check must catch a ledger that lags Stripe, and an orphan draft."""

from __future__ import annotations

import pytest

from invoicing.models import Conference
from invoicing.services import ledger
from invoicing.services.invoice_lifecycle import (
    cancel_invoiced_purchase_order,
    void_stripe_invoice,
)
from invoicing.services.stripe_invoicing import create_stripe_invoice, sync_stripe_invoice_status
from tests.core.conftest import MakePurchaseOrder
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.consistency import compare_with_stripe

pytestmark = pytest.mark.django_db


def test_a_payment_missing_from_the_ledger_is_reported_until_synced(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    create_stripe_invoice(po)
    po.refresh_from_db()
    compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference).assert_consistent()

    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=1000)
    report = compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference)
    assert report.problems == [
        f"invoice {po.stripe_invoice_id}: Stripe amount_paid - amount_paid_off_stripe 10.00, "
        "ledger 0"
    ]

    sync_stripe_invoice_status(po)
    report = compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference)
    report.assert_consistent()
    assert (report.invoices, report.purchase_orders, report.stripe_payments) == (1, 1, 1)


def test_an_orphan_draft_and_an_uninvoiced_approved_po_are_reported(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    customer = client.v1.customers.create({"email": "orphan@example.com"})
    draft = client.v1.invoices.create(
        {
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {
                "po_uid": str(po.uid),
                "generation": "1",
                "conference": po.conference.slug,
            },
        }
    )
    problems = compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference).problems
    assert f"invoice {draft.id} of PO uid {po.uid} is an orphan draft" in problems
    assert any(p.startswith(f"PO {po.reference} (approved) records invoice ''") for p in problems)


def test_a_voided_invoice_is_consistent_only_when_the_po_mirrors_the_void(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    voided_here = make_purchase_order(conference=stripe_conference)
    voided_at_stripe = make_purchase_order(conference=stripe_conference)
    # Part-paid: Stripe refuses the void, so cancelling credits the unpaid rest instead.
    credited_here = make_purchase_order(conference=stripe_conference)
    for po in (voided_here, voided_at_stripe, credited_here):
        create_stripe_invoice(po)
        po.refresh_from_db()
    void_stripe_invoice(voided_here)
    stripe_emulator.pay_invoice(credited_here.stripe_invoice_id, amount=1000)
    sync_stripe_invoice_status(credited_here)
    cancel_invoiced_purchase_order(credited_here, reason="Sponsor withdrew")
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    client.v1.invoices.void_invoice(voided_at_stripe.stripe_invoice_id)

    problems = compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference).problems
    assert problems == [
        f"PO {voided_at_stripe.reference} mirrors invoice {voided_at_stripe.stripe_invoice_id} "
        "as 'open'; Stripe has it void"
    ]

    sync_stripe_invoice_status(voided_at_stripe)
    compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference).assert_consistent()


def test_money_credited_to_the_balance_but_still_on_the_po_is_reported(
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    po = make_purchase_order(conference=stripe_conference)
    create_stripe_invoice(po)
    po.refresh_from_db()
    stripe_emulator.pay_invoice(po.stripe_invoice_id)
    sync_stripe_invoice_status(po)
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    note = client.v1.credit_notes.create(
        {"invoice": po.stripe_invoice_id, "amount": 20000, "credit_amount": 20000}
    )
    report = compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference)
    assert report.problems == [
        f"invoice {po.stripe_invoice_id}: Stripe credits 200.00, ledger 0",
        f"invoice {po.stripe_invoice_id}: Stripe credited to balance 200.00, ledger 0",
    ]

    ledger.apply_credit_note(purchase_order=po, credit_note=note, source="test")
    compare_with_stripe(emulator=stripe_emulator, conference=stripe_conference).assert_consistent()
