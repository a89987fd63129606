"""Credit notes on open and paid invoices: pre- and post-payment amounts, refunds, customer
balance, lines, preview, void."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .conftest import SendInvoice
from .stripe_shapes import wire


def _events(client: stripe.StripeClient, *types: str) -> list[stripe.Event]:
    events = client.v1.events.list(params={"limit": 100}).data
    return [event for event in reversed(events) if event.type in types]


def _amounts(client: stripe.StripeClient, invoice_id: str) -> dict[str, Any]:
    invoice = client.v1.invoices.retrieve(invoice_id)
    return {
        "status": invoice.status,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_remaining,
        "pre": invoice.pre_payment_credit_notes_amount,
        "post": invoice.post_payment_credit_notes_amount,
    }


def test_a_credit_note_on_an_open_invoice_lowers_what_it_asks(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    note = client.v1.credit_notes.create(
        params={
            "invoice": open_invoice.id,
            "amount": 30050,
            "reason": "order_change",
            "memo": "Booth cancelled",
            "metadata": {"po": "PO-1"},
        }
    )
    assert (note.type, note.pre_payment_amount, note.post_payment_amount) == (
        "pre_payment",
        30050,
        0,
    )
    assert (note.status, note.reason, note.memo) == ("issued", "order_change", "Booth cancelled")
    assert note.number == f"{open_invoice.number}-CN-01"
    assert (note.refunds, note.out_of_band_amount) == ([], None)
    assert _amounts(client, open_invoice.id) == {
        "status": "open",
        "amount_due": 120000,
        "amount_paid": 0,
        "amount_remaining": 120000,
        "pre": 30050,
        "post": 0,
    }
    updated = _events(client, "invoice.updated")[-1]
    assert updated.data.previous_attributes is not None
    assert updated.data.previous_attributes.to_dict()["amount_due"] == 150050
    assert [event.data.object["id"] for event in _events(client, "credit_note.created")] == [
        note.id
    ]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(note.pdf, timeout=10) as response:
        assert response.read().startswith(b"%PDF-")
    # the customer now pays what remains, in full, and the invoice is paid
    assert stripe_emulator.pay_invoice(open_invoice.id)["invoice"]["amount_paid"] == 120000


def test_crediting_the_whole_remainder_leaves_the_invoice_paid(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    stripe_emulator.pay_invoice(open_invoice.id, amount=100000)
    client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 50050})
    amounts = _amounts(client, open_invoice.id)
    assert amounts == {
        "status": "paid",
        "amount_due": 100000,
        "amount_paid": 100000,
        "amount_remaining": 0,
        "pre": 50050,
        "post": 0,
    }
    invoice = client.v1.invoices.retrieve(open_invoice.id)
    assert invoice.status_transitions.paid_at is not None
    # the partial payment did not pay it (no invoice.paid); the credit note did
    assert len(_events(client, "invoice.paid")) == 1
    # nothing more can be collected
    with pytest.raises(Exception, match="already paid"):
        stripe_emulator.pay_invoice(open_invoice.id, amount=1)


def test_beyond_the_remainder_is_paid_back(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    payment = stripe_emulator.pay_invoice(open_invoice.id, amount=140050)["invoice_payment"]
    note = client.v1.credit_notes.create(
        params={"invoice": open_invoice.id, "amount": 15000, "refund_amount": 5000}
    )
    assert (note.type, note.pre_payment_amount, note.post_payment_amount) == ("mixed", 10000, 5000)
    assert len(note.refunds) == 1
    refund = client.v1.refunds.retrieve(str(note.refunds[0].refund))
    assert (refund.amount, refund.payment_intent) == (5000, payment["payment"]["payment_intent"])
    assert note.refunds[0].amount_refunded == 5000
    assert _amounts(client, open_invoice.id)["status"] == "paid"
    assert _amounts(client, open_invoice.id)["post"] == 5000
    assert [str(event.type) for event in _events(client, "refund.created", "charge.refunded")] == [
        "refund.created",
        "charge.refunded",
    ]


def test_credit_on_a_paid_invoice_goes_to_the_customer_balance(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    open_invoice: stripe.Invoice,
    customer: stripe.Customer,
) -> None:
    stripe_emulator.pay_invoice(open_invoice.id)
    note = client.v1.credit_notes.create(
        params={
            "invoice": open_invoice.id,
            "amount": 50000,
            "credit_amount": 30000,
            "out_of_band_amount": 20000,
        }
    )
    assert (note.type, note.out_of_band_amount) == ("post_payment", 20000)
    assert note.customer_balance_transaction is not None
    assert _amounts(client, open_invoice.id)["amount_paid"] == 150050
    assert client.v1.customers.retrieve(customer.id).balance == -30000

    # "automatically applied to their next invoice when it's finalized"
    following = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 7}
    )
    assert following.starting_balance == -30000  # a draft shows the current balance
    client.v1.invoices.add_lines(
        following.id, params={"lines": [{"amount": 20000, "description": "Workshop"}]}
    )
    finalized = client.v1.invoices.finalize_invoice(following.id)
    assert (finalized.starting_balance, finalized.ending_balance) == (-30000, -10000)
    assert (finalized.amount_due, finalized.status) == (0, "paid")
    assert client.v1.customers.retrieve(customer.id).balance == -10000


def test_what_credit_notes_refuse(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    open_invoice: stripe.Invoice,
    customer: stripe.Customer,
) -> None:
    def refused(params: dict[str, Any]) -> stripe.InvalidRequestError:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.credit_notes.create(params={"invoice": open_invoice.id, **params})  # type: ignore[typeddict-item]
        return caught.value

    assert refused({}).code == "parameter_missing"
    assert "maximum creditable" in str(refused({"amount": 150051}).user_message)
    assert "post_payment_amount (0)" in str(
        refused({"amount": 100, "credit_amount": 100}).user_message
    )
    assert refused({"amount": 100, "shipping_cost": {"shipping_rate": "shr_1"}}).param == (
        "shipping_cost"
    )
    draft = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError, match="open or paid"):
        client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 1})
    stripe_emulator.pay_invoice(open_invoice.id)
    # a paid invoice's credit is all post-payment: it must say where the money goes
    assert "post_payment_amount (100)" in str(refused({"amount": 100}).user_message)
    assert client.v1.credit_notes.list(params={"invoice": open_invoice.id}).data == []


def test_lines_by_amount_or_quantity(
    client: stripe.StripeClient, send_invoice: SendInvoice
) -> None:
    invoice = send_invoice(
        [
            {
                "price_data": {
                    "currency": "usd",
                    "product_data": {"name": "Ticket"},
                    "unit_amount": 45000,
                },
                "quantity": 4,
                "description": "Group tickets",
            },
            {"amount": 120000, "description": "Gold sponsorship"},
        ]
    )
    tickets, sponsorship = (line.id for line in invoice.lines.data)
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [
                {"type": "invoice_line_item", "invoice_line_item": tickets, "quantity": 2},
                {"type": "invoice_line_item", "invoice_line_item": sponsorship, "amount": 20000},
                {
                    "type": "custom_line_item",
                    "description": "Goodwill",
                    "quantity": 2,
                    "unit_amount": 500,
                },
            ],
        }
    )
    assert note.amount == 90000 + 20000 + 1000
    rendered = wire(note)["lines"]["data"]
    assert [(line["type"], line["amount"], line["quantity"]) for line in rendered] == [
        ("invoice_line_item", 90000, 2),
        ("invoice_line_item", 20000, 1),
        ("custom_line_item", 1000, 2),
    ]
    assert rendered[0]["invoice_line_item"] == tickets
    assert (rendered[0]["unit_amount"], rendered[0]["description"]) == (45000, "Group tickets")
    assert "invoice_line_item" not in rendered[2]
    listed = client.v1.credit_notes.line_items.list(note.id, params={"limit": 2})
    assert (listed.has_more, len(listed.data)) == (True, 2)

    def refused(line: dict[str, Any]) -> str:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.credit_notes.create(params={"invoice": invoice.id, "lines": [line]})  # type: ignore[list-item]
        return str(caught.value.user_message)

    # "You can't combine discount types on an invoice line item"
    assert "by quantity" in refused(
        {"type": "invoice_line_item", "invoice_line_item": tickets, "amount": 100}
    )
    assert "maximum creditable" in refused(
        {"type": "invoice_line_item", "invoice_line_item": tickets, "quantity": 3}
    )
    assert "maximum creditable" in refused(
        {"type": "invoice_line_item", "invoice_line_item": sponsorship, "amount": 100001}
    )
    assert "custom_line_item" in refused(
        {
            "type": "invoice_line_item",
            "invoice_line_item": sponsorship,
            "amount": 1,
            "unit_amount": 1,
        }
    )
    assert "No such invoice line item" in refused(
        {"type": "invoice_line_item", "invoice_line_item": "il_unknown", "amount": 1}
    )


def test_one_line_twice_in_a_credit_note_counts_both(
    client: stripe.StripeClient, send_invoice: SendInvoice
) -> None:
    invoice = send_invoice(
        [
            {
                "price_data": {
                    "currency": "usd",
                    "product_data": {"name": "Booth pass"},
                    "unit_amount": 10000,
                },
                "quantity": 5,
                "description": "Booth passes",
            },
            {"amount": 100000, "description": "Gold sponsorship"},
        ]
    )
    passes = invoice.lines.data[0].id

    def refused(lines: list[dict[str, Any]]) -> str:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.credit_notes.create(params={"invoice": invoice.id, "lines": lines})  # type: ignore[typeddict-item]
        return str(caught.value.user_message)

    by_quantity = {"type": "invoice_line_item", "invoice_line_item": passes, "quantity": 3}
    # 3 + 3 of 5: over what the line billed, though each entry alone (and the sum) fits the invoice
    assert "maximum creditable" in refused([by_quantity, by_quantity])
    # "You can't combine discount types on an invoice line item", within one note too
    by_amount = {"type": "invoice_line_item", "invoice_line_item": passes, "amount": 100}
    assert "by quantity" in refused([by_quantity, by_amount])
    assert client.v1.credit_notes.list(params={"invoice": invoice.id}).data == []


def test_lines_on_a_taxed_invoice_are_refused_not_credited_without_tax(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    stripe_emulator.configure(stripe_secret_key, tax_rates={"DE": "19"})
    customer = client.v1.customers.create(
        params={
            "name": "Globex GmbH",
            "address": {
                "line1": "Unter den Linden 1",
                "city": "Berlin",
                "postal_code": "10117",
                "country": "DE",
            },
        }
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "automatic_tax": {"enabled": True},
        }
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 10000}]})
    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    line = invoice.lines.data[0].id

    def refused(line: dict[str, Any]) -> str | None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.credit_notes.create(params={"invoice": invoice.id, "lines": [line]})  # type: ignore[list-item]
        param: str | None = caught.value.param
        return param

    assert refused({"type": "invoice_line_item", "invoice_line_item": line, "amount": 100}) == (
        "lines"
    )
    # API reference: "`custom_line_item` is not valid when the invoice is set up with
    # `automatic_tax[enabled]=true`"
    custom = {"type": "custom_line_item", "description": "Goodwill", "unit_amount": 100}
    assert refused(custom) == "lines[0][type]"
    assert client.v1.invoices.retrieve(invoice.id).amount_remaining == 11900


def test_preview_changes_nothing(client: stripe.StripeClient, open_invoice: stripe.Invoice) -> None:
    params: dict[str, Any] = {"invoice": open_invoice.id, "amount": 1000, "memo": "Preview"}
    preview = client.v1.credit_notes.preview(params=params)  # type: ignore[arg-type]
    assert (preview.amount, preview.pre_payment_amount, preview.memo) == (1000, 1000, "Preview")
    assert _amounts(client, open_invoice.id)["amount_due"] == 150050
    assert client.v1.credit_notes.list().data == []
    assert _events(client, "credit_note.created") == []
    lines = client.v1.credit_notes.preview_lines.list(
        params={
            "invoice": open_invoice.id,
            "lines": [{"type": "custom_line_item", "description": "x", "unit_amount": 100}],
        }
    )
    assert [line.amount for line in lines.data] == [100]
    with pytest.raises(stripe.InvalidRequestError, match="maximum creditable"):
        client.v1.credit_notes.preview(params={"invoice": open_invoice.id, "amount": 10**9})


def test_void_restores_the_amount_due_on_open_invoices_only(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    first = client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 50})
    voided = client.v1.credit_notes.void_credit_note(first.id)
    assert (voided.status, voided.voided_at is not None) == ("void", True)
    assert _amounts(client, open_invoice.id)["amount_due"] == 150050
    assert _amounts(client, open_invoice.id)["pre"] == 0
    assert [event.data.object["id"] for event in _events(client, "credit_note.voided")] == [
        first.id
    ]
    with pytest.raises(stripe.InvalidRequestError, match="already void"):
        client.v1.credit_notes.void_credit_note(first.id)
    # a voided credit note no longer counts against what can be credited
    closing = client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 150050})
    assert closing.number.endswith("-CN-02")
    assert _amounts(client, open_invoice.id)["status"] == "paid"
    # "You can void a credit note only if it's on an open invoice"
    with pytest.raises(stripe.InvalidRequestError, match="only if it's on an open invoice"):
        client.v1.credit_notes.void_credit_note(closing.id)


def test_linking_an_earlier_refund(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    payment = stripe_emulator.pay_invoice(open_invoice.id)["invoice_payment"]
    refund = client.v1.refunds.create(
        params={"payment_intent": payment["payment"]["payment_intent"], "amount": 7000}
    )
    note = client.v1.credit_notes.create(
        params={
            "invoice": open_invoice.id,
            "amount": 7000,
            "refunds": [{"refund": refund.id, "amount_refunded": 7000}],
        }
    )
    assert [(item.refund, item.amount_refunded) for item in note.refunds] == [(refund.id, 7000)]
    assert len(client.v1.refunds.list().data) == 1  # linked, not refunded again
    with pytest.raises(stripe.InvalidRequestError, match="left to link"):
        client.v1.credit_notes.create(
            params={"invoice": open_invoice.id, "amount": 1, "refunds": [{"refund": refund.id}]}
        )


def test_update_list_and_retrieve(
    client: stripe.StripeClient, open_invoice: stripe.Invoice, customer: stripe.Customer
) -> None:
    note = client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 10})
    other = client.v1.credit_notes.create(params={"invoice": open_invoice.id, "amount": 20})
    updated = client.v1.credit_notes.update(note.id, params={"memo": "Corrected"})
    assert updated.memo == "Corrected"
    event = _events(client, "credit_note.updated")[-1]
    assert event.data.previous_attributes is not None
    assert event.data.previous_attributes.to_dict() == {"memo": None}
    assert [
        n.id for n in client.v1.credit_notes.list(params={"invoice": open_invoice.id}).data
    ] == [
        other.id,
        note.id,
    ]
    assert client.v1.credit_notes.list(params={"invoice": "in_other"}).data == []
    assert client.v1.credit_notes.list(params={"customer": customer.id}).data[0].id == other.id
    assert client.v1.credit_notes.retrieve(note.id).memo == "Corrected"
