"""What the company receives, in a real browser: the hosted invoice page of a PO with a buyer PO
number, legal name, EU address, VAT ID and Stripe Tax, created by our own invoice creation.

The screenshot lands in ``test-artifacts/browser/``; with ``UPDATE_DOCS_SCREENSHOTS=1`` it also
replaces ``docs/ap-invoice.png``, the picture in the README's PO section.
"""

from __future__ import annotations

import os
import shutil
import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.models import Conference
from invoicing.services import purchase_orders
from invoicing.services.purchase_orders import LineItemInput
from invoicing.services.stripe_invoicing import create_stripe_invoice
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.processes import REPO_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "ap-invoice.png"

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


def test_the_company_receives_an_invoice_its_accounts_payable_accepts(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    settings: SettingsWrapper,
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe_emulator.configure(stripe_secret_key, tax_rates={"DE": "19"})
    conference = Conference.objects.create(
        slug=f"pycon-{uuid.uuid4().hex[:6]}",
        name="PyCon Example 2027",
        currency="eur",
        stripe_secret_key=stripe_secret_key,
        invoice_shows_our_reference=True,
        automatic_tax=True,
        invoice_memo="Sponsorship of PyCon Example 2027, Berlin.",
    )
    po = purchase_orders.create_purchase_order(
        conference=conference,
        reference="SPONSOR-2027-014",
        organization_name="Globex",
        legal_name="Globex Deutschland GmbH",
        contact_email="kreditoren@globex.example",
        buyer_po_number="4500012345",
        billing_address={
            "line1": "Friedrichstr. 10",
            "line2": "4. OG",
            "city": "Berlin",
            "postal_code": "10117",
            "country": "DE",
        },
        tax_ids=[{"type": "eu_vat", "value": "DE123456789"}],
        lines=[
            LineItemInput("Gold sponsorship", 1, Decimal("5000.00")),
            LineItemInput("Conference ticket", 3, Decimal("450.00")),
        ],
    )
    po = purchase_orders.approve_purchase_order(po)
    url = create_stripe_invoice(po)
    # Playwright's sync API runs an event loop in this thread: the database work is done first.
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            _check_and_capture(browser, url, invoice_id=po.stripe_invoice_id)
        finally:
            browser.close()


def _check_and_capture(browser: Browser, url: str, *, invoice_id: str) -> None:
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.goto(url)
    expect(page.locator("#customer-name")).to_have_text("Globex Deutschland GmbH")
    expect(page.locator("#custom-fields .custom-field dd")).to_have_text(
        ["4500012345", "SPONSOR-2027-014"]
    )
    expect(page.locator("#customer-address .address-line")).to_have_text(
        ["Friedrichstr. 10", "4. OG", "10117 Berlin", "DE"]
    )
    expect(page.locator("#customer-tax-ids .tax-id-value")).to_have_text(["DE123456789"])
    expect(page.locator("#tax")).to_have_text("1,206.50 EUR")
    expect(page.locator("#amount-due")).to_have_text("7,556.50 EUR")
    expect(page.locator("#invoice-pdf")).to_have_attribute("href", f"/i/{invoice_id}/pdf")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ap-invoice.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)
