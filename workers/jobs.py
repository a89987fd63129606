"""The queue behind :mod:`invoicing.background`: how each job is handed to the broker.

A job runs as one task, published by :func:`~workers.enqueue.enqueue` (short timeouts, no retry),
except the webhook's, which goes to the publisher thread so the answer never waits for the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from invoicing.background import Job
from workers import money_tasks, tasks
from workers.enqueue import enqueue
from workers.webhook_publisher import publish_recorded_event

QUEUE_FOR_JOB: dict[Job, Callable[..., bool]] = {
    Job.CREATE_INVOICE: partial(enqueue, tasks.create_invoice_for_purchase_order),
    Job.RETRY_INVOICE_CREATION: partial(enqueue, tasks.retry_invoice_creation_task),
    Job.SYNC_PURCHASE_ORDER: partial(enqueue, tasks.sync_purchase_order),
    Job.VOID_INVOICE: partial(enqueue, tasks.void_purchase_order_invoice),
    Job.REISSUE_INVOICE: partial(enqueue, tasks.reissue_purchase_order_invoice),
    Job.CANCEL_PURCHASE_ORDER: partial(enqueue, tasks.cancel_purchase_order_task),
    Job.REFUND: partial(enqueue, money_tasks.refund_purchase_order),
    Job.REDUCE_AMOUNT_OWED: partial(enqueue, money_tasks.reduce_amount_owed),
    Job.RECONCILE_CONFERENCE: partial(enqueue, tasks.sync_conference_invoices),
    Job.REPORT_OFF_STRIPE_PAYMENT: partial(enqueue, money_tasks.report_off_stripe_payment),
    Job.PROCESS_STRIPE_EVENT: partial(enqueue, tasks.process_stripe_event),
    Job.PUBLISH_RECORDED_EVENT: publish_recorded_event,
    Job.SEND_NOTIFICATION: partial(enqueue, money_tasks.send_notification),
}


def queue_job(job: Job, args: tuple[object, ...]) -> bool:
    """Queue the job; False (logged) if the broker refused it."""
    return QUEUE_FOR_JOB[job](*args)
