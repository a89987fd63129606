"""May a PO be synced, voided, re-issued or cancelled? One answer for the admin and the services.

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
from typing import Final

from django.db.models import Q
from django.utils import timezone

from invoicing.errors import InvalidTransition
from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.stripe_invoice_status import (
    PAST_OPEN_STATUSES,
    VOIDED_STATUSES,
    StripeInvoiceStatus,
)

Status = PurchaseOrder.Status

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
        return "its invoice is paid: nothing to void (refund it at Stripe instead)."
    if not po.has_complete_invoice:
        return "its invoice is not sent yet (still being created)."
    return ""


def reissue_refusal(po: PurchaseOrder) -> str:
    """Why the PO cannot get a new invoice now ("" when it can)."""
    if po.status not in {Status.INVOICE_VOIDED, Status.INVOICE_UNCOLLECTIBLE}:
        return (
            f"it is “{po.get_status_display()}”; only a PO whose invoice is void or "
            "uncollectible is re-issued (void the invoice first)."
        )
    if po.balance_due <= 0:
        return "everything is paid; there is nothing left to invoice."
    return ""


def cancel_refusal(po: PurchaseOrder) -> str:
    """Why the PO cannot be cancelled ("" when it can)."""
    if po.status == Status.CANCELLED:
        return "it is already cancelled."
    if po.status in {Status.PAID, Status.OVERPAID}:
        return f"it is {po.get_status_display().lower()}; refund the payments at Stripe first."
    return ""


def ensure_allowed(
    refusal: Callable[[PurchaseOrder], str], po: PurchaseOrder, *, verb: str
) -> None:
    """Raise :class:`InvalidTransition` with ``refusal``'s reason when it refuses the PO.

    ``verb`` is the action's participle, as the admin words it: "PO X: not voided: <reason>".
    """
    if why := refusal(po):
        raise InvalidTransition(f"PO {po.reference}: not {verb}: {why}")
