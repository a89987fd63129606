"""Stripe invoices for purchase orders: create, sync, and every invoice event, exactly once.

Creation (:func:`create_stripe_invoice`) runs as a sequence of steps, each a Stripe write with an
idempotency key ``po-<uid>-g<generation>-<step>`` and each result stored in its own short
transaction as soon as Stripe returns it::

    customer (ours first, then Stripe's) -> invoice created -> lines added -> finalized -> sent

A rerun resumes from what is stored. Within 24 h the keys make every repeated write return the
first result; after a crash that left no invoice id on the PO for longer than that, the invoice is
found again by listing the customer's invoices and matching our metadata (PO uid + generation),
and lines are only added after a retrieve shows the invoice has none. Stripe also stores a 5xx
under its key and replays it for 24 h: after one, the step is checked at Stripe (retrieve or
list) and, if it did not happen, the PO's ``key_epoch`` moves so the next run uses a fresh key.
The fresh path costs five calls (customer, invoice, one ``add_lines`` with every line, finalize,
send); a known customer saves one.

Payments reach the ledger only through :func:`ledger.apply_invoice_snapshot` (or its variant for a
caller holding the PO's row lock), which records ``amount_paid`` minus the Stripe payments already
recorded *for that invoice*, so stale, duplicated, reordered or concurrent snapshots (webhooks,
retrieves, list pages, events) can never record a payment twice or hide one behind a wire
transfer.

Isolation: every call uses the PO's conference's client; event handlers take the conference the
event arrived for and refuse a payload that names another conference's invoice, carries the wrong
``livemode`` or another currency.
"""

from __future__ import annotations

import datetime
import enum
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Final, TypeVar

import stripe
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from invoicing import money
from invoicing.errors import (
    EventRejected,
    InvalidTransition,
    InvoiceAlreadyAttached,
    InvoiceMismatch,
    PurchaseOrderNotInvoiceable,
)
from invoicing.logging import log_state_change
from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderPayment,
    StripeCustomer,
    StripeEvent,
    validate_payment_method_types,
)
from invoicing.selectors import (
    cancel_refusal,
    ensure_allowed,
    reissue_refusal,
    sync_refusal,
    void_refusal,
)
from invoicing.services import purchase_orders
from invoicing.services.invoice_snapshots import InvoiceLike, InvoiceSnapshot, as_snapshot
from invoicing.services.ledger import (
    apply_invoice_snapshot,
    apply_invoice_snapshot_locked,
    lock_purchase_order,
)
from invoicing.services.stripe_client import StripeKeyMissing, build_stripe_client
from invoicing.stripe_invoice_status import PAYABLE_STATUSES, VOIDED_STATUSES, StripeInvoiceStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from stripe.params import InvoiceAddLinesParamsLine, InvoiceCreateParams

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Status = PurchaseOrder.Status

# Stripe keeps idempotency keys for at least 24 h; past this age we stop relying on them.
IDEMPOTENCY_KEY_SAFE_AGE: Final = datetime.timedelta(hours=23)

# Invoice events whose ``data.object`` is the invoice itself.
INVOICE_SNAPSHOT_EVENTS: Final = frozenset(
    {
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.finalized",
        "invoice.sent",
        "invoice.updated",
        "invoice.deleted",
    }
)
INVOICE_PAYMENT_EVENTS: Final = frozenset({"invoice_payment.paid"})
HANDLED_EVENT_TYPES: Final = INVOICE_SNAPSHOT_EVENTS | INVOICE_PAYMENT_EVENTS


class EventOutcome(enum.StrEnum):
    """What an event handler did with an event."""

    HANDLED = "handled"
    IGNORED = "ignored"


# POs whose invoice is still to be created or sent: approved (or paid in part by wire meanwhile),
# without an invoice that was sent or left the open state at Stripe (``has_complete_invoice``).
AWAITING_INVOICE: Final = Q(status__in=[Status.APPROVED, Status.PARTIALLY_PAID]) & (
    Q(stripe_invoice_id="")
    | (
        Q(invoice_sent_at__isnull=True)
        & ~Q(stripe_invoice_status__in=["paid", "void", "uncollectible", "deleted"])
    )
)


def awaits_invoice(purchase_order: PurchaseOrder) -> bool:
    """Whether the PO still needs :func:`create_stripe_invoice` (the creation task's guard)."""
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
        PurchaseOrder.objects.filter(AWAITING_INVOICE)
        .filter(updated_at__lte=cutoff, invoice_creation_blocked=False)
        .filter(Q(approved_at__isnull=True) | Q(approved_at__lte=cutoff))
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- Creation ------------------------------------------------------------------------------------


def _load(purchase_order: PurchaseOrder) -> PurchaseOrder:
    return PurchaseOrder.objects.select_related("conference", "stripe_customer").get(
        pk=purchase_order.pk
    )


def _invoice_metadata(po: PurchaseOrder) -> dict[str, str]:
    return {
        "po_id": str(po.pk),
        "po_uid": str(po.uid),
        "po_reference": po.reference,
        "conference": po.conference.slug,
        "generation": str(po.generation),
    }


def build_invoice_lines(po: PurchaseOrder) -> tuple[list[InvoiceAddLinesParamsLine], int]:
    """The ``add_lines`` lines for the PO and the subtotal they add up to (minor units).

    Each PO line becomes ``quantity`` x ``price_data.unit_amount`` so the hosted page shows the
    quantity and the unit price. A re-issued invoice ends with one negative line for the money
    already received. Raises ``AmountNotRepresentable`` before any Stripe call.
    """
    lines: list[InvoiceAddLinesParamsLine] = []
    subtotal = 0
    for item in po.line_items.all():
        unit_amount = money.to_minor_units(item.unit_price, po.currency)
        subtotal += unit_amount * item.quantity
        lines.append(
            {
                "price_data": {
                    "currency": po.currency,
                    "product_data": {"name": item.description},
                    "unit_amount": unit_amount,
                },
                "quantity": item.quantity,
                "description": item.description,
                "metadata": {"po_uid": str(po.uid), "po_line": str(item.position)},
            }
        )
    if po.invoice_credit > 0:
        credit = money.to_minor_units(po.invoice_credit, po.currency)
        subtotal -= credit
        lines.append(
            {
                "amount": -credit,
                "description": f"Payments already received for purchase order {po.reference}",
                "metadata": {"po_uid": str(po.uid), "po_line": "credit"},
            }
        )
    if not lines:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference} has no lines.")
    if subtotal <= 0:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference} has nothing left to invoice.")
    return lines, subtotal


def _invoice_create_params(po: PurchaseOrder, customer_id: str) -> InvoiceCreateParams:
    conference = po.conference
    params: InvoiceCreateParams = {
        "customer": customer_id,
        "collection_method": "send_invoice",
        "days_until_due": conference.invoice_days_until_due,
        "currency": po.currency,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "payment_settings": {"payment_method_types": list(conference.payment_method_types)},
        "metadata": _invoice_metadata(po),
    }
    if conference.invoice_memo:
        params["description"] = conference.invoice_memo
    if conference.invoice_footer:
        params["footer"] = conference.invoice_footer
    return params


def _check_invoiceable(po: PurchaseOrder) -> None:
    if po.status == Status.CANCELLED:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference} is cancelled.")
    try:
        validate_payment_method_types(po.conference.payment_method_types)
    except ValidationError as exc:
        raise PurchaseOrderNotInvoiceable(
            f"Conference {po.conference.slug!r}: {' '.join(exc.messages)}"
        ) from None
    if po.has_complete_invoice:
        raise InvoiceAlreadyAttached(
            f"PO {po.reference} already has Stripe invoice {po.stripe_invoice_id}."
        )
    # PARTIALLY_PAID: a wire recorded while the invoice was still being created.
    if po.status not in {Status.APPROVED, Status.PARTIALLY_PAID}:
        raise PurchaseOrderNotInvoiceable(
            f"PO {po.reference} is {po.status}; only an approved PO is invoiced."
        )


def _poisons_key(exc: stripe.StripeError) -> bool:
    """Stripe stores a 5xx under the idempotency key and replays it for 24 h."""
    return isinstance(exc, stripe.APIError) and (exc.http_status or 0) >= 500


def _keyed_write(
    po: PurchaseOrder,
    step: str,
    call: Callable[[str], _T],
    *,
    verify: Callable[[], _T | None] | None = None,
) -> _T:
    """Run one Stripe write under the PO's key for ``step``; recover from a cached 5xx.

    After a server error the key is poisoned: every retry would get the same cached error for a
    day. ``verify`` asks Stripe whether the write happened anyway (it returns the object, and we
    carry on with it). If it did not, the PO's key epoch moves on so the next run writes under a
    fresh key, and the error still surfaces (the caller retries later).
    """
    try:
        return call(po.idempotency_key(step))
    except stripe.StripeError as exc:
        if not _poisons_key(exc):
            raise
        done = verify() if verify is not None else None
        if done is not None:
            logger.info("po %s: %s happened despite a server error", po.reference, step)
            return done
        updated = PurchaseOrder.objects.filter(pk=po.pk, key_epoch=po.key_epoch).update(
            key_epoch=po.key_epoch + 1
        )
        logger.warning(
            "po %s: %s failed at Stripe (%s); %s under a fresh idempotency key",
            po.reference,
            step,
            exc.http_status,
            "next attempt runs" if updated else "another worker already moved",
        )
        raise


def _ensure_customer(client: stripe.StripeClient, po: PurchaseOrder) -> str:
    """Claim our customer row (before Stripe), then create it at Stripe under its own key."""
    customer = po.stripe_customer
    if customer is None:
        customer, _ = StripeCustomer.objects.get_or_create(
            conference=po.conference,
            email=StripeCustomer.normalize_email(po.contact_email),
            defaults={"name": po.organization_name},
        )
        PurchaseOrder.objects.filter(pk=po.pk, stripe_customer__isnull=True).update(
            stripe_customer=customer
        )
        po.stripe_customer = customer
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    try:
        created = client.v1.customers.create(
            {
                "email": customer.email,
                "name": customer.name or customer.email,
                "metadata": {"conference": po.conference.slug, "customer_uid": str(customer.uid)},
            },
            options={"idempotency_key": customer.idempotency_key},
        )
    except stripe.StripeError as exc:
        if _poisons_key(exc):
            StripeCustomer.objects.filter(pk=customer.pk, key_epoch=customer.key_epoch).update(
                key_epoch=customer.key_epoch + 1
            )
        raise
    StripeCustomer.objects.filter(pk=customer.pk, stripe_customer_id="").update(
        stripe_customer_id=created.id
    )
    customer.refresh_from_db(fields=["stripe_customer_id"])
    log_state_change(
        logger,
        event="stripe_customer_created",
        po_reference=po.reference,
        customer_id=customer.stripe_customer_id,
        conference=po.conference.slug,
    )
    return customer.stripe_customer_id


def _find_invoice_by_metadata(
    client: stripe.StripeClient, po: PurchaseOrder, customer_id: str
) -> stripe.Invoice | None:
    """Find this generation's invoice among the customer's (recovery when keys cannot help)."""
    uid, generation = str(po.uid), str(po.generation)
    found: list[stripe.Invoice] = []
    page = client.v1.invoices.list({"customer": customer_id, "limit": 100})
    for invoice in page.auto_paging_iter():
        metadata = invoice.metadata.to_dict() if invoice.metadata is not None else {}
        if metadata.get("po_uid") == uid and metadata.get("generation") == generation:
            found.append(invoice)
    usable = [invoice for invoice in found if invoice.status not in {"void", "deleted"}]
    if len(usable) > 1:
        raise InvoiceMismatch(
            f"PO {po.reference}: {len(usable)} invoices at Stripe carry generation {generation}: "
            f"{[invoice.id for invoice in usable]}; resolve by hand."
        )
    return usable[0] if usable else None


def _create_or_recover_invoice(
    client: stripe.StripeClient, po: PurchaseOrder, customer_id: str
) -> stripe.Invoice:
    def recover() -> stripe.Invoice | None:
        recovered = _find_invoice_by_metadata(client, po, customer_id)
        if recovered is not None:
            logger.info("po %s: recovered invoice %s by metadata", po.reference, recovered.id)
        return recovered

    started = po.invoice_create_started_at
    if started is not None and timezone.now() - started > IDEMPOTENCY_KEY_SAFE_AGE:
        # An earlier attempt may have created the invoice, and its key may have expired.
        recovered = recover()
        if recovered is not None:
            return recovered
    if started is None:
        PurchaseOrder.objects.filter(pk=po.pk, invoice_create_started_at__isnull=True).update(
            invoice_create_started_at=timezone.now()
        )
    params = _invoice_create_params(po, customer_id)
    try:
        return _keyed_write(
            po,
            "invoice",
            lambda key: client.v1.invoices.create(params, options={"idempotency_key": key}),
            verify=recover,
        )
    except stripe.IdempotencyError:
        # Same key, other parameters (e.g. the conference's memo changed since the first try).
        recovered = recover()
        if recovered is None:
            raise
        return recovered


def _persist_invoice_created(
    po: PurchaseOrder, invoice: stripe.Invoice
) -> tuple[PurchaseOrder, bool]:
    """Store the new invoice's id; False when another run had already stored it."""
    with transaction.atomic():
        locked = lock_purchase_order(po)
        if locked.stripe_invoice_id and locked.stripe_invoice_id != invoice.id:
            raise InvoiceMismatch(
                f"PO {locked.reference} already records invoice {locked.stripe_invoice_id}, "
                f"Stripe returned {invoice.id}."
            )
        if not locked.stripe_invoice_id:
            locked.stripe_invoice_id = invoice.id
            locked.invoice_created_at = timezone.now()
            apply_invoice_snapshot_locked(
                locked,
                InvoiceSnapshot.from_invoice(invoice),
                source="create",
                extra_fields=("stripe_invoice_id", "invoice_created_at"),
            )
            log_state_change(
                logger,
                event="invoice_created",
                po_reference=locked.reference,
                invoice_id=invoice.id,
            )
            return locked, True
    return locked, False


def _persist_step(
    po: PurchaseOrder, invoice: stripe.Invoice, *, stamp: str, always: bool = False
) -> PurchaseOrder:
    """Store one step's result in its own transaction: its timestamp, then the snapshot."""
    with transaction.atomic():
        locked = lock_purchase_order(po)
        extra: tuple[str, ...] = ()
        if always or getattr(locked, stamp) is None:
            setattr(locked, stamp, timezone.now())
            extra = (stamp,)
        apply_invoice_snapshot_locked(
            locked, InvoiceSnapshot.from_invoice(invoice), source=stamp, extra_fields=extra
        )
    return locked


def _check_lines(po: PurchaseOrder, invoice: stripe.Invoice, expected_subtotal: int) -> None:
    if invoice.subtotal != expected_subtotal:
        raise InvoiceMismatch(
            f"PO {po.reference}: invoice {invoice.id} at Stripe has subtotal {invoice.subtotal}, "
            f"the PO expects {expected_subtotal} (minor units); was the draft edited at Stripe?"
        )


def _stop_if_cancelled(client: stripe.StripeClient, po: PurchaseOrder) -> None:
    """A PO cancelled while its invoice was being created: delete the draft, then refuse."""
    if po.status != Status.CANCELLED:
        return
    if po.stripe_invoice_id and po.stripe_invoice_status == "draft":
        deleted = client.v1.invoices.delete(po.stripe_invoice_id)
        apply_invoice_snapshot(purchase_order=po, invoice=deleted, source="cancel")
        log_state_change(
            logger,
            event="invoice_draft_deleted",
            po_reference=po.reference,
            invoice_id=deleted.id,
            why="the PO was cancelled during invoicing",
        )
    raise PurchaseOrderNotInvoiceable(f"PO {po.reference} was cancelled during invoicing.")


def _retrieve_if(
    client: stripe.StripeClient, invoice_id: str, done: Callable[[stripe.Invoice], bool]
) -> Callable[[], stripe.Invoice | None]:
    """A ``verify`` for :func:`_keyed_write`: the invoice, if Stripe shows the step happened."""

    def verify() -> stripe.Invoice | None:
        invoice = client.v1.invoices.retrieve(invoice_id)
        return invoice if done(invoice) else None

    return verify


def _retrieve_for_resume(client: stripe.StripeClient, po: PurchaseOrder) -> stripe.Invoice:
    try:
        return client.v1.invoices.retrieve(po.stripe_invoice_id)
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise
    # The draft was deleted at Stripe (dashboard): the organizer re-issues or cancels.
    apply_invoice_snapshot(
        purchase_order=po,
        invoice=InvoiceSnapshot.deleted(
            po.stripe_invoice_id,
            currency=po.currency,
            livemode=bool(po.conference.stripe_livemode),
        ),
        source="resume",
    )
    raise InvoiceMismatch(
        f"PO {po.reference}: draft invoice {po.stripe_invoice_id} was deleted at Stripe; "
        "re-issue or cancel the PO."
    )


def create_stripe_invoice(purchase_order: PurchaseOrder) -> str:
    """Create, finalize and send the PO's invoice in its conference's Stripe account.

    Resumes an interrupted creation from the stored steps; see the module docstring.

    Returns:
        The hosted invoice URL (also stored on the PO with the invoice id).

    Raises:
        ValueError: the conference has no Stripe key (:class:`StripeKeyMissing`), the PO already
            has a complete invoice (:class:`InvoiceAlreadyAttached`), the PO is not approved,
            or an amount is not representable in its currency (before any Stripe call).
        stripe.StripeError: Stripe refused or failed; rerun to resume.
    """
    po = _load(purchase_order)
    _check_invoiceable(po)
    client = build_stripe_client(po.conference)
    lines, expected_subtotal = build_invoice_lines(po)

    customer_id = _ensure_customer(client, po)
    if not po.stripe_invoice_id:
        invoice = _create_or_recover_invoice(client, po, customer_id)
        po, stored_here = _persist_invoice_created(po, invoice)
        if not stored_here:
            # A concurrent run stored it first and may be steps ahead: our answer can be the
            # idempotent replay of the first one (a draft without lines). Go on from Stripe.
            invoice = _retrieve_for_resume(client, po)
            po = _persist_step(po, invoice, stamp="last_synced_at", always=True)
    else:
        # Resuming: learn where Stripe really is before writing anything.
        invoice = _retrieve_for_resume(client, po)
        po = _persist_step(po, invoice, stamp="last_synced_at", always=True)
    _stop_if_cancelled(client, po)
    invoice_id = invoice.id

    if invoice.status == "draft":
        if po.invoice_lines_added_at is None and not invoice.lines.data:
            invoice = _keyed_write(
                po,
                "lines",
                lambda key: client.v1.invoices.add_lines(
                    invoice_id, {"lines": lines}, options={"idempotency_key": key}
                ),
                verify=_retrieve_if(client, invoice_id, lambda found: bool(found.lines.data)),
            )
        _check_lines(po, invoice, expected_subtotal)
        po = _persist_step(po, invoice, stamp="invoice_lines_added_at")
        log_state_change(
            logger, event="invoice_lines_added", po_reference=po.reference, invoice_id=invoice_id
        )
        _stop_if_cancelled(client, po)
        invoice = _keyed_write(
            po,
            "finalize",
            lambda key: client.v1.invoices.finalize_invoice(
                invoice_id, {"auto_advance": False}, options={"idempotency_key": key}
            ),
            verify=_retrieve_if(client, invoice_id, lambda found: found.status != "draft"),
        )
        po = _persist_step(po, invoice, stamp="invoice_finalized_at")
        log_state_change(
            logger,
            event="invoice_finalized",
            po_reference=po.reference,
            invoice_id=invoice_id,
            number=invoice.number,
        )
    elif po.invoice_lines_added_at is None:
        _check_lines(po, invoice, expected_subtotal)
        po = _persist_step(po, invoice, stamp="invoice_lines_added_at")

    if invoice.status == "open" and po.invoice_sent_at is None:
        invoice = _keyed_write(
            po,
            "send",
            lambda key: client.v1.invoices.send_invoice(
                invoice_id, options={"idempotency_key": key}
            ),
        )
        po = _persist_step(po, invoice, stamp="invoice_sent_at")
        log_state_change(
            logger, event="invoice_sent", po_reference=po.reference, invoice_id=invoice_id
        )
    elif po.invoice_sent_at is None:
        logger.warning(
            "po %s: invoice %s is %s at Stripe; not sending it",
            po.reference,
            invoice_id,
            invoice.status,
        )
    purchase_order.refresh_from_db()
    return po.stripe_invoice_url


# --- Sync ----------------------------------------------------------------------------------------


def sync_invoice(
    *, purchase_order: PurchaseOrder, invoice_id: str, source: str = "sync"
) -> Decimal:
    """Retrieve one of the PO's invoices with its conference's key and apply it (internal).

    Works for the current invoice and for an earlier generation's (reconciliation).
    """
    po = _load(purchase_order)
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(invoice_id)
    with transaction.atomic():
        locked = lock_purchase_order(po)
        locked.last_synced_at = timezone.now()
        recorded = apply_invoice_snapshot_locked(
            locked,
            InvoiceSnapshot.from_invoice(invoice),
            source=source,
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
    po = _load(purchase_order)
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


def handle_invoice_event(*, conference: Conference, event: Mapping[str, object]) -> EventOutcome:
    """Apply one Stripe event that arrived at ``conference``'s endpoint (the dispatcher's entry).

    Handles the invoice events in :data:`HANDLED_EVENT_TYPES`; others are ``IGNORED``, as are
    invoices that are not ours. ``invoice_payment.paid`` carries an InvoicePayment, not the
    invoice's ``amount_paid``, so the invoice is retrieved (with this conference's key) and applied.

    Raises:
        EventRejected: wrong livemode or currency, another conference's invoice, malformed.
        StripeKeyMissing: the conference has no key (its livemode is unknown).
        stripe.StripeError: retrieving the invoice failed (retry later).
    """
    event_type = event.get("type")
    raw_event_id = event.get("id")
    event_id = raw_event_id if isinstance(raw_event_id, str) else ""
    if not isinstance(event_type, str) or event_type not in HANDLED_EVENT_TYPES:
        return EventOutcome.IGNORED
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


# --- Cancel and re-issue -------------------------------------------------------------------------


def _void(client: stripe.StripeClient, po: PurchaseOrder, invoice_id: str) -> stripe.Invoice:
    invoice = _keyed_write(
        po,
        "void",
        lambda key: client.v1.invoices.void_invoice(invoice_id, options={"idempotency_key": key}),
        verify=_retrieve_if(
            client, invoice_id, lambda found: found.status == StripeInvoiceStatus.VOID
        ),
    )
    log_state_change(
        logger, event="invoice_voided", po_reference=po.reference, invoice_id=invoice_id
    )
    return invoice


def cancel_invoiced_purchase_order(
    purchase_order: PurchaseOrder,
    *,
    cancelled_by: User | None = None,
    reason: str = "",
) -> None:
    """Cancel a PO and make sure its Stripe invoice can no longer take money.

    Flow: a draft invoice is deleted, an open or uncollectible one is voided (idempotency key
    ``po-<uid>-g<n>-void``), then the resulting snapshot is applied (recording any payment that
    arrived meanwhile) and the PO is marked cancelled in the same transaction. A paid invoice is
    refused (refund it first). If Stripe fails, nothing changes on our side and the error surfaces.
    """
    po = _load(purchase_order)
    if po.status == Status.CANCELLED:
        return
    ensure_allowed(cancel_refusal, po, verb="cancelled")
    if not po.stripe_invoice_id:
        purchase_orders.cancel_purchase_order(po, cancelled_by=cancelled_by, reason=reason)
        purchase_order.refresh_from_db()
        return
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    if invoice.status == StripeInvoiceStatus.DRAFT:
        invoice = client.v1.invoices.delete(invoice.id)
    elif invoice.status in PAYABLE_STATUSES:
        invoice = _void(client, po, invoice.id)
    # Committed on its own: a payment that raced the cancellation stays in the ledger either way.
    snapshot = InvoiceSnapshot.from_invoice(invoice)
    apply_invoice_snapshot(purchase_order=po, invoice=snapshot, source="cancel")
    if snapshot.status == StripeInvoiceStatus.PAID:
        raise InvalidTransition(
            f"PO {po.reference}: invoice {invoice.id} is paid; refund it before cancelling."
        )
    with transaction.atomic():
        locked = lock_purchase_order(po)
        if locked.status != Status.CANCELLED:  # a concurrent cancellation may have finished
            purchase_orders.mark_cancelled(locked, cancelled_by=cancelled_by, reason=reason)
    purchase_order.refresh_from_db()


def void_stripe_invoice(purchase_order: PurchaseOrder, *, voided_by: User | None = None) -> None:
    """Void the PO's open or uncollectible invoice, keeping the PO: it becomes ``invoice_voided``.

    The organizer then re-issues (:func:`reissue_stripe_invoice`) or cancels it. The void carries
    the same idempotency key as the one :func:`cancel_invoiced_purchase_order` sends, and any
    payment that raced it is recorded from the voided invoice's snapshot. An invoice already void
    (here or at Stripe) is left as it is.

    Raises:
        InvalidTransition: :func:`~invoicing.selectors.void_refusal` refuses, or Stripe shows the
            invoice paid or still a draft.
        stripe.StripeError: Stripe failed; nothing changed on our side.
    """
    po = _load(purchase_order)
    if po.status != Status.CANCELLED and po.stripe_invoice_status in VOIDED_STATUSES:
        return  # voided already: a repeated request
    ensure_allowed(void_refusal, po, verb="voided")
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    if invoice.status in PAYABLE_STATUSES:
        invoice = _void(client, po, invoice.id)
    apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="void")
    if invoice.status == StripeInvoiceStatus.PAID:
        raise InvalidTransition(
            f"PO {po.reference}: invoice {invoice.id} is paid; there is nothing to void."
        )
    if invoice.status == StripeInvoiceStatus.DRAFT:
        raise InvalidTransition(
            f"PO {po.reference}: invoice {invoice.id} is still being created; void it once sent."
        )
    log_state_change(
        logger,
        event="invoice_void_done",
        po_reference=po.reference,
        invoice_id=invoice.id,
        requested_by=getattr(voided_by, "pk", None),
    )
    purchase_order.refresh_from_db()


def _reissue_under_way(po: PurchaseOrder) -> bool:
    """A re-issue stopped after starting the new generation (Stripe failed, the worker died)."""
    return po.status == Status.APPROVED and po.generation > 1 and not po.has_complete_invoice


def reissue_stripe_invoice(
    purchase_order: PurchaseOrder, *, reissued_by: User | None = None
) -> str:
    """Replace a void or uncollectible invoice with a new one for what is still owed.

    An uncollectible invoice is synced (so its payments are in the ledger) and voided first, so it
    can never be paid after its replacement exists. Then the generation is bumped (new idempotency
    keys), the money received so far becomes a credit line on the new invoice
    (:func:`~invoicing.services.purchase_orders.prepare_reissue`), and the new invoice is created
    and sent. A re-issue that stopped half-way is finished instead of refused.

    Returns:
        The new hosted invoice URL.
    """
    po = _load(purchase_order)
    if not _reissue_under_way(po):
        ensure_allowed(reissue_refusal, po, verb="re-issued")
        if po.status == Status.INVOICE_UNCOLLECTIBLE:
            client = build_stripe_client(po.conference)
            invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
            apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reissue")
            if invoice.status in PAYABLE_STATUSES:
                invoice = _void(client, po, invoice.id)
                apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reissue")
            po = _load(po)
        purchase_orders.prepare_reissue(po, reissued_by=reissued_by)
    url = create_stripe_invoice(po)
    purchase_order.refresh_from_db()
    return url
