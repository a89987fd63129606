"""May a PO be synced, voided, re-issued, cancelled, refunded or reduced? One answer for the admin
and the services.

Also the reads several services share: which POs still await their invoice, and a PO reloaded
with what a Stripe call needs.

Each ``*_refusal`` reads the PO as given (no query beyond its own properties) and says why the
action is refused, in words an organizer reads, or ``""`` when it is allowed. The admin asks before
it queues a job and shows the reason; the services ask again when the job runs, where the PO may
have moved on meanwhile, and raise it with :func:`ensure_allowed`. A service first returns quietly
when the action's outcome already holds (a repeated request), so "already done" refusals are only
ever seen in the admin.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Final, cast

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from invoicing import access, money
from invoicing.errors import InvalidTransition
from invoicing.models import (
    CLOSED_DISPUTE_STATUSES,
    ZERO,
    PurchaseOrder,
    PurchaseOrderDispute,
    PurchaseOrderPayment,
    StripeWriteRequest,
)
from invoicing.stripe_invoice_status import (
    PAST_OPEN_STATUSES,
    VOIDED_STATUSES,
    StripeInvoiceStatus,
)

if TYPE_CHECKING:
    from invoicing.access import Person

Status = PurchaseOrder.Status
Kind = StripeWriteRequest.Kind

# POs whose invoice is still to be created or sent: approved (or paid in part by wire meanwhile),
# without an invoice that was sent or left the open state at Stripe (``has_complete_invoice``).
_AWAITING_INVOICE: Final = Q(status__in=[Status.APPROVED, Status.PARTIALLY_PAID]) & (
    Q(stripe_invoice_id="")
    | (Q(invoice_sent_at__isnull=True) & ~Q(stripe_invoice_status__in=PAST_OPEN_STATUSES))
)


def reload_purchase_order(purchase_order: PurchaseOrder) -> PurchaseOrder:
    """The PO as stored now, with the conference and customer that a Stripe call reads."""
    return PurchaseOrder.objects.select_related("conference", "stripe_customer").get(
        pk=purchase_order.pk
    )


def open_disputes(purchase_order: PurchaseOrder) -> list[PurchaseOrderDispute]:
    """The PO's chargebacks not decided yet (oldest first)."""
    return list(purchase_order.disputes.exclude(status__in=CLOSED_DISPUTE_STATUSES))


def awaits_invoice(purchase_order: PurchaseOrder) -> bool:
    """Whether the PO still needs its invoice created (the creation task's guard)."""
    return (
        purchase_order.status in {Status.APPROVED, Status.PARTIALLY_PAID}
        and not purchase_order.has_complete_invoice
    )


def stalled_invoice_creations(*, idle_for: datetime.timedelta, limit: int = 500) -> list[int]:
    """Primary keys of POs still awaiting their invoice and untouched for ``idle_for``.

    Their creation message was lost (broker restart), their worker died, their retries ran out,
    or they were approved by a ``QuerySet.update()``. A PO whose creation is blocked by a
    permanent error waits for a person (``invoice_creation_blocked``). A PO being worked on is
    touched by every step and every recorded error, so it does not look idle.
    """
    cutoff = timezone.now() - idle_for
    return list(
        PurchaseOrder.objects.filter(_AWAITING_INVOICE)
        .filter(updated_at__lte=cutoff, invoice_creation_blocked=False)
        .filter(Q(approved_at__isnull=True) | Q(approved_at__lte=cutoff))
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )


def stalled_off_stripe_reports(*, idle_for: datetime.timedelta, limit: int = 500) -> list[int]:
    """Primary keys of staff payments to report to Stripe and not attached yet.

    Recorded more than ``idle_for`` ago: their report message was lost, or its retries ran out.
    """
    return list(
        PurchaseOrderPayment.objects.filter(
            report_to_stripe=True,
            stripe_attached_at__isnull=True,
            stripe_report_error="",
            recorded_at__lte=timezone.now() - idle_for,
        )
        .order_by("recorded_at")
        .values_list("pk", flat=True)[:limit]
    )


def sync_refusal(po: PurchaseOrder) -> str:
    """Why the PO's invoice cannot be synced from Stripe now ("" when it can)."""
    if not po.stripe_invoice_id:
        return "it has no Stripe invoice yet."
    return ""


def void_refusal(po: PurchaseOrder) -> str:
    """Why the PO's invoice cannot be voided now ("" when it can)."""
    if po.status == Status.CANCELLED:
        return "it is cancelled."
    if not po.stripe_invoice_id:
        return "it has no Stripe invoice to void."
    if po.stripe_invoice_status in VOIDED_STATUSES:
        return "its invoice is already void."
    if po.stripe_invoice_status == StripeInvoiceStatus.PAID:
        return "its invoice is paid, and Stripe never voids a paid invoice."
    if not po.has_complete_invoice:
        return "its invoice is not sent yet (still being created)."
    if _part_paid_at_stripe(po):
        return (
            "its invoice has payments, and Stripe never voids an invoice with payments: "
            "re-issue it or cancel the PO instead (either closes the unpaid rest with a credit "
            "note; the payments stay)."
        )
    return ""


def _part_paid_at_stripe(po: PurchaseOrder) -> bool:
    """The current invoice took some money at Stripe (as last mirrored)."""
    return (po.stripe_amount_paid or 0) > 0


def _uncollectible_with_payments(po: PurchaseOrder) -> bool:
    return po.stripe_invoice_status == StripeInvoiceStatus.UNCOLLECTIBLE and _part_paid_at_stripe(
        po
    )


_UNCOLLECTIBLE_WITH_PAYMENTS: Final = (
    "its invoice is uncollectible and has payments: Stripe neither voids nor credits such an "
    "invoice. The customer can still pay the rest on it."
)


def reissues_part_paid_invoice(po: PurchaseOrder) -> bool:
    """A part-paid PO whose sent invoice is re-issued directly (closed by a credit note first).

    Its invoice is open with payments (Stripe refuses to void it), or already closed by the
    re-issue's credit note (``paid`` at Stripe while something is still owed).
    """
    return (
        po.status == Status.PARTIALLY_PAID
        and po.has_complete_invoice
        and po.stripe_invoice_status in {StripeInvoiceStatus.OPEN, StripeInvoiceStatus.PAID}
    )


def reissue_refusal(po: PurchaseOrder) -> str:
    """Why the PO cannot get a new invoice now ("" when it can)."""
    if po.status not in {
        Status.INVOICE_VOIDED,
        Status.INVOICE_UNCOLLECTIBLE,
    } and not reissues_part_paid_invoice(po):
        return (
            f"it is “{po.get_status_display()}”; only a part-paid PO or one whose invoice is "
            "void or uncollectible is re-issued (void an unpaid invoice first)."
        )
    if _uncollectible_with_payments(po):
        return _UNCOLLECTIBLE_WITH_PAYMENTS
    if po.balance_due <= 0:
        return "everything is paid; there is nothing left to invoice."
    return _taxed_credit_refusal(po)


def _taxed_credit_refusal(po: PurchaseOrder) -> str:
    """A new invoice deducts what was already received or credited with a negative line, which
    Stripe refuses on an invoice with automatic tax ("invoice items with ... negative amounts ...
    cannot be added to automatic tax invoices"): refused here, before the old invoice is closed."""
    if not po.conference.automatic_tax:
        return ""
    deducted = po.amount_received + po.amount_credited
    if deducted <= 0:
        return ""
    return (
        "its conference charges tax through Stripe Tax, and Stripe refuses the negative line a "
        f"new invoice needs to deduct the {money.format_display(deducted, po.currency)} already "
        "received or credited. Cancel it instead (the unpaid rest is credited at Stripe and the "
        "payments stay), then create a new PO for what is still owed."
    )


def cancel_refusal(po: PurchaseOrder) -> str:
    """Why the PO cannot be cancelled ("" when it can)."""
    if po.status == Status.CANCELLED:
        return "it is already cancelled."
    if po.status in {Status.PAID, Status.OVERPAID} and refundable_amount(po) > 0:
        return (
            f"it is {po.get_status_display().lower()}: refund the payments first, then cancel "
            "(a part-paid PO is cancelled directly: the unpaid rest is credited at Stripe and "
            "the payments stay)."
        )
    if po.status in {Status.PAID, Status.OVERPAID}:
        return (
            f"it is {po.get_status_display().lower()} by wire, check or other payments: give "
            "the money back outside Stripe and record it (Record money paid back…), then cancel."
        )
    if _uncollectible_with_payments(po):
        return _UNCOLLECTIBLE_WITH_PAYMENTS
    return ""


def retry_creation_refusal(po: PurchaseOrder) -> str:
    """Why the PO's blocked invoice creation cannot be retried now ("" when it can).

    What we can check without Stripe: the PO still awaits its invoice, the conference has a key,
    and the amount is one Stripe charges. Whether a fixed key now works, only the retry tells.
    """
    if not po.invoice_creation_blocked:
        return "its invoice creation is not blocked; nothing to retry."
    if not awaits_invoice(po):
        return f"it is “{po.get_status_display()}”; only a PO awaiting its invoice is retried."
    if not po.conference.has_stripe_key:
        return (
            f"conference {po.conference} has no Stripe secret key; a finance admin adds it on the "
            "conference's page, then retry."
        )
    if problem := money.charge_limit_problem(po.total - po.invoice_credit, po.currency):
        return f"{problem} Cancel this PO and create new ones."
    return ""


def needs_attention(po: PurchaseOrder) -> bool:
    """A failure someone must look at: a blocked creation or the last background action failed."""
    return po.invoice_creation_blocked or bool(po.invoice_error)


def ensure_allowed(
    refusal: Callable[[PurchaseOrder], str], po: PurchaseOrder, *, verb: str
) -> None:
    """Raise :class:`InvalidTransition` with ``refusal``'s reason when it refuses the PO.

    ``verb`` is the action's participle, as the admin words it: "PO X: not voided: <reason>".
    """
    if why := refusal(po):
        raise InvalidTransition(f"PO {po.reference}: not {verb}: {why}")


# --- Refund and reduce the amount owed (services/refunds.py, services/amount_owed.py) ------------


def _requested_total(po: PurchaseOrder, kind: str) -> Decimal:
    """What the PO's requests of ``kind`` still to run speak for."""
    total: Decimal = StripeWriteRequest.objects.filter(
        purchase_order=po, kind=kind, state=StripeWriteRequest.State.QUEUED
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return total


_Entry = PurchaseOrderPayment.Kind


def stripe_received(po: PurchaseOrder) -> Decimal:
    """The payments Stripe collected for the PO, on every invoice (refunds not deducted)."""
    total: Decimal = PurchaseOrderPayment.objects.filter(
        purchase_order=po, method=PurchaseOrderPayment.Method.STRIPE, kind=_Entry.PAYMENT
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return total


def _refunds_not_in_ledger(po: PurchaseOrder) -> Decimal:
    """Refunds our requests made that the ledger does not hold yet (ACH refunds at the bank),
    whatever the request's state: one refund failing fails the request while another waits."""
    waiting = (
        StripeWriteRequest.objects.filter(purchase_order=po, kind=Kind.REFUND)
        .exclude(state=StripeWriteRequest.State.QUEUED)  # counted whole by _requested_total
        .values_list("plan", flat=True)
    )
    items = [item for plan in waiting for item in plan if item.get("refund")]
    recorded = set(
        PurchaseOrderPayment.objects.filter(
            kind=_Entry.REFUND, stripe_object_id__in=[item["refund"] for item in items]
        ).values_list("stripe_object_id", flat=True)
    )
    minor = sum(int(item["amount"]) for item in items if item["refund"] not in recorded)
    return money.from_minor_units(minor, po.currency)


def refundable_amount(po: PurchaseOrder) -> Decimal:
    """What may still be refunded: Stripe's money in the ledger, net of refunds and disputes,
    less what our refunds under way (queued, or at the bank) will take."""
    net: Decimal = PurchaseOrderPayment.objects.filter(
        purchase_order=po, method=PurchaseOrderPayment.Method.STRIPE
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    spoken_for = _requested_total(po, Kind.REFUND) + _refunds_not_in_ledger(po)
    return max(ZERO, net - spoken_for)


def refund_refusal(po: PurchaseOrder, *, by: Person | None) -> str:
    """Why ``by`` cannot refund any of the PO's Stripe payments now ("" when they can)."""
    if by is None or not access.may_refund(by, po.conference_id):
        return f"only a finance admin of {po.conference} refunds payments."
    if stripe_received(po) <= 0:
        return "it has no Stripe payment to refund."
    if refundable_amount(po) <= 0:
        return "its Stripe payments are refunded already (or a refund of them is under way)."
    return ""


def _amount_refusal(amount: object, po: PurchaseOrder, *, most: Decimal, what: str) -> str:
    if why := money.entered_amount_problem(amount, po.currency):
        return why
    amount = cast(Decimal, amount)  # what entered_amount_problem accepts
    if amount > most:
        return (
            f"{money.format_amount(amount, po.currency)} is more than {what} "
            f"({money.format_amount(most, po.currency)})."
        )
    return ""


def refund_amount_refusal(po: PurchaseOrder, amount: object) -> str:
    """Why ``amount`` cannot be refunded on the PO ("" when it can)."""
    return _amount_refusal(
        amount, po, most=refundable_amount(po), what="what can still be refunded"
    )


def reducible_amount(po: PurchaseOrder) -> Decimal:
    """What the PO's open invoice still asks, as last seen, less reductions queued."""
    remaining = po.stripe_amount_remaining or ZERO
    return max(ZERO, remaining - _requested_total(po, Kind.REDUCE))


def reduce_refusal(po: PurchaseOrder, *, by: Person | None) -> str:
    """Why ``by`` cannot reduce what the PO owes now ("" when they can)."""
    if by is None or not access.may_reduce(by, po.conference_id):
        return f"only an organizer of {po.conference} reduces what a PO owes."
    if po.status == Status.CANCELLED:
        return "it is cancelled."
    if not po.stripe_invoice_id:
        return "it has no Stripe invoice yet."
    if po.stripe_invoice_status != StripeInvoiceStatus.OPEN:
        status = po.stripe_invoice_status or "not sent yet"
        return f"its invoice is {status}; only an open invoice's amount can be reduced."
    if reducible_amount(po) <= 0:
        return "its invoice asks for nothing more (or a reduction of all of it is under way)."
    return ""


def reduce_amount_refusal(po: PurchaseOrder, amount: object) -> str:
    """Why the PO's open invoice cannot be lowered by ``amount`` ("" when it can)."""
    return _amount_refusal(
        amount, po, most=reducible_amount(po), what="what the invoice still asks"
    )


def write_request_outcome(row: StripeWriteRequest) -> str:
    """Where a request stands, for the organizer (the row's own words, which its title shows too:
    ``StripeWriteRequest.state_words``)."""
    return row.state_words
