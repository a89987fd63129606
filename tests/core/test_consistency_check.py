"""The whole-stack tests' final check must catch a ledger that lags Stripe, and an orphan draft."""

from __future__ import annotations

import pytest

from invoicing.models import Conference
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
        f"invoice {po.stripe_invoice_id}: Stripe amount_paid 10.00, ledger 0"
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
