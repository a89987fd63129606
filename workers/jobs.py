"""The queue behind :mod:`invoicing.background`: one task per job, published by `enqueue`."""

from __future__ import annotations

from typing import Any

from celery import Task

from invoicing.background import Job
from workers import tasks
from workers.enqueue import enqueue

TASK_FOR_JOB: dict[Job, Task[Any, Any]] = {
    Job.CREATE_INVOICE: tasks.create_invoice_for_purchase_order,
    Job.SYNC_PURCHASE_ORDER: tasks.sync_purchase_order,
    Job.VOID_INVOICE: tasks.void_purchase_order_invoice,
    Job.REISSUE_INVOICE: tasks.reissue_purchase_order_invoice,
    Job.CANCEL_PURCHASE_ORDER: tasks.cancel_purchase_order_task,
    Job.RECONCILE_CONFERENCE: tasks.sync_conference_invoices,
    Job.PROCESS_STRIPE_EVENT: tasks.process_stripe_event,
    Job.PROCESS_STRIPE_EVENTS: tasks.queue_stripe_events,
}


def queue_job(job: Job, args: tuple[object, ...]) -> bool:
    """Publish the job's task once, with short timeouts; False (logged) if the broker refused."""
    return enqueue(TASK_FOR_JOB[job], *args)
