"""Ending an invoice's life: void it, replace it with a new one, or cancel the PO with it.

The rule throughout: a PO never stands without a way to pay what it owes, and never with two
invoices that can take money. Voiding goes first (a draft is deleted instead), under the same
idempotency key whoever asks; whatever Stripe returns is applied to the ledger before anything
else changes, so a payment that raced the void is recorded. Whether an action is allowed is asked
of :mod:`invoicing.selectors`, the same answer the admin shows; a repeated request whose outcome
already holds is a quiet no-op, because every worker task may run twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import stripe
from django.db import transaction

from invoicing.errors import InvalidTransition
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder
from invoicing.selectors import (
    cancel_refusal,
    ensure_allowed,
    reissue_refusal,
    reload_purchase_order,
    void_refusal,
)
from invoicing.services.invoice_creation import create_stripe_invoice
from invoicing.services.invoice_snapshots import WITH_OFF_STRIPE, InvoiceSnapshot
from invoicing.services.keyed_writes import keyed_write, retrieve_if
from invoicing.services.ledger import apply_invoice_snapshot, lock_purchase_order
from invoicing.services.purchase_orders import (
    cancel_purchase_order,
    mark_cancelled,
    prepare_reissue,
)
from invoicing.services.stripe_client import build_stripe_client
from invoicing.stripe_invoice_status import PAYABLE_STATUSES, VOIDED_STATUSES, StripeInvoiceStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status


def _void(client: stripe.StripeClient, po: PurchaseOrder, invoice_id: str) -> stripe.Invoice:
    invoice = keyed_write(
        po,
        "void",
        lambda key: client.v1.invoices.void_invoice(
            invoice_id, params={"expand": WITH_OFF_STRIPE}, options={"idempotency_key": key}
        ),
        verify=retrieve_if(
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
    po = reload_purchase_order(purchase_order)
    if po.status == Status.CANCELLED:
        return
    ensure_allowed(cancel_refusal, po, verb="cancelled")
    if not po.stripe_invoice_id:
        cancel_purchase_order(po, cancelled_by=cancelled_by, reason=reason)
        purchase_order.refresh_from_db()
        return
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE})
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
            mark_cancelled(locked, cancelled_by=cancelled_by, reason=reason)
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
    po = reload_purchase_order(purchase_order)
    if po.status != Status.CANCELLED and po.stripe_invoice_status in VOIDED_STATUSES:
        return  # voided already: a repeated request
    ensure_allowed(void_refusal, po, verb="voided")
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE})
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
    po = reload_purchase_order(purchase_order)
    if not _reissue_under_way(po):
        ensure_allowed(reissue_refusal, po, verb="re-issued")
        if po.status == Status.INVOICE_UNCOLLECTIBLE:
            client = build_stripe_client(po.conference)
            invoice = client.v1.invoices.retrieve(
                po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE}
            )
            apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reissue")
            if invoice.status in PAYABLE_STATUSES:
                invoice = _void(client, po, invoice.id)
                apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reissue")
            po = reload_purchase_order(po)
        prepare_reissue(po, reissued_by=reissued_by)
    url = create_stripe_invoice(po)
    purchase_order.refresh_from_db()
    return url
