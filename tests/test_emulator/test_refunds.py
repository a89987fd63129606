"""Refunds: by charge or PaymentIntent, partial or the rest, pending ACH refunds that settle or
fail, and what Stripe refuses."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .conftest import PayPendingAch
from .stripe_shapes import wire


def _paid(
    stripe_emulator: EmulatorHandle, invoice: stripe.Invoice, amount: int, method: str = "card"
) -> dict[str, Any]:
    """Pay ``amount`` and return the payment's PaymentIntent and charge ids."""
    payment = stripe_emulator.pay_invoice(invoice.id, amount=amount, payment_method_type=method)[
        "invoice_payment"
    ]
    return {"payment_intent": payment["payment"]["payment_intent"], "invoice_payment": payment}


def _event_types(client: stripe.StripeClient) -> list[str]:
    return [str(event.type) for event in client.v1.events.list(params={"limit": 100}).data][::-1]


def test_card_refunds_succeed_at_once_and_move_the_charge(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    paid = _paid(stripe_emulator, open_invoice, 50000)
    partial = client.v1.refunds.create(
        params={
            "payment_intent": paid["payment_intent"],
            "amount": 20000,
            "reason": "requested_by_customer",
            "metadata": {"po": "PO-1"},
        }
    )
    assert (partial.status, partial.amount, partial.reason) == (
        "succeeded",
        20000,
        "requested_by_customer",
    )
    assert partial.payment_intent == paid["payment_intent"]
    charge = client.v1.charges.retrieve(str(partial.charge))
    assert (charge.amount_refunded, charge.refunded) == (20000, False)

    rest = client.v1.refunds.create(params={"charge": charge.id})  # no amount: what is left
    assert rest.amount == 30000
    charge = client.v1.charges.retrieve(charge.id, params={"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded) == (50000, True)
    assert [refund["id"] for refund in wire(charge)["refunds"]["data"]] == [rest.id, partial.id]
    types = _event_types(client)
    assert types.count("refund.created") == 2
    assert types.count("charge.refunded") == 2


def test_a_refund_leaves_the_invoice_as_paid(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    """Stripe keeps a refund on the charge: the invoice's amount_paid is what was paid."""
    paid = _paid(stripe_emulator, open_invoice, 150050)
    client.v1.refunds.create(params={"payment_intent": paid["payment_intent"]})
    invoice = client.v1.invoices.retrieve(open_invoice.id)
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 150050, 0)


def test_refusals_have_stripes_codes(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    paid = _paid(stripe_emulator, open_invoice, 5000)
    intent = paid["payment_intent"]
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": intent, "amount": 5001})
    assert too_much.value.param == "amount"
    assert too_much.value.user_message == (
        "Refund amount ($50.01) is greater than unrefunded amount on charge ($50.00)"
    )
    with pytest.raises(stripe.InvalidRequestError) as not_positive:
        client.v1.refunds.create(params={"payment_intent": intent, "amount": 0})
    assert not_positive.value.param == "amount"
    client.v1.refunds.create(params={"payment_intent": intent})
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": intent})
    assert again.value.code == "charge_already_refunded"
    with pytest.raises(stripe.InvalidRequestError) as nothing:
        client.v1.refunds.create(params={"amount": 100})
    assert "charge or payment_intent" in str(nothing.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.refunds.create(params={"charge": "ch_unknown"})
    assert (unknown.value.code, unknown.value.param) == ("resource_missing", "charge")
    with pytest.raises(stripe.InvalidRequestError) as unsupported:
        client.v1.refunds.create(params={"payment_intent": intent, "reverse_transfer": True})
    assert unsupported.value.param == "reverse_transfer"
    assert len(client.v1.refunds.list().data) == 1  # nothing refused left a refund behind


def test_pending_payments_are_not_refunded(
    client: stripe.StripeClient, pay_pending_ach: PayPendingAch
) -> None:
    payment = pay_pending_ach(1000)
    with pytest.raises(stripe.InvalidRequestError, match="successful charge"):
        client.v1.refunds.create(params={"payment_intent": payment["payment"]["payment_intent"]})


def test_ach_refunds_are_pending_until_the_bank_answers(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    paid = _paid(stripe_emulator, open_invoice, 40000, method="us_bank_account")
    intent = paid["payment_intent"]
    first = client.v1.refunds.create(params={"payment_intent": intent, "amount": 10000})
    second = client.v1.refunds.create(params={"payment_intent": intent, "amount": 5000})
    assert (first.status, wire(first)["pending_reason"]) == ("pending", "processing")
    assert "failure_reason" not in wire(first)
    charge_id = str(first.charge)
    assert client.v1.charges.retrieve(charge_id).amount_refunded == 15000  # pending counts

    settled = stripe_emulator.settle_refund(first.id)
    assert settled["refund"]["status"] == "succeeded"
    assert "pending_reason" not in settled["refund"]
    failed = stripe_emulator.fail_refund(second.id, failure_reason="insufficient_funds")
    assert failed["refund"]["status"] == "failed"
    assert failed["refund"]["failure_reason"] == "insufficient_funds"
    assert failed["charge"]["amount_refunded"] == 10000  # the failed refund gave it back
    assert client.v1.refunds.retrieve(second.id).status == "failed"

    types = _event_types(client)
    assert types.count("refund.updated") == 2
    assert types.count("refund.failed") == 1
    updated = client.v1.events.list(params={"type": "refund.updated"}).data
    previous = [event.data.previous_attributes for event in updated]
    assert {item.to_dict()["status"] for item in previous if item is not None} == {"pending"}
    with pytest.raises(Exception, match="not pending"):
        stripe_emulator.settle_refund(first.id)


def test_list_filters_and_pages(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    one = _paid(stripe_emulator, open_invoice, 1000)["payment_intent"]
    two = _paid(stripe_emulator, open_invoice, 2000)["payment_intent"]
    made = [
        client.v1.refunds.create(params={"payment_intent": intent, "amount": 100})
        for intent in (one, two, two)
    ]
    page = client.v1.refunds.list(params={"limit": 2})
    assert [refund.id for refund in page.data] == [made[2].id, made[1].id]
    assert page.has_more is True
    rest = client.v1.refunds.list(params={"limit": 2, "starting_after": made[1].id})
    assert [refund.id for refund in rest.data] == [made[0].id]
    assert [
        refund.id for refund in client.v1.refunds.list(params={"payment_intent": one}).data
    ] == [made[0].id]
    by_charge = client.v1.refunds.list(params={"charge": str(made[1].charge)})
    assert [refund.id for refund in by_charge.data] == [made[2].id, made[1].id]
    updated = client.v1.refunds.update(made[0].id, params={"metadata": {"ticket": "T-9"}})
    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"ticket": "T-9"}


def test_idempotency_keys_refund_once(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    intent = _paid(stripe_emulator, open_invoice, 3000)["payment_intent"]
    params: stripe.params.RefundCreateParams = {"payment_intent": intent, "amount": 1000}
    first = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-po-1"})
    again = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-po-1"})
    assert again.id == first.id
    assert len(client.v1.refunds.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(
            params={"payment_intent": intent, "amount": 999},
            options={"idempotency_key": "refund-po-1"},
        )
