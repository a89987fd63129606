"""The end-of-test check every whole-stack test runs: Stripe's state (the emulator) against ours.

Invariant 1 (one invoice per PO) and invariant 2 (the ledger equals Stripe) are checked from
both sides: every invoice the emulator holds for a conference is matched to its PO through the
metadata our code writes, and every PO's Stripe payments are summed per invoice. A PO whose
invoice was voided (and not yet re-issued) has no payable invoice; its mirror must say ``void``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Sum

from invoicing import money
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from tests.stripe_emulator.handle import EmulatorHandle

# Invoices that can still be paid or already were: a PO generation must have exactly one.
_LIVE_STATUSES = frozenset({"open", "paid", "uncollectible"})


@dataclass
class ConsistencyReport:
    """What the comparison found; ``problems`` is empty when Stripe and our ledger agree."""

    invoices: int = 0
    purchase_orders: int = 0
    stripe_payments: int = 0
    problems: list[str] = field(default_factory=list)

    def assert_consistent(self) -> None:
        """Fail with every problem listed, not only the first."""
        assert not self.problems, "Stripe and our ledger disagree:\n" + "\n".join(self.problems)


def compare_with_stripe(
    *, emulator: EmulatorHandle, conference: Conference, expect_invoiced: bool = True
) -> ConsistencyReport:
    """Compare one conference's POs with every invoice in its Stripe account.

    Args:
        emulator: the running emulator.
        conference: the conference whose Stripe account (its secret key) is compared.
        expect_invoiced: every approved PO must have a sent invoice by now (false while a test
            deliberately leaves some POs unapproved or cancelled).
    """
    report = ConsistencyReport()
    client = emulator.client(conference.stripe_secret_key)
    invoices = list(
        client.v1.invoices.list(
            {"limit": 100, "expand": ["data.amount_paid_off_stripe"]}
        ).auto_paging_iter()
    )
    report.invoices = len(invoices)

    by_generation: dict[tuple[str, str], list[str]] = defaultdict(list)
    voided: set[str] = set()
    amount_paid: dict[str, Decimal] = {}  # on Stripe: amount_paid - amount_paid_off_stripe
    off_stripe: dict[str, Decimal] = {}
    credit_applied: dict[str, Decimal] = {}
    for invoice in invoices:
        metadata = invoice.metadata.to_dict() if invoice.metadata is not None else {}
        uid = metadata.get("po_uid")
        if uid is None:
            continue  # not ours (another app on the same account)
        if metadata.get("conference") != conference.slug:
            report.problems.append(
                f"invoice {invoice.id} names conference {metadata.get('conference')!r}"
            )
        if invoice.status == "draft":
            report.problems.append(f"invoice {invoice.id} of PO uid {uid} is an orphan draft")
        if invoice.status in _LIVE_STATUSES:
            by_generation[(uid, metadata.get("generation", "?"))].append(invoice.id)
        elif invoice.status == "void":
            voided.add(invoice.id)
        on_stripe = invoice.amount_paid - (invoice.amount_paid_off_stripe or 0)
        amount_paid[invoice.id] = money.from_minor_units(on_stripe, invoice.currency)
        off_stripe[invoice.id] = money.from_minor_units(
            invoice.amount_paid_off_stripe or 0, invoice.currency
        )
        if invoice.status != "draft" and invoice.starting_balance < 0:
            applied = min(invoice.ending_balance or 0, 0) - invoice.starting_balance
            credit_applied[invoice.id] = money.from_minor_units(applied, invoice.currency)

    for key, ids in by_generation.items():
        if len(ids) != 1:
            report.problems.append(f"PO uid {key[0]} generation {key[1]} has invoices {ids}")

    purchase_orders = PurchaseOrder.objects.filter(conference=conference)
    report.purchase_orders = purchase_orders.count()
    for po in purchase_orders:
        if po.stripe_invoice_id in voided:
            # Voided and not (yet) re-issued: its generation has no payable invoice, by design.
            if po.stripe_invoice_status != "void":
                report.problems.append(
                    f"PO {po.reference} mirrors invoice {po.stripe_invoice_id} as "
                    f"{po.stripe_invoice_status!r}; Stripe has it void"
                )
        elif expect_invoiced and po.status != PurchaseOrder.Status.DRAFT:
            live = by_generation.get((str(po.uid), str(po.generation)), [])
            if po.stripe_invoice_id not in live:
                report.problems.append(
                    f"PO {po.reference} ({po.status}) records invoice {po.stripe_invoice_id!r}, "
                    f"Stripe has {live} for its generation {po.generation}"
                )
            if not po.stripe_invoice_url or po.invoice_sent_at is None:
                report.problems.append(f"PO {po.reference} has no sent invoice ({po.status})")

    recorded = (
        PurchaseOrderPayment.objects.filter(
            purchase_order__conference=conference, method=PurchaseOrderPayment.Method.STRIPE
        )
        .values("stripe_invoice_id")
        .annotate(total=Sum("amount"))
    )
    recorded_by_invoice: dict[str, Decimal] = {
        row["stripe_invoice_id"]: row["total"] for row in recorded
    }
    report.stripe_payments = PurchaseOrderPayment.objects.filter(
        purchase_order__conference=conference, method=PurchaseOrderPayment.Method.STRIPE
    ).count()
    for invoice_id in sorted(set(amount_paid) | set(recorded_by_invoice)):
        stripe_paid = amount_paid.get(invoice_id, Decimal(0))
        ours = recorded_by_invoice.get(invoice_id, Decimal(0))
        if ours != stripe_paid:
            report.problems.append(
                f"invoice {invoice_id}: Stripe amount_paid - amount_paid_off_stripe "
                f"{stripe_paid}, ledger {ours}"
            )
    _compare_off_stripe(report, conference, off_stripe=off_stripe, credit_applied=credit_applied)
    return report


def _compare_off_stripe(
    report: ConsistencyReport,
    conference: Conference,
    *,
    off_stripe: dict[str, Decimal],
    credit_applied: dict[str, Decimal],
) -> None:
    """Our off-Stripe entries per invoice equal its amount_paid_off_stripe; our credit-balance
    entries the customer balance Stripe applied to it."""
    Method = PurchaseOrderPayment.Method
    for methods, stripe_side, label in (
        ((Method.WIRE, Method.CHECK, Method.OTHER), off_stripe, "amount_paid_off_stripe"),
        ((Method.CREDIT_BALANCE,), credit_applied, "credit balance applied"),
    ):
        rows = (
            PurchaseOrderPayment.objects.filter(
                purchase_order__conference=conference, method__in=methods
            )
            .exclude(applied_invoice_id="")
            .values("applied_invoice_id")
            .annotate(total=Sum("amount"))
        )
        ours_by_invoice = {row["applied_invoice_id"]: row["total"] for row in rows}
        for invoice_id in sorted(set(ours_by_invoice) | {k for k, v in stripe_side.items() if v}):
            stripe_says = stripe_side.get(invoice_id, Decimal(0))
            ours = ours_by_invoice.get(invoice_id, Decimal(0))
            if ours != stripe_says:
                report.problems.append(
                    f"invoice {invoice_id}: Stripe {label} {stripe_says}, ledger {ours}"
                )
