"""Per-account fault and webhook-chaos switches, set with ``POST /_emulator/config``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

ERROR_KINDS = (
    "500",  # 500 api_error; executes nothing; replayed for the same idempotency key
    "429",  # 429 rate_limit without Stripe-Should-Retry (stripe-python does not retry it)
    "429_should_retry",  # 429 rate_limit with Stripe-Should-Retry: true (retried)
    "lock_timeout",  # 429 lock_timeout with Stripe-Should-Retry: true (retried)
    "connection_reset",  # the connection is closed before the request executes
    "reset_after_commit",  # the request executes, then the connection is closed unanswered
    "500_after_commit",  # the request executes, then answers 500 (saved under the key)
)


class ConfigError(ValueError):
    pass


SANDBOX_RATE_LIMIT = 25.0
LIVE_RATE_LIMIT = 100.0


@dataclass
class FaultRule:
    """One scripted fault: the next request matching ``method``/``path`` gets ``error``."""

    error: str
    method: str | None = None
    path: str | None = None  # a regular expression matched against the path (re.search)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class AccountConfig:
    # API faults
    error_rate: float = 0.0
    errors: list[str] = field(default_factory=lambda: ["500"])
    error_methods: list[str] | None = None
    fail_next: list[FaultRule] = field(default_factory=list)
    latency: float = 0.0
    latency_jitter: float = 0.0
    # On by default, as at Stripe: "25 requests per second in sandbox" (100 in live mode, see
    # Account); tests that need it off say so with configure(rate_limit=None).
    rate_limit: float | None = SANDBOX_RATE_LIMIT
    seed: int | None = None
    # webhook delivery and chaos
    webhook_duplicate_rate: float = 0.0
    webhook_reorder_window: float = 0.0
    webhook_delay: float = 0.0
    webhook_drop_rate: float = 0.0
    webhook_retry_schedule: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    webhook_timeout: float = 10.0
    webhooks_paused: bool = False
    # automatic tax: percent per customer country, e.g. {"DE": "19"} (the emulator's Stripe Tax)
    tax_rates: dict[str, Decimal] = field(default_factory=dict)

    def update(self, options: dict[str, Any]) -> None:
        """Apply ``options`` atomically: every value is checked before any is set."""
        staged = asdict(self)
        staged["fail_next"] = list(self.fail_next)
        known = {f.name for f in fields(self)}
        for name, value in options.items():
            if name not in known:
                raise ConfigError(f"unknown option {name!r}; known: {', '.join(sorted(known))}")
            staged[name] = _check(name, value)
        for name in known:
            setattr(self, name, staged[name])

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fail_next"] = [asdict(rule) for rule in self.fail_next]
        data["tax_rates"] = {country: str(rate) for country, rate in self.tax_rates.items()}
        return data


_RATES = {"error_rate", "webhook_duplicate_rate", "webhook_drop_rate"}
_SECONDS = {"latency", "latency_jitter", "webhook_reorder_window", "webhook_delay"}


def _check(name: str, value: Any) -> Any:
    if name in _RATES:
        number = _number(name, value)
        if not 0.0 <= number <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1")
        return number
    if name in _SECONDS:
        number = _number(name, value)
        if number < 0:
            raise ConfigError(f"{name} must not be negative")
        return number
    if name == "webhook_timeout":
        number = _number(name, value)
        if number <= 0:
            raise ConfigError("webhook_timeout must be positive")
        return number
    if name == "rate_limit":
        if value is None:
            return None
        number = _number(name, value)
        if number <= 0:
            raise ConfigError("rate_limit must be positive (or null to switch it off)")
        return number
    if name == "seed":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError("seed must be an integer or null")
        return value
    if name == "errors":
        if not isinstance(value, list) or not value:
            raise ConfigError("errors must be a non-empty list")
        for kind in value:
            _error_kind(kind)
        return list(value)
    if name == "error_methods":
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise ConfigError("error_methods must be a list of HTTP methods or null")
        return [m.upper() for m in value]
    if name == "fail_next":
        if not isinstance(value, list):
            raise ConfigError("fail_next must be a list")
        return [_rule(item) for item in value]
    if name == "webhook_retry_schedule":
        if not isinstance(value, list):
            raise ConfigError("webhook_retry_schedule must be a list of seconds")
        return [_number(name, item) for item in value]
    if name == "tax_rates":
        return _tax_rates(value)
    if name == "webhooks_paused":
        if not isinstance(value, bool):
            raise ConfigError("webhooks_paused must be a boolean")
        return value
    raise ConfigError(f"unknown option {name!r}")  # pragma: no cover - guarded by update()


def _tax_rates(value: Any) -> dict[str, Decimal]:
    if not isinstance(value, dict):
        raise ConfigError('tax_rates must be an object like {"DE": "19"}')
    rates: dict[str, Decimal] = {}
    for country, rate in value.items():
        if not re.fullmatch(r"[A-Z]{2}", str(country)):
            raise ConfigError(f"tax_rates: {country!r} is not a two-letter country code")
        try:
            percent = Decimal(str(rate))
        except InvalidOperation:
            raise ConfigError(f"tax_rates[{country}] must be a number") from None
        if isinstance(rate, bool) or not Decimal(0) <= percent <= Decimal(100):
            raise ConfigError(f"tax_rates[{country}] must be a percentage between 0 and 100")
        rates[country] = percent
    return rates


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number")
    return float(value)


def _error_kind(kind: Any) -> str:
    if kind not in ERROR_KINDS:
        raise ConfigError(f"unknown error kind {kind!r}; known: {', '.join(ERROR_KINDS)}")
    return str(kind)


def _rule(item: Any) -> FaultRule:
    if isinstance(item, str):
        return FaultRule(error=_error_kind(item))
    if isinstance(item, dict):
        unknown = set(item) - {"error", "method", "path"}
        if unknown or "error" not in item:
            raise ConfigError("a fail_next rule is {'error': kind, 'method'?: str, 'path'?: regex}")
        path = item.get("path")
        if path is not None:
            try:
                re.compile(path)
            except re.error as exc:
                raise ConfigError(f"bad path regex {path!r}: {exc}") from exc
        return FaultRule(error=_error_kind(item["error"]), method=item.get("method"), path=path)
    raise ConfigError("fail_next items are error kinds or rule objects")
