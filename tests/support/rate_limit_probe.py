"""Runs in child processes of the rate-limit tests: acquire tokens, report when each came.

Top-level functions only, so a ``spawn`` multiprocessing context can import and run them.
"""

from __future__ import annotations

import threading
import time

from invoicing.services.rate_limit import BucketLimit, StripeRateLimiter


def acquire_many(
    redis_url: str, key_prefix: str, account: str, per_second: float, burst: int, count: int,
    threads: int,
) -> list[float]:  # fmt: skip
    """Acquire ``count`` tokens from ``threads`` threads; return the wall-clock time of each."""
    limiter = StripeRateLimiter(redis_url=redis_url, key_prefix=key_prefix)
    limit = BucketLimit(per_second=per_second, burst=burst)
    stamps: list[float] = []
    lock = threading.Lock()

    def work(share: int) -> None:
        for _ in range(share):
            limiter.acquire(account=account, limit=limit, max_wait=60)
            now = time.time()
            with lock:
                stamps.append(now)

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=work, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    limiter.close()
    return stamps
