"""An organizer reads the receivables overview, follows a figure to the list and exports CSV.

Debian's Chromium at 1366x900 through Playwright, against pytest-django's live server. The
screenshots go to ``test-artifacts/browser/receivables/``; each is asserted on (the text on it,
and no horizontal scroll on the overview).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, Role
from invoicing.selectors_overview import OWED_STATUSES
from invoicing.services.conference_access import grant_conference_role
from tests.browser.test_admin_walkthrough import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, in_thread
from tests.ops.receivables_data import expected_figures, generate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-receivables-test-password"
SHOTS = ARTIFACTS / "receivables"


@pytest.fixture
def organizer_with_ledger(settings: SettingsWrapper, tmp_path: Path) -> Conference:
    settings.STATIC_ROOT = tmp_path  # WhiteNoise warns (an error here) without it
    conference = Conference.objects.create(slug="ledgercon", name="LedgerCon 2026")
    generate(conference, count=300, now=timezone.now(), seed=41, currencies=("usd",))
    other = Conference.objects.create(slug="hiddencon", name="HiddenCon")
    generate(other, count=20, now=timezone.now(), seed=42, currencies=("usd",))
    user = User.objects.create_user("treasurer", "treasurer@example.com", PASSWORD)
    grant_conference_role(conference=conference, user=user, role=Role.ORGANIZER)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    return conference


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 900},
            accept_downloads=True,
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_horizontal_scroll(page: Page) -> bool:
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def overdue_in_python(conference: Conference) -> set[str]:
    now = timezone.now()
    found = set()
    for po in PurchaseOrder.objects.filter(conference=conference).prefetch_related(
        "line_items", "payments"
    ):
        total = sum((line.unit_price * line.quantity for line in po.line_items.all()), Decimal(0))
        received = sum((payment.amount for payment in po.payments.all()), Decimal(0))
        owed = po.status in OWED_STATUSES and total > received
        if owed and po.invoice_due_at is not None and po.invoice_due_at < now:
            found.add(po.reference)
    return found


def test_overview_chart_and_csv_export(
    organizer_with_ledger: Conference, browser: BrowserContext, live_server: LiveServer
) -> None:
    conference = organizer_with_ledger
    want = in_thread(lambda: expected_figures(conference, now=timezone.now()))["usd"]
    page = browser.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "treasurer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    # The conference list links to the overview.
    page.goto(f"{live_server.url}/admin/invoicing/conference/")
    expect(page.locator("#result_list")).not_to_contain_text("HiddenCon")
    page.get_by_role("link", name="Overview").click()
    expect(page.locator("h1")).to_have_text("Receivables of LedgerCon 2026")
    figures = page.locator("ul.figures")
    expect(figures.locator("[data-figure=outstanding]")).to_contain_text(
        f"{want.outstanding:,.2f} USD"
    )
    expect(figures.locator("[data-figure=collected]")).to_contain_text(f"{want.collected:,.2f} USD")
    chart = page.get_by_role("img", name="Collected and outstanding, USD, at each month's end")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None
    assert box["width"] > 500  # drawn at a readable size, and inside the page
    assert box["x"] + box["width"] <= 1366
    assert page.locator("svg.receivables-chart rect").count() == 12 * 2 + 2
    assert no_horizontal_scroll(page)
    shot(page, "01-overview")

    # A figure leads to the POs behind it.
    page.locator("[data-figure=overdue] a").click()
    count = sum(want.overdue_count.values())
    expect(page.locator("#changelist-form .paginator")).to_contain_text(f"{count} purchase order")
    shot(page, "02-overdue-list")

    # The ledger export with the list's filters: the overdue POs' entries, amounts exact.
    with page.expect_download() as download:
        page.locator("a[data-export=ledger]").click()
    path = download.value.path()
    assert download.value.suggested_filename.startswith("ledger-")
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    references = {row["po_reference"] for row in rows}
    entries = in_thread(
        lambda: {
            str(pk): amount
            for pk, amount in PurchaseOrderPayment.objects.filter(
                purchase_order__conference=conference, purchase_order__reference__in=references
            ).values_list("pk", "amount")
        }
    )
    assert rows
    assert {row["entry_id"]: Decimal(row["amount"]) for row in rows} == entries
    assert all(len(row["amount"].split(".")[1]) == 2 for row in rows)  # USD: two decimals
    overdue_references = in_thread(lambda: overdue_in_python(conference))
    assert len(overdue_references) == count
    assert references <= overdue_references  # the list's filter applied to the export
    assert sorted(p.name for p in SHOTS.glob("*.png")) == ["01-overview.png", "02-overdue-list.png"]
