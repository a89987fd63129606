"""A rate limit per Stripe account, shared by every worker through Redis.

Stripe limits each account to 25 requests/s in a sandbox and 100/s live, and answers 429 past
that. Every worker process calls Stripe for many conferences (each its own Stripe account), so a
per-process limit cannot keep an account under its limit: the schedule lives in Redis.

- **A sliding-window log with reservations**, one per account, in one Lua script (atomic;
  Redis's own clock, so worker clocks never matter). Stripe's limit is a *count per window* (25
  requests in any second in a sandbox), so the limiter counts the same way: the account keeps the
  times of its last ``L`` reserved slots (a Redis list, newest first, trimmed to ``L``, with a
  TTL), and a caller atomically *reserves* ``t = max(now, last slot, L-th most recent slot +
  window)``, learns how long until it, sleeps once and sends. So no window of ``window`` seconds
  ever holds more than ``L`` reservations; an idle account lets ``L`` calls through at once (one
  invoice's five calls are not spaced out), and a saturated one sustains exactly ``L`` per
  window. Stripe counts *arrivals*, and a window's burst arrives with some jitter: a request of
  one window that arrives late may share Stripe's second with the next window's, all on time. So
  the window is 1 s plus a slack (``STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS``): the defaults, 24
  per 1.05 s for test keys (22.9/s, 91% of 25/s), let 26 arrivals share a second only if two
  requests each arrive 50 ms later than the ones 24 slots after them. Nobody polls and nobody
  races for a freed slot.
- **Accounts are named by a fingerprint** of their secret key (first 16 hex characters of its
  SHA-256), never by the key itself: Redis keys show up in ``MONITOR``, ``KEYS`` and dumps.
- ``acquire`` reserves only a slot at most ``max_wait`` seconds away; otherwise it reserves
  nothing and raises :class:`RateLimitWaitExceeded`, a ``stripe.RateLimitError``: callers and
  tasks already treat that as "retry later", and nothing was sent to Stripe.
- **Shared cooldown on 429**: when Stripe answers 429 for the account's rate (not an object's
  ``lock_timeout``), every worker pauses that account for the longer of the configured cooldown
  and the ``Retry-After`` Stripe sent; no slot falls inside it (the first is its end, and the
  window rule still holds). A caller that slept towards a slot reserved before the 429 checks
  the cooldown on waking and reserves again behind it (the slot it held still counts).
- **Redis down -> process-local schedule**, with a warning. The limiter protects Stripe's limits;
  it must never be the reason a payment is not recorded or an invoice not sent. While Redis is
  unreachable each process limits itself to the same rate (so N processes may together exceed
  it; Stripe's 429 and the retries behind it are the backstop), and Redis is tried again after a
  few seconds.
- **Clock and sleep can be injected** (tests): with ``clock`` the script is given that clock's
  time instead of reading Redis's, so reservations can be asserted exactly, without sleeping.

:mod:`invoicing.services.rate_limited_http` puts this in front of every HTTP attempt a
``StripeClient`` makes, stripe-python's own retries included.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import stripe
from django.conf import settings

logger = logging.getLogger(__name__)

__all__ = [
    "AccountLimit",
    "RateLimitWaitExceeded",
    "StripeRateLimiter",
    "account_fingerprint",
    "get_rate_limiter",
    "is_live_key",
    "limit_for_key",
    "window_reserve",
]

_LIVE_PREFIXES = ("sk_live_", "rk_live_")
# Stripe never needs more than this; a larger Retry-After is treated as a mistake, not obeyed.
_MAX_COOLDOWN_SECONDS = 60.0
# After Redis failed, use the local schedule this long before trying Redis again.
_REDIS_RETRY_AFTER_SECONDS = 5.0
_MICROS = 1_000_000

# Every time is in integer microseconds (exact in a Lua double up to 2^53, i.e. for centuries).
# ARGV[4] (and ARGV[2] below) is the caller's clock, or '' for Redis's own.
_NOW_LUA = """
local now = tonumber(ARGV[4])
if now == nil then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
"""

# KEYS[1] the account's log (list of reserved slot times, newest first), KEYS[2] its cooldown
# end. ARGV: L (slots per window), window, max wait, now.
# Returns {reserved 0|1, microseconds from now to the slot (reserved or refused)}.
# Slots are reserved in non-decreasing order, so the list stays sorted and its L-th entry is the
# L-th most recent slot.
_RESERVE_SCRIPT = (
    _NOW_LUA
    + """
local count = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local slot = now
local last = tonumber(redis.call('LINDEX', KEYS[1], 0))
if last ~= nil and last > slot then
  slot = last
end
local oldest = tonumber(redis.call('LINDEX', KEYS[1], count - 1))
if oldest ~= nil and oldest + window > slot then
  slot = oldest + window
end
local cooldown_end = tonumber(redis.call('GET', KEYS[2]))
if cooldown_end ~= nil and cooldown_end > slot then
  slot = cooldown_end
end
local wait = slot - now
if wait > max_wait then
  return {0, wait}
end
redis.call('LPUSH', KEYS[1], string.format('%.0f', slot))
redis.call('LTRIM', KEYS[1], 0, count - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil((slot + window - now) / 1000) + 1000)
return {1, wait}
"""
)

# KEYS[1] the cooldown end. ARGV[1] cooldown (µs; 0 = only read it), ARGV[4] now.
# Extends, never shortens. Returns the microseconds left.
_COOLDOWN_SCRIPT = (
    _NOW_LUA
    + """
local length = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
if length > 0 and (current == nil or current < now + length) then
  current = now + length
  redis.call('SET', KEYS[1], string.format('%.0f', current),
             'PX', math.ceil(length / 1000) + 1000)
end
if current == nil or current <= now then
  return 0
end
return current - now
"""
)


def account_fingerprint(secret_key: str) -> str:
    """Name a Stripe account without its secret: the first 16 hex chars of sha256(key)."""
    if not secret_key:
        raise ValueError("A Stripe secret key is needed to name its account.")
    return hashlib.sha256(secret_key.encode("utf-8")).hexdigest()[:16]


def is_live_key(secret_key: str) -> bool:
    """Whether a secret or restricted key is a live-mode key."""
    return secret_key.startswith(_LIVE_PREFIXES)


@dataclass(frozen=True)
class AccountLimit:
    """An account's limit: ``per_second`` requests in any window of 1 s plus ``slack``.

    A whole number of requests per window is what a log can count: from 1/s up, at most
    ``floor(per_second)`` requests in any ``1 + slack`` seconds; below 1/s, one request per
    ``1/per_second + slack`` seconds. The slack is for requests that reach Stripe later than
    their slot: Stripe counts arrivals, and a request of the previous window that arrives late
    must not share Stripe's second with the next window's, which may all arrive on time.
    """

    per_second: float
    slack: float = 0.0

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError(f"Rate must be positive, got {self.per_second!r}.")
        if not 0 <= self.slack < 1:
            raise ValueError(f"Window slack must be in [0, 1) s, got {self.slack!r}.")

    @property
    def count(self) -> int:
        """L: at most this many reservations in any window."""
        return max(1, math.floor(self.per_second))

    @property
    def window(self) -> float:
        """The window's length in seconds: 1 s plus the slack (longer for rates below 1/s)."""
        return (1.0 if self.per_second >= 1 else 1.0 / self.per_second) + self.slack

    @property
    def window_micros(self) -> int:
        """The window in whole microseconds, rounded up (never more than ``count`` per window)."""
        return max(1, math.ceil(self.window * _MICROS))


def limit_for_key(secret_key: str) -> AccountLimit:
    """The configured limit for the key's mode (live or test)."""
    slack: float = settings.STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS
    if is_live_key(secret_key):
        return AccountLimit(per_second=settings.STRIPE_RATE_LIMIT_LIVE_PER_SECOND, slack=slack)
    return AccountLimit(per_second=settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND, slack=slack)


def window_reserve(
    *,
    log: list[float],
    now: float,
    count: int,
    window: float,
    max_wait: float,
    cooldown_until: float | None = None,
) -> tuple[list[float] | None, float]:
    """One reservation in a sliding-window log, as the Redis script makes it (and the fallback).

    ``log`` holds the account's last reserved slots, newest first (at most ``count``). The new
    slot is ``max(now, newest, count-th newest + window, cooldown end)``. Returns ``(new_log,
    wait)``: the log with the slot added (trimmed to ``count``) and the seconds from ``now`` to
    it, or ``(None, wait)`` when the slot is more than ``max_wait`` away (nothing reserved).
    """
    slot = now
    if log:
        slot = max(slot, log[0])
    if len(log) >= count:
        slot = max(slot, log[count - 1] + window)
    if cooldown_until is not None:
        slot = max(slot, cooldown_until)
    wait = slot - now
    if wait > max_wait:
        return None, wait
    return [slot, *log][:count], wait


class RateLimitWaitExceeded(stripe.RateLimitError):
    """No slot for this Stripe account within the allowed wait; nothing was sent to Stripe.

    A ``stripe.RateLimitError`` on purpose: it means the same thing as Stripe's 429 (too many
    requests for this account, try again later), so callers retry it like one.
    """

    def __init__(self, *, account: str, waited: float, max_wait: float) -> None:
        super().__init__(
            f"No request sent to Stripe: account {account} had no rate-limit slot within "
            f"{max_wait:.1f} s (waited {waited:.1f} s). Retry later.",
            code="rate_limit",
        )
        self.account = account
        self.waited = waited


class _LocalSchedule:
    """The in-process stand-in for the Redis schedule, used while Redis is unreachable."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[str, list[float]] = {}
        self._cooldown_until: dict[str, float] = {}

    def reserve(self, account: str, limit: AccountLimit, max_wait: float) -> float | None:
        """Reserve a slot and return the seconds until it, or None when it is too far away."""
        with self._lock:
            new_log, wait = window_reserve(
                log=self._logs.get(account, []),
                now=self._clock(),
                count=limit.count,
                window=limit.window,
                max_wait=max_wait,
                cooldown_until=self._cooldown_until.get(account),
            )
            if new_log is None:
                return None
            self._logs[account] = new_log
            return wait

    def cool_down(self, account: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._cooldown_until[account] = max(self._cooldown_until.get(account, 0.0), until)

    def cooldown_remaining(self, account: str) -> float:
        with self._lock:
            return max(0.0, self._cooldown_until.get(account, 0.0) - self._clock())


class StripeRateLimiter:
    """Sliding-window logs and 429 cooldowns per Stripe account, in Redis (see the module doc)."""

    def __init__(
        self,
        *,
        redis_url: str,
        key_prefix: str = "stripe-rate-limit",
        socket_timeout: float = 0.5,
        redis_retry_after: float = _REDIS_RETRY_AFTER_SECONDS,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock`` (seconds) replaces Redis's clock and ``sleep`` the real sleep, for tests."""
        self._client = redis.Redis.from_url(
            redis_url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry_on_timeout=False,
        )
        self._reserve_script = self._client.register_script(_RESERVE_SCRIPT)
        self._cooldown_script = self._client.register_script(_COOLDOWN_SCRIPT)
        self._key_prefix = key_prefix
        self._redis_retry_after = redis_retry_after
        self._clock = clock
        self._monotonic: Callable[[], float] = clock or time.monotonic
        self._sleep = sleep
        self._local = _LocalSchedule(self._monotonic)
        self._state_lock = threading.Lock()
        self._redis_down_until = 0.0  # time.monotonic(); 0 while Redis is believed up
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
        return [f"{base}:log", f"{base}:cooldown"]

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(round(self._clock() * _MICROS))

    # -- the API ---------------------------------------------------------------------------

    def reserve(self, *, account: str, limit: AccountLimit, max_wait: float) -> float | None:
        """Reserve the account's next slot; return the seconds until it (0: send now).

        Returns None, reserving nothing, when the next slot is more than ``max_wait`` away.
        The caller must wait that long before sending (:meth:`acquire` does).
        """
        if self._redis_usable():
            try:
                reserved, wait_us = self._reserve_script(
                    keys=self._keys(account),
                    args=[
                        limit.count,
                        limit.window_micros,
                        max(0, math.floor(max_wait * _MICROS)),
                        self._now_arg(),
                    ],
                )
            except redis.RedisError as error:
                self._redis_failed(error)
            else:
                self._redis_ok()
                return int(wait_us) / _MICROS if int(reserved) else None
        return self._local.reserve(account, limit, max_wait)

    def acquire(self, *, account: str, limit: AccountLimit, max_wait: float) -> float:
        """Reserve a slot and sleep until it; return the seconds waited.

        Raises:
            RateLimitWaitExceeded: no slot within ``max_wait`` seconds (nothing was reserved).
        """
        started = self._monotonic()
        while True:
            waited = self._monotonic() - started
            wait = self.reserve(account=account, limit=limit, max_wait=max_wait - waited)
            if wait is None:
                raise RateLimitWaitExceeded(account=account, waited=waited, max_wait=max_wait)
            if wait <= 0:
                return waited
            self._sleep(wait)
            # A 429 reported while we slept: our slot may fall inside the pause. Reserve again
            # (behind the cooldown); the slot we held is simply not used.
            if self.cooldown_remaining(account=account) <= 0:
                return self._monotonic() - started

    def report_rate_limited(self, *, account: str, cooldown: float) -> None:
        """Pause the account for every worker for ``cooldown`` seconds (never shortens a pause)."""
        cooldown = min(max(cooldown, 0.0), _MAX_COOLDOWN_SECONDS)
        self._local.cool_down(account, cooldown)
        if not self._redis_usable():
            return
        try:
            self._cooldown_script(
                keys=self._keys(account)[1:],
                args=[max(1, math.ceil(cooldown * _MICROS)), "", "", self._now_arg()],
            )
        except redis.RedisError as error:
            self._redis_failed(error)
        else:
            self._redis_ok()

    def cooldown_remaining(self, *, account: str) -> float:
        """Seconds left in the account's shared cooldown (local one while Redis is down)."""
        if self._redis_usable():
            try:
                remaining_us = self._cooldown_script(
                    keys=self._keys(account)[1:], args=[0, "", "", self._now_arg()]
                )
            except redis.RedisError as error:
                self._redis_failed(error)
            else:
                self._redis_ok()
                return int(remaining_us) / _MICROS
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
