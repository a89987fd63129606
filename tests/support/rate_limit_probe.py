"""Runs in child processes of the rate-limit tests: reserve slots, report when each falls.

Top-level functions only, so a ``spawn`` multiprocessing context can import and run them.
"""

from __future__ import annotations

import threading
import time

from invoicing.services.rate_limit import AccountLimit, StripeRateLimiter


def reserve_many(
    redis_url: str, key_prefix: str, account: str, per_second: float, count: int, threads: int,
) -> list[int]:  # fmt: skip
    """Reserve ``count`` slots from ``threads`` threads; each slot's time (µs, wall clock).

    The limiter is given the wall clock (shared by every process on the machine) instead of
    Redis's, frozen per thread around each call, so a slot's time is exactly the ``now`` the
    script saw plus the wait it answered: what is asserted is the schedule Redis handed out, not
    how punctually threads woke up.
    """
    frozen = threading.local()
    limiter = StripeRateLimiter(
        redis_url=redis_url, key_prefix=key_prefix, clock=lambda: float(frozen.now)
    )
    limit = AccountLimit(per_second=per_second)
    slots: list[int] = []
    lock = threading.Lock()

    def work(share: int) -> None:
        for _ in range(share):
            frozen.now = time.time()
            wait = limiter.reserve(account=account, limit=limit, max_wait=3600)
            assert wait is not None
            with lock:
                slots.append(round(frozen.now * 1_000_000) + round(wait * 1_000_000))

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=work, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    limiter.close()
    return slots
