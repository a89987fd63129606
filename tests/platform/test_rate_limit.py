"""The per-account Stripe rate limit, against real Redis, real processes and real HTTP.

No timed asserts: the limiter takes an injected clock and sleep, so most tests assert the exact
reservations Redis hands out (slot times computed from the clock the script was given). The few
tests on real time assert lower bounds only, which a slow machine can only make easier.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import stripe
from django.conf import settings
from django.test import override_settings

from invoicing.services.rate_limit import (
    AccountLimit,
    RateLimitWaitExceeded,
    StripeRateLimiter,
    account_fingerprint,
    is_live_key,
    limit_for_key,
    window_reserve,
)
from invoicing.services.rate_limited_http import RateLimitedRequestsClient, build_stripe_http_client
from tests.support.rate_limit_probe import reserve_many
from tests.support.redis_server import RedisServer

STRIPE_SANDBOX_LIMIT = 25
STRIPE_LIVE_LIMIT = 100


def _new_key(mode: str = "test") -> str:
    return f"sk_{mode}_{uuid.uuid4().hex}{uuid.uuid4().hex}"


class FakeTime:
    """A clock that only moves when told to, and a ``sleep`` that moves it (and records)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, deleted afterwards (no FLUSHDB, ever)."""
    prefix = f"test-rate-limit-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(settings.STRIPE_RATE_LIMIT_REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def limiter(key_prefix: str) -> Iterator[StripeRateLimiter]:
    limiter = StripeRateLimiter(
        redis_url=settings.STRIPE_RATE_LIMIT_REDIS_URL, key_prefix=key_prefix
    )
    yield limiter
    limiter.close()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def timed_limiter(key_prefix: str, fake_time: FakeTime) -> Iterator[StripeRateLimiter]:
    """A limiter on the shared Redis that reads ``fake_time`` and sleeps on it."""
    limiter = StripeRateLimiter(
        redis_url=settings.STRIPE_RATE_LIMIT_REDIS_URL,
        key_prefix=key_prefix,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    yield limiter
    limiter.close()


def _max_in_any_window(stamps: list[int], window: int) -> int:
    """Most stamps in any half-open window ``(t - window, t]`` (Stripe's and the emulator's)."""
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _slot(limiter: StripeRateLimiter, fake: FakeTime, account: str, limit: AccountLimit,
          max_wait: float = 3600) -> int | None:  # fmt: skip
    """Reserve one slot at the current fake instant: its time in microseconds (the script's)."""
    wait = limiter.reserve(account=account, limit=limit, max_wait=max_wait)
    return None if wait is None else _micros(fake.now) + _micros(wait)


# -- naming accounts and choosing limits ----------------------------------------------------


def test_the_account_fingerprint_never_contains_the_key() -> None:
    key = _new_key()
    fingerprint = account_fingerprint(key)
    assert len(fingerprint) == 16
    assert int(fingerprint, 16) >= 0
    assert fingerprint not in key
    assert key[8:24] not in fingerprint
    assert account_fingerprint(key) == fingerprint
    assert account_fingerprint(_new_key()) != fingerprint
    with pytest.raises(ValueError, match="secret key"):
        account_fingerprint("")


def test_live_keys_get_the_live_limit_and_everything_else_the_test_limit() -> None:
    assert is_live_key("sk_live_abc")
    assert is_live_key("rk_live_abc")
    assert not is_live_key("sk_test_abc")
    assert not is_live_key("rk_test_abc")
    assert limit_for_key("rk_live_x").per_second == settings.STRIPE_RATE_LIMIT_LIVE_PER_SECOND
    assert limit_for_key("sk_test_x").per_second == settings.STRIPE_RATE_LIMIT_TEST_PER_SECOND


def test_the_defaults_never_let_one_second_exceed_stripes_limits() -> None:
    test = limit_for_key("sk_test_x")
    live = limit_for_key("sk_live_x")
    assert (test.count, test.window) == (24, 1.05)
    assert (live.count, live.window) == (90, 1.05)
    # Below Stripe's count, with time slack for requests that reach Stripe late...
    assert test.count < STRIPE_SANDBOX_LIMIT
    assert live.count < STRIPE_LIVE_LIMIT
    # ...and close enough to use most of what Stripe allows (the benchmark's goal: 90%).
    assert test.count / test.window >= 0.9 * STRIPE_SANDBOX_LIMIT
    assert live.count / live.window >= 0.75 * STRIPE_LIVE_LIMIT


def test_a_limit_is_a_whole_count_per_window() -> None:
    assert (AccountLimit(per_second=7.9).count, AccountLimit(per_second=7.9).window) == (7, 1.0)
    assert (AccountLimit(per_second=0.5).count, AccountLimit(per_second=0.5).window) == (1, 2.0)
    assert AccountLimit(per_second=0.001).window_micros == 1_000_000_000
    assert AccountLimit(per_second=3, slack=0.25).window_micros == 1_250_000
    with pytest.raises(ValueError, match="Rate"):
        AccountLimit(per_second=0)
    with pytest.raises(ValueError, match="slack"):
        AccountLimit(per_second=1, slack=1.0)


# -- the shared sliding window ----------------------------------------------------------------


def test_window_reserve_lets_a_window_through_then_one_per_expired_slot() -> None:
    log: list[float] = []
    waits = []
    for now in (100.0, 100.0, 100.0, 100.0, 100.5, 100.5, 102.0):
        new_log, wait = window_reserve(log=log, now=now, count=3, window=1.0, max_wait=60)
        assert new_log is not None
        log = new_log
        waits.append(wait)
    # Three at once, then each waits for the slot a window before it to leave the window.
    assert waits == [0, 0, 0, 1.0, 0.5, 0.5, 0]
    assert log == [102.0, 101.0, 101.0]  # newest first, trimmed to the count
    # Never before the newest slot (the log stays sorted), even when the window allows it.
    assert window_reserve(log=[105.0], now=100.0, count=3, window=1.0, max_wait=60)[1] == 5.0
    # Too far away: nothing reserved.
    full = [101.0, 101.0, 101.0]
    refused, wait = window_reserve(log=full, now=100.5, count=3, window=1.0, max_wait=1.4)
    assert (refused, wait) == (None, 1.5)
    # A cooldown pushes the slot to its end.
    moved, wait = window_reserve(log=[], now=10.0, count=3, window=1.0, max_wait=60,
                                 cooldown_until=12.5)  # fmt: skip
    assert (moved, wait) == ([12.5], 2.5)


def test_an_idle_account_lets_a_whole_window_through_at_once(
    timed_limiter: StripeRateLimiter, fake_time: FakeTime
) -> None:
    """One invoice's five calls (or 23) are not spaced out on an idle account."""
    account = account_fingerprint(_new_key())
    limit = limit_for_key("sk_test_x")  # the defaults: 24 per 1.05 s window
    start = _micros(fake_time.now)

    slots = [_slot(timed_limiter, fake_time, account, limit) for _ in range(limit.count + 2)]

    assert slots == [start] * limit.count + [start + 1_050_000] * 2
    # A window after the last slot, the account is idle again: a whole window at once.
    fake_time.now += 2.5
    again = [_slot(timed_limiter, fake_time, account, limit) for _ in range(limit.count)]
    assert again == [_micros(fake_time.now)] * limit.count


def test_the_redis_script_reserves_exactly_what_the_reference_says(
    timed_limiter: StripeRateLimiter, fake_time: FakeTime
) -> None:
    account = account_fingerprint(_new_key())
    limit = AccountLimit(per_second=5)
    window = limit.window_micros / 1_000_000  # the script counts whole microseconds
    rng = random.Random(7)
    log: list[float] = []
    cooldown_until: float | None = None
    refused = 0
    for step in range(600):
        fake_time.now += rng.choice([0.0, 0.0, 0.0, 0.01, 0.07, 0.3, 1.1])
        if step % 97 == 50:
            timed_limiter.report_rate_limited(account=account, cooldown=0.8)
            cooldown_until = fake_time.now + 0.8
        max_wait = rng.choice([0.0, 0.05, 0.5, 10.0])
        expected_log, expected_wait = window_reserve(
            log=log, now=fake_time.now, count=limit.count, window=window, max_wait=max_wait,
            cooldown_until=cooldown_until,
        )  # fmt: skip
        wait = timed_limiter.reserve(account=account, limit=limit, max_wait=max_wait)
        if expected_log is None:
            assert wait is None, step
            refused += 1
        else:
            assert wait == pytest.approx(expected_wait, abs=2e-6), step
            log = expected_log
    assert 50 < refused < 550  # both paths were taken many times


def test_a_saturated_account_never_has_more_than_its_count_in_any_window(
    timed_limiter: StripeRateLimiter, fake_time: FakeTime, key_prefix: str
) -> None:
    """Requests faster than the limit: exactly L in the busiest windows, never more."""
    account = account_fingerprint(_new_key())
    limit = limit_for_key("sk_test_x")
    rng = random.Random(11)
    slots: list[int] = []
    for _ in range(2_000):
        fake_time.now += rng.expovariate(40.0)  # 40 requests/s on average against 22.9
        slot = _slot(timed_limiter, fake_time, account, limit)
        assert slot is not None
        slots.append(slot)

    assert _max_in_any_window(slots, limit.window_micros) == limit.count
    # No slot wasted: each is as early as the window allows (a saturated account sustains L/s).
    assert all(slots[i] == slots[i - limit.count] + limit.window_micros
               for i in range(1_000, len(slots)))  # fmt: skip
    sustained = (len(slots) - 1) / ((slots[-1] - slots[0]) / 1e6)
    assert sustained == pytest.approx(limit.count / limit.window, rel=0.01)
    # Redis keeps only the last L slots, and forgets them a window after the last one.
    client = redis.Redis.from_url(settings.STRIPE_RATE_LIMIT_REDIS_URL)
    try:
        log_key = f"{key_prefix}:{account}:log"
        assert [int(raw) for raw in client.lrange(log_key, 0, -1)] == slots[::-1][: limit.count]
        ttl_ms = (slots[-1] - _micros(fake_time.now) + limit.window_micros) / 1000 + 1000 + 1
        assert 0 < client.pttl(log_key) <= ttl_ms
    finally:
        client.close()


def test_slots_are_shared_by_processes_and_threads(key_prefix: str) -> None:
    """Six workers in three processes reserve from one log: never more than L in a window."""
    per_second, processes, threads, each = 40.0, 3, 2, 60
    limit = AccountLimit(per_second=per_second)
    account = account_fingerprint(_new_key())
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(
            reserve_many,
            [
                (settings.STRIPE_RATE_LIMIT_REDIS_URL, key_prefix, account, per_second, each,
                 threads)
                for _ in range(processes)
            ],
        )  # fmt: skip
    slots = sorted(slot for result in results for slot in result)
    assert len(slots) == processes * each
    # The callers were far faster than 40/s: every window is full, none holds more.
    assert _max_in_any_window(slots, limit.window_micros) == limit.count
    assert all(slots[i] - slots[i - limit.count] >= limit.window_micros
               for i in range(limit.count, len(slots)))  # fmt: skip


def test_a_refused_reservation_takes_nothing(
    timed_limiter: StripeRateLimiter, fake_time: FakeTime
) -> None:
    account = account_fingerprint(_new_key())
    limit = AccountLimit(per_second=2)
    assert timed_limiter.reserve(account=account, limit=limit, max_wait=0) == 0
    assert timed_limiter.reserve(account=account, limit=limit, max_wait=0) == 0

    with pytest.raises(RateLimitWaitExceeded) as raised:
        timed_limiter.acquire(account=account, limit=limit, max_wait=0.2)

    error = raised.value
    assert isinstance(error, stripe.RateLimitError)  # retried like Stripe's own 429
    assert account in str(error)
    assert "No request sent to Stripe" in str(error)
    assert fake_time.sleeps == []
    # The refusal reserved nothing: the next two slots are still a window after the first two.
    assert timed_limiter.reserve(account=account, limit=limit, max_wait=1) == 1.0
    assert timed_limiter.reserve(account=account, limit=limit, max_wait=1) == 1.0


def test_acquire_sleeps_once_until_its_slot(
    timed_limiter: StripeRateLimiter, fake_time: FakeTime
) -> None:
    account = account_fingerprint(_new_key())
    limit = AccountLimit(per_second=1)
    assert timed_limiter.acquire(account=account, limit=limit, max_wait=0) == 0
    assert timed_limiter.reserve(account=account, limit=limit, max_wait=5) == 1.0

    waited = timed_limiter.acquire(account=account, limit=limit, max_wait=5)

    assert fake_time.sleeps == [2.0]  # behind the slot reserved just before
    assert waited == 2.0


def test_a_429_cooldown_is_shared_by_every_worker(key_prefix: str, fake_time: FakeTime) -> None:
    url = settings.STRIPE_RATE_LIMIT_REDIS_URL
    first = StripeRateLimiter(redis_url=url, key_prefix=key_prefix, clock=fake_time.clock)
    second = StripeRateLimiter(  # another worker
        redis_url=url, key_prefix=key_prefix, clock=fake_time.clock, sleep=fake_time.sleep
    )
    account = account_fingerprint(_new_key())
    limit = AccountLimit(per_second=3)
    start = _micros(fake_time.now)
    try:
        first.report_rate_limited(account=account, cooldown=1.5)

        assert second.cooldown_remaining(account=account) == pytest.approx(1.5)
        with pytest.raises(RateLimitWaitExceeded):
            second.acquire(account=account, limit=limit, max_wait=0.3)
        # No slot inside the pause; after it, the window rule as usual.
        slots = [_slot(second, fake_time, account, limit) for _ in range(4)]
        assert slots == [start + 1_500_000] * 3 + [start + 2_500_000]
        # A shorter report never cuts a longer pause short.
        first.report_rate_limited(account=account, cooldown=2.0)
        second.report_rate_limited(account=account, cooldown=0.1)
        assert first.cooldown_remaining(account=account) == pytest.approx(2.0)
        fake_time.now += 2.5
        assert first.cooldown_remaining(account=account) == 0
        # Other accounts are not paused.
        other = account_fingerprint(_new_key())
        assert first.cooldown_remaining(account=other) == 0
        assert second.reserve(account=other, limit=limit, max_wait=0) == 0
    finally:
        first.close()
        second.close()


def test_a_caller_whose_slot_falls_in_a_new_cooldown_waits_it_out(
    key_prefix: str, fake_time: FakeTime
) -> None:
    url = settings.STRIPE_RATE_LIMIT_REDIS_URL
    account = account_fingerprint(_new_key())
    limit = AccountLimit(per_second=1)
    other_worker = StripeRateLimiter(redis_url=url, key_prefix=key_prefix, clock=fake_time.clock)

    def sleep_while_another_worker_gets_a_429(seconds: float) -> None:
        if not fake_time.sleeps:
            other_worker.report_rate_limited(account=account, cooldown=2.5)
        fake_time.sleep(seconds)

    limiter = StripeRateLimiter(
        redis_url=url, key_prefix=key_prefix, clock=fake_time.clock,
        sleep=sleep_while_another_worker_gets_a_429,
    )  # fmt: skip
    try:
        limiter.reserve(account=account, limit=limit, max_wait=0)
        waited = limiter.acquire(account=account, limit=limit, max_wait=5)
    finally:
        limiter.close()
        other_worker.close()

    # Slept 1 s towards its slot, woke inside the 2.5 s pause, reserved again behind it.
    assert fake_time.sleeps == [1.0, 1.5]
    assert waited == 2.5


def test_with_redis_down_requests_go_on_under_a_local_limit(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture, fake_time: FakeTime
) -> None:
    limiter = StripeRateLimiter(
        redis_url=private_redis.url(3),
        redis_retry_after=0.3,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    account = account_fingerprint(_new_key())
    limit = AccountLimit(per_second=5)
    limiter.acquire(account=account, limit=limit, max_wait=0)
    assert private_redis.running

    private_redis.kill()
    with caplog.at_level(logging.WARNING, logger="invoicing.services.rate_limit"):
        for _ in range(12):
            limiter.acquire(account=account, limit=limit, max_wait=2)

    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
    assert "Requests are not blocked" in warnings[0].getMessage()
    # Still limited, locally, by the same rule: 5 at once, then 5 a second later, then 2.
    assert fake_time.sleeps == [1.0, 1.0]

    # Redis comes back (tried again after redis_retry_after, on the real clock).
    private_redis.start()
    threading.Event().wait(0.35)
    with caplog.at_level(logging.INFO, logger="invoicing.services.rate_limit"):
        limiter.acquire(account=account, limit=limit, max_wait=2)
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    client = redis.Redis.from_url(private_redis.url(3))
    assert client.llen(f"stripe-rate-limit:{account}:log") == 1  # restarted empty: today's slot
    client.close()
    limiter.close()


# -- the HTTP client stripe-python uses ------------------------------------------------------


class _ScriptedStripe:
    """A tiny HTTP server that answers from a script of (status, headers, body) and counts."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.script = list(script)
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                status, headers, body = outer.script.pop(0) if outer.script else (500, {}, {})
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _ScriptedStripe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


Body = dict[str, Any]
CUSTOMER: Body = {"id": "cus_123", "object": "customer"}
SERVER_ERROR: Body = {"error": {"type": "api_error", "message": "Something went wrong"}}
RATE_LIMITED: Body = {
    "error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Slow"}
}
LOCK_TIMEOUT: Body = {
    "error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "x"}
}


def _client(
    server: _ScriptedStripe, limiter: StripeRateLimiter, *, key: str, limit: AccountLimit,
    max_wait: float = 5.0,
) -> tuple[stripe.StripeClient, RateLimitedRequestsClient]:  # fmt: skip
    http_client = RateLimitedRequestsClient(
        limiter=limiter,
        account=account_fingerprint(key),
        limit=limit,
        max_wait=max_wait,
        cooldown=1.0,
        timeout=5.0,
    )
    client = stripe.StripeClient(
        key, http_client=http_client, base_addresses={"api": server.url}, max_network_retries=2
    )
    return client, http_client


def _slots_taken(key_prefix: str, key: str) -> int:
    """Slots reserved so far for an account (the length of its log)."""
    client = redis.Redis.from_url(settings.STRIPE_RATE_LIMIT_REDIS_URL)
    try:
        return int(client.llen(f"{key_prefix}:{account_fingerprint(key)}:log"))
    finally:
        client.close()


def test_every_attempt_including_stripe_pythons_retries_takes_a_slot(
    limiter: StripeRateLimiter, key_prefix: str
) -> None:
    key = _new_key()
    script: list[tuple[int, dict[str, str], Body]] = [(500, {}, SERVER_ERROR), (200, {}, CUSTOMER)]
    with _ScriptedStripe(script) as server:
        limit = AccountLimit(per_second=5)
        client, _ = _client(server, limiter, key=key, limit=limit)

        customer = client.v1.customers.retrieve("cus_123")

    assert customer.id == "cus_123"
    assert server.requests == ["/v1/customers/cus_123"] * 2  # stripe-python retried the 500
    assert _slots_taken(key_prefix, key) == 2  # one slot per attempt


def test_a_retry_without_a_slot_is_not_sent(limiter: StripeRateLimiter) -> None:
    key = _new_key()
    with _ScriptedStripe([(500, {}, SERVER_ERROR), (200, {}, CUSTOMER)]) as server:
        client, _ = _client(
            server, limiter, key=key, limit=AccountLimit(per_second=0.001), max_wait=0.2
        )

        with pytest.raises(RateLimitWaitExceeded):
            client.v1.customers.retrieve("cus_123")

    assert len(server.requests) == 1  # the retry's slot was 1000 s away: refused, not sent


def test_a_429_pauses_the_account_for_every_worker_as_long_as_stripe_asks(
    limiter: StripeRateLimiter, key_prefix: str
) -> None:
    key = _new_key()
    with _ScriptedStripe([(429, {"Retry-After": "3"}, RATE_LIMITED)]) as server:
        client, _ = _client(server, limiter, key=key, limit=AccountLimit(per_second=100))

        with pytest.raises(stripe.RateLimitError):
            client.v1.customers.retrieve("cus_123")

    other_worker = StripeRateLimiter(
        redis_url=settings.STRIPE_RATE_LIMIT_REDIS_URL, key_prefix=key_prefix
    )
    try:
        # Retry-After (3 s) beats the configured 1 s; another worker's limiter sees it.
        assert other_worker.cooldown_remaining(account=account_fingerprint(key)) > 2.0
    finally:
        other_worker.close()


def test_a_lock_timeout_429_does_not_pause_the_account(limiter: StripeRateLimiter) -> None:
    key = _new_key()
    with _ScriptedStripe([(429, {}, LOCK_TIMEOUT)]) as server:
        client, _ = _client(server, limiter, key=key, limit=AccountLimit(per_second=100))

        with pytest.raises(stripe.RateLimitError):
            client.v1.customers.retrieve("cus_123")

    assert limiter.cooldown_remaining(account=account_fingerprint(key)) == 0


@override_settings(STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS=7.0, STRIPE_RATE_LIMIT_COOLDOWN_SECONDS=2.0)
def test_build_stripe_http_client_limits_by_the_keys_mode() -> None:
    live_key, test_key = _new_key("live"), _new_key("test")
    live = build_stripe_http_client(secret_key=live_key, timeout=12.0)
    test = build_stripe_http_client(secret_key=test_key, timeout=12.0)

    assert isinstance(live, RateLimitedRequestsClient)
    assert isinstance(test, RateLimitedRequestsClient)
    assert live.limit == limit_for_key("sk_live_x") != test.limit
    assert live.account == account_fingerprint(live_key)
    assert (live.max_wait, live.cooldown) == (7.0, 2.0)
    assert live.limiter is test.limiter  # one shared limiter (one Redis pool) per process
    assert live_key not in repr(vars(live))
