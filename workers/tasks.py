"""Celery tasks. Each loads its row by primary key and calls one service.

Failure policy (one place, :func:`workers.task_policy.run_for_purchase_order`; the rule itself
is :mod:`invoicing.retry`):

- **Transient** (Stripe connection/5xx/409/429 incl. ``lock_timeout`` and the rate limiter's wait,
  database ``OperationalError``/``InterfaceError``, the soft time limit): retried with exponential
  backoff and jitter, capped at ``TASK_RETRY_BACKOFF_MAX_SECONDS``, at most ``TASK_MAX_RETRIES``
  times. Each failure is shown on the PO (``invoice_error``) while it retries.
- **Permanent** (our ``InvoicingError``s, Stripe's ``InvalidRequestError``, ``AuthenticationError``,
  ``PermissionError``, ``IdempotencyError``, anything unexpected): recorded on the PO and the task
  stops. A failed creation also sets ``invoice_creation_blocked``, so the resume task leaves the PO
  for a person.
- Loading the task's rows comes first and is under the same rule (:func:`loaded`): a database
  that is away when the task starts is a transient failure, retried.
- Success clears the recorded error. Work found already done (the invoice exists, the PO is gone,
  cancelled or already void) is a quiet no-op: every task may run twice (late acks, redeliveries,
  the beat's recovery tasks), and the services are idempotent. A creation that finds its invoice
  sent by another run still clears the creation error an earlier attempt of its own recorded.

Webhook events keep their own retry state on the inbox row (``services/stripe_events.py``); the
task only turns "retry in N s" into a Celery retry.

Routing (settings ``CELERY_TASK_ROUTES``): every task that may call Stripe runs on the ``stripe``
queue, the beat's bookkeeping (fan-out, re-enqueue, resume) on ``default``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from invoicing.errors import InvoiceAlreadyAttached
from invoicing.models import Conference, PurchaseOrder
from invoicing.retry import describe_error, is_transient
from invoicing.selectors import (
    awaits_invoice,
    stalled_invoice_creations,
    sync_refusal,
)
from invoicing.services import (
    creation_retry,
    event_retention,
    invoice_creation,
    invoice_lifecycle,
    invoice_sync,
    purchase_orders,
    reconciliation,
    stripe_events,
)

if TYPE_CHECKING:
    pass

# Autodiscovery imports this module only: importing money_tasks registers its tasks (their
# names stay workers.tasks.*, so routes and the beat schedule are unchanged).
from workers import money_tasks  # noqa: F401
from workers.task_policy import (
    BoundTask,
    load_purchase_order,
    load_user,
    loaded,
    retry_countdown,
    run_for_purchase_order,
)

logger = logging.getLogger(__name__)


# --- Invoice creation ----------------------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.create_invoice_for_purchase_order", max_retries=None)
def create_invoice_for_purchase_order(self: BoundTask, purchase_order_id: int) -> None:
    """Create, finalize and send the PO's invoice (queued on approval; resumable)."""
    po = loaded(self, lambda: load_purchase_order(purchase_order_id, "invoice creation"))
    if po is None:
        return
    if not awaits_invoice(po):
        logger.info(
            "invoice creation for po %s: nothing to do (%s, invoice %s)",
            po.reference,
            po.status,
            po.stripe_invoice_id or "none",
        )
        if po.has_complete_invoice:
            # A retry (or redelivery) finding that another run finished: the error this task
            # recorded on an earlier attempt is no longer true.
            purchase_orders.clear_invoice_error(po, action="Invoice creation")
        return

    def create(po: PurchaseOrder) -> None:
        try:
            invoice_creation.create_stripe_invoice(po)
        except InvoiceAlreadyAttached:
            logger.info("invoice creation for po %s: a concurrent run finished it", po.reference)

    run_for_purchase_order(self, po, "Invoice creation", create, creates=True)


@shared_task(bind=True, name="workers.tasks.retry_invoice_creation_task", max_retries=None)
def retry_invoice_creation_task(
    self: BoundTask, purchase_order_id: int, requested_by_id: int | None = None
) -> None:
    """Lift a blocked creation and resume it (the organizer fixed the cause)."""
    po = loaded(self, lambda: load_purchase_order(purchase_order_id, "invoice creation retry"))
    if po is None:
        return
    user = loaded(self, lambda: load_user(requested_by_id))
    run_for_purchase_order(
        self,
        po,
        "Invoice creation",
        lambda po: creation_retry.retry_invoice_creation(purchase_order=po, requested_by=user),
        creates=True,
    )


@shared_task(name="workers.tasks.resume_stalled_invoice_creation")
def resume_stalled_invoice_creation() -> int:
    """Beat: queue the creation again for approved POs idle without a sent invoice."""
    stalled = stalled_invoice_creations(
        idle_for=timedelta(seconds=settings.INVOICE_CREATION_GRACE_SECONDS)
    )
    for pk in stalled:
        create_invoice_for_purchase_order.delay(pk)
    if stalled:
        logger.warning("resumed invoice creation for %s stalled purchase order(s)", len(stalled))
    return len(stalled)


# --- Webhook events ------------------------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.process_stripe_event", max_retries=None)
def process_stripe_event(
    self: BoundTask, stripe_event_id: int, resume_claim: int | None = None
) -> None:
    """Process one inbox row (its primary key); its retries are counted on the row.

    ``resume_claim``: set by this task's own retry after the database failed between claiming the
    row and settling it, so the retry takes its claim back instead of waiting for it to expire.
    """
    try:
        result = stripe_events.process_stripe_event(
            stripe_event_id=stripe_event_id, resume_claim=resume_claim
        )
    except stripe_events.ClaimNotSettled as error:
        cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
        countdown = retry_countdown(self) if is_transient(cause) else None
        if countdown is None:
            logger.error(
                "stripe event row %s: claimed but not settled, giving up for now (%s); "
                "the beat re-enqueues it once the claim expires",
                stripe_event_id,
                describe_error(cause),
            )
            return
        raise self.retry(
            exc=cause,
            countdown=countdown,
            args=(stripe_event_id,),
            kwargs={"resume_claim": error.attempt},
        ) from error
    except DatabaseError as error:  # claiming failed; nothing of ours is held
        countdown = retry_countdown(self) if is_transient(error) else None
        if countdown is None:
            logger.error(
                "stripe event row %s: giving up for now (%s); the beat re-enqueues it",
                stripe_event_id,
                describe_error(error),
            )
            return
        raise self.retry(exc=error, countdown=countdown) from error
    if result.retry_in is not None:  # settled as pending: no claim of ours to resume
        raise self.retry(countdown=result.retry_in, args=(stripe_event_id,), kwargs={})


@shared_task(name="workers.tasks.queue_stripe_events")
def queue_stripe_events(stripe_event_ids: list[int]) -> int:
    """Queue one ``process_stripe_event`` per inbox row of a batch the webhook published at once."""
    return stripe_events.queue_stripe_events(stripe_event_ids=stripe_event_ids)


@shared_task(name="workers.tasks.reenqueue_pending_stripe_events")
def reenqueue_pending_stripe_events() -> int:
    """Beat: queue again events recorded but not processed (lost messages, dead workers)."""
    return stripe_events.reenqueue_pending_stripe_events()


@shared_task(name="workers.tasks.purge_stripe_event_payloads")
def purge_stripe_event_payloads() -> int:
    """Beat: empty the payloads of events settled longer ago than STRIPE_EVENT_RETENTION_DAYS."""
    return event_retention.purge_event_payloads()


# --- Sync and reconciliation ---------------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.sync_purchase_order", max_retries=None)
def sync_purchase_order(self: BoundTask, purchase_order_id: int) -> None:
    """Fetch the PO's invoice from Stripe and bring it in (status, new payments)."""
    po = loaded(self, lambda: load_purchase_order(purchase_order_id, "sync"))
    if po is None:
        return
    if why := sync_refusal(po):
        logger.info("sync of po %s: %s nothing to do", po.reference, why)
        return
    run_for_purchase_order(self, po, "Sync", invoice_sync.sync_stripe_invoice_status, clears="Sync")


@shared_task(name="workers.tasks.sync_open_invoices")
def sync_open_invoices() -> int:
    """Beat: one reconciliation task per active conference with a Stripe key."""
    conferences = reconciliation.conferences_to_reconcile()
    for conference in conferences:
        sync_conference_invoices.delay(conference.pk)
    return len(conferences)


@shared_task(bind=True, name="workers.tasks.sync_conference_invoices", max_retries=None)
def sync_conference_invoices(self: BoundTask, conference_id: int) -> None:
    """Reconcile one conference's open invoices with Stripe (services/reconciliation.py)."""
    conference = loaded(
        self, lambda: Conference.objects.filter(pk=conference_id, is_active=True).first()
    )
    if conference is None or not conference.has_stripe_key:
        logger.info("reconcile: conference %s is gone, inactive or keyless; skipped", conference_id)
        return
    try:
        reconciliation.reconcile_conference(conference=conference)
    except Exception as error:  # the run's state row keeps last_error
        countdown = retry_countdown(self) if is_transient(error) else None
        if countdown is not None:
            raise self.retry(exc=error, countdown=countdown) from error
        logger.error(
            "reconcile %s failed: %s", conference.slug, describe_error(error), exc_info=error
        )


# --- Staff actions (the admin queues these; views never call Stripe) -----------------------------


@shared_task(bind=True, name="workers.tasks.void_purchase_order_invoice", max_retries=None)
def void_purchase_order_invoice(
    self: BoundTask, purchase_order_id: int, requested_by_id: int | None = None
) -> None:
    """Void the PO's invoice without cancelling the PO (it can then be re-issued)."""
    po = loaded(self, lambda: load_purchase_order(purchase_order_id, "void"))
    if po is None:
        return
    user = loaded(self, lambda: load_user(requested_by_id))
    run_for_purchase_order(
        self, po, "Void", lambda po: invoice_lifecycle.void_stripe_invoice(po, voided_by=user)
    )


@shared_task(bind=True, name="workers.tasks.reissue_purchase_order_invoice", max_retries=None)
def reissue_purchase_order_invoice(
    self: BoundTask, purchase_order_id: int, requested_by_id: int | None = None
) -> None:
    """Replace a void or uncollectible invoice with a new one for the balance."""
    po = loaded(self, lambda: load_purchase_order(purchase_order_id, "re-issue"))
    if po is None:
        return
    user = loaded(self, lambda: load_user(requested_by_id))
    run_for_purchase_order(
        self,
        po,
        "Re-issue",
        lambda po: invoice_lifecycle.reissue_stripe_invoice(po, reissued_by=user),
        creates=True,
    )


@shared_task(bind=True, name="workers.tasks.cancel_purchase_order_task", max_retries=None)
def cancel_purchase_order_task(
    self: BoundTask,
    purchase_order_id: int,
    requested_by_id: int | None = None,
    reason: str = "",
) -> None:
    """Cancel the PO, voiding (or deleting) its Stripe invoice first."""
    po = loaded(self, lambda: load_purchase_order(purchase_order_id, "cancel"))
    if po is None:
        return
    user = loaded(self, lambda: load_user(requested_by_id))
    run_for_purchase_order(
        self,
        po,
        "Cancel",
        lambda po: invoice_lifecycle.cancel_invoiced_purchase_order(
            po, cancelled_by=user, reason=reason
        ),
    )
