"""Invoices a company's accounts payable accepts: its PO number, legal name, address and tax IDs
on the invoice, one Stripe customer per organization, the invoice PDF."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from invoicing.errors import InvalidPurchaseOrder, InvalidTransition
from invoicing.models import Conference, PurchaseOrder, StripeCustomer
from invoicing.selectors import reissue_refusal
from invoicing.services import invoice_lifecycle, purchase_orders
from invoicing.services.stripe_invoicing import create_stripe_invoice, sync_stripe_invoice_status
from tests.stripe_emulator.handle import EmulatorHandle

from .conftest import MakePurchaseOrder

pytestmark = pytest.mark.django_db

BERLIN = {
    "line1": "Friedrichstr. 10",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}
VAT = [{"type": "eu_vat", "value": "DE123456789"}]


def _client(emulator: EmulatorHandle, conference: Conference) -> stripe.StripeClient:
    return emulator.client(conference.stripe_secret_key)


def _invoiced(make_purchase_order: MakePurchaseOrder, **fields: Any) -> PurchaseOrder:
    po = make_purchase_order(**fields)
    create_stripe_invoice(po)
    po.refresh_from_db()
    return po


def test_the_invoice_carries_the_buyers_po_number_legal_name_address_and_vat_id(
    stripe_conference: Conference,
    stripe_emulator: EmulatorHandle,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    stripe_conference.invoice_shows_our_reference = True
    stripe_conference.save()
    po = _invoiced(
        make_purchase_order,
        conference=stripe_conference,
        reference="SPONSOR-7",
        organization_name="Globex",
        legal_name="Globex Deutschland GmbH",
        buyer_po_number="4500012345",
        billing_address=BERLIN,
        tax_ids=VAT,
    )
    invoice = _client(stripe_emulator, stripe_conference).v1.invoices.retrieve(po.stripe_invoice_id)
    assert [(f.name, f.value) for f in invoice.custom_fields or []] == [
        ("PO number", "4500012345"),
        ("Our reference", "SPONSOR-7"),
    ]
    assert invoice.customer_name == "Globex Deutschland GmbH"
    assert invoice.customer_address is not None
    assert invoice.customer_address.to_dict() == {**BERLIN, "line2": None, "state": None}
    assert [(t.type, t.value) for t in invoice.customer_tax_ids or []] == [
        ("eu_vat", "DE123456789")
    ]
    # What the company receives says it too, and the PO links the PDF.
    page = stripe_emulator.hosted_page(po.stripe_invoice_id)
    for text in ("4500012345", "Globex Deutschland GmbH", "10117 Berlin", "DE123456789"):
        assert text in page
    assert po.stripe_invoice_pdf == invoice.invoice_pdf
    assert po.stripe_invoice_pdf.endswith(f"/i/{po.stripe_invoice_id}/pdf")
    # Paying it: the PO's total and received amounts equal the invoice's.
    stripe_emulator.pay_invoice(po.stripe_invoice_id)
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    paid = _client(stripe_emulator, stripe_conference).v1.invoices.retrieve(po.stripe_invoice_id)
    assert po.status == PurchaseOrder.Status.PAID
    assert po.stripe_invoice_total == po.total == Decimal(paid.total) / 100
    assert po.amount_received == Decimal(paid.amount_paid) / 100
    assert po.stripe_invoice_tax == 0


def test_two_organizations_sharing_a_mailbox_get_two_customers_with_their_own_names(
    stripe_conference: Conference,
    stripe_emulator: EmulatorHandle,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    acme = _invoiced(
        make_purchase_order, conference=stripe_conference, organization_name="Acme Corp"
    )
    globex = _invoiced(
        make_purchase_order, conference=stripe_conference, organization_name="Globex GmbH"
    )
    again = _invoiced(  # the same organization, spelled differently, its legal name given
        make_purchase_order,
        conference=stripe_conference,
        organization_name="ACME  corp.",
        legal_name="Acme Corp",
    )
    client = _client(stripe_emulator, stripe_conference)
    customers = client.v1.customers.list().data
    assert sorted(c.name or "" for c in customers) == ["Acme Corp", "Globex GmbH"]
    assert {c.email for c in customers} == {"billing@acme.example"}
    assert acme.stripe_customer_id == again.stripe_customer_id != globex.stripe_customer_id
    names = {
        po.reference: client.v1.invoices.retrieve(po.stripe_invoice_id).customer_name
        for po in (acme, globex)
    }
    assert names == {acme.reference: "Acme Corp", globex.reference: "Globex GmbH"}
    assert StripeCustomer.objects.filter(conference=stripe_conference).count() == 2


def test_a_changed_address_updates_the_customer_before_the_next_invoice(
    stripe_conference: Conference,
    stripe_emulator: EmulatorHandle,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    first = _invoiced(
        make_purchase_order,
        conference=stripe_conference,
        organization_name="Globex GmbH",
        billing_address=BERLIN,
        tax_ids=VAT,
    )
    moved = {"line1": "Ringstr. 1", "city": "Wien", "postal_code": "1010", "country": "AT"}
    second = _invoiced(
        make_purchase_order,
        conference=stripe_conference,
        organization_name="Globex GmbH",
        billing_address=moved,
        tax_ids=[{"type": "eu_vat", "value": "ATU12345678"}],
    )
    client = _client(stripe_emulator, stripe_conference)
    new = client.v1.invoices.retrieve(second.stripe_invoice_id)
    old = client.v1.invoices.retrieve(first.stripe_invoice_id)
    assert new.customer == old.customer
    assert new.customer_address is not None
    assert new.customer_address.city == "Wien"
    assert [t.value for t in new.customer_tax_ids or []] == ["ATU12345678"]
    # The first invoice was finalized with the old details; Stripe keeps them.
    assert old.customer_address is not None
    assert old.customer_address.city == "Berlin"
    assert [t.value for t in old.customer_tax_ids or []] == ["DE123456789"]
    # Resuming or invoicing again with the same details writes nothing more at Stripe.
    customer = StripeCustomer.objects.get(purchase_orders=second)
    assert customer.address == moved
    before = len(stripe_emulator.requests(stripe_conference.stripe_secret_key))
    _invoiced(
        make_purchase_order,
        conference=stripe_conference,
        organization_name="Globex GmbH",
        billing_address=moved,
        tax_ids=[{"type": "eu_vat", "value": "ATU12345678"}],
    )
    paths = [r["path"] for r in stripe_emulator.requests(stripe_conference.stripe_secret_key)]
    assert not [path for path in paths[before:] if path.startswith("/v1/customers")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"billing_address": {**BERLIN, "country": "Germany"}}, "'Germany' is not a country code"),
        ({"billing_address": {"line1": "Main St 1", "country": "FR"}}, "needs city"),
        ({"billing_address": {**BERLIN, "zip": "1"}}, "unknown fields zip"),
        ({"tax_ids": [{"type": "vat", "value": "DE123456789"}]}, "not a Stripe tax ID type"),
        ({"tax_ids": [{"type": "eu_vat", "value": "DE12"}]}, "not a valid eu_vat number"),
        ({"buyer_po_number": "4" * 141}, "at most 140"),
    ],
)
def test_create_purchase_order_refuses_what_stripe_would_refuse(
    make_purchase_order: MakePurchaseOrder, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidPurchaseOrder, match=message):
        make_purchase_order(approve=False, **fields)
    assert not PurchaseOrder.objects.exists()


def test_billing_details_are_frozen_at_approval_and_need_an_address_for_stripe_tax(
    make_purchase_order: MakePurchaseOrder, make_conference: Any
) -> None:
    taxed = make_conference(automatic_tax=True)
    po = make_purchase_order(conference=taxed, approve=False)
    with pytest.raises(InvalidPurchaseOrder, match="needs the company's billing address"):
        purchase_orders.approve_purchase_order(po)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.DRAFT


def test_with_stripe_tax_the_po_owes_and_is_paid_the_invoices_total(
    stripe_conference: Conference,
    stripe_emulator: EmulatorHandle,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    stripe_emulator.configure(stripe_conference.stripe_secret_key, tax_rates={"DE": "19"})
    stripe_conference.automatic_tax = True
    stripe_conference.save()
    po = _invoiced(  # 5,000.00 + 3 x 450.00 = 6,350.00 net
        make_purchase_order,
        conference=stripe_conference,
        organization_name="Globex GmbH",
        buyer_po_number="4500012345",
        billing_address=BERLIN,
        tax_ids=VAT,
    )
    invoice = _client(stripe_emulator, stripe_conference).v1.invoices.retrieve(po.stripe_invoice_id)
    assert invoice.automatic_tax.enabled is True
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (635000, 755650, 755650)
    assert po.total == Decimal("6350.00")
    assert po.stripe_invoice_tax == Decimal("1206.50")
    assert po.stripe_invoice_total == po.amount_owed == Decimal("7556.50")
    assert "1,206.50" in stripe_emulator.hosted_page(po.stripe_invoice_id)

    # Paying the net total leaves the PO partially paid; the rest makes it paid, not overpaid.
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=635000)
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.PARTIALLY_PAID
    stripe_emulator.pay_invoice(po.stripe_invoice_id)
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.PAID
    assert po.amount_received == po.stripe_invoice_total == Decimal("7556.50")
    assert po.balance_due == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"error": "500", "method": "POST", "path": r"^/v1/customers/cus_[^/]+$"},
        {"error": "reset_after_commit", "method": "POST", "path": r"/tax_ids$"},
    ],
)
def test_a_customer_update_cut_short_resumes_without_writing_twice(
    stripe_conference: Conference,
    stripe_emulator: EmulatorHandle,
    make_purchase_order: MakePurchaseOrder,
    fault: dict[str, str],
) -> None:
    key = stripe_conference.stripe_secret_key
    _invoiced(make_purchase_order, conference=stripe_conference, organization_name="Globex GmbH")
    moved = make_purchase_order(
        conference=stripe_conference,
        organization_name="Globex GmbH",
        billing_address=BERLIN,
        tax_ids=VAT,
    )
    stripe_emulator.configure(key, fail_next=[fault])
    with pytest.raises(stripe.StripeError):
        create_stripe_invoice(moved)
    create_stripe_invoice(moved)  # the rerun (the task's retry)
    moved.refresh_from_db()
    client = _client(stripe_emulator, stripe_conference)
    invoice = client.v1.invoices.retrieve(moved.stripe_invoice_id)
    assert invoice.customer_address is not None
    assert invoice.customer_address.city == "Berlin"
    customer_id = str(invoice.customer)
    assert [(t.type, t.value) for t in client.v1.customers.tax_ids.list(customer_id).data] == [
        ("eu_vat", "DE123456789")
    ]
    updates = [
        entry
        for entry in stripe_emulator.requests(key)
        if entry["method"] == "POST" and entry["path"] == f"/v1/customers/{customer_id}"
    ]
    assert len({entry["idempotency_key"] for entry in updates if entry["status"] == 200}) == 1
    assert len(client.v1.customers.list().data) == 1


def test_a_part_paid_taxed_po_is_not_reissued_and_nothing_changes_at_stripe(
    stripe_conference: Conference,
    stripe_emulator: EmulatorHandle,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """The replacement would deduct the money received with a negative line, which Stripe refuses
    on an automatic-tax invoice: refused before the old invoice is closed by a credit note."""
    stripe_emulator.configure(stripe_conference.stripe_secret_key, tax_rates={"DE": "19"})
    stripe_conference.automatic_tax = True
    stripe_conference.save()
    po = _invoiced(make_purchase_order, conference=stripe_conference, billing_address=BERLIN)
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=100000)  # "Charge customer"
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.PARTIALLY_PAID
    assert "Stripe Tax" in reissue_refusal(po)

    with pytest.raises(InvalidTransition, match=r"negative line .* 1,000\.00 USD already received"):
        invoice_lifecycle.reissue_stripe_invoice(po)

    po.refresh_from_db()
    client = _client(stripe_emulator, stripe_conference)
    assert (po.status, po.generation) == (PurchaseOrder.Status.PARTIALLY_PAID, 1)
    assert client.v1.invoices.retrieve(po.stripe_invoice_id).status == "open"
    assert client.v1.credit_notes.list({"invoice": po.stripe_invoice_id}).data == []
