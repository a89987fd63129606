"""CSV exports of the PO list and of its ledger, for the accountant, with the list's filters.

The links sit on the PO list and carry its query string, so the export holds exactly the POs the
list shows (the person's conferences, the filters, the search) on every page of it. Amounts are
bare numbers in each currency's own decimals (USD ``5000.00``, JPY ``5000``, KWD ``5.120``),
never rounded; dates and times are ISO 8601 (UTC). Rows are streamed, so a list of any length
costs the web process a constant amount of memory.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import BadRequest, PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone

from invoicing import money
from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.selectors_overview import balance_owed

if TYPE_CHECKING:
    from django.contrib import admin

    _Base = admin.ModelAdmin[PurchaseOrder]
else:
    _Base = object

_CHUNK = 2000
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

PURCHASE_ORDER_COLUMNS = (
    "conference",
    "reference",
    "organization",
    "contact_email",
    "status",
    "currency",
    "total",
    "received",
    "balance",
    "approved_at",
    "invoice_number",
    "invoice_id",
    "invoice_due_date",
    "cancelled_at",
    "credited",
    "given_back",
)
# The annotations come from ``with_money_totals`` (invoicing/selectors_overview.py).
_PURCHASE_ORDER_FIELDS = (
    "conference__slug",
    "reference",
    "organization_name",
    "contact_email",
    "status",
    "currency",
    "admin_total",
    "admin_paid",
    "admin_balance",
    "approved_at",
    "stripe_invoice_number",
    "stripe_invoice_id",
    "invoice_due_at",
    "cancelled_at",
    "admin_credited",
    "admin_given_back",
)
# The entry's kind as the PO page names it ("Moved to the customer's credit balance (Stripe)").
_KIND_LABELS = dict(PurchaseOrderPayment.Kind.choices)
LEDGER_COLUMNS = (
    "conference",
    "po_reference",
    "organization",
    "currency",
    "payment_date",
    "amount",
    "kind",
    "method",
    "reference",
    "stripe_invoice_id",
    "recorded_at",
    "entry_id",
)


def text(value: str) -> str:
    """A text cell a spreadsheet shows as text, never evaluates (CSV injection)."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def iso(value: datetime.datetime | datetime.date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat()
    return value.isoformat()


def purchase_order_rows(queryset: QuerySet[PurchaseOrder]) -> Iterator[list[str]]:
    """The header, then one row per PO (``queryset`` annotated by ``with_money_totals``)."""
    yield list(PURCHASE_ORDER_COLUMNS)
    rows = queryset.values_list(*_PURCHASE_ORDER_FIELDS)
    for (
        slug,
        reference,
        organization,
        email,
        status,
        currency,
        total,
        paid,
        balance,
        approved_at,
        number,
        invoice_id,
        due_at,
        cancelled_at,
        credited,
        given_back,
    ) in rows.iterator(chunk_size=_CHUNK):
        yield [
            slug,
            text(reference),
            text(organization),
            text(email),
            status,
            currency.upper(),
            money.plain_amount(total, currency),
            money.plain_amount(paid, currency),
            # The admin's balance: a cancelled PO owes nothing, whatever its lines add up to.
            money.plain_amount(balance_owed(status, balance), currency),
            iso(approved_at),
            text(number),
            invoice_id,
            iso(due_at.astimezone(datetime.UTC).date()) if due_at else "",
            iso(cancelled_at),
            # Counted credit notes and refunds owed no more (owed_after_refunds), so that
            # total - credited - given_back - received = balance (unless cancelled).
            money.plain_amount(credited, currency),
            money.plain_amount(given_back, currency),
        ]


def ledger_rows(purchase_orders: QuerySet[PurchaseOrder]) -> Iterator[list[str]]:
    """The header, then every ledger entry of those POs, by PO and then as recorded."""
    yield list(LEDGER_COLUMNS)
    entries = (
        PurchaseOrderPayment.objects.filter(
            purchase_order__in=purchase_orders.order_by().values("pk")
        )
        .order_by("purchase_order__conference__slug", "purchase_order__reference", "pk")
        .values_list(
            F("purchase_order__conference__slug"),
            F("purchase_order__reference"),
            F("purchase_order__organization_name"),
            F("purchase_order__currency"),
            "payment_date",
            "amount",
            "kind",
            "method",
            "reference",
            "stripe_invoice_id",
            "recorded_at",
            "pk",
        )
    )
    for (
        slug,
        po_reference,
        organization,
        currency,
        payment_date,
        amount,
        kind,
        method,
        reference,
        invoice_id,
        recorded_at,
        pk,
    ) in entries.iterator(chunk_size=_CHUNK):
        yield [
            slug,
            text(po_reference),
            text(organization),
            currency.upper(),
            iso(payment_date),
            money.plain_amount(amount, currency),
            _KIND_LABELS.get(kind, kind),
            method,
            text(reference),
            invoice_id,
            iso(recorded_at),
            str(pk),
        ]


class _Echo:
    """A file whose write returns the line: csv.writer then yields each row as it is formatted."""

    def write(self, value: str) -> str:
        return value


def csv_response(rows: Iterable[list[str]], *, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class PurchaseOrderExports(_Base):
    """The two export views of the PO admin; both read the changelist as the person sees it."""

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "export/purchase-orders.csv",
                wrap(self.export_purchase_orders_view),
                name="invoicing_purchaseorder_export",
            ),
            path(
                "export/ledger.csv",
                wrap(self.export_ledger_view),
                name="invoicing_purchaseorder_export_ledger",
            ),
            *super().get_urls(),
        ]

    def _listed(self, request: HttpRequest) -> QuerySet[PurchaseOrder]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The changelist's own queryset: scoped, filtered and searched, before pagination.
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            message = "Those filters are not the list's own; export from the list."
            raise BadRequest(message) from None
        queryset: QuerySet[PurchaseOrder] = changelist.queryset
        return queryset

    def _stamp(self) -> str:
        return timezone.now().strftime("%Y%m%d-%H%M%S")

    def export_purchase_orders_view(self, request: HttpRequest) -> StreamingHttpResponse:
        return csv_response(
            purchase_order_rows(self._listed(request)),
            filename=f"purchase-orders-{self._stamp()}.csv",
        )

    def export_ledger_view(self, request: HttpRequest) -> StreamingHttpResponse:
        return csv_response(
            ledger_rows(self._listed(request)), filename=f"ledger-{self._stamp()}.csv"
        )
