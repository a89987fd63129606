"""Bringing Stripe's view of an invoice in: sync by retrieve, and every invoice event we handle.

Finding the PO an invoice belongs to is the isolation boundary: an event is applied only to a PO
of the conference whose endpoint received it, and an invoice that another conference's PO owns is
refused (:class:`EventRejected`), never applied. What a snapshot changes is the ledger's business
(:func:`ledger.apply_invoice_snapshot`); the handlers only choose the PO, the snapshot and the
columns an event stamps (``invoice_sent_at`` on ``invoice.sent``).
"""

from __future__ import annotations

import datetime
import enum
import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from invoicing.errors import EventRejected
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeEvent
from invoicing.selectors import ensure_allowed, reload_purchase_order, sync_refusal
from invoicing.services import notifications
from invoicing.services.event_types import (
    HANDLED_EVENT_TYPES,
    INVOICE_EVENTS,
    INVOICE_PAYMENT_EVENTS,
    INVOICE_SNAPSHOT_EVENTS,
)
from invoicing.services.invoice_mirror import check_snapshot
from invoicing.services.invoice_snapshots import (
    WITH_OFF_STRIPE,
    InvoiceLike,
    InvoiceSnapshot,
    as_snapshot,
)
from invoicing.services.ledger import (
    apply_invoice_snapshot,
    apply_invoice_snapshot_locked,
    lock_purchase_order,
)
from invoicing.services.ledger_off_stripe import ledger_holds_all_paid
from invoicing.services.stripe_client import StripeKeyMissing, build_stripe_client
from invoicing.stripe_invoice_status import StripeInvoiceStatus

logger = logging.getLogger(__name__)

__all__ = [
    "HANDLED_EVENT_TYPES",
    "INVOICE_PAYMENT_EVENTS",
    "INVOICE_SNAPSHOT_EVENTS",
    "EventOutcome",
    "checked_event_object",
    "find_purchase_order_for_invoice",
    "handle_invoice_event",
    "handle_invoice_paid_webhook",
    "reconcile_invoice",
    "sync_invoice",
    "sync_stripe_invoice_status",
]


def lacks_the_split(purchase_order: PurchaseOrder, snapshot: InvoiceSnapshot) -> bool:
    """A view (an event payload) that shows money the ledger lacks without saying how much of it
    was paid off Stripe: only a retrieve with ``amount_paid_off_stripe`` can say how to record it.

    The view is checked first, as the ledger would (another PO's invoice, currency, mode, an
    impossible amount: :class:`EventRejected`), so a bad payload is refused, never retrieved.
    """
    if snapshot.amount_paid_off_stripe is not None:
        return False
    check_snapshot(purchase_order, snapshot)
    return not ledger_holds_all_paid(purchase_order, snapshot)


class EventOutcome(enum.StrEnum):
    """What an event handler did with an event."""

    HANDLED = "handled"
    IGNORED = "ignored"


# --- Sync ----------------------------------------------------------------------------------------


def sync_invoice(
    *,
    purchase_order: PurchaseOrder,
    invoice_id: str,
    source: str = "sync",
    event_id: str = "",
    payment_date: datetime.date | None = None,
) -> Decimal:
    """Retrieve one of the PO's invoices with its conference's key and apply it (internal).

    Works for the current invoice and for an earlier generation's (reconciliation).
    """
    po = reload_purchase_order(purchase_order)
    client = build_stripe_client(po.conference)
    # Only a view with amount_paid_off_stripe tells Stripe's payments from the rest.
    invoice = client.v1.invoices.retrieve(invoice_id, params={"expand": WITH_OFF_STRIPE})
    with transaction.atomic():
        locked = lock_purchase_order(po)
        locked.last_synced_at = timezone.now()
        recorded = apply_invoice_snapshot_locked(
            locked,
            InvoiceSnapshot.from_invoice(invoice),
            source=source,
            event_id=event_id,
            payment_date=payment_date,
            extra_fields=("last_synced_at",),
        )
    purchase_order.refresh_from_db()
    return recorded


def sync_stripe_invoice_status(purchase_order: PurchaseOrder) -> None:
    """Fetch the PO's invoice and bring it in: status mirrored, new (partial) payments recorded.

    Raises:
        ValueError: the PO has no invoice id (:class:`InvalidTransition`), or the conference has
            no Stripe key.
        stripe.StripeError: Stripe failed.
    """
    po = reload_purchase_order(purchase_order)
    ensure_allowed(sync_refusal, po, verb="synced")
    sync_invoice(purchase_order=po, invoice_id=po.stripe_invoice_id)
    purchase_order.refresh_from_db()


# --- Events --------------------------------------------------------------------------------------


def _event_object(event: Mapping[str, object]) -> Mapping[str, object]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise EventRejected("The event has no data.object.")
    return obj


def find_purchase_order_for_invoice(
    *, conference: Conference, invoice_id: str, metadata: Mapping[str, str] | None = None
) -> PurchaseOrder | None:
    """The PO of ``conference`` an invoice belongs to, or None when it is not one of ours.

    Looks at the current invoice ids, then earlier generations' payments, then our metadata.

    Raises:
        EventRejected: the invoice belongs to a PO of *another* conference.
    """
    claimed = (metadata or {}).get("conference")
    if claimed is not None and claimed != conference.slug:
        logger.warning(
            "conference %s: refused invoice %s issued for conference %s",
            conference.slug,
            invoice_id,
            claimed,
        )
        raise EventRejected(
            f"Invoice {invoice_id} was issued for conference {claimed!r}, not {conference.slug!r}."
        )
    pos = PurchaseOrder.objects.select_related("conference")
    po = pos.filter(conference=conference, stripe_invoice_id=invoice_id).first()
    if po is None:
        po = pos.filter(
            conference=conference,
            payments__stripe_invoice_id=invoice_id,
        ).first()
    if po is None and metadata and metadata.get("po_uid"):
        try:
            uid = uuid.UUID(metadata["po_uid"])
        except ValueError:
            uid = None
        if uid is not None:
            po = pos.filter(conference=conference, uid=uid).first()
    if po is not None:
        return po
    elsewhere = PurchaseOrder.objects.filter(stripe_invoice_id=invoice_id).exclude(
        conference=conference
    )
    if (
        elsewhere.exists()
        or PurchaseOrderPayment.objects.filter(stripe_invoice_id=invoice_id)
        .exclude(purchase_order__conference=conference)
        .exists()
    ):
        logger.warning(
            "conference %s: refused an event naming invoice %s of another conference",
            conference.slug,
            invoice_id,
        )
        raise EventRejected(
            f"Invoice {invoice_id} does not belong to conference {conference.slug!r}."
        )
    return None


def reconcile_invoice(
    *, conference: Conference, invoice: InvoiceLike, source: str = "reconcile"
) -> EventOutcome:
    """Apply an invoice read from ``conference``'s account (list page, retrieve) to its PO.

    For reconciliation: ``IGNORED`` when the invoice is not one of this conference's POs.
    """
    snapshot = as_snapshot(invoice)
    po = find_purchase_order_for_invoice(
        conference=conference, invoice_id=snapshot.id, metadata=snapshot.metadata
    )
    if po is None:
        return EventOutcome.IGNORED
    if lacks_the_split(po, snapshot):
        sync_invoice(purchase_order=po, invoice_id=snapshot.id, source=source)
        return EventOutcome.HANDLED
    apply_invoice_snapshot(purchase_order=po, invoice=snapshot, source=source)
    return EventOutcome.HANDLED


def _event_payment_date(event: Mapping[str, object]) -> datetime.date | None:
    created = event.get("created")
    if isinstance(created, int) and not isinstance(created, bool):
        try:
            return datetime.datetime.fromtimestamp(created, tz=datetime.UTC).date()
        except (OverflowError, OSError, ValueError):
            raise EventRejected(f"Event {event.get('id')}: created={created} is no date.") from None
    return None


def checked_event_object(
    *, conference: Conference, event: Mapping[str, object]
) -> tuple[Mapping[str, object], str]:
    """The event's ``data.object`` and id, once its livemode is the conference's.

    Raises:
        EventRejected: wrong livemode, or no ``data.object``.
        StripeKeyMissing: the conference has no key (its livemode is unknown).
    """
    raw_event_id = event.get("id")
    event_id = raw_event_id if isinstance(raw_event_id, str) else ""
    expected_livemode = conference.stripe_livemode
    if expected_livemode is None:
        raise StripeKeyMissing(
            f"Conference {conference.slug!r} has no Stripe secret key; cannot check event "
            f"{event_id}."
        )
    obj = _event_object(event)
    livemode = event.get("livemode", obj.get("livemode"))
    if livemode is not expected_livemode:
        raise EventRejected(
            f"Event {event_id} has livemode={livemode!r}; conference "
            f"{conference.slug!r} is in {'live' if expected_livemode else 'test'} mode."
        )
    return obj, event_id


def handle_invoice_event(*, conference: Conference, event: Mapping[str, object]) -> EventOutcome:
    """Apply one Stripe event that arrived at ``conference``'s endpoint (the dispatcher's entry).

    Handles the invoice events (``event_types.INVOICE_EVENTS``); others are ``IGNORED``, as are
    invoices that are not ours. ``invoice_payment.paid`` carries an InvoicePayment, not the
    invoice's ``amount_paid``, so the invoice is retrieved (with this conference's key) and applied.

    Raises:
        EventRejected: wrong livemode or currency, another conference's invoice, malformed.
        StripeKeyMissing: the conference has no key (its livemode is unknown).
        stripe.StripeError: retrieving the invoice failed (retry later).
    """
    event_type = event.get("type")
    if not isinstance(event_type, str) or event_type not in INVOICE_EVENTS:
        return EventOutcome.IGNORED
    obj, event_id = checked_event_object(conference=conference, event=event)
    payment_date = _event_payment_date(event)

    if event_type in INVOICE_PAYMENT_EVENTS:
        invoice_ref = obj.get("invoice")
        if isinstance(invoice_ref, Mapping):
            invoice_ref = invoice_ref.get("id")
        if not isinstance(invoice_ref, str) or not invoice_ref:
            raise EventRejected(f"Event {event_id}: the invoice payment names no invoice.")
        po = find_purchase_order_for_invoice(conference=conference, invoice_id=invoice_ref)
        if po is None:
            logger.info(
                "conference %s: event %s for a foreign invoice %s ignored",
                conference.slug,
                event_id,
                invoice_ref,
            )
            return EventOutcome.IGNORED
        currency = obj.get("currency")
        if isinstance(currency, str) and currency.lower() != po.currency:
            raise EventRejected(
                f"Event {event_id}: payment in {currency!r}, PO {po.reference} in {po.currency!r}."
            )
        sync_invoice(purchase_order=po, invoice_id=invoice_ref, source=f"{event_type} {event_id}")
        return EventOutcome.HANDLED

    snapshot = InvoiceSnapshot.from_payload(obj)
    if event_type == "invoice.deleted":
        snapshot = replace(snapshot, status=StripeInvoiceStatus.DELETED)
    po = find_purchase_order_for_invoice(
        conference=conference, invoice_id=snapshot.id, metadata=snapshot.metadata
    )
    if po is None:
        logger.info(
            "conference %s: event %s for a foreign invoice %s ignored",
            conference.slug,
            event_id,
            snapshot.id,
        )
        return EventOutcome.IGNORED
    if event_type == "invoice.payment_failed":
        logger.warning(
            "po %s: a payment on invoice %s failed (event %s)", po.reference, snapshot.id, event_id
        )
    if event_type != "invoice.sent" and lacks_the_split(po, snapshot):
        # Applied as retrieved instead, so the mirror never runs ahead of the ledger.
        sync_invoice(
            purchase_order=po,
            invoice_id=snapshot.id,
            source=event_type,
            event_id=event_id,
            payment_date=payment_date,
        )
        return EventOutcome.HANDLED
    with transaction.atomic():
        locked = lock_purchase_order(po)
        extra: tuple[str, ...] = ()
        if (
            event_type == "invoice.sent"
            and snapshot.id == locked.stripe_invoice_id
            and locked.invoice_sent_at is None
        ):
            locked.invoice_sent_at = timezone.now()
            extra = ("invoice_sent_at",)
        apply_invoice_snapshot_locked(
            locked,
            snapshot,
            source=event_type,
            event_id=event_id,
            payment_date=payment_date,
            extra_fields=extra,
        )
        if event_type == "invoice.payment_failed":
            notifications.payment_failed(locked, event_id=event_id, invoice_id=snapshot.id)
    return EventOutcome.HANDLED


def handle_invoice_paid_webhook(stripe_event_payload: dict[str, object]) -> None:
    """Apply an ``invoice.paid`` event: find the PO by the invoice id, record what was paid.

    The conference is the one the event arrived for, taken from the inbox row of this event id;
    without one (a direct call), it is the conference of the PO that owns the invoice. Either way
    :func:`handle_invoice_event` refuses a payload naming another conference's invoice, the wrong
    livemode or another currency (:class:`EventRejected`).

    Raises:
        EventRejected: the payload names no invoice id, or is otherwise refused (a ``ValueError``).
    """
    obj = _event_object(stripe_event_payload)
    invoice_id = obj.get("id")
    if not isinstance(invoice_id, str) or not invoice_id:
        raise EventRejected("The invoice.paid payload has no invoice id in data.object.")
    event: dict[str, object] = dict(stripe_event_payload)
    event.setdefault("type", "invoice.paid")
    event_id = event.get("id")
    inbox = (
        StripeEvent.objects.select_related("conference").filter(stripe_event_id=event_id).first()
        if isinstance(event_id, str) and event_id
        else None
    )
    if inbox is not None:
        conference = inbox.conference
    else:
        owner = (
            PurchaseOrder.objects.select_related("conference")
            .filter(stripe_invoice_id=invoice_id)
            .first()
        )
        if owner is None:
            owner_payment = (
                PurchaseOrderPayment.objects.select_related("purchase_order__conference")
                .filter(stripe_invoice_id=invoice_id)
                .first()
            )
            owner = owner_payment.purchase_order if owner_payment is not None else None
        if owner is None:
            logger.info(
                "invoice.paid for invoice %s: no purchase order has it; ignored", invoice_id
            )
            return
        conference = owner.conference
    handle_invoice_event(conference=conference, event=event)
