"""The tasks' failure policy: retry what is transient with backoff, record what is permanent.

Shared by every task module (see :mod:`workers.tasks` for the rule in words).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError

from invoicing.models import PurchaseOrder
from invoicing.retry import backoff_seconds, describe_error, has_known_cause, is_transient
from invoicing.services import (
    purchase_orders,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

BoundTask = Task[Any, Any]
_T = TypeVar("_T")


# --- The failure policy --------------------------------------------------------------------------


def retry_countdown(task: BoundTask) -> float | None:
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
    task: BoundTask, po: PurchaseOrder, action: str, error: Exception, *, creates: bool
) -> None:
    """Retry a transient failure, or record a permanent one and stop (see the module doc)."""
    description = describe_error(error)
    if is_transient(error):
        countdown = retry_countdown(task)
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


def loaded(task: BoundTask, load: Callable[[], _T]) -> _T:
    """Run a read that comes before the failure policy (loading the task's rows).

    The database may be away at that moment (a restart, a failover): a transient error is retried
    with backoff like any other, instead of failing the task for good, which would leave the work
    to the beat's recovery minutes later.
    """
    try:
        return load()
    except DatabaseError as error:
        countdown = retry_countdown(task) if is_transient(error) else None
        if countdown is None:
            raise
        raise task.retry(exc=error, countdown=countdown) from error


def load_purchase_order(purchase_order_id: int, action: str) -> PurchaseOrder | None:
    po = PurchaseOrder.objects.select_related("conference").filter(pk=purchase_order_id).first()
    if po is None:
        logger.info(
            "%s: purchase order %s no longer exists; nothing to do", action, purchase_order_id
        )
    return po


def load_user(user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user: User | None = get_user_model().objects.filter(pk=user_id).first()
    return user


def run_for_purchase_order(
    task: BoundTask,
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
