"""The customer's side: card and ACH payments, ACH that fails later, the hosted invoice page."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle


def test_ach_pending_then_settled(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    pending = stripe_emulator.pay_invoice(
        open_invoice.id, amount=50000, payment_method_type="us_bank_account", pending=True
    )
    payment = pending["invoice_payment"]
    assert payment["status"] == "open"
    assert payment["amount_paid"] is None
    assert pending["invoice"]["amount_paid"] == 0
    # the pending debit reserves its amount: no overpayment through the back door
    with pytest.raises(EmulatorError, match="exceeds"):
        stripe_emulator.pay_invoice(open_invoice.id, amount=100051)
    settled = stripe_emulator.settle_payment(payment["id"])
    assert settled["invoice_payment"]["status"] == "paid"
    assert settled["invoice"]["amount_paid"] == 50000
    listed = client.v1.invoice_payments.retrieve(payment["id"])
    assert listed.status == "paid"
    assert listed.invoice == open_invoice.id


def test_ach_fails_later(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    pending = stripe_emulator.pay_invoice(
        open_invoice.id, payment_method_type="us_bank_account", pending=True
    )
    # the whole amount went through the default payment: the attempt failed, the payment stays
    # open (its PaymentIntent waits for another method)
    assert pending["invoice_payment"]["is_default"] is True
    failed = stripe_emulator.fail_payment(pending["invoice_payment"]["id"])
    assert failed["invoice_payment"]["status"] == "open"
    assert failed["invoice"]["status"] == "open"
    assert failed["invoice"]["amount_paid"] == 0
    events = client.v1.events.list(params={"type": "invoice.payment_failed"}).data
    assert [event.data.object["id"] for event in events] == [open_invoice.id]
    with pytest.raises(EmulatorError, match="no charge processing"):
        stripe_emulator.settle_payment(pending["invoice_payment"]["id"])
    # the customer can pay again afterwards
    assert stripe_emulator.pay_invoice(open_invoice.id)["invoice"]["status"] == "paid"


def test_card_payments_cannot_be_pending(
    stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    with pytest.raises(EmulatorError, match="us_bank_account"):
        stripe_emulator.pay_invoice(open_invoice.id, pending=True)


def test_immediate_card_failure(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    result = stripe_emulator.pay_invoice(open_invoice.id, failure_code="card_declined")
    assert result["invoice_payment"]["status"] == "open"  # the default payment, for a retry
    assert result["invoice_payment"]["is_default"] is True
    partial = stripe_emulator.pay_invoice(open_invoice.id, amount=100, failure_code="card_declined")
    assert partial["invoice_payment"]["status"] == "canceled"  # a one-off charge that failed
    assert result["invoice"]["amount_paid"] == 0
    assert client.v1.events.list(params={"type": "invoice.payment_failed"}).data


def test_hosted_page_shows_the_invoice(
    stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    page = stripe_emulator.hosted_page(open_invoice.id)
    assert f'<span id="invoice-number">{open_invoice.number}</span>' in page
    assert '<span id="invoice-status">open</span>' in page
    due = datetime.fromtimestamp(open_invoice.due_date or 0, tz=UTC).date().isoformat()
    assert f'<span id="due-date">{due}</span>' in page
    assert '<dd id="amount-due">1,500.50 USD</dd>' in page
    assert '<dd id="amount-remaining">1,500.50 USD</dd>' in page
    assert "Booth &lt;power&gt; &amp; wifi" in page
    assert page.count('class="line"') == 2
    assert 'id="pay-card-form"' in page
    assert 'id="pay-ach-form"' in page
    # Stripe's page pays the default payment, everything that remains: no amount to type
    assert "ach-amount" not in page
    assert 'name="display_amount"' not in page


def test_hosted_page_pays_in_full_partial_comes_from_charge_customer(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, open_invoice: stripe.Invoice
) -> None:
    action = f"/_emulator/invoices/{open_invoice.id}/payments"
    # A partial amount through the page's form is refused: it pays everything that remains.
    status, headers, _ = stripe_emulator.post_form(
        action,
        {
            "payment_method_type": "us_bank_account",
            "return_to": "hosted",
            "display_amount": "500.25",
        },
    )
    assert status == 303
    location = urlsplit(headers["Location"])
    assert location.path == f"/i/{open_invoice.id}"
    assert "error=" in location.query
    assert client.v1.invoices.retrieve(open_invoice.id).amount_paid == 0

    # The Dashboard's "Charge customer" (the control API) takes any amount up to the remainder.
    charged = stripe_emulator.pay_invoice(
        open_invoice.id, amount=50025, payment_method_type="us_bank_account"
    )
    assert charged["invoice_payment"]["is_default"] is False
    assert client.v1.invoices.retrieve(open_invoice.id).amount_paid == 50025

    status, _, _ = stripe_emulator.post_form(
        action, {"payment_method_type": "card", "return_to": "hosted"}
    )
    assert status == 303
    page = stripe_emulator.hosted_page(open_invoice.id)
    assert '<span id="invoice-status">paid</span>' in page
    assert "pay-card-form" not in page
    assert client.v1.invoices.retrieve(open_invoice.id).amount_paid == 150050


def test_hosted_page_pdf_and_unknown_invoices(
    stripe_emulator: EmulatorHandle,
    open_invoice: stripe.Invoice,
    client: stripe.StripeClient,
    customer: stripe.Customer,
) -> None:
    import urllib.request

    assert open_invoice.invoice_pdf is not None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(open_invoice.invoice_pdf, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/pdf"
        assert response.read().startswith(b"%PDF-")
    draft = client.v1.invoices.create(params={"customer": customer.id})
    for invoice_id in (draft.id, "in_unknown"):
        with pytest.raises(EmulatorError) as caught:
            stripe_emulator.hosted_page(invoice_id)
        assert caught.value.status == 404
