"""A rate limit per Stripe account, shared by every worker through Redis.

Stripe limits each account to 25 requests/s in a sandbox and 100/s live, and answers 429 past
that. Every worker process calls Stripe for many conferences (each its own Stripe account), so a
per-process limit cannot keep an account under its limit: the bucket lives in Redis.

- **Token bucket**, one per account, in one Lua script (atomic, Redis's own clock, so worker
  clocks never matter). A bucket of ``burst`` tokens refilled at ``per_second`` lets through at
  most ``per_second + burst`` requests in any one-second window; the defaults keep that sum under
  Stripe's limit.
- **Accounts are named by a fingerprint** of their secret key (first 16 hex characters of its
  SHA-256), never by the key itself: Redis keys show up in ``MONITOR``, ``KEYS`` and dumps.
- ``acquire`` blocks, sleeping the time the script says, for at most ``max_wait`` seconds, then
  raises :class:`RateLimitWaitExceeded`, a ``stripe.RateLimitError``: callers and tasks already
  treat that as "retry later", and nothing was sent to Stripe.
- **Shared cooldown on 429**: when Stripe answers 429 for the account's rate (not an object's
  ``lock_timeout``), every worker pauses that account for the longer of the configured cooldown
  and the ``Retry-After`` Stripe sent, and the bucket restarts empty.
- **Redis down -> process-local bucket**, with a warning. The limiter protects Stripe's limits;
  it must never be the reason a payment is not recorded or an invoice not sent. While Redis is
  unreachable each process limits itself to the same rate (so N processes may together exceed
  it; Stripe's 429 and the retries behind it are the backstop), and Redis is tried again after a
  few seconds.

:func:`build_stripe_http_client` wraps all of this into the HTTP client a ``StripeClient`` uses, so
every attempt, including stripe-python's own retries, takes a token first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
import stripe
from django.conf import settings

logger = logging.getLogger(__name__)

__all__ = [
    "BucketLimit",
    "RateLimitWaitExceeded",
    "RateLimitedRequestsClient",
    "StripeRateLimiter",
    "account_fingerprint",
    "build_stripe_http_client",
    "get_rate_limiter",
    "is_live_key",
    "limit_for_key",
]

_LIVE_PREFIXES = ("sk_live_", "rk_live_")
# Stripe never needs more than this; a larger Retry-After is treated as a mistake, not obeyed.
_MAX_COOLDOWN_SECONDS = 60.0
# After Redis failed, use the local bucket this long before trying Redis again.
_REDIS_RETRY_AFTER_SECONDS = 5.0

# KEYS[1] bucket hash (tokens, ts), KEYS[2] cooldown flag. ARGV: rate/s, burst.
# Returns {granted 0|1, microseconds to wait before asking again}.
_ACQUIRE_SCRIPT = """
local cooldown = redis.call('PTTL', KEYS[2])
if cooldown > 0 then
  return {0, cooldown * 1000}
end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local granted = 0
local wait_us = 0
if tokens >= 1 then
  tokens = tokens - 1
  granted = 1
else
  wait_us = math.ceil((1 - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, wait_us}
"""

# KEYS[1] bucket hash, KEYS[2] cooldown flag. ARGV: cooldown in ms. Extends, never shortens.
_COOLDOWN_SCRIPT = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[2]) < ms then
  redis.call('SET', KEYS[2], '1', 'PX', ms)
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('HSET', KEYS[1], 'tokens', '0', 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ms + 60000)
return 1
"""


def account_fingerprint(secret_key: str) -> str:
    """Name a Stripe account without its secret: the first 16 hex chars of sha256(key)."""
    if not secret_key:
        raise ValueError("A Stripe secret key is needed to name its account.")
    return hashlib.sha256(secret_key.encode("utf-8")).hexdigest()[:16]


def is_live_key(secret_key: str) -> bool:
    """Whether a secret or restricted key is a live-mode key."""
    return secret_key.startswith(_LIVE_PREFIXES)


@dataclass(frozen=True)
class BucketLimit:
    """A token bucket: ``per_second`` refill, at most ``burst`` tokens saved up."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError(f"Rate must be positive, got {self.per_second!r}.")
        if self.burst < 1:
            raise ValueError(f"Burst must be at least 1, got {self.burst!r}.")


def limit_for_key(secret_key: str) -> BucketLimit:
    """The configured limit for the key's mode (live or test)."""
    if is_live_key(secret_key):
        return BucketLimit(
            per_second=settings.STRIPE_RATE_LIMIT_LIVE_PER_SECOND,
            burst=settings.STRIPE_RATE_LIMIT_LIVE_BURST,
        )
    return BucketLimit(
        per_second=settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND,
        burst=settings.STRIPE_RATE_LIMIT_TEST_BURST,
    )


class RateLimitWaitExceeded(stripe.RateLimitError):
    """No token for this Stripe account within the allowed wait; nothing was sent to Stripe.

    A ``stripe.RateLimitError`` on purpose: it means the same thing as Stripe's 429 (too many
    requests for this account, try again later), so callers retry it like one.
    """

    def __init__(self, *, account: str, waited: float, max_wait: float) -> None:
        super().__init__(
            f"No request sent to Stripe: account {account} had no rate-limit token within "
            f"{max_wait:.1f} s (waited {waited:.1f} s). Retry later.",
            code="rate_limit",
        )
        self.account = account
        self.waited = waited


class _LocalBucket:
    """The in-process stand-in for the Redis bucket, used while Redis is unreachable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._cooldown_until: dict[str, float] = {}

    def try_acquire(self, account: str, limit: BucketLimit) -> float:
        """Take a token and return 0, or return the seconds to wait before asking again."""
        with self._lock:
            now = time.monotonic()
            until = self._cooldown_until.get(account, 0.0)
            if until > now:
                return until - now
            tokens, ts = self._buckets.get(account, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + max(0.0, now - ts) * limit.per_second)
            if tokens >= 1:
                self._buckets[account] = (tokens - 1, now)
                return 0.0
            self._buckets[account] = (tokens, now)
            return (1 - tokens) / limit.per_second

    def cool_down(self, account: str, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._cooldown_until[account] = max(
                self._cooldown_until.get(account, 0.0), now + seconds
            )
            self._buckets[account] = (0.0, now)

    def cooldown_remaining(self, account: str) -> float:
        with self._lock:
            return max(0.0, self._cooldown_until.get(account, 0.0) - time.monotonic())


class StripeRateLimiter:
    """Token buckets and 429 cooldowns per Stripe account, kept in Redis (see the module doc)."""

    def __init__(
        self,
        *,
        redis_url: str,
        key_prefix: str = "stripe-rate-limit",
        socket_timeout: float = 0.5,
        redis_retry_after: float = _REDIS_RETRY_AFTER_SECONDS,
    ) -> None:
        self._client = redis.Redis.from_url(
            redis_url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry_on_timeout=False,
        )
        self._acquire_script = self._client.register_script(_ACQUIRE_SCRIPT)
        self._cooldown_script = self._client.register_script(_COOLDOWN_SCRIPT)
        self._key_prefix = key_prefix
        self._redis_retry_after = redis_retry_after
        self._local = _LocalBucket()
        self._state_lock = threading.Lock()
        self._redis_down_until = 0.0  # monotonic; 0 while Redis is believed up
        self._redis_was_down = False

    # -- Redis health ----------------------------------------------------------------------

    def _redis_usable(self) -> bool:
        with self._state_lock:
            return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, error: Exception) -> None:
        with self._state_lock:
            first = not self._redis_was_down
            self._redis_was_down = True
            self._redis_down_until = time.monotonic() + self._redis_retry_after
        if first:
            logger.warning(
                "Stripe rate limiter: Redis unreachable (%s); limiting per process until it "
                "returns. Requests are not blocked.",
                type(error).__name__,
            )

    def _redis_ok(self) -> None:
        if self._redis_was_down:
            with self._state_lock:
                recovered, self._redis_was_down = self._redis_was_down, False
            if recovered:
                logger.info("Stripe rate limiter: Redis reachable again; shared limits restored.")

    def _keys(self, account: str) -> list[str]:
        base = f"{self._key_prefix}:{account}"
        return [f"{base}:bucket", f"{base}:cooldown"]

    # -- the API ---------------------------------------------------------------------------

    def _try_acquire(self, account: str, limit: BucketLimit) -> float:
        if self._redis_usable():
            try:
                granted, wait_us = self._acquire_script(
                    keys=self._keys(account), args=[repr(limit.per_second), limit.burst]
                )
            except redis.RedisError as error:
                self._redis_failed(error)
            else:
                self._redis_ok()
                return 0.0 if int(granted) else int(wait_us) / 1_000_000
        return self._local.try_acquire(account, limit)

    def acquire(self, *, account: str, limit: BucketLimit, max_wait: float) -> float:
        """Block until the account has a token; return the seconds waited.

        Raises:
            RateLimitWaitExceeded: no token within ``max_wait`` seconds (nothing was taken).
        """
        started = time.monotonic()
        deadline = started + max_wait
        while True:
            wait = self._try_acquire(account, limit)
            now = time.monotonic()
            if wait <= 0:
                return now - started
            if now + wait > deadline:
                raise RateLimitWaitExceeded(
                    account=account, waited=now - started, max_wait=max_wait
                )
            # A little jitter so waiting workers do not all ask again at the same instant.
            time.sleep(wait + random.uniform(0, 0.005))  # noqa: S311 - jitter, not security

    def report_rate_limited(self, *, account: str, cooldown: float) -> None:
        """Pause the account for every worker for ``cooldown`` seconds (never shortens a pause)."""
        cooldown = min(max(cooldown, 0.0), _MAX_COOLDOWN_SECONDS)
        milliseconds = max(1, math.ceil(cooldown * 1000))
        self._local.cool_down(account, cooldown)
        if not self._redis_usable():
            return
        try:
            self._cooldown_script(keys=self._keys(account), args=[milliseconds])
        except redis.RedisError as error:
            self._redis_failed(error)
        else:
            self._redis_ok()

    def cooldown_remaining(self, *, account: str) -> float:
        """Seconds left in the account's shared cooldown (local one while Redis is down)."""
        if self._redis_usable():
            try:
                pttl = int(self._client.pttl(self._keys(account)[1]))
            except redis.RedisError as error:
                self._redis_failed(error)
            else:
                self._redis_ok()
                return max(0, pttl) / 1000
        return self._local.cooldown_remaining(account)

    def close(self) -> None:
        """Release the Redis connections."""
        self._client.close()


_limiters: dict[str, StripeRateLimiter] = {}
_limiters_lock = threading.Lock()


def get_rate_limiter() -> StripeRateLimiter:
    """The process-wide limiter for ``settings.STRIPE_RATE_LIMIT_REDIS_URL``."""
    url: str = settings.STRIPE_RATE_LIMIT_REDIS_URL
    with _limiters_lock:
        limiter = _limiters.get(url)
        if limiter is None:
            limiter = _limiters[url] = StripeRateLimiter(redis_url=url)
        return limiter


def _retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    raw = next((value for key, value in headers.items() if key.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None  # an HTTP date: Stripe sends none; the configured cooldown applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_code(body: object) -> str | None:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if not isinstance(body, str):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


class RateLimitedRequestsClient(stripe.RequestsClient):
    """stripe-python's requests client that takes a token before every attempt.

    stripe-python's retry loop (``HTTPClient._request_with_retries_internal``) calls
    :meth:`request` once per attempt, so overriding it covers the first try and every retry, and
    a retry waits out a cooldown that another worker started. A 429 about the account's rate
    starts the shared cooldown; a 429 ``lock_timeout`` is contention on one object, not the
    account's rate, so it does not. Synchronous only (no async fallback client).
    """

    def __init__(
        self,
        *,
        limiter: StripeRateLimiter,
        account: str,
        limit: BucketLimit,
        max_wait: float,
        cooldown: float,
        timeout: float,
    ) -> None:
        super().__init__(timeout=timeout)
        self.limiter = limiter
        self.account = account
        self.limit = limit
        self.max_wait = max_wait
        self.cooldown = cooldown

    def _before_attempt(self) -> None:
        self.limiter.acquire(account=self.account, limit=self.limit, max_wait=self.max_wait)

    def _after_attempt(self, body: object, status: int, headers: Mapping[str, str]) -> None:
        if status != 429:
            return
        code = _error_code(body)
        if code == "lock_timeout":
            return
        cooldown = max(self.cooldown, _retry_after_seconds(headers) or 0.0)
        logger.warning(
            "Stripe answered 429 (%s) for account %s; all workers pause it for %.1f s.",
            code or "no code",
            self.account,
            cooldown,
        )
        self.limiter.report_rate_limited(account=self.account, cooldown=cooldown)

    # RequestsClient returns bytes where HTTPClient declares str; this follows RequestsClient.
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        self._before_attempt()
        content, status, response_headers = super().request(method, url, headers, post_data)
        self._after_attempt(content, status, response_headers)
        return content, status, response_headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        self._before_attempt()
        stream, status, response_headers = super().request_stream(method, url, headers, post_data)
        # A streamed body is not read here; a 429 still starts the cooldown.
        self._after_attempt(None, status, response_headers)
        return stream, status, response_headers


def build_stripe_http_client(*, secret_key: str, timeout: float) -> stripe.HTTPClient:
    """The HTTP client for one Stripe account's ``StripeClient`` (live/test from the key)."""
    return RateLimitedRequestsClient(
        limiter=get_rate_limiter(),
        account=account_fingerprint(secret_key),
        limit=limit_for_key(secret_key),
        max_wait=settings.STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS,
        cooldown=settings.STRIPE_RATE_LIMIT_COOLDOWN_SECONDS,
        timeout=timeout,
    )
