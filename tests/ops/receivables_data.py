"""A generated conference ledger for the receivables tests: POs in every state, in three
currencies (2, 0 and 3 decimals), paid in part, in full and beyond, due at every age.

Rows are bulk-inserted (a test fixture, not the app's write path) so that 10,000 POs take
seconds; the expectations are computed in Python from the rows read back
(:func:`expected_figures`), never with the queries under test.
"""

from __future__ import annotations

import datetime
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
)
from invoicing.selectors_overview import INVOICED_STATUSES, OWED_STATUSES, month_starts

Status = PurchaseOrder.Status
# Amount steps per currency: what each one's decimals allow.
CURRENCIES = {"usd": Decimal("0.01"), "jpy": Decimal(1), "kwd": Decimal("0.010")}


def generate(
    conference: Conference,
    *,
    count: int,
    now: datetime.datetime,
    seed: int = 7,
    currencies: tuple[str, ...] = tuple(CURRENCIES),
) -> None:
    """``count`` POs of ``conference`` with lines and ledger entries, deterministic per seed."""
    rng = random.Random(seed)
    statuses = list(Status.values)
    pos = []
    for index in range(count):
        status = rng.choice(statuses)
        currency = rng.choice(currencies)
        invoiced = status not in {Status.DRAFT, Status.APPROVED} and rng.random() < 0.97
        finalized = now - datetime.timedelta(
            days=rng.randint(0, 420), seconds=rng.randint(0, 86399)
        )
        pos.append(
            PurchaseOrder(
                conference=conference,
                reference=f"GEN-{index:05d}",
                organization_name=rng.choice(["Initech", "=cmd|' /C calc'!A0", "Globex GmbH"]),
                contact_email=f"ap{index}@example.com",
                currency=currency,
                status=status,
                invoice_finalized_at=finalized if invoiced else None,
                invoice_due_at=(
                    finalized + datetime.timedelta(days=rng.choice([14, 30, 45]))
                    if invoiced
                    else None
                ),
                stripe_invoice_id=f"in_gen_{conference.pk}_{index}" if invoiced else "",
                invoice_error="card declined" if rng.random() < 0.03 else "",
                invoice_creation_blocked=status == Status.APPROVED and rng.random() < 0.2,
            )
        )
    PurchaseOrder.objects.bulk_create(pos, batch_size=2000)
    lines, payments = [], []
    for po in pos:
        step = CURRENCIES[po.currency]
        total = Decimal(0)
        for position in range(1, rng.randint(1, 3) + 1):
            unit = step * rng.randint(1, 500_000)
            quantity = rng.randint(1, 4)
            total += unit * quantity
            lines.append(
                PurchaseOrderLineItem(
                    purchase_order=po,
                    position=position,
                    description="Sponsorship",
                    quantity=quantity,
                    unit_price=unit,
                )
            )
        if po.status == Status.DRAFT:
            continue
        share = rng.choice([0, 0, 0.3, 0.5, 1, 1, 1.2])
        to_pay = (total * Decimal(str(share))).quantize(step)
        paid_after = 0
        while to_pay > 0:
            part = min(to_pay, (total * Decimal("0.4")).quantize(step) or step)
            to_pay -= part
            stripe = rng.random() < 0.6 and bool(po.stripe_invoice_id)
            minor = int(part / step) * (10 if po.currency == "kwd" else 1)
            paid_after += minor
            payments.append(
                PurchaseOrderPayment(
                    purchase_order=po,
                    amount=part,
                    method="stripe" if stripe else rng.choice(["wire", "check", "other"]),
                    reference=rng.choice(["WIRE-1", "-42", "@ref"]),
                    payment_date=(now - datetime.timedelta(days=rng.randint(0, 400))).date(),
                    stripe_invoice_id=po.stripe_invoice_id if stripe else "",
                    stripe_amount_paid_after=paid_after if stripe else None,
                )
            )
    PurchaseOrderLineItem.objects.bulk_create(lines, batch_size=5000)
    PurchaseOrderPayment.objects.bulk_create(payments, batch_size=5000)


@dataclass
class Expected:
    purchase_orders: int = 0
    invoiced: Decimal = Decimal(0)
    collected: Decimal = Decimal(0)
    outstanding: Decimal = Decimal(0)
    overdue: dict[str, Decimal] = field(
        default_factory=lambda: dict.fromkeys(("0-30", "31-60", "61-90", "90+"), Decimal(0))
    )
    overdue_count: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("0-30", "31-60", "61-90", "90+"), 0)
    )
    attention: int = 0
    chart: dict[datetime.date, tuple[Decimal, Decimal]] = field(default_factory=dict)


def _age(days: int) -> str:
    if days <= 30:
        return "0-30"
    if days <= 60:
        return "31-60"
    return "61-90" if days <= 90 else "90+"


def expected_figures(conference: Conference, *, now: datetime.datetime) -> dict[str, Expected]:
    """The overview's figures, recomputed row by row in Python from the POs and the ledger."""
    result: dict[str, Expected] = defaultdict(Expected)
    chart_rows: dict[str, list[tuple[str, datetime.date, Decimal]]] = defaultdict(list)
    today = now.date()
    for po in PurchaseOrder.objects.filter(conference=conference).prefetch_related(
        "line_items", "payments"
    ):
        figures = result[po.currency]
        total = sum((line.unit_price * line.quantity for line in po.line_items.all()), Decimal(0))
        received = sum((payment.amount for payment in po.payments.all()), Decimal(0))
        balance = total - received
        figures.purchase_orders += 1
        figures.collected += received
        if po.status in INVOICED_STATUSES:
            figures.invoiced += total
            if po.invoice_finalized_at is not None and po.invoice_finalized_at <= now:
                month = po.invoice_finalized_at.date().replace(day=1)
                chart_rows[po.currency].append(("invoiced", month, total))
            for payment in po.payments.all():
                if payment.payment_date <= today:
                    month = payment.payment_date.replace(day=1)
                    chart_rows[po.currency].append(("collected", month, payment.amount))
        if po.status in OWED_STATUSES and balance > 0:
            figures.outstanding += balance
            if po.invoice_due_at is not None and po.invoice_due_at < now:
                age = _age((now - po.invoice_due_at).days)
                figures.overdue[age] += balance
                figures.overdue_count[age] += 1
        if (
            po.invoice_creation_blocked
            or po.invoice_error
            or po.status in {Status.INVOICE_VOIDED, Status.INVOICE_UNCOLLECTIBLE, Status.OVERPAID}
        ):
            figures.attention += 1
    for currency, rows in chart_rows.items():
        for start in month_starts(now, 12):
            invoiced = sum(
                (a for kind, m, a in rows if kind == "invoiced" and m <= start), Decimal(0)
            )
            collected = sum(
                (a for kind, m, a in rows if kind == "collected" and m <= start), Decimal(0)
            )
            result[currency].chart[start] = (invoiced, collected)
    return dict(result)
