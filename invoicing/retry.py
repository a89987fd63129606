"""Which failures are worth retrying, and how long to wait: one rule for tasks and the inbox.

Transient (retry with backoff): Stripe could not be reached or answered 5xx / 409 (``APIError``),
asked us to slow down (``RateLimitError``, which includes 429 ``lock_timeout`` and our own limiter's
``RateLimitWaitExceeded``), the database connection dropped or a lock wait deadlocked
(``OperationalError`` / ``InterfaceError``), or the task ran out of time.

Everything else is permanent: our refusals (every :class:`~invoicing.errors.InvoicingError`:
missing key, PO not invoiceable, invoice mismatch, rejected event, amount not representable,
invalid transition or payment) and Stripe's ``InvalidRequestError`` / ``AuthenticationError`` /
``PermissionError`` / ``IdempotencyError``: the same call would fail the same way, so it is
recorded and stops. Of the permanent ones, only a failure without a known cause
(:func:`has_known_cause`) is a bug worth a traceback in the log.
"""

from __future__ import annotations

import random

import stripe
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from invoicing.errors import InvoicingError
from invoicing.logging import scrub_secrets

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    stripe.APIConnectionError,
    stripe.APIError,
    stripe.RateLimitError,
    OperationalError,
    InterfaceError,
    SoftTimeLimitExceeded,
)


# Failures whose message says all there is to know: a rule of ours refused the work, Stripe
# answered, or the database failed.
KNOWN_CAUSES: tuple[type[BaseException], ...] = (InvoicingError, stripe.StripeError, DatabaseError)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same work later may succeed."""
    return isinstance(error, TRANSIENT_ERRORS)


def has_known_cause(error: BaseException) -> bool:
    """Whether the failure is one we anticipate (recorded as is), not a bug to investigate."""
    return isinstance(error, KNOWN_CAUSES)


def backoff_seconds(
    attempt: int,
    *,
    base: float | None = None,
    cap: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (1, 2, ...): exponential, capped, jittered.

    ``base * 2**(attempt-1)`` capped at ``TASK_RETRY_BACKOFF_MAX_SECONDS``, then scaled by a random
    factor in [0.5, 1]: retries of many tasks that failed together spread out, and none comes back
    sooner than half its step or later than the cap (the broker's visibility timeout is checked
    against that cap in settings).
    """
    if attempt < 1:
        raise ValueError(f"Retry attempts count from 1, got {attempt}.")
    base = settings.TASK_RETRY_BACKOFF_BASE_SECONDS if base is None else base
    cap = settings.TASK_RETRY_BACKOFF_MAX_SECONDS if cap is None else cap
    step = min(float(cap), base * 2.0 ** min(attempt - 1, 62))
    factor = (rng or random).uniform(0.5, 1.0)  # jitter, not security
    return float(step * factor)


def describe_error(error: BaseException, *, limit: int = 2000) -> str:
    """A one-line description for the organizer and the logs (Stripe's message, not its body)."""
    if isinstance(error, stripe.StripeError):
        status = f" {error.http_status}" if error.http_status else ""
        code = f" {error.code}" if error.code else ""
        text = f"Stripe {type(error).__name__}{status}{code}: {error}"
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    text = scrub_secrets(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
