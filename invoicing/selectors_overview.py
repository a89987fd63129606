"""Receivables: what a conference invoiced, collected and is still owed, aged, in two queries.

Every figure is aggregated by the database over one queryset of the conference's POs, annotated
with the same money columns the PO list shows (:func:`with_money_totals`), so a change to what a
PO's total or received amount means (credits, refunds) is made there once and reaches the list,
the overview and the exports alike.

Definitions (README, "What an organizer can do in the admin"):

- **invoiced**: the totals of POs whose invoice was issued (invoiced, part paid, paid, overpaid,
  or voided/uncollectible and waiting to be re-issued or cancelled);
- **collected**: every ledger entry, all methods, cancelled POs included (the money moved);
- **outstanding**: the positive balances of POs that are still owed (invoiced, part paid,
  voided/uncollectible); **overdue**: the part of it whose invoice's due date has passed, by age.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from django.db.models import (
    Case,
    Count,
    DateField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest, TruncMonth
from django.utils import timezone

from invoicing.models import (
    COUNTED_CREDIT_PURPOSES,
    MONEY_OUTPUT,
    REFUND_KINDS,
    ZERO,
    Conference,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
)

Status = PurchaseOrder.Status

OWED_STATUSES: Final = (
    Status.INVOICED,
    Status.PARTIALLY_PAID,
    Status.INVOICE_VOIDED,
    Status.INVOICE_UNCOLLECTIBLE,
)
INVOICED_STATUSES: Final = (*OWED_STATUSES, Status.PAID, Status.OVERPAID)

# POs a person has to look at: a blocked creation, a failed background action, an invoice that
# is void or uncollectible (re-issue or cancel), or more money received than asked for.
NEEDS_ATTENTION: Final = (
    Q(invoice_creation_blocked=True)
    | ~Q(invoice_error="")
    | Q(status__in=[Status.INVOICE_VOIDED, Status.INVOICE_UNCOLLECTIBLE, Status.OVERPAID])
)


@dataclass(frozen=True)
class AgeRange:
    """Days past the invoice's due date, both ends included (``last=None``: no upper end)."""

    slug: str
    label: str
    first: int
    last: int | None

    def due_between(self, now: datetime.datetime) -> Q:
        """Invoices due within this range of days before ``now`` (whole days past due)."""
        # d whole days past due <=> now - (d + 1) days < due <= now - d days.
        condition = Q(invoice_due_at__lte=now - datetime.timedelta(days=self.first))
        if self.first == 0:
            condition = Q(invoice_due_at__lt=now)
        if self.last is not None:
            condition &= Q(invoice_due_at__gt=now - datetime.timedelta(days=self.last + 1))
        return condition


AGE_RANGES: Final = (
    AgeRange("0-30", "0-30 days", 0, 30),
    AgeRange("31-60", "31-60 days", 31, 60),
    AgeRange("61-90", "61-90 days", 61, 90),
    AgeRange("90+", "over 90 days", 91, None),
)
AGE_RANGE_BY_SLUG: Final[Mapping[str, AgeRange]] = {age.slug: age for age in AGE_RANGES}


def with_money_totals(queryset: QuerySet[PurchaseOrder]) -> QuerySet[PurchaseOrder]:
    """Annotate the admin's money columns (``admin_total``, ``_credited``, ``_given_back``,
    ``_owed``, ``_paid``, ``_balance``).

    The SQL twin of ``PurchaseOrder.total`` (plus the invoice's tax) / ``amount_credited`` /
    ``amount_owed`` (:func:`~invoicing.models.owed_after_refunds`) / ``amount_received`` (net) /
    ``balance_due``, one query for any number of POs.
    """
    line_total = (
        PurchaseOrderLineItem.objects.filter(purchase_order=OuterRef("pk"))
        .order_by()
        .values("purchase_order")
        .annotate(
            total=Sum(ExpressionWrapper(F("quantity") * F("unit_price"), output_field=MONEY_OUTPUT))
        )
        .values("total")
    )
    paid_total = (
        PurchaseOrderPayment.objects.filter(purchase_order=OuterRef("pk"))
        .order_by()
        .values("purchase_order")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    refunds_total = (
        PurchaseOrderPayment.objects.filter(purchase_order=OuterRef("pk"), kind__in=REFUND_KINDS)
        .order_by()
        .values("purchase_order")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    credited_total = (
        PurchaseOrderCredit.objects.filter(
            purchase_order=OuterRef("pk"),
            voided_at__isnull=True,
            purpose__in=COUNTED_CREDIT_PURPOSES,
        )
        .order_by()
        .values("purchase_order")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    zero = Value(ZERO, output_field=MONEY_OUTPUT)
    return (
        queryset.annotate(
            # What the company is asked for: the lines plus any tax Stripe Tax put on the invoice.
            admin_total=Coalesce(Subquery(line_total, output_field=MONEY_OUTPUT), zero)
            + Coalesce(F("stripe_invoice_tax"), zero),
            admin_paid=Coalesce(Subquery(paid_total, output_field=MONEY_OUTPUT), zero),
            admin_credited=Coalesce(Subquery(credited_total, output_field=MONEY_OUTPUT), zero),
            admin_refunded=-Coalesce(Subquery(refunds_total, output_field=MONEY_OUTPUT), zero),
        )
        .annotate(
            # owed_after_refunds: a refund beyond what was held past the credited total lowers
            # what is owed (``admin_given_back``).
            admin_held_beyond_owed=Greatest(
                F("admin_paid") + F("admin_refunded") - F("admin_total") + F("admin_credited"),
                zero,
                output_field=MONEY_OUTPUT,
            )
        )
        .annotate(
            admin_given_back=Greatest(
                F("admin_refunded") - F("admin_held_beyond_owed"),
                zero,
                output_field=MONEY_OUTPUT,
            )
        )
        .annotate(
            admin_owed=ExpressionWrapper(
                F("admin_total") - F("admin_credited") - F("admin_given_back"),
                output_field=MONEY_OUTPUT,
            )
        )
        .annotate(
            admin_balance=ExpressionWrapper(
                F("admin_owed") - F("admin_paid"), output_field=MONEY_OUTPUT
            )
        )
    )


def owes_nothing(status: str) -> bool:
    """A cancelled PO owes nothing, whatever its lines add up to: its balance is shown as nil."""
    return status == Status.CANCELLED


def balance_owed(status: str, balance: Decimal) -> Decimal:
    """The balance the admin and the exports show: ``balance``, or zero when the PO owes nothing."""
    return ZERO if owes_nothing(status) else balance


def overdue(age: AgeRange | None, *, now: datetime.datetime) -> Q:
    """Owed POs with a positive balance, past due (within ``age``; None: any age).

    Needs :func:`with_money_totals` on the queryset (the balance).
    """
    condition = Q(status__in=OWED_STATUSES, admin_balance__gt=0)
    if age is None:
        return condition & Q(invoice_due_at__lt=now)
    return condition & age.due_between(now)


@dataclass(frozen=True)
class AgedAmount:
    age: AgeRange
    amount: Decimal
    count: int


@dataclass(frozen=True)
class CurrencyReceivables:
    """The figures of one currency (a conference's POs may be in several)."""

    currency: str
    purchase_orders: int
    invoiced: Decimal
    collected: Decimal
    outstanding: Decimal
    overdue: tuple[AgedAmount, ...]
    needs_attention: int

    @property
    def overdue_total(self) -> Decimal:
        return sum((aged.amount for aged in self.overdue), ZERO)

    @property
    def not_yet_due(self) -> Decimal:
        return self.outstanding - self.overdue_total


@dataclass(frozen=True)
class ChartPoint:
    """Cumulative figures at the end of ``month`` (the current month: now)."""

    month: datetime.date
    invoiced: Decimal
    collected: Decimal

    @property
    def outstanding(self) -> Decimal:
        return max(self.invoiced - self.collected, ZERO)


@dataclass(frozen=True)
class ReceivablesOverview:
    conference: Conference
    as_of: datetime.datetime
    currencies: tuple[CurrencyReceivables, ...]
    history: Mapping[str, tuple[ChartPoint, ...]]


def receivables_overview(
    conference: Conference, *, now: datetime.datetime | None = None, months: int = 12
) -> ReceivablesOverview:
    """The conference's receivables now and month by month; two queries whatever its size."""
    now = now or timezone.now()
    return ReceivablesOverview(
        conference=conference,
        as_of=now,
        currencies=_current_figures(conference, now=now),
        history=_history(conference, now=now, months=months),
    )


def _current_figures(
    conference: Conference, *, now: datetime.datetime
) -> tuple[CurrencyReceivables, ...]:
    zero = Value(ZERO, output_field=MONEY_OUTPUT)
    positive_balance = Greatest(F("admin_balance"), zero)
    owed = Q(status__in=OWED_STATUSES)
    aggregates: dict[str, Any] = {
        "purchase_orders": Count("pk"),
        "invoiced": Sum(
            Case(
                When(status__in=INVOICED_STATUSES, then=F("admin_owed")),
                default=zero,
                output_field=MONEY_OUTPUT,
            )
        ),
        "collected": Sum("admin_paid"),
        "outstanding": Sum(Case(When(owed, then=positive_balance), default=zero)),
        "needs_attention": Count("pk", filter=NEEDS_ATTENTION),
    }
    for index, age in enumerate(AGE_RANGES):
        in_range = overdue(age, now=now)
        aggregates[f"age{index}_amount"] = Sum(
            Case(When(in_range, then=F("admin_balance")), default=zero, output_field=MONEY_OUTPUT)
        )
        aggregates[f"age{index}_count"] = Count("pk", filter=in_range)
    rows = (
        with_money_totals(PurchaseOrder.objects.filter(conference=conference).order_by())
        .values("currency")
        .annotate(**aggregates)
        .order_by("currency")
    )
    return tuple(
        CurrencyReceivables(
            currency=row["currency"],
            purchase_orders=row["purchase_orders"],
            invoiced=row["invoiced"] or ZERO,
            collected=row["collected"] or ZERO,
            outstanding=row["outstanding"] or ZERO,
            overdue=tuple(
                AgedAmount(age, row[f"age{i}_amount"] or ZERO, row[f"age{i}_count"])
                for i, age in enumerate(AGE_RANGES)
            ),
            needs_attention=row["needs_attention"],
        )
        for row in rows
    )


def month_starts(now: datetime.datetime, months: int) -> list[datetime.date]:
    """The first days of the last ``months`` months, the current one last."""
    year, month = now.year, now.month
    starts: list[datetime.date] = []
    for _ in range(months):
        starts.append(datetime.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def _history(
    conference: Conference, *, now: datetime.datetime, months: int
) -> dict[str, tuple[ChartPoint, ...]]:
    """Invoiced (by finalization) and collected (by payment date) to date, at each month's end.

    Cumulative, so the last point is today's: the invoiced totals of POs that are invoiced now,
    and what the ledger holds for them. Overpayments net against what other POs owe.
    """
    zero = Value(ZERO, output_field=MONEY_OUTPUT)
    payments = (
        PurchaseOrderPayment.objects.filter(
            purchase_order__conference=conference,
            purchase_order__status__in=INVOICED_STATUSES,
            payment_date__lte=timezone.localdate(now),
        )
        .order_by()
        .annotate(
            series=Value("collected"),
            cur=F("purchase_order__currency"),
            month=TruncMonth("payment_date", output_field=DateField()),
        )
        .values("series", "cur", "month")
        .annotate(amount=Sum("amount"))
    )
    invoices = (
        with_money_totals(
            PurchaseOrder.objects.filter(
                conference=conference,
                status__in=INVOICED_STATUSES,
                invoice_finalized_at__lte=now,
            ).order_by()
        )
        .annotate(
            series=Value("invoiced"),
            cur=F("currency"),
            month=TruncMonth("invoice_finalized_at", output_field=DateField()),
        )
        .values("series", "cur", "month")
        .annotate(amount=Coalesce(Sum("admin_owed"), zero))
    )
    sums: dict[str, dict[str, dict[datetime.date, Decimal]]] = defaultdict(
        lambda: {"invoiced": defaultdict(Decimal), "collected": defaultdict(Decimal)}
    )
    for row in payments.union(invoices, all=True):
        sums[row["cur"]][row["series"]][row["month"]] += row["amount"] or ZERO
    starts = month_starts(now, months)
    history: dict[str, tuple[ChartPoint, ...]] = {}
    for currency in sorted(sums):
        by_kind = sums[currency]
        points = []
        for start in starts:
            invoiced = sum((v for m, v in by_kind["invoiced"].items() if m <= start), ZERO)
            collected = sum((v for m, v in by_kind["collected"].items() if m <= start), ZERO)
            points.append(ChartPoint(month=start, invoiced=invoiced, collected=collected))
        history[currency] = tuple(points)
    return history
