"""How invoicing asks for background work without knowing what runs it.

Dependencies point one way: ``workers`` imports ``invoicing``, never the reverse. So invoicing
names the work (:class:`Job`) and its arguments, and the ``workers`` app installs, when Django
starts it (``WorkersConfig.ready()``), the function that queues each job.

Every job is recorded in the database before it is asked for (the approved PO, the inbox row, the
PO whose action was requested, the refund or reduction request), so a request the broker did not
take is found again by a beat task or retried by the person who asked. :func:`request`
therefore reports instead of raising.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured


class Job(enum.StrEnum):
    """Work that runs outside the request or transaction that asks for it."""

    CREATE_INVOICE = "create_invoice"  # (purchase_order_id,)
    RETRY_INVOICE_CREATION = "retry_invoice_creation"  # (purchase_order_id, requested_by_id)
    SYNC_PURCHASE_ORDER = "sync_purchase_order"  # (purchase_order_id,)
    VOID_INVOICE = "void_invoice"  # (purchase_order_id, requested_by_id)
    REISSUE_INVOICE = "reissue_invoice"  # (purchase_order_id, requested_by_id)
    CANCEL_PURCHASE_ORDER = "cancel_purchase_order"  # (purchase_order_id, requested_by_id, reason)
    REFUND = "refund"  # (stripe_write_request_id,)
    REDUCE_AMOUNT_OWED = "reduce_amount_owed"  # (stripe_write_request_id,)
    RECONCILE_CONFERENCE = "reconcile_conference"  # (conference_id,)
    # (payment_id,): a wire/check/other payment reported to Stripe and attached to its invoice.
    REPORT_OFF_STRIPE_PAYMENT = "report_off_stripe_payment"
    PROCESS_STRIPE_EVENT = "process_stripe_event"  # (stripe_event_pk,)
    # (stripe_event_pk,): the webhook's; returns at once and is published after the answer, in
    # one message with the rows other requests recorded meanwhile.
    PUBLISH_RECORDED_EVENT = "publish_recorded_event"
    SEND_NOTIFICATION = "send_notification"  # (notification_pk,)


JobQueue = Callable[[Job, tuple[object, ...]], bool]

_queue: JobQueue | None = None


def install(queue: JobQueue) -> None:
    """Route every :func:`request` to ``queue`` (the workers app calls this once at start)."""
    global _queue
    _queue = queue


def request(job: Job, *args: object) -> bool:
    """Ask for ``job(*args)``; True when it was queued, False when the broker did not take it."""
    if _queue is None:
        raise ImproperlyConfigured(
            "Nothing runs background jobs in this process: add 'workers' to INSTALLED_APPS."
        )
    return _queue(job, args)
