"""What a PO keeps of its current Stripe invoice, and whether a snapshot may touch the PO at all.

The mirror (status, amounts, number, hosted URL) is what the admin shows and what the status is
derived from; it only moves forward, so a stale or reordered snapshot cannot undo a newer one.
The checks are the isolation boundary for money: a snapshot of another PO's, another conference's,
another currency's or another mode's invoice is refused before anything is written. Both run
inside the ledger's operations, under the PO's row lock.
"""

from __future__ import annotations

import datetime
import logging

from django.utils import timezone

from invoicing import money
from invoicing.errors import EventRejected
from invoicing.logging import log_state_change
from invoicing.models import MONEY_LIMIT, PurchaseOrder, PurchaseOrderPayment
from invoicing.services.invoice_snapshots import InvoiceSnapshot, mirrored_rank
from invoicing.stripe_invoice_status import StripeInvoiceStatus

logger = logging.getLogger(__name__)


def _snapshot_belongs_to(locked: PurchaseOrder, snapshot: InvoiceSnapshot) -> bool:
    if snapshot.id == locked.stripe_invoice_id:
        return True
    if snapshot.metadata.get("po_uid") == str(locked.uid):
        return True
    return PurchaseOrderPayment.objects.filter(
        purchase_order=locked, stripe_invoice_id=snapshot.id
    ).exists()


def check_snapshot(locked: PurchaseOrder, snapshot: InvoiceSnapshot) -> None:
    """Refuse a snapshot that is not this PO's invoice, or does not fit its currency or mode."""
    conference = locked.conference
    if not _snapshot_belongs_to(locked, snapshot):
        raise EventRejected(
            f"Invoice {snapshot.id} does not belong to PO {locked.reference} "
            f"of conference {conference.slug!r}."
        )
    claimed_conference = snapshot.metadata.get("conference")
    if claimed_conference is not None and claimed_conference != conference.slug:
        raise EventRejected(
            f"Invoice {snapshot.id} was issued for conference {claimed_conference!r}, "
            f"not {conference.slug!r}; refused."
        )
    if snapshot.status == StripeInvoiceStatus.DELETED:
        return
    if snapshot.currency != locked.currency:
        raise EventRejected(
            f"Invoice {snapshot.id} is in {snapshot.currency!r}, PO {locked.reference} in "
            f"{locked.currency!r}; refused."
        )
    largest = max(snapshot.amount_due, snapshot.amount_paid)
    if money.from_minor_units(largest, locked.currency) >= MONEY_LIMIT:
        raise EventRejected(
            f"Invoice {snapshot.id}: {largest} {locked.currency} minor units is beyond any PO."
        )
    expected_livemode = conference.stripe_livemode
    if expected_livemode is not None and snapshot.livemode != expected_livemode:
        raise EventRejected(
            f"Invoice {snapshot.id} has livemode={snapshot.livemode}, but conference "
            f"{conference.slug!r} uses a {'live' if expected_livemode else 'test'} key; refused."
        )


def save_mirror(
    locked: PurchaseOrder,
    snapshot: InvoiceSnapshot,
    *,
    source: str,
    event_id: str,
    extra_fields: tuple[str, ...],
) -> None:
    """Save the mirror of the PO's current invoice (and the caller's columns) in one write."""
    is_current = snapshot.id == locked.stripe_invoice_id
    previous_status = locked.stripe_invoice_status
    changed = [*extra_fields, *(_mirror_snapshot(locked, snapshot) if is_current else ())]
    if changed:
        locked.save(update_fields=[*dict.fromkeys(changed), "updated_at"])
    if is_current and locked.stripe_invoice_status != previous_status:
        log_state_change(
            logger,
            event="invoice_status_changed",
            po_reference=locked.reference,
            invoice_id=snapshot.id,
            stripe_event_id=event_id or None,
            from_status=previous_status or "none",
            to_status=locked.stripe_invoice_status,
            via=source,
        )


def _due_at(snapshot: InvoiceSnapshot) -> datetime.datetime | None:
    if snapshot.due_date is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(snapshot.due_date, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None  # no real invoice is due in another millennium: keep what we had


def _mirror_snapshot(locked: PurchaseOrder, snapshot: InvoiceSnapshot) -> list[str]:
    """Copy the current invoice's status and amounts onto the PO, never moving backwards."""
    changed: list[str] = []
    if snapshot.number and locked.stripe_invoice_number != snapshot.number:
        locked.stripe_invoice_number = snapshot.number
        changed.append("stripe_invoice_number")
    if snapshot.hosted_invoice_url and locked.stripe_invoice_url != snapshot.hosted_invoice_url:
        locked.stripe_invoice_url = snapshot.hosted_invoice_url
        changed.append("stripe_invoice_url")
    if snapshot.invoice_pdf and locked.stripe_invoice_pdf != snapshot.invoice_pdf:
        locked.stripe_invoice_pdf = snapshot.invoice_pdf
        changed.append("stripe_invoice_pdf")
    due_at = _due_at(snapshot)
    if due_at is not None and locked.invoice_due_at != due_at:
        locked.invoice_due_at = due_at
        changed.append("invoice_due_at")
    current_rank = mirrored_rank(
        stripe_invoice_status=locked.stripe_invoice_status,
        stripe_amount_paid=locked.stripe_amount_paid,
        currency=locked.currency,
    )
    if snapshot.rank < current_rank:
        return changed
    locked.stripe_invoice_status = snapshot.status
    if snapshot.status == StripeInvoiceStatus.DELETED:
        return [*changed, "stripe_invoice_status"]
    locked.stripe_amount_due = money.from_minor_units(snapshot.amount_due, locked.currency)
    locked.stripe_amount_paid = money.from_minor_units(snapshot.amount_paid, locked.currency)
    locked.stripe_amount_remaining = money.from_minor_units(
        snapshot.amount_remaining, locked.currency
    )
    if snapshot.total is not None:
        locked.stripe_invoice_total = money.from_minor_units(snapshot.total, locked.currency)
        locked.stripe_invoice_tax = money.from_minor_units(snapshot.total_tax, locked.currency)
        changed += ["stripe_invoice_total", "stripe_invoice_tax"]
    if snapshot.status != StripeInvoiceStatus.DRAFT and locked.invoice_finalized_at is None:
        locked.invoice_finalized_at = timezone.now()
        changed.append("invoice_finalized_at")
    return [
        *changed,
        "stripe_invoice_status",
        "stripe_amount_due",
        "stripe_amount_paid",
        "stripe_amount_remaining",
    ]
