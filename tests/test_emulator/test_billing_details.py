"""What a company's accounts payable needs on an invoice: custom fields, the customer's address
and tax IDs, checked the way Stripe checks them, shown on the hosted page and in the PDF."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

ADDRESS = {
    "line1": "Friedrichstr. 10",
    "line2": "4. OG",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}


def _customer(client: stripe.StripeClient, **extra: Any) -> stripe.Customer:
    params: Any = {"email": "ap@globex.example", "name": "Globex GmbH", **extra}
    return client.v1.customers.create(params=params)


def test_tax_ids_given_at_creation_are_listed_and_copied_to_invoices(
    client: stripe.StripeClient,
) -> None:
    customer = _customer(
        client, address=ADDRESS, tax_id_data=[{"type": "eu_vat", "value": "DE123456789"}]
    )
    listed = client.v1.customers.tax_ids.list(customer.id).data
    assert [(t.type, t.value, t.country) for t in listed] == [("eu_vat", "DE123456789", "DE")]
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30}
    )
    assert [(t.type, t.value) for t in invoice.customer_tax_ids or []] == [
        ("eu_vat", "DE123456789")
    ]
    assert invoice.customer_address is not None
    assert invoice.customer_address.city == "Berlin"


@pytest.mark.parametrize(
    ("datum", "code", "param"),
    [
        ({"type": "eu_vat", "value": "DE12345"}, "tax_id_invalid", "tax_id_data[0][value]"),
        ({"type": "eu_vat", "value": "XX123456789"}, "tax_id_invalid", "tax_id_data[0][value]"),
        ({"type": "us_ein", "value": "12345"}, "tax_id_invalid", "tax_id_data[0][value]"),
        ({"type": "vat", "value": "DE123456789"}, None, "tax_id_data[0][type]"),
    ],
)
def test_a_bad_tax_id_refuses_the_customer(
    client: stripe.StripeClient, datum: dict[str, str], code: str | None, param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _customer(client, tax_id_data=[datum])
    assert refused.value.code == code
    assert refused.value.param == param
    assert client.v1.customers.list().data == []  # nothing was created


def test_tax_ids_are_added_and_deleted_on_their_own(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    added = client.v1.customers.tax_ids.create(
        customer.id, params={"type": "gb_vat", "value": "GB123456789"}
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.tax_ids.create(customer.id, params={"type": "gb_vat", "value": "1"})
    assert refused.value.code == "tax_id_invalid"
    deleted = client.v1.customers.tax_ids.delete(customer.id, added.id)
    assert deleted.deleted is True
    assert client.v1.customers.tax_ids.list(customer.id).data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.tax_ids.delete(customer.id, added.id)


def _invoice(client: stripe.StripeClient, customer: stripe.Customer, **extra: Any) -> Any:
    params: Any = {
        "customer": customer.id,
        "collection_method": "send_invoice",
        "days_until_due": 30,
        **extra,
    }
    return client.v1.invoices.create(params=params)


def test_custom_fields_follow_stripes_limits(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    four = [{"name": f"Field {n}", "value": "x" * 140} for n in range(4)]
    invoice = _invoice(client, customer, custom_fields=four)
    assert [f.name for f in invoice.custom_fields] == [f"Field {n}" for n in range(4)]
    for fields, param in [
        ([*four, {"name": "Fifth", "value": "5"}], "custom_fields"),
        ([{"name": "n" * 41, "value": "v"}], "custom_fields[0][name]"),
        ([{"name": "PO number", "value": "v" * 141}], "custom_fields[0][value]"),
    ]:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            _invoice(client, customer, custom_fields=fields)
        assert refused.value.param == param
    cleared = client.v1.invoices.update(invoice.id, params={"custom_fields": ""})
    assert cleared.custom_fields is None


def test_the_hosted_page_and_the_pdf_show_what_accounts_payable_needs(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    customer = _customer(
        client, address=ADDRESS, tax_id_data=[{"type": "eu_vat", "value": "DE123456789"}]
    )
    invoice = _invoice(client, customer, custom_fields=[{"name": "PO number", "value": "4500-77"}])
    client.v1.invoices.add_lines(
        invoice.id, params={"lines": [{"amount": 635000, "description": "Gold sponsorship"}]}
    )
    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    page = stripe_emulator.hosted_page(invoice.id)
    for text in ("PO number", "4500-77", "Globex GmbH", "Friedrichstr. 10", "10117 Berlin"):
        assert text in page
    assert "DE123456789" in page
    assert invoice.invoice_pdf is not None
    with urllib.request.urlopen(invoice.invoice_pdf, timeout=5) as response:
        pdf = response.read()
        assert response.headers["Content-Type"] == "application/pdf"
    assert pdf.startswith(b"%PDF-1.4")
    assert pdf.rstrip().endswith(b"%%EOF")
    for needle in (b"PO number: 4500-77", b"Globex GmbH", b"EU_VAT DE123456789", b"10117 Berlin"):
        assert needle in pdf
    # Finalized: a tax ID added later is not on this invoice any more.
    client.v1.customers.tax_ids.create(
        customer.id, params={"type": "eu_vat", "value": "ATU12345678"}
    )
    again = client.v1.invoices.retrieve(invoice.id)
    assert [t.value for t in again.customer_tax_ids or []] == ["DE123456789"]


def test_automatic_tax_adds_the_configured_rate_of_the_customers_country(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    stripe_emulator.configure(stripe_secret_key, tax_rates={"DE": "19"})
    customer = _customer(client, address=ADDRESS)
    invoice = _invoice(client, customer, automatic_tax={"enabled": True})
    invoice = client.v1.invoices.add_lines(
        invoice.id, params={"lines": [{"amount": 635000, "description": "Gold sponsorship"}]}
    )
    assert invoice.automatic_tax.enabled is True
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (
        635000,
        635000,
        755650,
    )
    assert [t.amount for t in invoice.total_taxes or []] == [120650]
    assert [t.amount for t in invoice.lines.data[0].taxes or []] == [120650]
    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    assert (invoice.amount_due, invoice.amount_remaining) == (755650, 755650)
    assert "1,206.50" in stripe_emulator.hosted_page(invoice.id)
    paid = stripe_emulator.pay_invoice(invoice.id)["invoice"]
    assert (paid["status"], paid["amount_paid"]) == ("paid", 755650)
    # A country without a configured rate is not taxed (not registered there).
    elsewhere = _customer(client, address={**ADDRESS, "country": "FR", "postal_code": "75001"})
    untaxed = _invoice(client, elsewhere, automatic_tax={"enabled": True})
    untaxed = client.v1.invoices.add_lines(untaxed.id, params={"lines": [{"amount": 1000}]})
    assert untaxed.total == 1000


@pytest.mark.parametrize(
    "address",
    [None, {"line1": "1 Main St", "city": "Springfield", "country": "US"}],
)
def test_automatic_tax_is_refused_without_the_customers_location(
    client: stripe.StripeClient, address: dict[str, str] | None
) -> None:
    customer = _customer(client, **({"address": address} if address else {}))
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _invoice(client, customer, automatic_tax={"enabled": True})
    assert refused.value.code == "customer_tax_location_invalid"
    assert client.v1.invoices.list().data == []


def test_automatic_tax_invoices_take_no_negative_lines(client: stripe.StripeClient) -> None:
    customer = _customer(client, address=ADDRESS)
    invoice = _invoice(client, customer, automatic_tax={"enabled": True})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": -500}]})
    assert refused.value.param == "lines[0][amount]"
