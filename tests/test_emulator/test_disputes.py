"""Disputes opened and decided by the card network (the control API), read through the API."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle


@pytest.fixture
def charge(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> stripe.Charge:
    payment = stripe_emulator.pay_invoice(open_invoice.id, amount=80000)["invoice_payment"]
    intent = client.v1.payment_intents.retrieve(payment["payment"]["payment_intent"])
    return client.v1.charges.retrieve(str(intent.latest_charge))


def _dispute_events(client: stripe.StripeClient) -> list[str]:
    events = client.v1.events.list(params={"type": "charge.dispute.*", "limit": 100}).data
    return [str(event.type) for event in reversed(events)]


def test_a_dispute_withdraws_the_funds_and_marks_the_charge(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, charge: stripe.Charge
) -> None:
    opened = stripe_emulator.open_dispute(charge.id, reason="product_not_received")
    dispute = client.v1.disputes.retrieve(opened["dispute"]["id"])
    assert (dispute.status, dispute.amount, dispute.reason) == (
        "needs_response",
        80000,
        "product_not_received",
    )
    assert (dispute.charge, dispute.payment_intent) == (charge.id, charge.payment_intent)
    assert [txn.amount for txn in dispute.balance_transactions] == [-80000]
    assert dispute.evidence_details.due_by is not None
    assert client.v1.charges.retrieve(charge.id).disputed is True
    assert _dispute_events(client) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"charge": charge.id})
    assert refused.value.code == "charge_disputed"
    with pytest.raises(EmulatorError, match="already disputed"):
        stripe_emulator.open_dispute(charge.id)


def test_a_won_dispute_reinstates_the_funds(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, charge: stripe.Charge
) -> None:
    dispute_id = stripe_emulator.open_dispute(charge.id, amount=30000)["dispute"]["id"]
    closed = stripe_emulator.close_dispute(dispute_id, won=True)
    assert closed["dispute"]["status"] == "won"
    assert [txn["amount"] for txn in closed["dispute"]["balance_transactions"]] == [
        -30000,
        30000,
    ]
    assert closed["charge"]["disputed"] is True  # it was disputed, whatever the outcome
    assert _dispute_events(client) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]
    # a won dispute leaves the charge refundable again
    assert client.v1.refunds.create(params={"charge": charge.id, "amount": 100}).amount == 100
    with pytest.raises(EmulatorError, match="already closed"):
        stripe_emulator.close_dispute(dispute_id, won=False)


def test_a_lost_dispute_keeps_the_funds_withdrawn(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, charge: stripe.Charge
) -> None:
    dispute_id = stripe_emulator.open_dispute(charge.id)["dispute"]["id"]
    stripe_emulator.close_dispute(dispute_id, won=False)
    dispute = client.v1.disputes.retrieve(dispute_id)
    assert dispute.status == "lost"
    assert [txn.amount for txn in dispute.balance_transactions] == [-80000]
    assert _dispute_events(client)[-1] == "charge.dispute.closed"
    assert "charge.dispute.funds_reinstated" not in _dispute_events(client)


def test_what_can_be_disputed(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, charge: stripe.Charge
) -> None:
    client.v1.refunds.create(params={"charge": charge.id, "amount": 70000})
    with pytest.raises(EmulatorError, match="between 1 and 10000"):
        stripe_emulator.open_dispute(charge.id, amount=10001)
    with pytest.raises(EmulatorError, match="Invalid reason"):
        stripe_emulator.open_dispute(charge.id, reason="because")
    with pytest.raises(EmulatorError) as unknown:
        stripe_emulator.open_dispute("ch_unknown")
    assert unknown.value.status == 404
    assert stripe_emulator.open_dispute(charge.id)["dispute"]["amount"] == 10000


def test_list_by_charge(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    charge: stripe.Charge,
    open_invoice: stripe.Invoice,
) -> None:
    first = stripe_emulator.open_dispute(charge.id)["dispute"]["id"]
    other = stripe_emulator.pay_invoice(open_invoice.id, amount=100)["invoice_payment"]
    other_intent = other["payment"]["payment_intent"]
    other_charge = str(client.v1.payment_intents.retrieve(other_intent).latest_charge)
    second = stripe_emulator.open_dispute(other_charge)["dispute"]["id"]
    assert [dispute.id for dispute in client.v1.disputes.list().data] == [second, first]
    assert [
        dispute.id for dispute in client.v1.disputes.list(params={"charge": charge.id}).data
    ] == [first]
    assert [
        dispute.id
        for dispute in client.v1.disputes.list(params={"payment_intent": other_intent}).data
    ] == [second]
