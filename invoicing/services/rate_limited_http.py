"""stripe-python's HTTP client with the per-account rate limit in front of every attempt.

stripe-python's retry loop calls the client once per attempt, so a client that reserves a slot of
:mod:`invoicing.services.rate_limit` first covers the first try and every retry, and a retry waits
out a cooldown that another worker started.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import stripe
from django.conf import settings

from invoicing.services.rate_limit import (
    AccountLimit,
    StripeRateLimiter,
    account_fingerprint,
    get_rate_limiter,
    limit_for_key,
)

logger = logging.getLogger(__name__)


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
    """stripe-python's requests client that reserves a rate-limit slot before every attempt.

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
        limit: AccountLimit,
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
