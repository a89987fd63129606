"""The end-of-test check every whole-stack test runs: Stripe's state (the emulator) against ours.

Invariant 1 (one invoice per PO) and invariant 2 (the ledger equals Stripe) are checked from
both sides: every invoice the emulator holds for a conference is matched to its PO through the
metadata our code writes, and every PO's Stripe payments are summed per invoice. A PO whose
invoice was voided (and not yet re-issued) has no payable invoice; its mirror must say ``void``.
Money going back is compared per invoice too: our refund entries (net of reversals) with its
succeeded refunds, our dispute entries with the disputed funds withdrawn and not reinstated, our
credits with its credit notes that are not void. Money Stripe moved off an invoice without a
refund is compared too: our credit-balance entries with its ``amount_overpaid`` and with its
credit notes' customer balance credits, our paid-back-outside-Stripe entries with their
``out_of_band_amount`` (credit notes not void).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import stripe
from django.db.models import F, Sum

from invoicing import money
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderCredit, PurchaseOrderPayment
from invoicing.services.stripe_client import build_stripe_client
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
    # Through the app's client, so these reads share the account's rate budget with the app
    # (the emulator keeps Stripe's 25 requests/s sandbox limit on).
    client = build_stripe_client(conference)
    del emulator  # Stripe's side is read through the app's client (see above)
    invoices = list(
        client.v1.invoices.list(
            {"limit": 100, "expand": ["data.amount_paid_off_stripe"]}
        ).auto_paging_iter()
    )
    report.invoices = len(invoices)

    by_generation: dict[tuple[str, str], list[str]] = defaultdict(list)
    voided: set[str] = set()
    amount_paid: dict[str, Decimal] = {}  # on Stripe: amount_paid - amount_paid_off_stripe
    currencies: dict[str, str] = {}
    off_stripe: dict[str, Decimal] = {}
    credit_applied: dict[str, Decimal] = {}
    overpaid: dict[str, Decimal] = {}
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
        currencies[invoice.id] = invoice.currency
        off_stripe[invoice.id] = money.from_minor_units(
            invoice.amount_paid_off_stripe or 0, invoice.currency
        )
        overpaid[invoice.id] = money.from_minor_units(invoice.amount_overpaid, invoice.currency)
        # Voiding gives the applied balance back to the customer (API changelog 2019-12-03).
        if invoice.status not in ("draft", "void") and invoice.starting_balance < 0:
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
            purchase_order__conference=conference,
            method=PurchaseOrderPayment.Method.STRIPE,
            kind=PurchaseOrderPayment.Kind.PAYMENT,
        )
        .values("stripe_invoice_id")
        .annotate(total=Sum("amount"))
    )
    recorded_by_invoice: dict[str, Decimal] = {
        row["stripe_invoice_id"]: row["total"] for row in recorded
    }
    report.stripe_payments = PurchaseOrderPayment.objects.filter(
        purchase_order__conference=conference,
        method=PurchaseOrderPayment.Method.STRIPE,
        kind=PurchaseOrderPayment.Kind.PAYMENT,
    ).count()
    for invoice_id in sorted(set(amount_paid) | set(recorded_by_invoice)):
        stripe_paid = amount_paid.get(invoice_id, Decimal(0))
        ours = recorded_by_invoice.get(invoice_id, Decimal(0))
        if ours != stripe_paid:
            report.problems.append(
                f"invoice {invoice_id}: Stripe amount_paid - amount_paid_off_stripe "
                f"{stripe_paid}, ledger {ours}"
            )
    _compare_money_going_back(client, conference, currencies, report)
    _compare_off_stripe(report, conference, off_stripe=off_stripe, credit_applied=credit_applied)
    _compare_overpaid(report, conference, overpaid=overpaid)
    return report


def _compare_overpaid(
    report: ConsistencyReport, conference: Conference, *, overpaid: dict[str, Decimal]
) -> None:
    """What Stripe credited to the customer's balance from each overpaid invoice left its PO."""
    rows = (
        PurchaseOrderPayment.objects.filter(
            purchase_order__conference=conference, overpaid_after__isnull=False
        )
        .values("stripe_invoice_id")
        .annotate(total=Sum("amount"))
    )
    ours = {row["stripe_invoice_id"]: -row["total"] for row in rows}
    for invoice_id in sorted(set(ours) | {k for k, v in overpaid.items() if v}):
        stripe_says = overpaid.get(invoice_id, Decimal(0))
        mine = ours.get(invoice_id, Decimal(0))
        if mine != stripe_says:
            report.problems.append(
                f"invoice {invoice_id}: Stripe amount_overpaid {stripe_says}, moved to the "
                f"credit balance in the ledger {mine}"
            )


def money_going_back(
    client: stripe.StripeClient, invoice_ids: set[str]
) -> dict[str, dict[str, int]]:
    """Per invoice, from Stripe: succeeded refunds, disputed funds withdrawn and not reinstated,
    credit notes not void (minor units). Read account-wide: three lists, then the invoice
    payments only when something was refunded or disputed."""
    found: dict[str, dict[str, int]] = defaultdict(
        lambda: {
            "refunds": 0,
            "disputes": 0,
            "credits": 0,
            "credited to balance": 0,
            "paid back outside Stripe": 0,
        }
    )
    for note in client.v1.credit_notes.list({"limit": 100}).auto_paging_iter():
        invoice_id = note.invoice if isinstance(note.invoice, str) else note.invoice.id
        if invoice_id in invoice_ids and note.status != "void":
            found[invoice_id]["credits"] += note.amount
            out_of_band = note.out_of_band_amount or 0
            linked = sum(refund.amount_refunded for refund in note.refunds)
            found[invoice_id]["credited to balance"] += (
                note.post_payment_amount - out_of_band - linked
            )
            found[invoice_id]["paid back outside Stripe"] += out_of_band
    refunds = list(client.v1.refunds.list({"limit": 100}).auto_paging_iter())
    disputes = list(client.v1.disputes.list({"limit": 100}).auto_paging_iter())
    if not refunds and not disputes:
        return found
    invoice_of: dict[str, str] = {}
    for invoice_id in invoice_ids:
        for payment in client.v1.invoice_payments.list(
            {"invoice": invoice_id, "limit": 100}
        ).auto_paging_iter():
            if payment.payment.type == "payment_intent" and payment.payment.payment_intent:
                intent = payment.payment.payment_intent
                invoice_of[intent if isinstance(intent, str) else intent.id] = invoice_id
    for refund in refunds:
        refunded = invoice_of.get(str(refund.payment_intent))
        if refunded is not None and refund.status == "succeeded":
            found[refunded]["refunds"] += refund.amount
    for dispute in disputes:
        disputed = invoice_of.get(str(dispute.payment_intent))
        if disputed is not None:
            net = sum(txn.amount for txn in dispute.balance_transactions)
            found[disputed]["disputes"] += -net if net < 0 else 0
    return found


def _compare_money_going_back(
    client: stripe.StripeClient,
    conference: Conference,
    currencies: dict[str, str],
    report: ConsistencyReport,
) -> None:
    stripe_side = money_going_back(client, set(currencies))
    Kind = PurchaseOrderPayment.Kind
    buckets = {
        Kind.REFUND: "refunds",
        Kind.REFUND_REVERSAL: "refunds",
        Kind.DISPUTE: "disputes",
        Kind.DISPUTE_REINSTATEMENT: "disputes",
        Kind.TO_CREDIT_BALANCE: "credited to balance",
        Kind.TO_CREDIT_BALANCE_REVERSAL: "credited to balance",
        Kind.PAID_BACK_OFF_STRIPE: "paid back outside Stripe",
        Kind.PAID_BACK_OFF_STRIPE_REVERSAL: "paid back outside Stripe",
    }
    ours: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    entries = PurchaseOrderPayment.objects.filter(purchase_order__conference=conference).exclude(
        kind=Kind.PAYMENT
    )
    for entry in entries:
        if entry.kind == Kind.REFUND_OFF_STRIPE:
            continue  # paid back outside Stripe by the organizer: never at Stripe
        if entry.overpaid_after is not None:
            continue  # an overpaid invoice's excess: compared with amount_overpaid
        if entry.stripe_object_id and entry.stripe_object_id == entry.stripe_invoice_id:
            continue  # a voided invoice's balance given back: compared with the balance applied
        ours[entry.stripe_invoice_id][buckets[Kind(entry.kind)]] -= entry.amount
    credits = PurchaseOrderCredit.objects.filter(
        purchase_order__conference=conference, voided_at__isnull=True
    )
    for credit in credits:
        ours[credit.stripe_invoice_id]["credits"] += credit.amount
    for invoice_id in sorted(set(stripe_side) | set(ours)):
        currency = currencies.get(invoice_id, conference.currency)
        for bucket in stripe_side[invoice_id]:
            theirs = money.from_minor_units(stripe_side[invoice_id][bucket], currency)
            mine = ours[invoice_id][bucket]
            if theirs != mine:
                report.problems.append(
                    f"invoice {invoice_id or '(none)'}: Stripe {bucket} {theirs}, ledger {mine}"
                )


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
                purchase_order__conference=conference,
                method__in=methods,
                kind=PurchaseOrderPayment.Kind.PAYMENT,
            )
            .exclude(applied_invoice_id="")
            .values("applied_invoice_id")
            .annotate(total=Sum("amount"))
        )
        ours_by_invoice = {row["applied_invoice_id"]: row["total"] for row in rows}
        if methods == (Method.CREDIT_BALANCE,):
            returned = PurchaseOrderPayment.objects.filter(
                purchase_order__conference=conference,
                kind=PurchaseOrderPayment.Kind.TO_CREDIT_BALANCE,
                stripe_object_id=F("stripe_invoice_id"),
            )
            for entry in returned:
                invoice_id = entry.stripe_invoice_id
                ours_by_invoice[invoice_id] = ours_by_invoice.get(invoice_id, 0) + entry.amount
        for invoice_id in sorted(set(ours_by_invoice) | {k for k, v in stripe_side.items() if v}):
            stripe_says = stripe_side.get(invoice_id, Decimal(0))
            ours = ours_by_invoice.get(invoice_id, Decimal(0))
            if ours != stripe_says:
                report.problems.append(
                    f"invoice {invoice_id}: Stripe {label} {stripe_says}, ledger {ours}"
                )
