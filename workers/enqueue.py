"""Queue a task from a web request or a signal: bounded in time, never raising.

Celery's own ``apply_async`` retries a broker connection for several seconds and then raises.
That is right inside a worker, wrong in the webhook view (Stripe waits, and a 5xx would make it
resend an event we already stored) and wrong after an approval committed (the admin would show an
error for work that is safely recorded). Everything queued through :func:`enqueue` is recorded in
the database first, and a beat task finds it again if the message never arrives: the inbox row
for an event (``reenqueue_pending_stripe_events``), the approved PO for an invoice
(``resume_stalled_invoice_creation``). So this module publishes once, with short timeouts, and
reports failure instead of raising.

Publishers come from a small pool per process and broker, kept alive between requests.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery, Task
from django.conf import settings
from kombu.pools import ProducerPool

logger = logging.getLogger(__name__)

_pools: dict[tuple[int, str], ProducerPool] = {}
_pools_lock = threading.Lock()


def _producer_pool(app: Celery) -> ProducerPool:
    """This process's publishers for the app's broker, connecting and failing fast."""
    url = str(app.conf.broker_write_url or app.conf.broker_url)
    key = (os.getpid(), url)  # a forked child never shares its parent's sockets
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            timeout: float = settings.WEBHOOK_BROKER_TIMEOUT_SECONDS
            connection = app.connection_for_write(
                url,
                connect_timeout=timeout,
                transport_options={
                    # Connect once: kombu's default is to retry for several seconds.
                    "max_retries": 0,
                    "socket_connect_timeout": timeout,
                    "socket_timeout": timeout,
                },
            )
            limit = int(app.conf.broker_pool_limit or 10)
            pool = _pools[key] = ProducerPool(connection.Pool(limit=limit), limit=limit)
        return pool


def enqueue(task: Task[Any, Any], *args: Any) -> bool:
    """Publish ``task(*args)`` once; True when the broker took it, False (logged) otherwise."""
    timeout: float = settings.WEBHOOK_BROKER_TIMEOUT_SECONDS
    try:
        with _producer_pool(task.app).acquire(block=True, timeout=timeout) as producer:
            task.apply_async(args=args, producer=producer, retry=False)
    except Exception as error:  # broker down or slow, pool exhausted: the beat recovers it
        logger.warning(
            "could not queue %s%r (%s: %s); it stays recorded and a beat task will queue it",
            task.name,
            args,
            type(error).__name__,
            error,
        )
        return False
    return True


def close_pools() -> None:
    """Release every publisher connection of this process (tests, shutdown)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.connections.force_close_all()
