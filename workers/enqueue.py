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
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from celery import Celery, Task
from django.conf import settings
from kombu.pools import ProducerPool

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")

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


class Batcher(Generic[_Item]):
    """Hands submitted items to ``flush`` from one background thread per process, in batches.

    ``submit`` only appends and returns: the caller (a web request) never waits for the broker.
    The thread flushes whatever arrived while its previous flush ran, so a lone item goes alone,
    at once, and a burst shares a few flushes instead of paying one each. It starts on the first
    submit in each process (a forked child starts its own), and is a daemon: :meth:`drain` at
    exit publishes what is pending.

    Under load (the previous flush carried more than one item) the thread first lets the batch
    fill for up to ``linger`` seconds, or until ``max_batch`` items: fewer, larger flushes. An
    idle process flushes a lone item at once.

    ``flush`` must not raise (it is logged if it does): every item it is given is recorded
    elsewhere and recovered from there if its batch is lost.
    """

    def __init__(
        self,
        flush: Callable[[list[_Item]], object],
        *,
        name: str,
        linger: float = 0.0,
        max_batch: int = 500,
    ) -> None:
        self._flush = flush
        self._name = name
        self._linger = linger
        self._max_batch = max_batch
        self._condition = threading.Condition()
        self._pending: list[_Item] = []
        self._busy = False
        self._pid: int | None = None

    def submit(self, item: _Item) -> None:
        """Queue ``item`` for the next flush; never blocks on the flush, never raises."""
        with self._condition:
            if self._pid != os.getpid():  # first use here, or a forked child of a process using it
                self._pending, self._busy, self._pid = [], False, os.getpid()
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
            self._pending.append(item)
            self._condition.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until everything submitted so far is flushed; False if ``timeout`` passed first."""
        with self._condition:
            if self._pid != os.getpid():
                return True  # nothing was submitted in this process
            return self._condition.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout
            )

    def _run(self) -> None:
        from django.db import connections

        under_load = False  # the previous batch carried more than one item
        while True:
            with self._condition:
                self._condition.wait_for(lambda: bool(self._pending))
                if under_load and self._linger > 0:
                    self._condition.wait_for(
                        lambda: len(self._pending) >= self._max_batch, timeout=self._linger
                    )
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self._busy = True
            under_load = len(batch) > 1
            try:
                self._flush(batch)
            except Exception:  # the items are recorded; their recovery does not need us
                logger.exception("flushing %s queued item(s) failed", len(batch))
            finally:
                try:
                    connections.close_all()  # a flush that wrote to the database used its own
                except Exception:  # the thread must outlive a connection that fails to close
                    logger.exception("closing the flush's database connections failed")
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
