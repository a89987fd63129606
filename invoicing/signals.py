"""Approval queues the invoice: whatever path sets a PO to ``approved``, one task, after commit.

(Also: a conference saved or deleted here is forgotten by the webhook view's per-process copy.)

Paths into ``approved``: :func:`purchase_orders.approve_purchase_order` (also behind the admin's
action and edit form) and any plain ``save()`` of a PO whose status became ``approved``. The status
the instance was loaded with (``PurchaseOrder._loaded_status``, kept by ``from_db``,
``refresh_from_db`` and this receiver) tells a real transition from a save of a PO that was already
approved, which queues nothing. The task is queued with ``transaction.on_commit``: a rolled-back
approval queues nothing, and the worker never runs before the approval is visible to it.

Only ``draft`` -> ``approved`` (or a PO created approved) is an approval. The re-issue flow also
moves a PO to ``approved`` (from ``invoice_voided``) but creates its new invoice itself, in the
task that re-issues it. ``QuerySet.update()`` sends no signal; the beat's
``resume_stalled_invoice_creation`` picks such a PO up after ``INVOICE_CREATION_GRACE_SECONDS``,
as it does when the broker lost the message.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from invoicing import background
from invoicing.background import Job
from invoicing.logging import log_state_change
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services.ledger_off_stripe import awaits_report

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status


def _queue_invoice_creation(purchase_order_id: int, reference: str) -> None:
    queued = background.request(Job.CREATE_INVOICE, purchase_order_id)
    log_state_change(
        logger,
        event="invoice_creation_queued" if queued else "invoice_creation_not_queued",
        po_reference=reference,
        level=logging.INFO if queued else logging.WARNING,
    )


@receiver(post_save, sender=PurchaseOrder, dispatch_uid="invoicing.queue_invoice_on_approval")
def queue_invoice_on_approval(
    sender: type[PurchaseOrder],
    instance: PurchaseOrder,
    created: bool,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **_: Any,
) -> None:
    """Queue the creation task after commit when this save moved the PO into ``approved``."""
    if raw:  # loaddata: rows as they were, no side effects
        return
    if update_fields is not None and "status" not in update_fields:
        return
    previous = instance._loaded_status
    current = instance.__dict__.get("status")
    instance._loaded_status = current  # saving this instance again is no transition
    if current != Status.APPROVED:
        return
    # None without ``created``: the status was deferred when loaded; queue (the task is a no-op
    # if the invoice exists) rather than risk an approval with no invoice.
    if not created and previous not in (None, Status.DRAFT):
        return
    transaction.on_commit(
        partial(_queue_invoice_creation, instance.pk, instance.reference), robust=True
    )


def _queue_off_stripe_report(payment_id: int, reference: str) -> None:
    queued = background.request(Job.REPORT_OFF_STRIPE_PAYMENT, payment_id)
    log_state_change(
        logger,
        event="off_stripe_report_queued" if queued else "off_stripe_report_not_queued",
        po_reference=reference,
        level=logging.INFO if queued else logging.WARNING,
        payment_id=payment_id,
    )


@receiver(post_save, sender=PurchaseOrderPayment, dispatch_uid="invoicing.queue_off_stripe_report")
def queue_off_stripe_report(
    sender: type[PurchaseOrderPayment],
    instance: PurchaseOrderPayment,
    created: bool,
    raw: bool = False,
    **_: Any,
) -> None:
    """A new wire/check/other payment counted against an invoice: report it after commit.

    The row is the record of the request: if the broker loses the message, the beat's
    ``report_pending_off_stripe_payments`` queues it again.
    """
    if raw or not created or not awaits_report(instance):
        return
    transaction.on_commit(
        partial(_queue_off_stripe_report, instance.pk, instance.purchase_order.reference),
        robust=True,
    )


@receiver(post_save, sender=Conference, dispatch_uid="invoicing.forget_webhook_conference_saved")
@receiver(post_delete, sender=Conference, dispatch_uid="invoicing.forget_webhook_conference_gone")
def forget_webhook_conference(**_: Any) -> None:
    """A conference saved or deleted here: the webhook view reads it afresh in this process."""
    from invoicing.services.webhook_intake import forget_webhook_conferences

    forget_webhook_conferences()
