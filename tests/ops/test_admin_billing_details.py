"""The PO form takes the company's billing details and refuses, in the organizer's words, what
Stripe would refuse; the PO page links the invoice PDF."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from invoicing import billing_details
from invoicing.models import PurchaseOrder
from invoicing.services.stripe_invoicing import create_stripe_invoice
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.ops.teams import po_form

pytestmark = pytest.mark.django_db

ADDRESS = ["Friedrichstr. 10", "", "Berlin", "", "10117", "de"]


def _new_po(conference_pk: int, **overrides: str) -> dict[str, str]:
    data = {
        "conference": str(conference_pk),
        "reference": "PO-AP",
        "organization_name": "Globex",
        "contact_name": "",
        "contact_email": "ap@globex.example",
        "currency": "",
        "notes": "",
        "buyer_po_number": "4500012345",
        "legal_name": "Globex Deutschland GmbH",
        **{f"billing_address_{i}": value for i, value in enumerate(ADDRESS)},
        "tax_ids": "eu_vat DE123456789\n",
        "line_items-TOTAL_FORMS": "1",
        "line_items-INITIAL_FORMS": "0",
        "line_items-MIN_NUM_FORMS": "1",
        "line_items-MAX_NUM_FORMS": "1000",
        "line_items-0-description": "Gold sponsorship",
        "line_items-0-quantity": "1",
        "line_items-0-unit_price": "5000.00",
    }
    data.update(overrides)
    return data


def _text(response: Any) -> str:
    return str(response.content.decode())


def test_the_form_saves_the_billing_details(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference()
    response = admin_client.post(
        reverse("admin:invoicing_purchaseorder_add"), _new_po(conference.pk)
    )
    assert response.status_code == 302, _text(response)
    po = PurchaseOrder.objects.get(reference="PO-AP")
    assert po.buyer_po_number == "4500012345"
    assert po.legal_name == "Globex Deutschland GmbH"
    assert po.billing_address == {
        "line1": "Friedrichstr. 10",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    }
    assert po.tax_ids == [{"type": "eu_vat", "value": "DE123456789"}]
    # Posting the page back unchanged changes nothing.
    page = reverse("admin:invoicing_purchaseorder_change", args=[po.pk])
    admin_client.post(page, po_form(po, **{"line_items-MIN_NUM_FORMS": "0"}))
    po.refresh_from_db()
    assert po.billing_address["country"] == "DE"
    assert po.tax_ids == [{"type": "eu_vat", "value": "DE123456789"}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"billing_address_5": "Germany"}, "is not a country code"),
        ({"billing_address_2": ""}, "The billing address needs city."),
        ({"tax_ids": "vat DE123456789"}, "is not a Stripe tax ID type"),
        ({"tax_ids": "eu_vat DE12"}, "is not a valid eu_vat number"),
        ({"tax_ids": "eu_vat"}, "is not a valid eu_vat number"),
        ({"buyer_po_number": "9" * 141}, "at most 140 characters"),
    ],
)
def test_the_form_refuses_what_stripe_would_refuse(
    admin_client: Client, make_conference: MakeConference, overrides: dict[str, str], message: str
) -> None:
    conference = make_conference()
    response = admin_client.post(
        reverse("admin:invoicing_purchaseorder_add"), _new_po(conference.pk, **overrides)
    )
    assert response.status_code == 200
    assert message in _text(response)
    assert not PurchaseOrder.objects.exists()


def test_the_po_page_links_the_invoice_pdf(
    admin_client: Client, stripe_conference: Any, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order(conference=stripe_conference, buyer_po_number="4500-1")
    create_stripe_invoice(po)
    po.refresh_from_db()
    page = _text(admin_client.get(reverse("admin:invoicing_purchaseorder_change", args=[po.pk])))
    assert f'href="{po.stripe_invoice_pdf}"' in page
    assert "Download PDF" in page
    assert "4500-1" in page


def test_an_approved_pos_billing_details_read_as_an_address_and_tax_ids(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order(
        billing_address={
            "line1": "Friedrichstr. 10",
            "city": "Berlin",
            "postal_code": "10117",
            "country": "DE",
        },
        tax_ids=[{"type": "eu_vat", "value": "DE123456789"}, {"type": "us_ein", "value": "12-3"}],
    )
    assert po.status == PurchaseOrder.Status.APPROVED  # read-only now
    page = _text(admin_client.get(reverse("admin:invoicing_purchaseorder_change", args=[po.pk])))
    assert "Friedrichstr. 10<br>10117 Berlin<br>DE" in page
    assert "EU VAT: DE123456789<br>US EIN: 12-3" in page
    assert "&quot;line1&quot;" not in page  # not the stored JSON
    assert "&quot;eu_vat&quot;" not in page


def test_a_us_address_reads_city_state_zip() -> None:
    lines = billing_details.address_lines(
        {
            "line1": "1 Main St",
            "city": "Springfield",
            "state": "IL",
            "postal_code": "62701",
            "country": "US",
        }
    )
    assert lines == ["1 Main St", "Springfield, IL 62701", "US"]
    assert billing_details.address_lines({}) == []
