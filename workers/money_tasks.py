"""Tasks for money going back, staff payments reported to Stripe and e-mail notifications.

Same failure policy as :mod:`workers.tasks` (:mod:`workers.task_policy`); task names stay
``workers.tasks.*`` so routes and the beat schedule did not move.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from celery import shared_task
from django.conf import settings

from invoicing.models import PurchaseOrderPayment, StripeWriteRequest
from invoicing.retry import describe_error, has_known_cause, is_transient
from invoicing.selectors import (
    stalled_off_stripe_reports,
)
from invoicing.services import (
    amount_owed,
    notifications,
    off_stripe_reports,
    refunds,
    stripe_write_requests,
)

if TYPE_CHECKING:
    pass

from workers.task_policy import (
    BoundTask,
    loaded,
    retry_countdown,
    run_for_purchase_order,
)

logger = logging.getLogger(__name__)


# --- Refunds and reductions (the row is the request; its state and error are the outcome) --------


def _run_write_request(
    task: BoundTask,
    request_id: int,
    action: str,
    call: Callable[[StripeWriteRequest], None],
) -> None:
    row = loaded(task, lambda: StripeWriteRequest.objects.filter(pk=request_id).first())
    if row is None:
        logger.info("%s: request %s no longer exists; nothing to do", action, request_id)
        return
    try:
        call(row)
    except Exception as error:  # refusals already failed the row; the rest is classified here
        description = describe_error(error)
        if is_transient(error):
            countdown = retry_countdown(task)
            if countdown is not None:
                raise task.retry(exc=error, countdown=countdown) from error
            description = f"gave up after {settings.TASK_MAX_RETRIES} retries: {description}"
        elif not has_known_cause(error):
            logger.error("%s of request %s: unexpected error", action, request_id, exc_info=error)
        stripe_write_requests.finish(
            row, state=StripeWriteRequest.State.FAILED, error=f"{action} failed: {description}"
        )


@shared_task(bind=True, name="workers.tasks.refund_purchase_order", max_retries=None)
def refund_purchase_order(self: BoundTask, stripe_write_request_id: int) -> None:
    """Refund a PO's Stripe payments as its finance admin asked (services/refunds.py)."""
    _run_write_request(
        self,
        stripe_write_request_id,
        "Refund",
        lambda row: refunds.process_refund_request(write_request=row),
    )


@shared_task(bind=True, name="workers.tasks.reduce_amount_owed", max_retries=None)
def reduce_amount_owed(self: BoundTask, stripe_write_request_id: int) -> None:
    """Credit note on a PO's open invoice, as its organizer asked (services/amount_owed.py)."""
    _run_write_request(
        self,
        stripe_write_request_id,
        "Reduction",
        lambda row: amount_owed.process_reduce_request(write_request=row),
    )


# --- E-mail notifications ------------------------------------------------------------------------


@shared_task(bind=True, name="workers.tasks.send_notification", max_retries=None)
def send_notification(self: BoundTask, notification_id: int) -> None:
    """Send one recorded notification (queued when its transaction committed); idempotent."""
    try:
        notifications.send_notification(notification_id=notification_id)
    except Exception as error:  # the mail server's refusal or absence, or the database's
        transient = is_transient(error) or isinstance(error, smtplib.SMTPException | OSError)
        countdown = retry_countdown(self) if transient else None
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
def report_off_stripe_payment(self: BoundTask, payment_id: int) -> None:
    """Report a wire/check/other payment to Stripe and attach it to its invoice (idempotent)."""
    payment = loaded(
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
    run_for_purchase_order(
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
