"""Every error path answers like Stripe: status, type, code, param, and changes nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle


def _raw(
    stripe_emulator: EmulatorHandle,
    method: str,
    path: str,
    body: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        stripe_emulator.base_url + path,
        data=body.encode() if body else None,
        method=method,
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


# --- authentication ---------------------------------------------------------------------------


def test_no_key_is_401_in_stripes_shape(stripe_emulator: EmulatorHandle) -> None:
    status, body = _raw(stripe_emulator, "GET", "/v1/customers")
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in body["error"]["message"]


@pytest.mark.parametrize("key", ["sk_test_", "bogus", "sk_prod_abc", "sk_test_has space"])
def test_malformed_key_is_401(stripe_emulator: EmulatorHandle, key: str) -> None:
    client = stripe_emulator.client(key)
    with pytest.raises(stripe.AuthenticationError) as caught:
        client.v1.customers.list()
    assert caught.value.http_status == 401
    assert "Invalid API Key provided" in str(caught.value.user_message)


def test_publishable_key_is_refused(stripe_emulator: EmulatorHandle) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        stripe_emulator.client("pk_test_abc").v1.customers.list()
    assert caught.value.error is not None
    assert caught.value.error.code == "secret_key_required"


def test_basic_auth_works_like_curl_u(stripe_emulator: EmulatorHandle) -> None:
    import base64

    key = stripe_emulator.new_secret_key()
    token = base64.b64encode(f"{key}:".encode()).decode()
    status, body = _raw(
        stripe_emulator,
        "POST",
        "/v1/customers",
        "email=x%40y.example",
        {"Authorization": f"Basic {token}"},
    )
    assert status == 200
    assert body["email"] == "x@y.example"


def test_livemode_follows_the_key(stripe_emulator: EmulatorHandle) -> None:
    live = stripe_emulator.client(stripe_emulator.new_secret_key(livemode=True))
    test = stripe_emulator.client(stripe_emulator.new_secret_key())
    assert live.v1.customers.create().livemode is True
    assert test.v1.customers.create().livemode is False
    restricted = stripe_emulator.client("rk_test_" + "a" * 24)
    assert restricted.v1.customers.create().livemode is False


def test_accounts_are_isolated(stripe_emulator: EmulatorHandle) -> None:
    first = stripe_emulator.client(stripe_emulator.new_secret_key())
    second = stripe_emulator.client(stripe_emulator.new_secret_key())
    customer = first.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        second.v1.customers.retrieve(customer.id)
    assert caught.value.http_status == 404
    assert second.v1.customers.list().data == []


def test_unknown_url_is_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("get", "/v1/nothing_here")
    assert caught.value.http_status == 404
    assert "Unrecognized request URL" in str(caught.value.user_message)


# --- parameters (derived from stripe.params TypedDicts) ---------------------------------------


def test_removed_unit_amount_on_invoice_items_is_unknown(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request(
            "post", "/v1/invoiceitems", customer=customer.id, unit_amount=500, currency="usd"
        )
    assert caught.value.http_status == 400
    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "unit_amount"
    assert client.v1.invoice_items.list().data == []


def test_unknown_nested_parameter_names_the_bracket_path(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request(
            "post",
            f"/v1/invoices/{invoice.id}/add_lines",
            lines=[{"amount": 100}, {"unit_amount": 100, "quantity": 2}],
        )
    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "lines[1][unit_amount]"
    assert client.v1.invoices.retrieve(invoice.id).lines.data == []


def test_missing_required_parameter(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("post", f"/v1/invoices/{invoice.id}/add_lines")
    assert caught.value.code == "parameter_missing"
    assert caught.value.param == "lines"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("post", "/v1/invoices")
    assert caught.value.code == "parameter_missing"
    assert caught.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request(
            "post",
            f"/v1/invoices/{invoice.id}/add_lines",
            lines=[{"price_data": {"unit_amount": 5, "product_data": {"name": "x"}}}],
        )
    assert caught.value.code == "parameter_missing"
    assert caught.value.param == "lines[0][price_data][currency]"


def test_invalid_integer(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("post", "/v1/invoiceitems", customer=customer.id, amount="12.5")
    assert caught.value.code == "parameter_invalid_integer"
    assert caught.value.param == "amount"


def test_invalid_enum_value(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request(
            "post", "/v1/invoices", customer=customer.id, collection_method="by_pigeon"
        )
    assert caught.value.param == "collection_method"
    assert "must be one of charge_automatically or send_invoice" in str(caught.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request(
            "post",
            "/v1/invoices",
            customer=customer.id,
            payment_settings={"payment_method_types": ["card", "cheque"]},
        )
    assert caught.value.param == "payment_settings[payment_method_types][1]"


def test_invalid_boolean_and_empty_string(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("post", "/v1/invoices", customer=customer.id, auto_advance="yes")
    assert caught.value.param == "auto_advance"
    assert "Invalid boolean" in str(caught.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("post", "/v1/invoices", customer=customer.id, description="")
    assert caught.value.code == "parameter_invalid_empty"
    assert caught.value.param == "description"


def test_exclusive_parameters(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "amount": 100,
                "price_data": {"currency": "usd", "product": "prod_x", "unit_amount": 5},
            }
        )
    assert caught.value.code == "parameters_exclusive"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(
            params={
                "customer": customer.id,
                "collection_method": "send_invoice",
                "days_until_due": 3,
                "due_date": 4102444800,
            }
        )
    assert caught.value.code == "parameters_exclusive"
    assert client.v1.invoices.list().data == []


def test_invoice_item_needs_a_price(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(params={"customer": customer.id, "currency": "usd"})
    assert caught.value.code == "parameter_missing"


def test_price_data_needs_product_or_product_data(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(
            invoice.id,
            params={"lines": [{"price_data": {"currency": "usd", "unit_amount": 100}}]},
        )
    assert caught.value.code == "parameter_missing"
    assert caught.value.param == "lines[0][price_data][product]"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(
            invoice.id,
            params={"lines": [{"price_data": {"currency": "usd", "product_data": {"name": "x"}}}]},
        )
    assert caught.value.param == "lines[0][price_data][unit_amount]"


def test_send_invoice_rules_for_due_dates(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(
            params={"customer": customer.id, "collection_method": "send_invoice"}
        )
    assert caught.value.param == "days_until_due"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={"customer": customer.id, "days_until_due": 30})
    assert caught.value.param == "days_until_due"
    assert "charge_automatically" in str(caught.value.user_message)
    assert client.v1.invoices.list().data == []


def test_no_such_customer_and_invoice(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={"customer": "cus_missing"})
    assert caught.value.http_status == 400
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.retrieve("in_missing")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert "No such invoice: 'in_missing'" in str(caught.value.user_message)


def test_unknown_price_is_missing(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "pricing": {"price": "price_nope"}}
        )
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "pricing[price]"


def test_currency_rules(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={"customer": customer.id, "currency": "xyz"})
    assert caught.value.param == "currency"

    usd = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(
            usd.id,
            params={
                "lines": [
                    {
                        "price_data": {
                            "currency": "eur",
                            "product_data": {"name": "x"},
                            "unit_amount": 1,
                        }
                    }
                ]
            },
        )
    assert caught.value.param == "lines[0][price_data][currency]"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": usd.id, "amount": 5, "currency": "eur"}
        )
    assert caught.value.param == "currency"

    kwd = client.v1.invoices.create(params={"customer": customer.id, "currency": "kwd"})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(kwd.id, params={"lines": [{"amount": 12345}]})
    assert caught.value.param == "lines[0][amount]"
    ok = client.v1.invoices.add_lines(kwd.id, params={"lines": [{"amount": 12340}]})
    assert ok.amount_due == 12340

    jpy = client.v1.invoices.create(params={"customer": customer.id, "currency": "jpy"})
    with_decimal = client.v1.invoices.add_lines(
        jpy.id,
        params={
            "lines": [
                {
                    "price_data": {
                        "currency": "jpy",
                        "product_data": {"name": "Ticket"},
                        "unit_amount_decimal": Decimal("1000.4"),
                    },
                    "quantity": 3,
                }
            ]
        },
    )
    assert with_decimal.amount_due == 3001  # 3001.2 yen rounds to 3001


def test_amount_with_quantity_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100, "quantity": 3}]})
    assert caught.value.param == "lines[0][quantity]"


def test_metadata_limits(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create(params={"metadata": {"k" * 41: "v"}})
    assert "40 characters" in str(caught.value.user_message)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"metadata": {"k": "v" * 501}})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"metadata": {f"k{n}": "v" for n in range(51)}})


def test_unsupported_parameters_are_refused_not_ignored(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={"customer": customer.id, "default_tax_rates": ["txr_1"]})
    assert caught.value.param == "default_tax_rates"
    assert "emulator does not support" in str(caught.value.user_message)


# --- illegal moves in the lifecycle -----------------------------------------------------------


def _open_invoice(client: stripe.StripeClient, customer: stripe.Customer) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 5}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1000}]})
    return client.v1.invoices.finalize_invoice(invoice.id)


def test_illegal_moves_on_a_paid_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    invoice = _open_invoice(client, customer)
    stripe_emulator.pay_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError, match="Invoice is already paid"):
        client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    with pytest.raises(stripe.InvalidRequestError, match="open or uncollectible"):
        client.v1.invoices.void_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError, match="open invoice"):
        client.v1.invoices.mark_uncollectible(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.update(invoice.id, params={"description": "late edit"})
    assert caught.value.code == "invoice_not_editable"
    updated = client.v1.invoices.update(invoice.id, params={"metadata": {"note": "ok"}})
    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"note": "ok"}
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"


def test_illegal_moves_on_a_draft(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    draft = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError, match="finalized"):
        client.v1.invoices.void_invoice(draft.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.mark_uncollectible(draft.id)
    with pytest.raises(stripe.InvalidRequestError, match="send_invoice"):
        client.v1.invoices.send_invoice(draft.id)
    assert client.v1.invoices.retrieve(draft.id).status == "draft"


def test_finalized_invoice_keeps_its_money_fields(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open_invoice(client, customer)
    for params in ({"collection_method": "charge_automatically"}, {"days_until_due": 60}):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.invoices.update(invoice.id, params=params)  # type: ignore[arg-type]
        assert caught.value.code == "invoice_not_editable"
    edited = client.v1.invoices.update(
        invoice.id, params={"description": "PO 42", "footer": "Thanks"}
    )
    assert edited.description == "PO 42"


def test_pay_needs_a_payment_method_and_declines_are_402(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open_invoice(client, customer)
    with pytest.raises(stripe.InvalidRequestError, match="no attached payment source"):
        client.v1.invoices.pay(invoice.id)
    with pytest.raises(stripe.CardError) as caught:
        client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_chargeDeclined"})
    assert caught.value.http_status == 402
    assert caught.value.code == "card_declined"
    failed = client.v1.invoices.retrieve(invoice.id)
    assert failed.status == "open"
    assert failed.attempted is True
    types = [event.type for event in client.v1.events.list().data]
    assert "invoice.payment_failed" in types
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
    assert paid.status == "paid"
    assert paid.amount_paid == 1000


def test_payments_endpoint_refuses_what_the_invoice_does_not_accept(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 5,
            "payment_settings": {"payment_method_types": ["card"]},
        }
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1000}]})
    with pytest.raises(Exception, match="draft"):
        stripe_emulator.pay_invoice(invoice.id)
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(Exception, match="does not accept us_bank_account"):
        stripe_emulator.pay_invoice(invoice.id, payment_method_type="us_bank_account")
    with pytest.raises(Exception, match="No such invoice"):
        stripe_emulator.pay_invoice("in_doesnotexist")
    assert client.v1.invoices.retrieve(invoice.id).amount_paid == 0


def test_a_bad_expand_changes_nothing(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(params={"customer": customer.id, "expand": ["lines.nope"]})
    assert client.v1.invoices.list().data == []
    draft = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 5}], "expand": ["x"]})
    assert client.v1.invoices.retrieve(draft.id).lines.data == []


def test_due_date_can_replace_days_until_due_on_a_draft(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    draft = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 3}
    )
    due = int(stripe_emulator.now()) + 10 * 86400
    updated = client.v1.invoices.update(draft.id, params={"due_date": due})
    assert updated.due_date == due


def test_a_bad_line_anywhere_adds_no_line(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    draft = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(
            draft.id,
            params={
                "lines": [
                    {"amount": 100},
                    {"amount": 200, "period": {"start": 20, "end": 10}},
                ]
            },
        )
    assert caught.value.param == "lines[1][period][end]"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(
            draft.id,
            params={"lines": [{"amount": 100}, {"amount": 1, "metadata": {"k" * 41: "v"}}]},
        )
    assert client.v1.invoices.retrieve(draft.id).lines.data == []
    assert client.v1.invoice_items.list().data == []


def test_a_rejected_update_changes_nothing(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "before@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(
            customer.id, params={"email": "after@example.com", "metadata": {"k" * 41: "v"}}
        )
    assert client.v1.customers.retrieve(customer.id).email == "before@example.com"
