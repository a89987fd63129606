"""What Stripe does with a ``/v1`` request once it knows the account, in Stripe's order.

The account's rate limit and added latency; the idempotency key (replay the first answer, refuse
other parameters); injected faults; parameter validation; then the handler under the store's
lock, after what Stripe's scheduler would have done by now. Webhooks go to the dispatcher once
the lock is released.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .api.context import Ctx
from .api.invoice_lifecycle import advance_automatic_invoices
from .api.routes import match_route
from .errors import StripeError, invalid_request
from .models import Account, IdempotencyRec
from .schema import validate
from .store import Store
from .webhooks import Delivery, Dispatcher

IDEMPOTENCY_TTL_SECONDS = 24 * 3600

Response = tuple[int, bytes, dict[str, str]]


class ConnectionDropped(Exception):
    """Close the connection without an answer (the ``connection_reset`` faults)."""


class ApiPipeline:
    """One per server, shared by its connection threads: all state is in the store."""

    def __init__(self, store: Store, dispatcher: Dispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher

    def run(
        self,
        account: Account,
        method: str,
        path: str,
        raw_params: dict[str, Any],
        idempotency_key: str | None,
        request_id: str,
        entry: dict[str, Any],
    ) -> Response:
        """The answer to the request; notes the fault and any replay in its log ``entry``."""
        store = self._store
        config = account.config
        self._enforce_rate_limit(account)
        if config.latency or config.latency_jitter:
            time.sleep(config.latency + account.random() * config.latency_jitter)

        record: IdempotencyRec | None = None
        if idempotency_key is not None:
            if len(idempotency_key) > 255:
                raise invalid_request(
                    "The idempotency key provided is too long. Idempotency keys can be at most "
                    "255 characters long.",
                )
            fingerprint = (method, path, json.dumps(raw_params, sort_keys=True))
            with store.lock:
                existing = account.idempotency.get(idempotency_key)
                if existing is not None and (
                    account.now(store.clock) - existing.created > IDEMPOTENCY_TTL_SECONDS
                ):
                    existing = None
                if existing is not None:
                    if existing.fingerprint != fingerprint:
                        raise _idempotency_mismatch(idempotency_key, existing, method, path)
                    if existing.status is None:
                        raise StripeError(
                            409,
                            "There is currently another in-progress request using this "
                            f"Idempotent Key (that probably means you submitted twice, and the "
                            f"other request is still going through): {idempotency_key}. Please "
                            "try again later.",
                            code="idempotency_key_in_use",
                        )
                    entry["idempotent_replayed"] = True
                    return (
                        existing.status,
                        existing.body,
                        {**existing.headers, "Idempotent-Replayed": "true"},
                    )
                record = IdempotencyRec(fingerprint=fingerprint, created=account.now(store.clock))
                account.idempotency[idempotency_key] = record

        def forget_key() -> None:
            # Nothing began executing: Stripe saves no result, so a retry may run the request.
            if record is not None and idempotency_key is not None:
                with store.lock:
                    if account.idempotency.get(idempotency_key) is record:
                        del account.idempotency[idempotency_key]

        fault = self._pick_fault(account, method, path)
        entry["fault"] = fault
        if fault in ("429", "429_should_retry", "lock_timeout", "connection_reset"):
            forget_key()
            if fault == "connection_reset":
                raise ConnectionDropped()
            raise _fault_error(fault)

        try:
            if fault != "500":
                status, payload, headers = self._execute(
                    account, method, path, raw_params, idempotency_key, request_id, forget_key
                )
            if fault in ("500", "500_after_commit"):
                # Docs "Idempotent requests": Stripe saves the first response "after endpoint
                # execution begins" and replays it, "including 500 errors"; "Advanced error
                # handling" (server errors): the result of a 500 is indeterminate, so the write
                # may have happened (500_after_commit) or not (500).
                error = StripeError(500, "An unknown error occurred", error_type="api_error")
                if idempotency_key is not None:
                    error.headers["Stripe-Should-Retry"] = "false"
                status, payload, headers = 500, json_bytes(error.body(request_id)), error.headers
        except BaseException:
            forget_key()
            raise
        if record is not None:
            with store.lock:
                record.status, record.body, record.headers = status, payload, dict(headers)
        if fault == "reset_after_commit":
            raise ConnectionDropped()
        return status, payload, headers

    def _execute(
        self,
        account: Account,
        method: str,
        path: str,
        raw_params: dict[str, Any],
        idempotency_key: str | None,
        request_id: str,
        forget_key: Callable[[], None],
    ) -> Response:
        store = self._store
        matched = match_route(method, path)
        if not isinstance(matched, tuple):
            forget_key()
            raise unrecognized_url(method, path)
        route, path_args = matched
        try:
            params = validate(route.params_class, raw_params)
        except StripeError:
            forget_key()
            raise
        deliveries: list[Delivery] = []
        try:
            with store.lock:
                ctx = Ctx(
                    store=store,
                    account=account,
                    now=int(account.now(store.clock)),
                    request_id=request_id,
                    idempotency_key=idempotency_key,
                    deliveries=deliveries,
                )
                automatic = Ctx.unrequested(store, account, now=ctx.now, deliveries=deliveries)
                advance_automatic_invoices(automatic)
                result = route.handler(ctx, params, **path_args)
            status, payload, headers = 200, json_bytes(result), {}
        except StripeError as exc:
            status, payload, headers = exc.status, json_bytes(exc.body(request_id)), exc.headers
        if deliveries:
            self._dispatcher.submit(deliveries)
        return status, payload, headers

    def _enforce_rate_limit(self, account: Account) -> None:
        limit = account.config.rate_limit
        if limit is None:
            return
        now = time.monotonic()
        with self._store.lock:
            window = account.request_times
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                raise _fault_error("429")
            window.append(now)

    def _pick_fault(self, account: Account, method: str, path: str) -> str | None:
        config = account.config
        with self._store.lock:
            for index, rule in enumerate(config.fail_next):
                if rule.matches(method, path):
                    del config.fail_next[index]
                    return rule.error
        method_selected = config.error_methods is None or method in config.error_methods
        if config.error_rate and method_selected and account.random() < config.error_rate:
            errors = config.errors
            return errors[int(account.random() * len(errors)) % len(errors)]
        return None


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, indent=2).encode()


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or "
        "we can help at https://support.stripe.com/.",
    )


def _idempotency_mismatch(
    key: str, existing: IdempotencyRec, method: str, path: str
) -> StripeError:
    if existing.fingerprint[:2] != (method, path):
        message = (
            f"Keys for idempotent requests can only be used for the same endpoint they were first "
            f"used for ('{existing.fingerprint[0]} {existing.fingerprint[1]}' vs '{method} "
            f"{path}'). Try using a key other than '{key}' if you meant to execute a different "
            "request."
        )
    else:
        message = (
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request."
        )
    return StripeError(400, message, error_type="idempotency_error")


def _fault_error(kind: str) -> StripeError:
    if kind == "lock_timeout":
        return StripeError(
            429,
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it. If you see this error intermittently, retry the "
            "request. If you see this error frequently and are making multiple concurrent "
            "requests to a single object, make your requests serially or at a lower rate. See "
            "https://stripe.com/docs/rate-limits for more information.",
            code="lock_timeout",
            headers={"Stripe-Should-Retry": "true"},
        )
    error = StripeError(
        429,
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
    )
    if kind == "429_should_retry":
        error.headers["Stripe-Should-Retry"] = "true"
    return error
