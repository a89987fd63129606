"""The receivables overview and the CSV exports: figures equal the ledger, scoped, cheap.

The expectations are recomputed in Python row by row (``tests/ops/receivables_data.py``); the
overview's own queries are never reused for them.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from invoicing.admin import receivables_chart
from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
    Role,
)
from invoicing.selectors_overview import ChartPoint, receivables_overview
from invoicing.services.conference_access import grant_conference_role
from tests.ops.receivables_data import expected_figures, generate

pytestmark = pytest.mark.django_db


def _conference(slug: str) -> Conference:
    return Conference.objects.create(slug=slug, name=slug.title())


def _person(conference: Conference, role: Role, name: str) -> Client:
    user = User.objects.create_user(name, f"{name}@example.com", "pw-not-used")
    grant_conference_role(conference=conference, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_overview_figures_equal_the_ledger_summed_in_python() -> None:
    conference, other = _conference("sums"), _conference("noise")
    now = timezone.now()
    generate(conference, count=1200, now=now, seed=11)
    generate(other, count=50, now=now, seed=12)  # another conference's money never counts

    overview = receivables_overview(conference, now=now)
    expected = expected_figures(conference, now=now)

    assert {f.currency for f in overview.currencies} == set(expected) == {"usd", "jpy", "kwd"}
    for figures in overview.currencies:
        want = expected[figures.currency]
        assert figures.purchase_orders == want.purchase_orders
        assert figures.invoiced == want.invoiced
        assert figures.collected == want.collected
        assert figures.outstanding == want.outstanding
        assert {a.age.slug: a.amount for a in figures.overdue} == want.overdue
        assert {a.age.slug: a.count for a in figures.overdue} == want.overdue_count
        assert figures.needs_attention == want.attention
        # The dataset reaches every bucket, so a wrong bound cannot hide.
        assert all(want.overdue_count.values()), want.overdue_count
        points = overview.history[figures.currency]
        assert len(points) == 12
        assert {p.month: (p.invoiced, p.collected) for p in points} == want.chart


def test_overview_takes_two_queries_for_ten_thousand_purchase_orders() -> None:
    conference = _conference("big")
    now = timezone.now()
    generate(conference, count=10_000, now=now, seed=3, currencies=("usd",))
    assert PurchaseOrder.objects.filter(conference=conference).count() == 10_000

    with CaptureQueriesContext(connection) as queries:
        overview = receivables_overview(conference, now=now)
    assert len(queries.captured_queries) <= 2, [q["sql"][:200] for q in queries.captured_queries]
    assert overview.currencies[0].purchase_orders == 10_000


def test_overview_page_costs_the_same_for_ten_and_for_a_thousand_purchase_orders(
    django_assert_max_num_queries: object,
) -> None:
    small, large = _conference("small"), _conference("large")
    now = timezone.now()
    generate(small, count=10, now=now, seed=5)
    generate(large, count=1000, now=now, seed=5)
    client = _person(small, Role.VIEWER, "viewer")
    grant_conference_role(
        conference=large, user=User.objects.get(username="viewer"), role=Role.VIEWER
    )
    counts = []
    for conference in (small, large):
        url = reverse("admin:invoicing_conference_receivables", args=[conference.pk])
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 8, counts  # session, user, roles, conference, the two figures' queries


def test_overview_page_shows_figures_links_and_an_accessible_chart() -> None:
    conference = _conference("shown")
    now = timezone.now()
    generate(conference, count=120, now=now, seed=21, currencies=("jpy",))
    want = expected_figures(conference, now=now)["jpy"]
    client = _person(conference, Role.VIEWER, "reader")

    response = client.get(reverse("admin:invoicing_conference_receivables", args=[conference.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    # JPY has no decimals: the figures show none.
    assert f"{want.outstanding:,.0f} JPY" in page  # grouped like the rest of the admin
    assert f"{want.invoiced:,.0f} JPY" in page
    assert want.invoiced >= 1000
    assert re.search(
        r'<svg[^>]+role="img"[^>]+aria-labelledby="chart-jpy-title chart-jpy-desc"', page
    )
    assert '<title id="chart-jpy-title">' in page
    assert "receivables=61-90" in page
    assert "conference__id__exact=" in page
    # The links lead to the list, filtered to exactly the POs behind the figure.
    link = re.search(r'href="([^"]*receivables=31-60[^"]*)"', page)
    assert link is not None
    listed = client.get(link.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert f"{want.overdue_count['31-60']} purchase order" in listed.content.decode()


def test_overview_of_another_team_is_a_404_like_a_missing_one() -> None:
    mine, theirs = _conference("mine"), _conference("theirs")
    client = _person(mine, Role.ORGANIZER, "organizer")
    ours = client.get(reverse("admin:invoicing_conference_receivables", args=[mine.pk]))
    other = client.get(reverse("admin:invoicing_conference_receivables", args=[theirs.pk]))
    missing = client.get(reverse("admin:invoicing_conference_receivables", args=[987654]))
    assert ours.status_code == 200
    assert other.status_code == missing.status_code == 404
    assert (
        Client().get(reverse("admin:invoicing_conference_receivables", args=[mine.pk])).status_code
        == 302
    )  # to the login page


def test_chart_scales_to_its_largest_month_and_labels_every_bar() -> None:
    points = [
        ChartPoint(datetime.date(2026, month, 1), Decimal(month * 1000), Decimal(month * 400))
        for month in range(1, 13)
    ]
    svg = str(receivables_chart.render(points, currency="usd", title_id="t"))
    assert svg.count("<rect") == 12 * 2 + 2  # two per month, two in the legend
    assert "Dec 2026: collected 4,800.00 USD, outstanding 7,200.00 USD" in svg
    # The axis goes to the next 1/2/5 x 10^n above December's 12,000: 20,000, in quarters.
    assert ">20000.00<" in svg
    assert ">15000.00<" in svg
    assert ">0.00<" in svg
    assert "<desc" in svg
    assert "Now: collected 4,800.00 USD, outstanding 7,200.00 USD." in svg


def _csv(response: object) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.DictReader(io.StringIO(body)))


def test_exports_round_trip_the_ledger_exactly_with_the_list_filters() -> None:
    conference, other = _conference("export"), _conference("hidden")
    now = timezone.now()
    generate(conference, count=150, now=now, seed=31)
    generate(other, count=20, now=now, seed=32)
    client = _person(conference, Role.VIEWER, "accountant")

    ledger = _csv(client.get(reverse("admin:invoicing_purchaseorder_export_ledger")))
    entries = PurchaseOrderPayment.objects.filter(purchase_order__conference=conference)
    assert len(ledger) == entries.count() > 100
    by_id = {str(entry.pk): entry for entry in entries.select_related("purchase_order")}
    for row in ledger:
        entry = by_id[row["entry_id"]]
        assert Decimal(row["amount"]) == entry.amount  # exact, as stored
        decimals = {"USD": 2, "JPY": 0, "KWD": 3}[row["currency"]]
        assert len(row["amount"].partition(".")[2]) == decimals, row
        assert datetime.date.fromisoformat(row["payment_date"]) == entry.payment_date
        assert row["po_reference"] == entry.purchase_order.reference
        assert not row["reference"].startswith(("-", "@", "="))  # never a formula

    listed = _csv(
        client.get(reverse("admin:invoicing_purchaseorder_export") + "?receivables=outstanding")
    )
    want = expected_figures(conference, now=now)
    for currency, figures in want.items():
        rows = [r for r in listed if r["currency"] == currency.upper()]
        assert sum((Decimal(r["balance"]) for r in rows), Decimal(0)) == figures.outstanding
    assert {r["conference"] for r in listed} == {"export"}
    assert all(not r["organization"].startswith("=") for r in listed)

    # Without a filter: every PO of the person's conferences, none of another's.
    everything = _csv(client.get(reverse("admin:invoicing_purchaseorder_export")))
    assert len(everything) == PurchaseOrder.objects.filter(conference=conference).count()


def test_export_with_a_filter_the_list_does_not_know_is_refused() -> None:
    conference = _conference("badfilter")
    client = _person(conference, Role.VIEWER, "curious")
    response = client.get(
        reverse("admin:invoicing_purchaseorder_export") + "?conference__stripe_secret_key=x"
    )
    assert response.status_code == 400


def _po_with(conference: Conference, reference: str, status: str, total: str) -> PurchaseOrder:
    po = PurchaseOrder.objects.create(
        conference=conference,
        reference=reference,
        organization_name="Initech",
        contact_email="ap@example.com",
        currency="usd",
        status=status,
    )
    PurchaseOrderLineItem.objects.create(
        purchase_order=po, position=1, description="Booth", quantity=1, unit_price=Decimal(total)
    )
    return po


def test_export_balance_and_credited_are_the_admins() -> None:
    conference = _conference("export-words")
    # Cancelled before any invoice or payment: the admin says it owes nothing.
    _po_with(conference, "DEMO-1005", PurchaseOrder.Status.CANCELLED, "1500.00")
    reduced = _po_with(conference, "DEMO-1006", PurchaseOrder.Status.PARTIALLY_PAID, "1500.00")
    PurchaseOrderCredit.objects.create(
        purchase_order=reduced,
        stripe_credit_note_id="cn_1",
        stripe_invoice_id="in_1",
        amount=Decimal("500.00"),
        purpose=PurchaseOrderCredit.Purpose.REDUCE,
    )
    PurchaseOrderCredit.objects.create(  # a re-issue's moved remainder: not counted
        purchase_order=reduced,
        stripe_credit_note_id="cn_2",
        stripe_invoice_id="in_0",
        amount=Decimal("1500.00"),
        purpose=PurchaseOrderCredit.Purpose.REISSUE,
    )
    PurchaseOrderPayment.objects.create(
        purchase_order=reduced,
        amount=Decimal("300.00"),
        method="wire",
        payment_date=datetime.date(2026, 1, 5),
    )
    # Paid 1,500.00 at Stripe, 400.00 of it refunded: owed no more, so nothing is due.
    refunded = _po_with(conference, "DEMO-1007", PurchaseOrder.Status.PAID, "1500.00")
    PurchaseOrderPayment.objects.create(
        purchase_order=refunded,
        amount=Decimal("1500.00"),
        method="stripe",
        payment_date=datetime.date(2026, 1, 5),
        stripe_invoice_id="in_7",
        stripe_amount_paid_after=150000,
    )
    PurchaseOrderPayment.objects.create(
        purchase_order=refunded,
        kind=PurchaseOrderPayment.Kind.REFUND,
        amount=Decimal("-400.00"),
        method="stripe",
        payment_date=datetime.date(2026, 1, 9),
        stripe_invoice_id="in_7",
        stripe_object_id="re_7",
    )
    client = _person(conference, Role.VIEWER, "accountant")

    response = client.get(reverse("admin:invoicing_purchaseorder_export"))
    rows = {row["reference"]: row for row in _csv(response)}

    assert list(rows["DEMO-1005"])[-3:] == ["cancelled_at", "credited", "given_back"]  # appended
    changelist = client.get(reverse("admin:invoicing_purchaseorder_changelist")).content.decode()
    assert "nothing (cancelled)" in changelist
    assert rows["DEMO-1005"]["balance"] == "0.00"
    assert rows["DEMO-1005"]["credited"] == "0.00"
    row = rows["DEMO-1006"]
    assert (row["total"], row["credited"], row["received"], row["balance"]) == (
        "1500.00",
        "500.00",
        "300.00",
        "700.00",
    )
    assert reduced.amount_credited == Decimal("500.00")  # the figure the PO page shows
    row = rows["DEMO-1007"]
    assert (row["total"], row["given_back"], row["received"], row["balance"]) == (
        "1500.00",
        "400.00",
        "1100.00",
        "0.00",
    )
    assert refunded.balance_due == 0  # the PO page's figure
