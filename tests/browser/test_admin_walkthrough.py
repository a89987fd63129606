"""An organizer and a customer, in a real browser: approve a PO, pay part of it by ACH, see it.

The organizer is no superuser: a staff member with the organizer role in this one conference
(``grant_conference_access``), who also sees another conference's PO never appear.

Debian's Chromium driven by Playwright (never Playwright's own browser download), against
pytest-django's live server, the session's real Celery worker and the Stripe emulator, which
delivers signed webhooks to the live server. Every step leaves a screenshot in
``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from invoicing.models import Conference, PurchaseOrder, Role
from invoicing.services import purchase_orders
from invoicing.services.conference_access import grant_conference_role
from invoicing.services.purchase_orders import LineItemInput
from invoicing.services.stripe_client import clear_stripe_clients
from invoicing.services.webhook_endpoints import register_webhook_endpoint
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import wait_until
from tests.support.processes import REPO_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-browser-test-password"

T = TypeVar("T")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[BrowserContext]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),  # a fresh profile every time
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def walkthrough(
    live_server: LiveServer,
    celery_worker: Any,
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    tmp_path: Path,
) -> Iterator[PurchaseOrder]:
    """A conference on a fresh emulator account, its webhook endpoint at the live server, a PO."""
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STATIC_ROOT = tmp_path  # WhiteNoise warns (an error here) without it
    key = stripe_emulator.new_secret_key()
    conference = Conference.objects.create(
        slug="browsercon", name="BrowserCon 2026", stripe_secret_key=key
    )
    registration = register_webhook_endpoint(conference=conference, url=live_server.url)
    assert registration.created
    organizer = User.objects.create_user("organizer", "organizer@browsercon.example", PASSWORD)
    grant_conference_role(conference=conference, user=organizer, role=Role.ORGANIZER)
    other = Conference.objects.create(slug="othercon", name="OtherCon", stripe_secret_key=key)
    purchase_orders.create_purchase_order(
        conference=other,
        reference="OTHER-0001",
        organization_name="Hooli",
        contact_email="ap@hooli.example",
        lines=[LineItemInput("Booth", 1, Decimal("100.00"))],
    )
    po = purchase_orders.create_purchase_order(
        conference=conference,
        reference="BRW-0001",
        organization_name="Initech",
        contact_email="ap@initech.example",
        lines=[
            LineItemInput("Gold sponsorship", 1, Decimal("5000.00")),
            LineItemInput("Conference ticket", 3, Decimal("450.00")),
        ],
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    yield po
    clear_stripe_clients()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def in_thread(read: Callable[[], T]) -> T:
    """Run an ORM read in a thread of its own, which closes its connection after.

    Playwright's sync API keeps an event loop running in the test's thread: Django refuses
    blocking queries there, and asgiref would give them a connection of their own that nobody
    closes (pytest-django could then not drop the test database).
    """

    def run() -> T:
        try:
            return read()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def po_status(po: PurchaseOrder) -> str:
    return in_thread(lambda: PurchaseOrder.objects.values_list("status", flat=True).get(pk=po.pk))


def test_approve_pay_part_by_ach_and_see_it_in_the_admin(
    walkthrough: PurchaseOrder,
    browser_context: BrowserContext,
    live_server: LiveServer,
    stripe_emulator: EmulatorHandle,
) -> None:
    # (The data is made before the browser starts: see in_thread.)
    po = walkthrough
    page = browser_context.new_page()

    # 1. The organizer logs into the admin.
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "organizer")
    page.fill("#id_password", PASSWORD)
    shot(page, "01-login")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("PO invoicing")

    # 2. Approves the draft from the purchase order list (only their conference's POs are there),
    #    confirming the invoice the customer will be sent.
    page.goto(f"{live_server.url}/admin/invoicing/purchaseorder/")
    expect(page.locator("#result_list")).not_to_contain_text("OTHER-0001")
    row = page.locator("#result_list tbody tr", has_text="BRW-0001")
    expect(row).to_contain_text("Draft")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "approve_selected")
    shot(page, "02-approve-selected")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_have_text("Approve these purchase orders?")
    expect(page.locator("#confirm-objects")).to_contain_text(
        "BRW-0001: Initech (BrowserCon 2026), Draft: invoice for 6,350.00 USD to ap@initech.example"
    )
    shot(page, "03-confirm-approval")
    page.get_by_role("button", name="Yes, go ahead").click()
    expect(page.locator("ul.messagelist")).to_contain_text(
        "BRW-0001: approved; its Stripe invoice is being created and sent"
    )
    shot(page, "04-approved")

    # 3. The worker creates, finalizes and sends the invoice.
    wait_until(lambda: po_status(po) == "invoiced", timeout=30, message="the PO was never invoiced")
    page.reload()
    row = page.locator("#result_list tbody tr", has_text="BRW-0001")
    expect(row).to_contain_text("Invoiced")
    expect(row).to_contain_text("6,350.00 USD")
    shot(page, "05-invoiced")

    # 4. The customer opens the hosted invoice page from the PO's link...
    row.locator("th a").click()
    expect(page).to_have_title(re.compile(r"^BRW-0001 \(Initech\) \| Change purchase order"))
    with browser_context.expect_page() as opened:
        page.get_by_role("link", name="Open invoice").click()
    hosted = opened.value
    hosted.wait_for_load_state()
    expect(hosted.locator("#amount-remaining")).to_have_text("6,350.00 USD")
    shot(hosted, "06-hosted-invoice")

    # 5. ...which only offers the whole amount (no amount field, as at Stripe). The customer
    #    agrees to pay 1,000.00 now by ACH, which the organizer charges from the Stripe
    #    Dashboard ("Charge customer", the emulator's control API).
    expect(hosted.locator("#pay-ach")).to_contain_text("6,350.00 USD")
    expect(hosted.get_by_label("Amount")).to_have_count(0)
    invoice_id = in_thread(
        lambda: PurchaseOrder.objects.values_list("stripe_invoice_id", flat=True).get(pk=po.pk)
    )
    stripe_emulator.pay_invoice(invoice_id, amount=100000, payment_method_type="us_bank_account")
    hosted.reload()
    expect(hosted.locator("#amount-paid")).to_have_text("1,000.00 USD")
    expect(hosted.locator("#invoice-status")).to_have_text("open")
    shot(hosted, "07-paid-part-by-ach")

    # 6. The webhooks reach the live server, the worker records the payment: the organizer sees
    #    the PO partially paid, with the Stripe payment in its ledger.
    wait_until(
        lambda: po_status(po) == "partially_paid",
        timeout=30,
        message="the ACH payment never reached the PO",
    )
    page.reload()
    expect(page.locator(".form-row.field-status")).to_contain_text("Partially paid")
    expect(page.locator(".fieldBox.field-balance_display")).to_contain_text("5,350.00 USD")
    ledger = page.locator("#payments-group")
    expect(ledger).to_contain_text("1,000.00 USD")
    expect(ledger).to_contain_text("Stripe")
    shot(page, "08-partially-paid")

    payments = in_thread(lambda: list(po.payments.values_list("method", "amount")))
    assert payments == [("stripe", Decimal("1000.000"))]
    assert sorted(path.name for path in ARTIFACTS.glob("*.png")) == [
        "01-login.png",
        "02-approve-selected.png",
        "03-confirm-approval.png",
        "04-approved.png",
        "05-invoiced.png",
        "06-hosted-invoice.png",
        "07-paid-part-by-ach.png",
        "08-partially-paid.png",
    ]
