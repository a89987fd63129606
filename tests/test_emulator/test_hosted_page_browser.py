"""A real browser pays on the hosted invoice page: part by ACH, the rest by card."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import stripe
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.stripe_emulator.handle import EmulatorHandle

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def test_customer_pays_in_two_parts_in_a_browser(
    page: Page,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    stripe_emulator: EmulatorHandle,
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30}
    )
    client.v1.invoices.add_lines(
        invoice.id,
        params={"lines": [{"amount": 250000, "description": "Platinum sponsorship"}]},
    )
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.hosted_invoice_url is not None

    page.goto(finalized.hosted_invoice_url)
    expect(page.locator("#invoice-number")).to_have_text(finalized.number or "")
    expect(page.locator("#amount-remaining")).to_have_text("2,500.00 USD")
    expect(page.locator("tr.line .description")).to_have_text("Platinum sponsorship")

    # The page pays everything that remains; a part is charged from the Dashboard.
    expect(page.get_by_label("Amount")).to_have_count(0)
    stripe_emulator.pay_invoice(invoice.id, amount=100000, payment_method_type="us_bank_account")
    page.reload()
    expect(page.locator("#amount-paid")).to_have_text("1,000.00 USD")
    expect(page.locator("#pay-card")).to_contain_text("1,500.00 USD")
    expect(page.locator("#invoice-status")).to_have_text("open")

    page.locator("#pay-card").click()
    expect(page.locator("#invoice-status")).to_have_text("paid")
    expect(page.locator("#pay-card")).to_have_count(0)

    paid = client.v1.invoices.retrieve(invoice.id)
    assert paid.status == "paid"
    assert paid.amount_paid == 250000
    payments = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert sorted(payment.amount_paid or 0 for payment in payments) == [100000, 150000]


def test_paying_a_stale_page_shows_an_error(
    page: Page,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    stripe_emulator: EmulatorHandle,
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 5000}]})
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.hosted_invoice_url is not None
    page.goto(finalized.hosted_invoice_url)
    stripe_emulator.pay_invoice(invoice.id)  # paid meanwhile, in another tab
    page.locator("#pay-ach").click()
    expect(page.locator("#error")).to_contain_text("already paid")
    assert client.v1.invoices.retrieve(invoice.id).amount_paid == 5000
