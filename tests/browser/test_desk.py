"""The organizer's desk at 1366x900: a blocked creation fixed and retried, an absurd amount refused.

A finance admin of one conference (its key mistyped, so the approved PO's invoice creation is
blocked) finds the PO marked in the list, reads on its page what went wrong and what to do, fixes
the key on the conference's page, presses **Retry invoice creation** and sees the PO invoiced.
Then an absurd price is refused before approval. The list pages never scroll sideways. Every step
leaves a screenshot in ``test-artifacts/browser/desk/``, and each is checked as it is taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from invoicing.models import Conference, PurchaseOrder, Role
from invoicing.services import purchase_orders
from invoicing.services.conference_access import grant_conference_role
from invoicing.services.purchase_orders import LineItemInput
from invoicing.services.stripe_client import clear_stripe_clients
from tests.browser.test_admin_walkthrough import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, in_thread
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = ARTIFACTS / "desk"
WIDTH, HEIGHT = 1366, 900
PASSWORD = "a-desk-test-password"


@pytest.fixture
def desk_browser(tmp_path: Path) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": WIDTH, "height": HEIGHT},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def blocked_po(
    live_server: LiveServer,
    celery_worker: Any,
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    tmp_path: Path,
) -> Iterator[PurchaseOrder]:
    """An approved PO whose conference key is mistyped: the worker's creation is blocked."""
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STATIC_ROOT = tmp_path
    conference = Conference.objects.create(
        slug="deskcon", name="DeskCon 2026", stripe_secret_key="sk_test_mistyped-key"
    )
    finance = User.objects.create_user("treasurer", "treasurer@deskcon.example", PASSWORD)
    grant_conference_role(conference=conference, user=finance, role=Role.FINANCE)
    po = purchase_orders.create_purchase_order(
        conference=conference,
        reference="DESK-0001",
        organization_name="Globex Corporation International Holdings",
        contact_email="ap@globex.example",
        lines=[LineItemInput("Platinum sponsorship", 1, Decimal("5000.00"))],
    )
    purchase_orders.approve_purchase_order(po)
    wait_until(
        lambda: PurchaseOrder.objects.get(pk=po.pk).invoice_creation_blocked,
        timeout=30,
        message="the creation never blocked",
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    yield po
    clear_stripe_clients()


def shot(page: Page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, f"{name}: an empty screenshot"
    return path


def assert_no_sideways_scroll(page: Page) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= WIDTH, f"{page.url}: {scroll_width} px wide at {WIDTH} px"


def test_a_bad_key_fixed_then_retry_and_an_absurd_amount_refused(
    blocked_po: PurchaseOrder,
    desk_browser: BrowserContext,
    live_server: LiveServer,
    stripe_emulator: EmulatorHandle,
) -> None:
    po = blocked_po
    good_key = stripe_emulator.new_secret_key()
    page = desk_browser.new_page()
    base = live_server.url
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "treasurer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    # 1. The list marks the PO; the "needs attention" filter finds it; nothing is cut off.
    page.goto(f"{base}/admin/invoicing/purchaseorder/")
    row = page.locator("#result_list tbody tr", has_text="DESK-0001")
    expect(row).to_contain_text("Invoice creation blocked")
    expect(row).to_contain_text("needs attention")
    expect(row).to_contain_text("5,000.00 USD")
    assert_no_sideways_scroll(page)
    shot(page, "01-list-needs-attention")
    page.get_by_role("link", name="Needs attention", exact=True).click()
    expect(page.locator("#result_list")).to_contain_text("DESK-0001")

    # 2. The PO's page says what went wrong and what to do, in plain words.
    page.locator("#result_list th a", has_text="DESK-0001").click()
    problem = page.locator(".po-problem")
    expect(problem).to_contain_text("Stripe did not accept the conference's secret key")
    expect(problem).to_contain_text("A finance admin enters the right key")
    expect(page.get_by_role("button", name="Retry invoice creation")).to_be_visible()
    shot(page, "02-po-blocked")
    assert_no_sideways_scroll(page)

    # 3. The finance admin fixes the key on the conference's page.
    page.goto(f"{base}/admin/invoicing/conference/{po.conference_id}/change/")
    page.fill("#id_stripe_secret_key", good_key)
    page.fill("#id_current_password", PASSWORD)
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("changed successfully")
    shot(page, "03-key-fixed")

    # 4. Retry: the worker resumes, the PO is invoiced, the story shows the failure and retry.
    page.goto(f"{base}/admin/invoicing/purchaseorder/{po.pk}/change/")
    page.get_by_role("button", name="Retry invoice creation").click()
    expect(page.locator("ul.messagelist")).to_contain_text(
        "DESK-0001: retry of the invoice creation queued"
    )
    wait_until(
        lambda: in_thread(lambda: PurchaseOrder.objects.get(pk=po.pk).status) == "invoiced",
        timeout=30,
        message="the retried PO was never invoiced",
    )
    page.goto(f"{base}/admin/invoicing/purchaseorder/{po.pk}/change/")
    expect(page.locator(".form-row.field-status")).to_contain_text("Invoiced")
    expect(page.locator(".po-problem")).to_have_count(0)
    timeline = page.locator(".po-timeline")
    expect(timeline).to_contain_text("Retry requested")
    expect(timeline).to_contain_text("treasurer")
    expect(timeline).to_contain_text("Invoice created and sent")
    number = in_thread(lambda: PurchaseOrder.objects.get(pk=po.pk).stripe_invoice_number)
    expect(page.locator(".po-generations")).to_contain_text(number)
    shot(page, "04-retried-and-invoiced")
    invoices = stripe_emulator.client(good_key).v1.invoices.list({"limit": 10}).data
    assert len(invoices) == 1

    # 5. An absurd price is refused before approval, in the organizer's words.
    page.goto(f"{base}/admin/invoicing/purchaseorder/add/")
    page.select_option("#id_conference", label="DeskCon 2026")
    page.fill("#id_reference", "DESK-ABSURD")
    page.fill("#id_organization_name", "Initrode")
    page.fill("#id_contact_email", "ap@initrode.example")
    page.fill("#id_line_items-0-description", "Everything")
    page.fill("#id_line_items-0-quantity", "1")
    page.fill("#id_line_items-0-unit_price", "99999999999.99")
    page.check("#id_approve")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text(
        "The total, 99,999,999,999.99 USD, is more than Stripe can charge on one invoice "
        "(999,999.99 USD at most)."
    )
    shot(page, "05-absurd-amount-refused")
    assert not in_thread(lambda: PurchaseOrder.objects.filter(reference="DESK-ABSURD").exists())

    # 6. The events list fits too, newest first.
    page.goto(f"{base}/admin/invoicing/stripeevent/")
    assert_no_sideways_scroll(page)
    shot(page, "06-events")

    assert sorted(path.name for path in SHOTS.glob("*.png")) == [
        "01-list-needs-attention.png",
        "02-po-blocked.png",
        "03-key-fixed.png",
        "04-retried-and-invoiced.png",
        "05-absurd-amount-refused.png",
        "06-events.png",
    ]
