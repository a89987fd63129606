"""The invoice lifecycle through stripe-python, as the worker drives it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle


def _send_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, amounts: list[int]
) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {"po": "PO-1"},
        }
    )
    return client.v1.invoices.add_lines(
        invoice.id,
        params={
            "lines": [{"amount": amount, "description": f"line {amount}"} for amount in amounts]
        },
    )


def _event_types(client: stripe.StripeClient) -> list[str]:
    return [str(event.type) for event in client.v1.events.list(params={"limit": 100}).data][::-1]


def _previous(event: stripe.Event) -> dict[str, Any]:
    previous = event.data.previous_attributes
    return previous.to_dict() if previous is not None else {}


def test_send_invoice_lifecycle_draft_open_paid(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    draft = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "payment_settings": {"payment_method_types": ["card", "us_bank_account"]},
            "metadata": {"po": "PO-7"},
        }
    )
    assert draft.status == "draft"
    assert draft.auto_advance is False
    assert draft.number is None
    assert draft.hosted_invoice_url is None
    assert draft.invoice_pdf is None
    assert draft.customer_email == "ap@acme.example"
    assert draft.customer_name == "Acme Corp"
    assert draft.due_date == draft.created + 30 * 86400
    assert draft.payment_settings.payment_method_types == ["card", "us_bank_account"]

    with_lines = client.v1.invoices.add_lines(
        draft.id,
        params={
            "lines": [
                {"amount": 150000, "description": "Gold sponsorship"},
                {
                    "price_data": {
                        "currency": "usd",
                        "product_data": {"name": "Conference ticket"},
                        "unit_amount": 45000,
                    },
                    "quantity": 3,
                    "description": "Group tickets",
                },
            ]
        },
    )
    assert [line.amount for line in with_lines.lines.data] == [150000, 135000]
    assert with_lines.lines.data[1].quantity == 3
    assert with_lines.lines.data[1].pricing is not None
    assert with_lines.lines.data[1].pricing.unit_amount_decimal == 45000
    assert with_lines.amount_due == with_lines.total == with_lines.subtotal == 285000
    assert with_lines.amount_remaining == 285000

    finalized = client.v1.invoices.finalize_invoice(draft.id)
    assert finalized.status == "open"
    assert finalized.number is not None
    assert finalized.number.endswith("-0001")
    assert finalized.hosted_invoice_url == f"{stripe_emulator.base_url}/i/{draft.id}"
    assert finalized.invoice_pdf == f"{stripe_emulator.base_url}/i/{draft.id}/pdf"
    assert finalized.status_transitions.finalized_at is not None
    assert finalized.next_payment_attempt is None
    assert finalized.collection_method == "send_invoice"
    assert finalized.metadata is not None
    assert finalized.metadata.to_dict() == {"po": "PO-7"}

    sent = client.v1.invoices.send_invoice(draft.id)
    assert sent.status == "open"

    paid = stripe_emulator.pay_invoice(draft.id)
    assert paid["invoice"]["status"] == "paid"
    invoice = client.v1.invoices.retrieve(draft.id)
    assert invoice.status == "paid"
    assert invoice.amount_paid == 285000
    assert invoice.amount_remaining == 0
    assert invoice.status_transitions.paid_at is not None

    assert _event_types(client) == [
        "customer.created",
        "invoice.created",
        "invoice.updated",
        "invoice.finalized",
        "invoice.sent",
        "invoice_payment.paid",
        "invoice.updated",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]


def test_partial_payments_in_three_parts(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    invoice = _send_invoice(client, customer, [60000])
    client.v1.invoices.finalize_invoice(invoice.id)

    first = stripe_emulator.pay_invoice(invoice.id, amount=10000, payment_method_type="card")
    assert first["invoice"]["status"] == "open"
    assert first["invoice"]["amount_paid"] == 10000
    assert first["invoice"]["amount_remaining"] == 50000
    assert first["invoice_payment"]["amount_paid"] == 10000
    assert first["invoice_payment"]["status"] == "paid"

    second = stripe_emulator.pay_invoice(
        invoice.id, amount=20000, payment_method_type="us_bank_account"
    )
    assert second["invoice"]["amount_paid"] == 30000
    assert second["invoice"]["status"] == "open"

    third = stripe_emulator.pay_invoice(invoice.id)  # the rest
    assert third["invoice_payment"]["amount_paid"] == 30000
    assert third["invoice"]["status"] == "paid"
    assert third["invoice"]["amount_remaining"] == 0

    payments = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert sorted(payment.amount_paid or 0 for payment in payments) == [10000, 20000, 30000]
    types = _event_types(client)
    assert types.count("invoice_payment.paid") == 3
    assert types.count("invoice.paid") == 1
    assert types.count("invoice.payment_succeeded") == 1
    updated = [
        event
        for event in client.v1.events.list(params={"type": "invoice.updated", "limit": 100}).data
        if "amount_paid" in _previous(event)
    ]
    assert sorted(event.data.object["amount_paid"] for event in updated) == [10000, 30000, 60000]
    assert sorted(_previous(event)["amount_paid"] for event in updated) == [
        0,
        10000,
        30000,
    ]


def test_overpayment_and_non_positive_amounts_are_refused(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    invoice = _send_invoice(client, customer, [5000])
    client.v1.invoices.finalize_invoice(invoice.id)
    for amount in (5001, 0, -5):
        with pytest.raises(Exception, match="400") as caught:
            stripe_emulator.pay_invoice(invoice.id, amount=amount)
        assert "amount" in str(caught.value)
    assert client.v1.invoices.retrieve(invoice.id).amount_paid == 0


def test_void_an_open_invoice(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    invoice = _send_invoice(client, customer, [1000])
    client.v1.invoices.finalize_invoice(invoice.id)
    voided = client.v1.invoices.void_invoice(invoice.id)
    assert voided.status == "void"
    assert voided.status_transitions.voided_at is not None
    assert voided.amount_remaining == 0
    assert "invoice.voided" in _event_types(client)
    with pytest.raises(stripe.InvalidRequestError, match="void"):
        client.v1.invoices.void_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})


def test_uncollectible_then_paid(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    invoice = _send_invoice(client, customer, [2500, 2500])
    client.v1.invoices.finalize_invoice(invoice.id)
    marked = client.v1.invoices.mark_uncollectible(invoice.id)
    assert marked.status == "uncollectible"
    assert marked.status_transitions.marked_uncollectible_at is not None
    assert marked.amount_remaining == 5000

    result = stripe_emulator.pay_invoice(invoice.id)
    assert result["invoice"]["status"] == "paid"
    assert result["invoice"]["amount_paid"] == 5000
    types = _event_types(client)
    assert types.index("invoice.marked_uncollectible") < types.index("invoice.paid")


def test_uncollectible_can_be_voided(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _send_invoice(client, customer, [2500])
    client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.invoices.mark_uncollectible(invoice.id)
    assert client.v1.invoices.void_invoice(invoice.id).status == "void"


def test_paid_out_of_band(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    invoice = _send_invoice(client, customer, [7000])
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert paid.status == "paid"
    assert paid.amount_paid == 7000
    # includable only: absent unless expanded (and never in event payloads)
    assert "amount_paid_off_stripe" not in paid
    expanded = client.v1.invoices.retrieve(
        invoice.id, params={"expand": ["amount_paid_off_stripe"]}
    )
    assert expanded.amount_paid_off_stripe == 7000
    (event,) = client.v1.events.list(params={"type": "invoice.paid"}).data
    assert "amount_paid_off_stripe" not in event.data.object
    types = _event_types(client)
    assert "invoice.paid" in types
    assert "invoice.payment_succeeded" not in types
    assert "invoice_payment.paid" not in types


def test_delete_draft_only(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    draft = _send_invoice(client, customer, [100])
    deleted = client.v1.invoices.delete(draft.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoices.retrieve(draft.id)
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"

    finalized = _send_invoice(client, customer, [100])
    client.v1.invoices.finalize_invoice(finalized.id)
    with pytest.raises(stripe.InvalidRequestError, match="You can only delete draft invoices"):
        client.v1.invoices.delete(finalized.id)


def test_zero_amount_invoice_is_paid_at_finalization(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    draft = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 7}
    )
    finalized = client.v1.invoices.finalize_invoice(draft.id)
    assert finalized.status == "paid"
    assert finalized.amount_due == 0


def test_invoice_items_with_invoice_and_pending_items(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    pending = client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 1200, "currency": "usd", "description": "Early"}
    )
    assert pending.invoice is None
    excluded = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 1}
    )
    assert excluded.lines.data == []
    included = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 1,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert [line.amount for line in included.lines.data] == [1200]
    assert client.v1.invoice_items.retrieve(pending.id).invoice == included.id

    item = client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": excluded.id,
            "unit_amount_decimal": Decimal("333.335"),
            "quantity": 3,
        }
    )
    assert item.amount == 1000  # 3 x 333.335 = 1000.005, rounded half up
    assert item.invoice == excluded.id
    refreshed = client.v1.invoices.retrieve(excluded.id)
    assert refreshed.amount_due == 1000
    line = refreshed.lines.data[0]
    assert line.parent is not None
    assert line.parent.invoice_item_details is not None
    assert line.parent.invoice_item_details.invoice_item == item.id


def test_finalized_invoice_takes_no_lines(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _send_invoice(client, customer, [100])
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 5}]})
    assert caught.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": invoice.id, "amount": 5}
        )
    assert caught.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert caught.value.code == "invoice_not_editable"
    assert "re-finalize" in str(caught.value.user_message)
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 100


def test_auto_advance_drafts_are_finalized_and_sent_an_hour_later(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    draft = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 10,
            "auto_advance": True,
        }
    )
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 900}]})
    assert draft.automatically_finalizes_at == draft.created + 3600
    manual = client.v1.invoices.create(params={"customer": customer.id})
    # `created` is a whole second and the clock keeps running: stop 10 s short of the hour so a
    # slow machine cannot cross it between the create and this retrieve.
    stripe_emulator.advance_clock(3590, secret_key=stripe_secret_key)
    assert client.v1.invoices.retrieve(draft.id).status == "draft"
    stripe_emulator.advance_clock(10, secret_key=stripe_secret_key)
    finalized = client.v1.invoices.retrieve(draft.id)
    assert finalized.status == "open"
    assert finalized.automatically_finalizes_at is None
    assert client.v1.invoices.retrieve(manual.id).status == "draft"
    types = _event_types(client)
    assert types[-2:] == ["invoice.finalized", "invoice.sent"]
    finalized_event = client.v1.events.list(params={"type": "invoice.finalized"}).data[0]
    assert finalized_event.request is not None
    assert finalized_event.request.id is None  # done by Stripe, not by an API request
