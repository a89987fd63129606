"""Lists (pagination, filters) and the events API."""

from __future__ import annotations

import time

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle


def _invoices(client: stripe.StripeClient, customer: stripe.Customer, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        ids.append(client.v1.invoices.create(params={"customer": customer.id}).id)
    return ids


def test_auto_paging_iter_over_250_invoices(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    # 250 creates back to back: past the sandbox's 25 requests/s, which this test is not about.
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)
    created = _invoices(client, customer, 250)
    seen = [
        invoice.id for invoice in client.v1.invoices.list(params={"limit": 100}).auto_paging_iter()
    ]
    assert seen == created[::-1]  # newest first, each once


def test_pagination_cursors_and_has_more(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    created = _invoices(client, customer, 5)[::-1]  # newest first
    first = client.v1.invoices.list(params={"limit": 2})
    assert [invoice.id for invoice in first.data] == created[:2]
    assert first.has_more is True
    assert first.url == "/v1/invoices"
    second = client.v1.invoices.list(params={"limit": 2, "starting_after": created[1]})
    assert [invoice.id for invoice in second.data] == created[2:4]
    last = client.v1.invoices.list(params={"limit": 2, "starting_after": created[3]})
    assert [invoice.id for invoice in last.data] == created[4:]
    assert last.has_more is False
    before = client.v1.invoices.list(params={"limit": 2, "ending_before": created[4]})
    assert [invoice.id for invoice in before.data] == created[2:4]
    assert before.has_more is True
    newest = client.v1.invoices.list(params={"limit": 10, "ending_before": created[1]})
    assert [invoice.id for invoice in newest.data] == created[:1]
    assert newest.has_more is False


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_limit_must_be_between_1_and_100(client: stripe.StripeClient, limit: int) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.list(params={"limit": limit})
    assert caught.value.param == "limit"


def test_unknown_cursor(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.list(params={"starting_after": "in_nope"})
    assert caught.value.param == "starting_after"
    assert caught.value.code == "resource_missing"


def test_invoice_filters(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    # Frozen: ``draft`` and ``sent`` share their creation second however slow the machine is.
    stripe_emulator.freeze_clock(stripe_secret_key)
    alice = client.v1.customers.create(params={"email": "alice@example.com"})
    bob = client.v1.customers.create(params={"email": "bob@example.com"})
    draft = client.v1.invoices.create(params={"customer": alice.id})
    sent = client.v1.invoices.create(
        params={"customer": bob.id, "collection_method": "send_invoice", "days_until_due": 9}
    )
    client.v1.invoices.add_lines(sent.id, params={"lines": [{"amount": 300}]})
    client.v1.invoices.finalize_invoice(sent.id)
    stripe_emulator.advance_clock(3600, secret_key=stripe_secret_key)
    later = client.v1.invoices.create(params={"customer": alice.id})

    def ids(**params: object) -> list[str]:
        return [invoice.id for invoice in client.v1.invoices.list(params=params).data]  # type: ignore[arg-type]

    assert ids(status="draft") == [later.id, draft.id]
    assert ids(status="open") == [sent.id]
    assert ids(customer=bob.id) == [sent.id]
    assert ids(collection_method="send_invoice") == [sent.id]
    assert ids(collection_method="charge_automatically") == [later.id, draft.id]
    assert ids(created={"gte": later.created}) == [later.id]
    assert ids(created={"lt": later.created}) == [sent.id, draft.id]
    assert ids(created=draft.created) == [sent.id, draft.id]
    assert ids(status="paid") == []


def test_a_frozen_account_clock_stands_still_until_advanced(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    other = stripe_emulator.new_secret_key()
    stripe_emulator.freeze_clock(stripe_secret_key)
    frozen = stripe_emulator.now(secret_key=stripe_secret_key)
    time.sleep(0.05)
    assert stripe_emulator.now(secret_key=stripe_secret_key) == frozen
    assert client.v1.customers.create().created == int(frozen)
    assert stripe_emulator.now(secret_key=other) > frozen  # other accounts run on
    stripe_emulator.advance_clock(60, secret_key=stripe_secret_key)
    assert stripe_emulator.now(secret_key=stripe_secret_key) == frozen + 60
    stripe_emulator.freeze_clock(stripe_secret_key, frozen=False)
    resumed = stripe_emulator.now(secret_key=stripe_secret_key)
    time.sleep(0.05)
    assert frozen + 60 <= resumed < stripe_emulator.now(secret_key=stripe_secret_key)


def test_customers_list_by_email(client: stripe.StripeClient) -> None:
    wanted = client.v1.customers.create(params={"email": "ap@corp.example"})
    client.v1.customers.create(params={"email": "other@corp.example"})
    found = client.v1.customers.list(params={"email": "ap@corp.example"}).data
    assert [customer.id for customer in found] == [wanted.id]


def test_customer_update_and_delete(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "a@corp.example", "metadata": {"a": "1"}}
    )
    updated = client.v1.customers.update(
        customer.id, params={"name": "Corp", "metadata": {"a": "", "b": "2"}}
    )
    assert updated.name == "Corp"
    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"b": "2"}
    cleared = client.v1.customers.update(customer.id, params={"metadata": ""})
    assert cleared.metadata is not None
    assert cleared.metadata.to_dict() == {}
    assert client.v1.customers.delete(customer.id).deleted is True
    assert client.v1.customers.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(params={"customer": customer.id})


def test_events_list_filters_and_retrieve(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 9}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 300}]})
    stripe_emulator.advance_clock(60, secret_key=stripe_secret_key)
    client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.invoices.send_invoice(invoice.id)

    every = client.v1.events.list(params={"limit": 100}).data
    created = [event.created for event in every]
    assert created == sorted(created, reverse=True)
    only = client.v1.events.list(params={"type": "invoice.finalized"}).data
    assert [event.type for event in only] == ["invoice.finalized"]
    assert only[0].data.object["id"] == invoice.id
    assert only[0].data.object["status"] == "open"
    assert only[0].request is not None
    assert only[0].request.id is not None
    assert only[0].request.id.startswith("req_")
    several = client.v1.events.list(params={"types": ["invoice.sent", "customer.created"]}).data
    assert [event.type for event in several] == ["invoice.sent", "customer.created"]
    wildcard = client.v1.events.list(params={"type": "invoice.*"}).data
    assert {event.type for event in wildcard} == {
        "invoice.created",
        "invoice.updated",
        "invoice.finalized",
        "invoice.sent",
    }
    recent = client.v1.events.list(params={"created": {"gte": only[0].created}}).data
    assert [event.type for event in recent] == ["invoice.sent", "invoice.finalized"]
    assert client.v1.events.retrieve(only[0].id).id == only[0].id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.events.list(params={"type": "invoice.sent", "types": ["invoice.paid"]})
    assert caught.value.code == "parameters_exclusive"
    # No endpoints: nothing is pending, so every event counts as delivered.
    assert len(client.v1.events.list(params={"delivery_success": True, "limit": 100}).data) == len(
        every
    )
    assert client.v1.events.list(params={"delivery_success": False}).data == []


def test_events_are_kept_30_days(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    client.v1.customers.create()
    event = client.v1.events.list().data[0]
    stripe_emulator.advance_clock(29 * 86400, secret_key=stripe_secret_key)
    assert client.v1.events.retrieve(event.id).id == event.id
    stripe_emulator.advance_clock(2 * 86400, secret_key=stripe_secret_key)
    assert client.v1.events.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve(event.id)


def test_invoice_lines_pagination_and_embedded_first_ten(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    added = client.v1.invoices.add_lines(
        invoice.id, params={"lines": [{"amount": n, "description": f"l{n}"} for n in range(1, 13)]}
    )
    assert len(added.lines.data) == 10
    assert added.lines.has_more is True
    assert added.amount_due == sum(range(1, 13))
    lines = list(
        client.v1.invoices.line_items.list(invoice.id, params={"limit": 5}).auto_paging_iter()
    )
    assert [line.amount for line in lines] == list(range(1, 13))


def test_expand_customer_and_payments(
    client: stripe.StripeClient, customer: stripe.Customer, stripe_emulator: EmulatorHandle
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 9}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 300}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    stripe_emulator.pay_invoice(invoice.id, amount=100)
    expanded = client.v1.invoices.retrieve(invoice.id, params={"expand": ["customer", "payments"]})
    assert isinstance(expanded.customer, stripe.Customer)
    assert expanded.customer.email == "ap@acme.example"
    assert expanded.payments is not None
    # newest first: the partial payment, then the default payment made at finalization, still
    # open for what remains
    assert [
        (payment.amount_paid, payment.amount_requested, payment.is_default, payment.status)
        for payment in expanded.payments.data
    ] == [(100, 100, False, "paid"), (None, 200, True, "open")]
    listed = client.v1.invoices.list(params={"expand": ["data.customer"]}).data
    assert isinstance(listed[0].customer, stripe.Customer)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.retrieve(invoice.id, params={"expand": ["nonsense"]})
    assert caught.value.param == "expand[0]"


def test_invoice_items_list_filters(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    pending = client.v1.invoice_items.create(params={"customer": customer.id, "amount": 10})
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    attached = client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 20, "invoice": invoice.id}
    )
    assert [i.id for i in client.v1.invoice_items.list(params={"pending": True}).data] == [
        pending.id
    ]
    assert [i.id for i in client.v1.invoice_items.list(params={"invoice": invoice.id}).data] == [
        attached.id
    ]
    updated = client.v1.invoice_items.update(attached.id, params={"amount": 25, "description": "x"})
    assert updated.amount == 25
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 25
    assert client.v1.invoice_items.delete(attached.id).deleted is True
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 0
