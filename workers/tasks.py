"""Celery tasks. Each loads its row by primary key and calls one service.

Failure policy (one place, :func:`_run_for_purchase_order`; the rule itself is
:mod:`invoicing.retry`):

- **Transient** (Stripe connection/5xx/409/429 incl. ``lock_timeout`` and the rate limiter's wait,
  database ``OperationalError``/``InterfaceError``, the soft time limit): retried with exponential
  backoff and jitter, capped at ``TASK_RETRY_BACKOFF_MAX_SECONDS``, at most ``TASK_MAX_RETRIES``
  times. Each failure is shown on the PO (``invoice_error``) while it retries.
- **Permanent** (our ``InvoicingError``s, Stripe's ``InvalidRequestError``, ``AuthenticationError``,
  ``PermissionError``, ``IdempotencyError``, anything unexpected): recorded on the PO and the task
  stops. A failed creation also sets ``invoice_creation_blocked``, so the resume task leaves the PO
  for a person.
- Loading the task's rows comes first and is under the same rule (:func:`_loaded`): a database
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
import smtplib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task, shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError

from invoicing.errors import InvoiceAlreadyAttached
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeWriteRequest
from invoicing.retry import backoff_seconds, describe_error, has_known_cause, is_transient
from invoicing.selectors import (
    awaits_invoice,
    stalled_invoice_creations,
    stalled_off_stripe_reports,
    sync_refusal,
)
from invoicing.services import (
    amount_owed,
    creation_retry,
    event_retention,
    invoice_creation,
    invoice_lifecycle,
    invoice_sync,
    notifications,
    off_stripe_reports,
    purchase_orders,
    reconciliation,
    refunds,
    stripe_events,
    stripe_write_requests,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

_BoundTask = Task[Any, Any]
_T = TypeVar("_T")


# --- The failure policy --------------------------------------------------------------------------


def _retry_countdown(task: _BoundTask) -> float | None:
    """Seconds until the next retry, or None when the retry budget is spent."""
    retries = int(task.request.retries or 0)
    if retries >= settings.TASK_MAX_RETRIES:
        return None
    return backoff_seconds(retries + 1)


def _record(po: PurchaseOrder, message: str, *, blocks_creation: bool) -> None:
    try:
        purchase_orders.record_invoice_error(po, message=message, blocks_creation=blocks_creation)
    except DatabaseError as error:  # the database is the problem; the log keeps the reason
        logger.error("po %s: could not record %r (%s)", po.reference, message, error)


def _fail(
    task: _BoundTask, po: PurchaseOrder, action: str, error: Exception, *, creates: bool
) -> None:
    """Retry a transient failure, or record a permanent one and stop (see the module doc)."""
    description = describe_error(error)
    if is_transient(error):
        countdown = _retry_countdown(task)
        if countdown is not None:
            attempt = int(task.request.retries or 0) + 1
            _record(
                po,
                f"{action} failed, retry {attempt} of {settings.TASK_MAX_RETRIES} in "
                f"{countdown:.0f} s: {description}",
                blocks_creation=False,
            )
            raise task.retry(exc=error, countdown=countdown)
        # Out of retries; a later run (the resume task, a person) may still succeed.
        _record(
            po,
            f"{action} failed after {settings.TASK_MAX_RETRIES} retries: {description}",
            blocks_creation=False,
        )
        return None
    _record(po, f"{action} failed: {description}", blocks_creation=creates)
    if not has_known_cause(error):
        logger.error("%s for po %s: unexpected error", action, po.reference, exc_info=error)
    return None


def _loaded(task: _BoundTask, load: Callable[[], _T]) -> _T:
    """Run a read that comes before the failure policy (loading the task's rows).

    The database may be away at that moment (a restart, a failover): a transient error is retried
    with backoff like any other, instead of failing the task for good, which would leave the work
    to the beat's recovery minutes later.
    """
    try:
        return load()
    except DatabaseError as error:
        countdown = _retry_countdown(task) if is_transient(error) else None
        if countdown is None:
            raise
        raise task.retry(exc=error, countdown=countdown) from error


def _load_purchase_order(purchase_order_id: int, action: str) -> PurchaseOrder | None:
    po = PurchaseOrder.objects.select_related("conference").filter(pk=purchase_order_id).first()
    if po is None:
        logger.info(
            "%s: purchase order %s no longer exists; nothing to do", action, purchase_order_id
        )
    return po


def _load_user(user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user: User | None = get_user_model().objects.filter(pk=user_id).first()
    return user


def _run_for_purchase_order(
    task: _BoundTask,
    po: PurchaseOrder,
    action: str,
    call: Callable[[PurchaseOrder], object],
    *,
    creates: bool = False,
    clears: str | None = None,
) -> bool:
    """Call one service for the PO under the failure policy; True when it succeeded."""
    try:
        call(po)
    except Exception as error:  # classified by _fail: retried, or recorded and stopped
        _fail(task, po, action, error, creates=creates)
        return False
    try:
        purchase_orders.clear_invoice_error(po, action=clears)
    except DatabaseError as error:  # the work is done; the next success clears the message
        logger.error("po %s: could not clear the last error (%s)", po.reference, error)
    return True


# --- Invoice creation ----------------------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.create_invoice_for_purchase_order", max_retries=None)
def create_invoice_for_purchase_order(self: _BoundTask, purchase_order_id: int) -> None:
    """Create, finalize and send the PO's invoice (queued on approval; resumable)."""
    po = _loaded(self, lambda: _load_purchase_order(purchase_order_id, "invoice creation"))
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

    _run_for_purchase_order(self, po, "Invoice creation", create, creates=True)


@shared_task(bind=True, name="workers.tasks.retry_invoice_creation_task", max_retries=None)
def retry_invoice_creation_task(
    self: _BoundTask, purchase_order_id: int, requested_by_id: int | None = None
) -> None:
    """Lift a blocked creation and resume it (the organizer fixed the cause)."""
    po = _loaded(self, lambda: _load_purchase_order(purchase_order_id, "invoice creation retry"))
    if po is None:
        return
    user = _loaded(self, lambda: _load_user(requested_by_id))
    _run_for_purchase_order(
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
    self: _BoundTask, stripe_event_id: int, resume_claim: int | None = None
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
        countdown = _retry_countdown(self) if is_transient(cause) else None
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
        countdown = _retry_countdown(self) if is_transient(error) else None
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
def sync_purchase_order(self: _BoundTask, purchase_order_id: int) -> None:
    """Fetch the PO's invoice from Stripe and bring it in (status, new payments)."""
    po = _loaded(self, lambda: _load_purchase_order(purchase_order_id, "sync"))
    if po is None:
        return
    if why := sync_refusal(po):
        logger.info("sync of po %s: %s nothing to do", po.reference, why)
        return
    _run_for_purchase_order(
        self, po, "Sync", invoice_sync.sync_stripe_invoice_status, clears="Sync"
    )


@shared_task(name="workers.tasks.sync_open_invoices")
def sync_open_invoices() -> int:
    """Beat: one reconciliation task per active conference with a Stripe key."""
    conferences = reconciliation.conferences_to_reconcile()
    for conference in conferences:
        sync_conference_invoices.delay(conference.pk)
    return len(conferences)


@shared_task(bind=True, name="workers.tasks.sync_conference_invoices", max_retries=None)
def sync_conference_invoices(self: _BoundTask, conference_id: int) -> None:
    """Reconcile one conference's open invoices with Stripe (services/reconciliation.py)."""
    conference = _loaded(
        self, lambda: Conference.objects.filter(pk=conference_id, is_active=True).first()
    )
    if conference is None or not conference.has_stripe_key:
        logger.info("reconcile: conference %s is gone, inactive or keyless; skipped", conference_id)
        return
    try:
        reconciliation.reconcile_conference(conference=conference)
    except Exception as error:  # the run's state row keeps last_error
        countdown = _retry_countdown(self) if is_transient(error) else None
        if countdown is not None:
            raise self.retry(exc=error, countdown=countdown) from error
        logger.error(
            "reconcile %s failed: %s", conference.slug, describe_error(error), exc_info=error
        )


# --- Staff actions (the admin queues these; views never call Stripe) -----------------------------


@shared_task(bind=True, name="workers.tasks.void_purchase_order_invoice", max_retries=None)
def void_purchase_order_invoice(
    self: _BoundTask, purchase_order_id: int, requested_by_id: int | None = None
) -> None:
    """Void the PO's invoice without cancelling the PO (it can then be re-issued)."""
    po = _loaded(self, lambda: _load_purchase_order(purchase_order_id, "void"))
    if po is None:
        return
    user = _loaded(self, lambda: _load_user(requested_by_id))
    _run_for_purchase_order(
        self, po, "Void", lambda po: invoice_lifecycle.void_stripe_invoice(po, voided_by=user)
    )


@shared_task(bind=True, name="workers.tasks.reissue_purchase_order_invoice", max_retries=None)
def reissue_purchase_order_invoice(
    self: _BoundTask, purchase_order_id: int, requested_by_id: int | None = None
) -> None:
    """Replace a void or uncollectible invoice with a new one for the balance."""
    po = _loaded(self, lambda: _load_purchase_order(purchase_order_id, "re-issue"))
    if po is None:
        return
    user = _loaded(self, lambda: _load_user(requested_by_id))
    _run_for_purchase_order(
        self,
        po,
        "Re-issue",
        lambda po: invoice_lifecycle.reissue_stripe_invoice(po, reissued_by=user),
        creates=True,
    )


@shared_task(bind=True, name="workers.tasks.cancel_purchase_order_task", max_retries=None)
def cancel_purchase_order_task(
    self: _BoundTask,
    purchase_order_id: int,
    requested_by_id: int | None = None,
    reason: str = "",
) -> None:
    """Cancel the PO, voiding (or deleting) its Stripe invoice first."""
    po = _loaded(self, lambda: _load_purchase_order(purchase_order_id, "cancel"))
    if po is None:
        return
    user = _loaded(self, lambda: _load_user(requested_by_id))
    _run_for_purchase_order(
        self,
        po,
        "Cancel",
        lambda po: invoice_lifecycle.cancel_invoiced_purchase_order(
            po, cancelled_by=user, reason=reason
        ),
    )


# --- Refunds and reductions (the row is the request; its state and error are the outcome) --------


def _run_write_request(
    task: _BoundTask,
    request_id: int,
    action: str,
    call: Callable[[StripeWriteRequest], None],
) -> None:
    row = _loaded(task, lambda: StripeWriteRequest.objects.filter(pk=request_id).first())
    if row is None:
        logger.info("%s: request %s no longer exists; nothing to do", action, request_id)
        return
    try:
        call(row)
    except Exception as error:  # refusals already failed the row; the rest is classified here
        description = describe_error(error)
        if is_transient(error):
            countdown = _retry_countdown(task)
            if countdown is not None:
                raise task.retry(exc=error, countdown=countdown) from error
            description = f"gave up after {settings.TASK_MAX_RETRIES} retries: {description}"
        elif not has_known_cause(error):
            logger.error("%s of request %s: unexpected error", action, request_id, exc_info=error)
        stripe_write_requests.finish(
            row, state=StripeWriteRequest.State.FAILED, error=f"{action} failed: {description}"
        )


@shared_task(bind=True, name="workers.tasks.refund_purchase_order", max_retries=None)
def refund_purchase_order(self: _BoundTask, stripe_write_request_id: int) -> None:
    """Refund a PO's Stripe payments as its finance admin asked (services/refunds.py)."""
    _run_write_request(
        self,
        stripe_write_request_id,
        "Refund",
        lambda row: refunds.process_refund_request(write_request=row),
    )


@shared_task(bind=True, name="workers.tasks.reduce_amount_owed", max_retries=None)
def reduce_amount_owed(self: _BoundTask, stripe_write_request_id: int) -> None:
    """Credit note on a PO's open invoice, as its organizer asked (services/amount_owed.py)."""
    _run_write_request(
        self,
        stripe_write_request_id,
        "Reduction",
        lambda row: amount_owed.process_reduce_request(write_request=row),
    )


# --- E-mail notifications ------------------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.send_notification", max_retries=None)
def send_notification(self: _BoundTask, notification_id: int) -> None:
    """Send one recorded notification (queued when its transaction committed); idempotent."""
    try:
        notifications.send_notification(notification_id=notification_id)
    except Exception as error:  # the mail server's refusal or absence, or the database's
        transient = is_transient(error) or isinstance(error, smtplib.SMTPException | OSError)
        countdown = _retry_countdown(self) if transient else None
        notifications.record_send_failure(
            notification_id=notification_id, error=describe_error(error), final=countdown is None
        )
        if countdown is None:
            logger.error("notification %s not sent: %s", notification_id, describe_error(error))
            return
        raise self.retry(exc=error, countdown=countdown) from error


@shared_task(name="workers.tasks.notify_overdue_invoices")
def notify_overdue_invoices() -> int:
    """Beat: record (and queue) an e-mail for each invoice newly past due with a balance."""
    return notifications.notify_overdue_invoices()


@shared_task(name="workers.tasks.resend_pending_notifications")
def resend_pending_notifications() -> int:
    """Beat: queue notifications whose send request the broker never took."""
    pending = notifications.pending_notification_ids(older_than=timedelta(minutes=5))
    for notification_id in pending:
        send_notification.delay(notification_id)
    return len(pending)


# --- Payments made outside Stripe ----------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.report_off_stripe_payment", max_retries=None)
def report_off_stripe_payment(self: _BoundTask, payment_id: int) -> None:
    """Report a wire/check/other payment to Stripe and attach it to its invoice (idempotent)."""
    payment = _loaded(
        self,
        lambda: (
            PurchaseOrderPayment.objects.select_related("purchase_order__conference")
            .filter(pk=payment_id)
            .first()
        ),
    )
    if payment is None:
        logger.info("report payment: payment %s no longer exists; nothing to do", payment_id)
        return
    _run_for_purchase_order(
        self,
        payment.purchase_order,
        "Reporting a payment to Stripe",
        lambda po: off_stripe_reports.report_off_stripe_payment(payment),
        clears="Reporting a payment to Stripe",
    )


@shared_task(name="workers.tasks.report_pending_off_stripe_payments")
def report_pending_off_stripe_payments() -> int:
    """Beat: queue again the reports of payments recorded but not attached at Stripe yet."""
    pending = stalled_off_stripe_reports(
        idle_for=timedelta(seconds=settings.INVOICE_CREATION_GRACE_SECONDS)
    )
    for pk in pending:
        report_off_stripe_payment.delay(pk)
    if pending:
        logger.warning("re-queued the Stripe report of %s off-Stripe payment(s)", len(pending))
    return len(pending)
