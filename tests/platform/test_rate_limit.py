"""The per-account Stripe rate limit, against real Redis, real processes and real HTTP.

Timing assertions are lower bounds only (N tokens at rate R cannot be had in less than
(N - burst) / R seconds), plus window counts with slack: a slow machine can only make them pass
more easily, never flake.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
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
    BucketLimit,
    RateLimitedRequestsClient,
    RateLimitWaitExceeded,
    StripeRateLimiter,
    account_fingerprint,
    build_stripe_http_client,
    is_live_key,
    limit_for_key,
)
from tests.support.rate_limit_probe import acquire_many
from tests.support.redis_server import RedisServer

STRIPE_SANDBOX_LIMIT = 25
STRIPE_LIVE_LIMIT = 100


def _new_key(mode: str = "test") -> str:
    return f"sk_{mode}_{uuid.uuid4().hex}{uuid.uuid4().hex}"


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


def _max_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


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
    assert limit_for_key("sk_test_x").burst == settings.STRIPE_RATE_LIMIT_TEST_BURST


def test_the_defaults_never_let_one_second_exceed_stripes_limits() -> None:
    test = limit_for_key("sk_test_x")
    live = limit_for_key("sk_live_x")
    assert test.per_second + test.burst <= STRIPE_SANDBOX_LIMIT
    assert live.per_second + live.burst <= STRIPE_LIVE_LIMIT
    # ...and stay close enough to use most of what Stripe allows.
    assert test.per_second >= 0.75 * STRIPE_SANDBOX_LIMIT
    assert live.per_second >= 0.75 * STRIPE_LIVE_LIMIT


def test_a_bucket_limit_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="Rate"):
        BucketLimit(per_second=0, burst=1)
    with pytest.raises(ValueError, match="Burst"):
        BucketLimit(per_second=1, burst=0)


# -- the shared bucket ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_rate_holds_across_processes_and_threads(key_prefix: str) -> None:
    per_second, burst, processes, threads, each = 40.0, 4, 3, 2, 28
    total = processes * each
    account = account_fingerprint(_new_key())
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        started = time.time()
        results = pool.starmap(
            acquire_many,
            [
                (settings.STRIPE_RATE_LIMIT_REDIS_URL, key_prefix, account, per_second, burst,
                 each, threads)
                for _ in range(processes)
            ],
        )  # fmt: skip
    stamps = sorted(stamp for result in results for stamp in result)
    assert len(stamps) == total
    # Only the first ``burst`` tokens come free; the rest cannot come faster than the rate.
    elapsed = stamps[-1] - min(started, stamps[0])
    assert elapsed >= (total - burst) / per_second - 0.05
    # No one-second window holds more than rate + burst (slack: when each process read its clock).
    assert _max_in_any_window(stamps, 1.0) <= per_second + burst + 2
    print(f"\n{total} tokens from {processes}x{threads} workers at {per_second}/s: {elapsed:.2f} s")


def test_acquire_gives_up_after_max_wait_without_taking_a_token(
    limiter: StripeRateLimiter, key_prefix: str
) -> None:
    account = account_fingerprint(_new_key())
    limit = BucketLimit(per_second=0.5, burst=2)
    assert limiter.acquire(account=account, limit=limit, max_wait=0) == pytest.approx(0, abs=0.05)
    limiter.acquire(account=account, limit=limit, max_wait=0)

    with pytest.raises(RateLimitWaitExceeded) as raised:
        limiter.acquire(account=account, limit=limit, max_wait=0.2)

    error = raised.value
    assert isinstance(error, stripe.RateLimitError)  # retried like Stripe's own 429
    assert account in str(error)
    assert "No request sent to Stripe" in str(error)
    tokens = float(redis.Redis.from_url(settings.STRIPE_RATE_LIMIT_REDIS_URL).hget(
        f"{key_prefix}:{account}:bucket", "tokens") or -1)  # fmt: skip
    assert 0 <= tokens < 1  # the failed wait took nothing


def test_acquire_waits_for_the_next_token(limiter: StripeRateLimiter) -> None:
    account = account_fingerprint(_new_key())
    limit = BucketLimit(per_second=5, burst=1)
    limiter.acquire(account=account, limit=limit, max_wait=0)
    started = time.monotonic()
    waited = limiter.acquire(account=account, limit=limit, max_wait=5)
    assert time.monotonic() - started >= 0.15  # 1 token at 5/s is 0.2 s away, minus clock slack
    assert waited >= 0.15


def test_a_429_cooldown_is_shared_by_every_worker(key_prefix: str) -> None:
    url = settings.STRIPE_RATE_LIMIT_REDIS_URL
    first = StripeRateLimiter(redis_url=url, key_prefix=key_prefix)
    second = StripeRateLimiter(redis_url=url, key_prefix=key_prefix)  # another worker
    account = account_fingerprint(_new_key())
    limit = BucketLimit(per_second=100, burst=10)
    try:
        first.report_rate_limited(account=account, cooldown=1.5)

        assert second.cooldown_remaining(account=account) > 1.0
        with pytest.raises(RateLimitWaitExceeded):
            second.acquire(account=account, limit=limit, max_wait=0.3)
        started = time.monotonic()
        second.acquire(account=account, limit=limit, max_wait=5)
        assert time.monotonic() - started >= 0.9  # what was left of the 1.5 s, minus slack
        # A shorter report never cuts a longer pause short.
        first.report_rate_limited(account=account, cooldown=2.0)
        second.report_rate_limited(account=account, cooldown=0.1)
        assert first.cooldown_remaining(account=account) > 1.5
        # Other accounts are not paused.
        other = account_fingerprint(_new_key())
        assert second.acquire(account=other, limit=limit, max_wait=0) < 0.1
    finally:
        first.close()
        second.close()


def test_with_redis_down_requests_go_on_under_a_local_limit(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = StripeRateLimiter(redis_url=private_redis.url(3), redis_retry_after=0.3)
    account = account_fingerprint(_new_key())
    limit = BucketLimit(per_second=20, burst=2)
    limiter.acquire(account=account, limit=limit, max_wait=0)
    assert private_redis.running

    private_redis.kill()
    with caplog.at_level(logging.WARNING, logger="invoicing.services.rate_limit"):
        started = time.monotonic()
        for _ in range(12):
            limiter.acquire(account=account, limit=limit, max_wait=2)
        elapsed = time.monotonic() - started

    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
    assert "Requests are not blocked" in warnings[0].getMessage()
    assert elapsed >= (12 - limit.burst) / limit.per_second - 0.05  # still limited, locally

    # Redis comes back: the shared bucket is used again.
    private_redis.start()
    time.sleep(0.35)
    with caplog.at_level(logging.INFO, logger="invoicing.services.rate_limit"):
        limiter.acquire(account=account, limit=limit, max_wait=2)
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    client = redis.Redis.from_url(private_redis.url(3))
    assert client.exists(f"stripe-rate-limit:{account}:bucket") == 1
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
    server: _ScriptedStripe, limiter: StripeRateLimiter, *, key: str, limit: BucketLimit,
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


def _tokens_left(key_prefix: str, key: str) -> float:
    client = redis.Redis.from_url(settings.STRIPE_RATE_LIMIT_REDIS_URL)
    try:
        raw = client.hget(f"{key_prefix}:{account_fingerprint(key)}:bucket", "tokens")
    finally:
        client.close()
    assert raw is not None
    return float(raw)


def test_every_attempt_including_stripe_pythons_retries_takes_a_token(
    limiter: StripeRateLimiter, key_prefix: str
) -> None:
    key = _new_key()
    script: list[tuple[int, dict[str, str], Body]] = [(500, {}, SERVER_ERROR), (200, {}, CUSTOMER)]
    with _ScriptedStripe(script) as server:
        client, _ = _client(server, limiter, key=key, limit=BucketLimit(per_second=0.001, burst=5))

        customer = client.v1.customers.retrieve("cus_123")

    assert customer.id == "cus_123"
    assert server.requests == ["/v1/customers/cus_123"] * 2  # stripe-python retried the 500
    assert round(5 - _tokens_left(key_prefix, key)) == 2  # one token per attempt


def test_a_retry_without_a_token_is_not_sent(limiter: StripeRateLimiter) -> None:
    key = _new_key()
    with _ScriptedStripe([(500, {}, SERVER_ERROR), (200, {}, CUSTOMER)]) as server:
        client, _ = _client(
            server, limiter, key=key, limit=BucketLimit(per_second=0.001, burst=1), max_wait=0.2
        )

        with pytest.raises(RateLimitWaitExceeded):
            client.v1.customers.retrieve("cus_123")

    assert len(server.requests) == 1  # the retry waited for a token that never came


def test_a_429_pauses_the_account_for_every_worker_as_long_as_stripe_asks(
    limiter: StripeRateLimiter, key_prefix: str
) -> None:
    key = _new_key()
    with _ScriptedStripe([(429, {"Retry-After": "3"}, RATE_LIMITED)]) as server:
        client, _ = _client(server, limiter, key=key, limit=BucketLimit(per_second=100, burst=10))

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
        client, _ = _client(server, limiter, key=key, limit=BucketLimit(per_second=100, burst=10))

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
