"""The receivables overview of one conference, and the PO list filter its figures link to.

The page is the conference's (``/admin/invoicing/conference/<id>/receivables/``): the scoped
``get_object`` answers 404 for a conference the person holds no role in, as for every page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from invoicing import money
from invoicing.admin import receivables_chart
from invoicing.models import Conference, PurchaseOrder
from invoicing.selectors_overview import (
    AGE_RANGE_BY_SLUG,
    AGE_RANGES,
    NEEDS_ATTENTION,
    OWED_STATUSES,
    overdue,
    receivables_overview,
)

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[Conference]
else:
    _Base = object

# The PO list filter's values (``?receivables=...``), beside the age ranges' slugs.
OUTSTANDING, OVERDUE, ATTENTION = "outstanding", "overdue", "attention"


class ReceivablesFilter(admin.SimpleListFilter):
    """Outstanding, overdue (by age) and needing attention: the overview's figures as a list."""

    title = "receivables"
    parameter_name = "receivables"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (OUTSTANDING, "Outstanding"),
            (OVERDUE, "Overdue"),
            *[(age.slug, f"Overdue {age.label}") for age in AGE_RANGES],
            (ATTENTION, "Needs attention (also void, uncollectible, overpaid)"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> QuerySet[PurchaseOrder]:
        value = self.value()
        now = timezone.now()
        if value == OUTSTANDING:
            return queryset.filter(Q(status__in=OWED_STATUSES, admin_balance__gt=0))
        if value == OVERDUE:
            return queryset.filter(overdue(None, now=now))
        if value is not None and value in AGE_RANGE_BY_SLUG:
            return queryset.filter(overdue(AGE_RANGE_BY_SLUG[value], now=now))
        if value == ATTENTION:
            return queryset.filter(NEEDS_ATTENTION)
        return queryset


def po_list_url(conference: Conference, **filters: str) -> str:
    """The PO list of one conference, filtered as the admin's own filters understand it."""
    query = {"conference__id__exact": str(conference.pk), **filters}
    return f"{reverse('admin:invoicing_purchaseorder_changelist')}?{urlencode(query)}"


class ReceivablesViews(_Base):
    """Adds the overview page to the conference admin."""

    def get_urls(self) -> list[URLPattern]:
        overview = path(
            "<path:object_id>/receivables/",
            self.admin_site.admin_view(self.receivables_view),
            name="invoicing_conference_receivables",
        )
        return [overview, *super().get_urls()]

    @admin.display(description="Receivables")
    def receivables_link(self, obj: Conference) -> SafeString:
        url = reverse("admin:invoicing_conference_receivables", args=[obj.pk])
        return format_html('<a href="{}">Overview</a>', url)

    def receivables_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        conference = self.get_object(request, object_id)  # scoped: 404 for another team's
        if conference is None or not self.has_view_permission(request, conference):
            raise PermissionDenied
        overview = receivables_overview(conference)
        sections = []
        for figures in overview.currencies:
            code = figures.currency

            def fmt(value: Any, code: str = code) -> str:
                return money.format_display(value, code)

            points = overview.history.get(code, ())
            sections.append(
                {
                    "figures": figures,
                    "currency": code.upper(),
                    "invoiced": fmt(figures.invoiced),
                    "collected": fmt(figures.collected),
                    "outstanding": fmt(figures.outstanding),
                    "not_yet_due": fmt(figures.not_yet_due),
                    "overdue_total": fmt(figures.overdue_total),
                    "ages": [
                        {
                            "label": aged.age.label,
                            "amount": fmt(aged.amount),
                            "count": aged.count,
                            "url": po_list_url(
                                conference, receivables=aged.age.slug, currency=code
                            ),
                        }
                        for aged in figures.overdue
                    ],
                    "chart": receivables_chart.render(
                        points, currency=code, title_id=f"chart-{code}"
                    ),
                    "points": [
                        {
                            "month": point.month,
                            "invoiced": fmt(point.invoiced),
                            "collected": fmt(point.collected),
                            "outstanding": fmt(point.outstanding),
                        }
                        for point in points
                    ],
                    "outstanding_url": po_list_url(
                        conference, receivables=OUTSTANDING, currency=code
                    ),
                    "overdue_url": po_list_url(conference, receivables=OVERDUE, currency=code),
                    "attention_url": po_list_url(conference, receivables=ATTENTION, currency=code),
                    "all_url": po_list_url(conference, currency=code),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Receivables of {conference.name}",
            "conference": conference,
            "as_of": overview.as_of,
            "sections": sections,
            "conference_url": reverse("admin:invoicing_conference_change", args=[conference.pk]),
        }
        return TemplateResponse(request, "admin/invoicing/conference/receivables.html", context)
