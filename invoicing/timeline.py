"""A purchase order's story, read from what the models record: its activity rows and its ledger.

For the PO's page: every step (approved, invoice sent, each payment, void, re-issue, cancel,
failures and retries) with who did it, and every invoice generation with its number and link.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from invoicing import money
from invoicing.models import (
    PurchaseOrder,
    PurchaseOrderActivity,
    PurchaseOrderPayment,
    StripeWriteRequest,
)
from invoicing.selectors_credit_lines import credited_lines_text

Kind = PurchaseOrderActivity.Kind


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime.datetime
    what: str
    who: str
    detail: str
    invoice_number: str = ""
    invoice_url: str = ""


@dataclass(frozen=True)
class InvoiceGeneration:
    generation: int
    invoice_id: str
    number: str
    url: str
    status: str


def _who(user: object | None) -> str:
    return str(getattr(user, "username", "")) or "the system"


def purchase_order_timeline(po: PurchaseOrder) -> list[TimelineEntry]:
    """Everything that happened to the PO, newest first (four queries)."""
    activities = list(
        PurchaseOrderActivity.objects.filter(purchase_order=po).select_related("actor")
    )
    kinds = {(activity.kind, activity.generation) for activity in activities}
    entries = [
        TimelineEntry(
            at=po.created_at, what="Created", who=_who(po.created_by), detail="as a draft"
        )
    ]
    # POs approved or invoiced before activities were recorded: their own columns tell.
    if po.approved_at is not None and not any(kind == Kind.APPROVED for kind, _ in kinds):
        entries.append(TimelineEntry(po.approved_at, "Approved", _who(po.approved_by), ""))
    if po.invoice_sent_at is not None and (Kind.INVOICE_SENT, po.generation) not in kinds:
        entries.append(
            TimelineEntry(
                po.invoice_sent_at,
                "Invoice created and sent",
                "the system",
                "",
                po.stripe_invoice_number,
                po.stripe_invoice_url,
            )
        )
    for activity in activities:
        entries.append(
            TimelineEntry(
                at=activity.at,
                what=activity.get_kind_display(),
                who=_who(activity.actor),
                detail=activity.detail,
                invoice_number=activity.stripe_invoice_number or activity.stripe_invoice_id,
                invoice_url=activity.stripe_invoice_url,
            )
        )
    for payment in po.payments.select_related("created_by"):
        is_payment = payment.kind == PurchaseOrderPayment.Kind.PAYMENT
        # Paid back outside Stripe: by wire, check or other, like a payment (no Stripe object).
        by_method = is_payment or payment.kind == PurchaseOrderPayment.Kind.REFUND_OFF_STRIPE
        # Money that left the PO without a refund is said in words, not "by <method>".
        left_po = payment.left_po_description()
        how = payment.get_method_display() if by_method else payment.stripe_object_id
        detail = f"{money.format_display(payment.amount, po.currency)} by {how}"
        if left_po:
            detail = left_po
        elif payment.reference and payment.reference != payment.stripe_object_id:
            detail += f", reference {payment.reference}"
        entries.append(
            TimelineEntry(
                at=payment.recorded_at,
                what="Payment received" if is_payment else payment.get_kind_display(),
                who=_who(payment.created_by)
                if payment.method != PurchaseOrderPayment.Method.STRIPE
                else "Stripe",
                detail=detail,
                invoice_number=payment.stripe_invoice_id,
            )
        )
    by_line = {
        row.stripe_credit_note_id: credited_lines_text(row)
        for row in StripeWriteRequest.objects.filter(
            purchase_order=po, kind=StripeWriteRequest.Kind.REDUCE
        ).exclude(plan=[])
        if row.stripe_credit_note_id
    }
    for credit in po.credits.all():
        lines = by_line.get(credit.stripe_credit_note_id, "")
        entries.append(
            TimelineEntry(
                at=credit.recorded_at,
                what=f"Credit note ({_in_a_sentence(credit.get_purpose_display())})",
                who="Stripe",
                detail=(
                    f"{money.format_display(credit.amount, po.currency)}, "
                    f"{credit.number or credit.stripe_credit_note_id}"
                    f"{f', crediting {lines}' if lines else ''}"
                    f"{' (voided since)' if credit.voided_at else ''}"
                ),
                invoice_number=credit.stripe_invoice_id,
            )
        )
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries


def invoice_generations(po: PurchaseOrder) -> list[InvoiceGeneration]:
    """Every invoice the PO had, oldest first: each replaced one as it was when re-issued."""
    replaced = [
        InvoiceGeneration(
            generation=activity.generation,
            invoice_id=activity.stripe_invoice_id,
            number=activity.stripe_invoice_number,
            url=activity.stripe_invoice_url,
            status="replaced",
        )
        for activity in PurchaseOrderActivity.objects.filter(
            purchase_order=po, kind=Kind.REISSUED
        ).order_by("generation", "pk")
        if activity.stripe_invoice_id
    ]
    if po.stripe_invoice_id:
        replaced.append(
            InvoiceGeneration(
                generation=po.generation,
                invoice_id=po.stripe_invoice_id,
                number=po.stripe_invoice_number,
                url=po.stripe_invoice_url,
                status=po.stripe_invoice_status or "being created",
            )
        )
    return replaced


def _in_a_sentence(label: str) -> str:
    """A choice's label inside a sentence: only its first letter lowered, so "PO" and "Stripe"
    keep their capitals."""
    return label[:1].lower() + label[1:]
