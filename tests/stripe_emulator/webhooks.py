"""Webhook delivery: signed like Stripe, retried with backoff, with per-account chaos.

Deliveries run on a small pool of background threads fed by a time-ordered queue, so a slow
or dead receiver never blocks the API. Each account's config decides the chaos applied at
scheduling time: a fixed delay, a random extra delay within a reordering window (events then
arrive out of order), duplicates (the same event delivered twice), and drops (never delivered:
the event stays listable in the events API with ``pending_webhooks > 0``, as when Stripe gives
up on an endpoint).
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Account, EventRec
    from .store import Store

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Delivery:
    """A webhook to send once the request's lock is released."""

    account: Account
    event: EventRec
    endpoint_id: str
    url: str
    secret: str
    payload: bytes


def encode_payload(event: dict[str, Any]) -> bytes:
    """Stripe sends events pretty-printed; receivers must verify the raw bytes, not re-encode."""
    return json.dumps(event, indent=2).encode()


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "t.payload" keyed with the whsec_ secret>``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(order=True)
class _Job:
    due: float
    order: int
    delivery: Delivery = field(compare=False)
    attempt: int = field(compare=False, default=1)
    duplicate: bool = field(compare=False, default=False)


class Dispatcher:
    def __init__(self, store: Store, *, workers: int = 16) -> None:
        self._store = store
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"webhooks-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def pending(self, secret_key: str | None = None) -> int:
        """Deliveries scheduled or running (for one account, or all)."""
        with self._cond:
            queued = [
                job
                for job in self._queue
                if secret_key is None or job.delivery.account.secret_key == secret_key
            ]
            running = (
                sum(self._in_flight.values()) if secret_key is None else self._in_flight[secret_key]
            )
            return len(queued) + running

    def submit(self, deliveries: list[Delivery]) -> None:
        now = time.time()
        for delivery in deliveries:
            account = delivery.account
            config = account.config
            if config.webhook_drop_rate and account.random() < config.webhook_drop_rate:
                self._record(delivery, attempt=1, status=None, error="dropped by chaos", final=True)
                continue
            copies = 1
            if config.webhook_duplicate_rate and account.random() < config.webhook_duplicate_rate:
                copies = 2
            for copy_index in range(copies):
                delay = config.webhook_delay
                if config.webhook_reorder_window:
                    delay += account.random() * config.webhook_reorder_window
                self._push(_Job(now + delay, next(self._order), delivery, duplicate=copy_index > 0))

    def _push(self, job: _Job) -> None:
        with self._cond:
            heapq.heappush(self._queue, job)
            self._cond.notify()

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._stopped:
                if self._queue:
                    wait = self._queue[0].due - time.time()
                    if wait <= 0:
                        job = heapq.heappop(self._queue)
                        if job.delivery.account.config.webhooks_paused:
                            job.due = time.time() + 0.05
                            heapq.heappush(self._queue, job)
                            self._cond.wait(0.05)
                            continue
                        self._in_flight[job.delivery.account.secret_key] += 1
                        return job
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._attempt(job)
            finally:
                with self._cond:
                    self._in_flight[job.delivery.account.secret_key] -= 1

    def _attempt(self, job: _Job) -> None:
        delivery = job.delivery
        config = delivery.account.config
        timestamp = int(time.time())
        request = urllib.request.Request(
            delivery.url,
            data=delivery.payload,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                "Accept": "*/*; q=0.5, application/xml",
                "Cache-Control": "no-cache",
                "Stripe-Signature": signature_header(delivery.payload, delivery.secret, timestamp),
            },
        )
        status: int | None = None
        error: str | None = None
        try:
            with _NO_PROXY_OPENER.open(request, timeout=config.webhook_timeout) as response:
                status = response.status
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        succeeded = status is not None and 200 <= status < 300
        schedule = config.webhook_retry_schedule
        final = succeeded or job.attempt > len(schedule)
        self._record(
            delivery,
            attempt=job.attempt,
            status=status,
            error=error,
            final=final,
            succeeded=succeeded,
            duplicate=job.duplicate,
        )
        if not final:
            backoff = schedule[job.attempt - 1]
            self._push(
                _Job(
                    time.time() + backoff,
                    next(self._order),
                    delivery,
                    attempt=job.attempt + 1,
                    duplicate=job.duplicate,
                )
            )

    def _record(
        self,
        delivery: Delivery,
        *,
        attempt: int,
        status: int | None,
        error: str | None,
        final: bool,
        succeeded: bool = False,
        duplicate: bool = False,
    ) -> None:
        account = delivery.account
        with self._store.lock:
            key = (delivery.event.id, delivery.endpoint_id)
            if succeeded and key not in account.delivered:
                account.delivered.add(key)
                delivery.event.pending_webhooks -= 1
            account.deliveries.append(
                {
                    "event_id": delivery.event.id,
                    "event_type": delivery.event.type,
                    "endpoint_id": delivery.endpoint_id,
                    "url": delivery.url,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "succeeded": succeeded,
                    "final": final,
                    "duplicate": duplicate,
                    "time": time.time(),
                }
            )
