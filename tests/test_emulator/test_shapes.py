"""Objects carry exactly the fields the installed stripe-python declares for the pinned API, with
the JSON types its hints say, and are never ``null`` where Stripe's spec leaves a field out.

Three checks, over every kind of object the emulator renders, in the states it renders them:

* :func:`.stripe_shapes.shape_problems`, recursively: no key stripe-python's class lacks, every
  non-``Optional`` field present and not ``null``, values of the declared JSON types;
* the exact top-level field set: what is left out is what Stripe leaves out in that state
  (``NOT_SENT``);
* ``OMITTED_NOT_NULL``: the fields Stripe's OpenAPI spec marks optional *and* not nullable
  (``name?: T`` in the spec's TypeScript rendering, stripe-node for API 2026-07-29.dahlia, which
  the installed stripe-python's ``Optional`` cannot tell from nullable): if sent, never ``null``.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle

from .stripe_shapes import declared_fields, shape_problems, wire

OMITTED_NOT_NULL: dict[type, set[str]] = {
    stripe.Customer: {
        "business_name",
        "individual_name",
        "invoice_credit_balance",
        "next_invoice_sequence",
        "sources",
        "subscriptions",
        "tax",
        "tax_ids",
    },
    stripe.Invoice: {"amount_paid_off_stripe", "auto_advance", "payments", "threshold_reason"},
    stripe.InvoiceItem: {"net_amount", "proration_details", "pricing.price_details"},
    stripe.InvoiceLineItem: {"pricing.price_details"},
    stripe.InvoicePayment: {"payment.charge", "payment.payment_intent", "payment.payment_record"},
    stripe.WebhookEndpoint: {"secret"},
    stripe.Event: {"account", "context"},
    stripe.PaymentIntent: {"amount_details", "hooks", "payment_details", "presentment_details"},
    stripe.Charge: {"authorization_code", "level3", "presentment_details", "radar_options"},
    stripe.Refund: {
        "description",
        "destination_details",
        "failure_balance_transaction",
        "failure_reason",
        "instructions_email",
        "next_action",
        "pending_reason",
        "presentment_details",
    },
    stripe.Dispute: {"payment_method_details"},
    stripe.CreditNote: set(),
    stripe.CreditNoteLineItem: {"invoice_line_item"},
    stripe.PaymentRecord: set(),
    stripe.TaxId: set(),
    stripe.Account: {"capabilities", "country", "created", "default_currency", "metadata"},
}

# What each object (by label) leaves out of its class's fields: only when expanded, only on
# deleted objects, only in other states, only for Connect or other business types.
NOT_SENT: dict[str, set[str]] = {
    "customer": {
        "business_name",
        "cash_balance",
        "deleted",
        "individual_name",
        "invoice_credit_balance",
        "sources",
        "subscriptions",
        "tax",
        "tax_ids",
    },
    "invoice": {"amount_paid_off_stripe", "deleted", "payments", "threshold_reason"},
    "invoice item": {"deleted"},
    "invoice line": set(),
    "invoice payment": set(),
    "webhook endpoint": {"deleted"},
    "event": {"account", "context"},
    "payment intent": {
        "allowed_payment_method_types",
        "amount_details",
        "hooks",
        "payment_details",
        "presentment_details",
        "transfer_data",
    },
    "charge": {
        "authorization_code",
        "level3",
        "presentment_details",
        "radar_options",
        "refunds",
        "transfer",
    },
    # a succeeded card refund has every optional field but where its money went
    "card refund": OMITTED_NOT_NULL[stripe.Refund] - {"destination_details"},
    "dispute": {"intended_submission_method", "network_reason_code"},
    "credit note": set(),
    "payment record": set(),
    "account": {"company", "deleted", "groups", "individual"},
    "tax id": {"deleted"},
}


def _omitted_but_null(obj: dict[str, Any], paths: set[str]) -> list[str]:
    found = []
    for path in sorted(paths):
        node: Any = obj
        *parents, last = path.split(".")
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] is None:
            found.append(path)
    return found


def _every_object(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> list[tuple[str, type, dict[str, Any]]]:
    """One of each object, in the states that change its fields: (label, class, wire JSON)."""
    customer = client.v1.customers.create(
        params={
            "email": "shape@example.com",
            "address": {"line1": "Hauptstr. 1", "postal_code": "10115", "country": "DE"},
            "tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}],
        }
    )
    tax_id = client.v1.customers.tax_ids.retrieve(
        customer.id, client.v1.customers.tax_ids.list(customer.id).data[0].id
    )
    business = client.v1.customers.create(params={"business_name": "Acme GmbH"})
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 3,
            "custom_fields": [{"name": "PO number", "value": "4500012345"}],
        }
    )
    item = client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": invoice.id, "amount": 100000}
    )
    client.v1.invoices.add_lines(
        invoice.id,
        params={
            "lines": [
                {
                    "price_data": {"currency": "usd", "product": "prod_1", "unit_amount": 2500},
                    "quantity": 4,
                }
            ]
        },
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    card = emulator.pay_invoice(invoice.id, amount=50000)
    ach = emulator.pay_invoice(
        invoice.id, amount=30000, payment_method_type="us_bank_account", pending=True
    )
    emulator.settle_payment(ach["invoice_payment"]["id"])
    failed = emulator.pay_invoice(invoice.id, amount=1, failure_code="card_declined")
    card_intent = card["invoice_payment"]["payment"]["payment_intent"]
    ach_intent = ach["invoice_payment"]["payment"]["payment_intent"]
    card_refund = client.v1.refunds.create(params={"payment_intent": card_intent, "amount": 100})
    ach_refund = client.v1.refunds.create(params={"payment_intent": ach_intent, "amount": 100})
    failed_refund = client.v1.refunds.create(params={"payment_intent": ach_intent, "amount": 50})
    emulator.fail_refund(failed_refund.id)
    charge_id = str(client.v1.payment_intents.retrieve(card_intent).latest_charge)
    dispute_id = emulator.open_dispute(charge_id, amount=1000)["dispute"]["id"]
    won = emulator.close_dispute(dispute_id, won=True)["dispute"]
    lines = client.v1.invoices.retrieve(invoice.id).lines.data
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [
                {"type": "invoice_line_item", "invoice_line_item": lines[1].id, "amount": 10},
                {"type": "custom_line_item", "description": "Goodwill", "unit_amount": 5},
            ],
        }
    )
    record = client.v1.payment_records.report_payment(
        params={
            "amount_requested": {"currency": "usd", "value": 5000},
            "initiated_at": 1_767_000_000,
            "payment_method_details": {"type": "custom", "custom": {"display_name": "Wire"}},
            "customer_details": {"customer": customer.id},
            "outcome": "guaranteed",
            "guaranteed": {"guaranteed_at": 1_767_000_001},
        }
    )
    attached = client.v1.invoices.attach_payment(
        invoice.id,
        params={
            "payment_record": record.id,
            "expand": ["payments", "customer", "amount_paid_off_stripe"],
        },
    )
    remaining = client.v1.invoices.retrieve(invoice.id).amount_remaining
    closing = client.v1.credit_notes.create(  # mixed: the remainder, and a refund beyond it
        params={"invoice": invoice.id, "amount": remaining + 1000, "refund_amount": 1000}
    )
    plain = client.v1.invoices.retrieve(invoice.id)
    taxed = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 3,
            "automatic_tax": {"enabled": True},
        }
    )
    taxed = client.v1.invoices.add_lines(taxed.id, params={"lines": [{"amount": 1000}]})
    return [
        ("taxed invoice", stripe.Invoice, wire(taxed)),
        ("taxed invoice line", stripe.InvoiceLineItem, wire(taxed)["lines"]["data"][0]),
        ("customer", stripe.Customer, wire(customer)),
        ("business customer", stripe.Customer, wire(business)),
        ("invoice", stripe.Invoice, wire(plain)),
        ("expanded invoice", stripe.Invoice, wire(attached)),
        ("invoice item", stripe.InvoiceItem, wire(client.v1.invoice_items.retrieve(item.id))),
        ("invoice line", stripe.InvoiceLineItem, wire(plain)["lines"]["data"][0]),
        ("priced invoice line", stripe.InvoiceLineItem, wire(plain)["lines"]["data"][1]),
        ("invoice payment", stripe.InvoicePayment, card["invoice_payment"]),
        ("failed invoice payment", stripe.InvoicePayment, failed["invoice_payment"]),
        ("webhook endpoint", stripe.WebhookEndpoint, wire(endpoint)),
        *(
            ("event", stripe.Event, event.to_dict())
            for event in client.v1.events.list(params={"limit": 3}).data
        ),
        (
            "payment intent",
            stripe.PaymentIntent,
            wire(client.v1.payment_intents.retrieve(card_intent)),
        ),
        (
            "expanded payment intent",
            stripe.PaymentIntent,
            wire(
                client.v1.payment_intents.retrieve(ach_intent, params={"expand": ["latest_charge"]})
            ),
        ),
        (
            "failed payment intent",
            stripe.PaymentIntent,
            wire(
                client.v1.payment_intents.retrieve(
                    failed["invoice_payment"]["payment"]["payment_intent"]
                )
            ),
        ),
        ("charge", stripe.Charge, wire(client.v1.charges.retrieve(charge_id))),
        (
            "expanded charge",
            stripe.Charge,
            wire(client.v1.charges.retrieve(charge_id, params={"expand": ["refunds"]})),
        ),
        ("card refund", stripe.Refund, wire(card_refund)),
        ("ach refund", stripe.Refund, wire(ach_refund)),
        ("failed refund", stripe.Refund, wire(client.v1.refunds.retrieve(failed_refund.id))),
        ("dispute", stripe.Dispute, won),
        ("credit note", stripe.CreditNote, wire(note)),
        ("credit note with refund", stripe.CreditNote, wire(closing)),
        *(
            ("credit note line", stripe.CreditNoteLineItem, line)
            for line in wire(note)["lines"]["data"]
        ),
        ("payment record", stripe.PaymentRecord, wire(record)),
        ("account", stripe.Account, wire(client.v1.accounts.retrieve_current())),
        ("tax id", stripe.TaxId, wire(tax_id)),
    ]


def test_every_object_matches_the_library_and_the_spec(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    # One of every object takes more than 25 requests in a second; the limit is not the point.
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)
    objects = _every_object(client, stripe_emulator)
    for label, cls, obj in objects:
        assert shape_problems(obj, cls, label) == []
        assert _omitted_but_null(obj, OMITTED_NOT_NULL[cls]) == [], label
        if label in NOT_SENT:
            assert set(declared_fields(cls)) - set(obj) == NOT_SENT[label], label
    assert {label for label, _, _ in objects} >= set(NOT_SENT)


@pytest.mark.parametrize(
    ("obj", "cls", "problem"),
    [
        ({"id": "re_1", "object": "refund", "extra": 1}, stripe.Refund, "refund.extra: not a"),
        ({"id": "re_1", "object": "refund"}, stripe.Refund, "refund.amount: missing"),
        ({"id": None}, stripe.Refund, "refund.id: null"),
        ({"amount": "12"}, stripe.Refund, "refund.amount: '12' is not a int"),
        ({"object": "charge"}, stripe.Refund, "'charge' is not one of ('refund',)"),
    ],
)
def test_the_checker_catches_what_stripe_would_not_send(
    obj: dict[str, Any], cls: type, problem: str
) -> None:
    assert any(problem in found for found in shape_problems(obj, cls, "refund"))


def test_deleted_objects_are_stubs(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    assert client.v1.invoices.delete(invoice.id).to_dict() == {
        "id": invoice.id,
        "object": "invoice",
        "deleted": True,
    }
    assert client.v1.customers.delete(customer.id).to_dict() == {
        "id": customer.id,
        "object": "customer",
        "deleted": True,
    }
