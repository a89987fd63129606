"""Payments made outside Stripe: payment records reported and attached to invoices."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .stripe_shapes import wire


def _wire_transfer(amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "amount_requested": {"currency": "usd", "value": amount},
        "initiated_at": 1_767_000_000,
        "payment_method_details": {"type": "custom", "custom": {"display_name": "Wire transfer"}},
        "processor_details": {"type": "custom", "custom": {"payment_reference": "WIRE-1"}},
        **extra,
    }


def _guaranteed(amount: int) -> dict[str, Any]:
    return _wire_transfer(amount, outcome="guaranteed", guaranteed={"guaranteed_at": 1_767_000_100})


def _report(client: stripe.StripeClient, params: dict[str, Any]) -> stripe.PaymentRecord:
    return client.v1.payment_records.report_payment(params=params)  # type: ignore[arg-type]


def test_a_guaranteed_wire_counts_as_paid_off_stripe(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    record = _report(client, _guaranteed(100000))
    assert record.amount_guaranteed.value == 100000
    assert record.reported_by == "self"
    assert client.v1.payment_records.retrieve(record.id).id == record.id
    invoice = client.v1.invoices.attach_payment(
        open_invoice.id,
        params={
            "payment_record": record.id,
            "expand": ["payments", "amount_paid_off_stripe"],
        },
    )
    assert (invoice.status, invoice.amount_paid, invoice.amount_paid_off_stripe) == (
        "open",
        100000,
        100000,
    )
    assert invoice.amount_remaining == 50050
    assert invoice.payments is not None
    payment = invoice.payments.data[0]
    assert (payment.status, payment.amount_paid) == ("paid", 100000)
    assert wire(invoice)["payments"]["data"][0]["payment"] == {
        "payment_record": record.id,
        "type": "payment_record",
    }
    listed = client.v1.invoice_payments.list(
        params={"payment": {"type": "payment_record", "payment_record": record.id}}
    )
    assert [item.id for item in listed.data] == [payment.id]
    # the company is asked for the balance only; paying it pays the invoice, not more
    paid = stripe_emulator.pay_invoice(open_invoice.id)["invoice"]
    assert (paid["status"], paid["amount_paid"], paid["amount_overpaid"]) == ("paid", 150050, 0)


def test_a_wire_for_the_rest_pays_the_invoice(
    client: stripe.StripeClient, open_invoice: stripe.Invoice
) -> None:
    record = _report(client, _guaranteed(150050))
    invoice = client.v1.invoices.attach_payment(
        open_invoice.id, params={"payment_record": record.id}
    )
    assert (invoice.status, invoice.amount_remaining) == ("paid", 0)
    types = [str(event.type) for event in client.v1.events.list().data]
    assert {"invoice.paid", "invoice_payment.paid"} <= set(types)
    # not a payment attempt on Stripe: no invoice.payment_succeeded
    assert "invoice.payment_succeeded" not in types


def test_an_overpayment_credits_the_customer(
    client: stripe.StripeClient, open_invoice: stripe.Invoice, customer: stripe.Customer
) -> None:
    record = _report(client, _guaranteed(160050))
    invoice = client.v1.invoices.attach_payment(
        open_invoice.id, params={"payment_record": record.id}
    )
    assert (invoice.status, invoice.amount_paid, invoice.amount_overpaid) == (
        "paid",
        160050,
        10000,
    )
    assert client.v1.customers.retrieve(customer.id).balance == -10000
    assert client.v1.events.list(params={"type": "invoice.overpaid"}).data


def test_an_initiated_wire_counts_once_it_is_guaranteed(
    client: stripe.StripeClient, open_invoice: stripe.Invoice
) -> None:
    record = _report(client, _wire_transfer(50000))
    assert record.amount_guaranteed.value == 0
    invoice = client.v1.invoices.attach_payment(
        open_invoice.id,
        params={
            "payment_record": record.id,
            "expand": ["payments", "amount_paid_off_stripe"],
        },
    )
    assert invoice.amount_paid == 0
    assert invoice.payments is not None
    assert invoice.payments.data[0].status == "open"
    client.v1.payment_records.report_payment_attempt_guaranteed(
        record.id, params={"guaranteed_at": 1_767_000_500}
    )
    settled = client.v1.invoices.retrieve(
        open_invoice.id, params={"expand": ["amount_paid_off_stripe"]}
    )
    assert (settled.amount_paid, settled.amount_paid_off_stripe) == (50000, 50000)
    with pytest.raises(stripe.InvalidRequestError, match="already has an outcome"):
        client.v1.payment_records.report_payment_attempt_failed(
            record.id, params={"failed_at": 1_767_000_600}
        )


def test_a_failed_wire_pays_nothing(
    client: stripe.StripeClient, open_invoice: stripe.Invoice
) -> None:
    record = _report(
        client, _wire_transfer(50000, outcome="failed", failed={"failed_at": 1_767_000_100})
    )
    assert record.amount_failed.value == 50000
    invoice = client.v1.invoices.attach_payment(
        open_invoice.id,
        params={
            "payment_record": record.id,
            "expand": ["payments", "amount_paid_off_stripe"],
        },
    )
    assert (invoice.amount_paid, invoice.status) == (0, "open")
    assert invoice.payments is not None
    assert invoice.payments.data[0].status == "canceled"


def test_what_attach_and_report_refuse(
    client: stripe.StripeClient, open_invoice: stripe.Invoice, customer: stripe.Customer
) -> None:
    record = _report(client, _guaranteed(1000))
    client.v1.invoices.attach_payment(open_invoice.id, params={"payment_record": record.id})
    with pytest.raises(stripe.InvalidRequestError, match="already attached"):
        client.v1.invoices.attach_payment(open_invoice.id, params={"payment_record": record.id})
    euros = _report(
        client, {**_guaranteed(1000), "amount_requested": {"currency": "eur", "value": 1000}}
    )
    with pytest.raises(stripe.InvalidRequestError, match="in eur"):
        client.v1.invoices.attach_payment(open_invoice.id, params={"payment_record": euros.id})
    draft = client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError, match="open invoice"):
        client.v1.invoices.attach_payment(draft.id, params={"payment_record": euros.id})
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.invoices.attach_payment(open_invoice.id, params={"payment_record": "pr_nope"})
    assert (unknown.value.code, unknown.value.param) == ("resource_missing", "payment_record")
    with pytest.raises(stripe.InvalidRequestError) as mismatch:
        _report(client, _wire_transfer(10, outcome="guaranteed"))
    assert mismatch.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_records.report_payment(
            params={"amount_requested": {"currency": "usd", "value": 5}}  # type: ignore[typeddict-item]
        )
    assert missing.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError, match="positive"):
        _report(client, _guaranteed(0))


def test_idempotency_keys_attach_once(
    client: stripe.StripeClient, open_invoice: stripe.Invoice
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "po-7-wire-1"}
    record = client.v1.payment_records.report_payment(
        params=_guaranteed(2000),  # type: ignore[arg-type]
        options=options,
    )
    again = client.v1.payment_records.report_payment(
        params=_guaranteed(2000),  # type: ignore[arg-type]
        options=options,
    )
    assert again.id == record.id
    attach: stripe.RequestOptions = {"idempotency_key": "po-7-attach-1"}
    first = client.v1.invoices.attach_payment(
        open_invoice.id, params={"payment_record": record.id}, options=attach
    )
    replay = client.v1.invoices.attach_payment(
        open_invoice.id, params={"payment_record": record.id}, options=attach
    )
    assert first.amount_paid == replay.amount_paid == 2000
    included = client.v1.invoices.retrieve(
        open_invoice.id, params={"expand": ["amount_paid_off_stripe"]}
    )
    assert included.amount_paid_off_stripe == 2000
    assert "amount_paid_off_stripe" not in client.v1.invoices.retrieve(open_invoice.id)


def test_records_list_newest_first_by_creation_time_and_page(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    first = _report(client, _guaranteed(1000))
    stripe_emulator.advance_clock(10, secret_key=stripe_secret_key)
    second = _report(client, _guaranteed(2000))
    third = _report(client, _guaranteed(3000))
    listed = client.v1.payment_records.list({"limit": 2})
    assert [r.id for r in listed.data] == [third.id, second.id]
    assert listed.has_more is True
    assert [r.id for r in listed.auto_paging_iter()] == [third.id, second.id, first.id]
    # "created after" / "created before" the timestamp: strictly.
    after = client.v1.payment_records.list({"created_after": first.created})
    assert [r.id for r in after.data] == [third.id, second.id]
    before = client.v1.payment_records.list({"created_before": second.created})
    assert [r.id for r in before.data] == [first.id]
    unknown: dict[str, Any] = {"customer": "cus_x"}  # not a filter of this list
    with pytest.raises(stripe.InvalidRequestError, match="customer"):
        client.v1.payment_records.list(unknown)  # type: ignore[arg-type]
