"""The HTTP server: Stripe's ``/v1`` API, the ``/_emulator`` control API, the hosted invoice page.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (stripe-python's requests
session reuses connections). Each API request goes through the same pipeline as at Stripe:
authentication, rate limiting, idempotency lookup, injected faults, parameter validation, then
the handler under the store's lock; webhooks are handed to the dispatcher after the lock is
released.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import control, hosted
from .api.context import Ctx
from .api.invoice_lifecycle import advance_automatic_invoices
from .api.routes import match_route
from .config import FaultRule
from .errors import StripeError, invalid_request
from .forms import decode
from .ids import random_token
from .models import Account, IdempotencyRec
from .render import API_VERSION
from .schema import validate
from .store import Store, mask_key
from .webhooks import Delivery, Dispatcher

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_BODY_BYTES = 10 * 1024 * 1024


class ConnectionDropped(Exception):
    """Close the connection without an answer (the ``connection_reset`` faults)."""


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, *, public_url: str | None = None) -> None:
        super().__init__((host, port), RequestHandler)
        bound_host, bound_port = self.server_address[:2]
        base = public_url or f"http://{_host_for_url(str(bound_host))}:{bound_port}"
        self.store = Store(public_url=base)
        self.dispatcher = Dispatcher(self.store)

    @property
    def base_url(self) -> str:
        return self.store.public_url

    def server_close(self) -> None:
        self.dispatcher.stop()
        super().server_close()


def _host_for_url(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - formatting a URL, not binding
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer
    server_version = "stripe-emulator"
    sys_version = ""

    # quiet: the request log is the record, not stderr
    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        try:
            body = self._read_body()
            if path.startswith("/v1/"):
                self._api(method, path, parts.query, body)
            elif path.startswith("/_emulator/"):
                status, payload, headers = control.handle(
                    self.server.store,
                    self.server.dispatcher,
                    method,
                    path,
                    parts.query,
                    body,
                    self.headers,
                )
                self._send(status, payload, headers)
            elif path.startswith("/i/"):
                status, payload, headers = hosted.handle(
                    self.server.store, method, path, parts.query, body
                )
                self._send(status, payload, headers)
            elif path == "/":
                self._send_json(200, {"emulator": "stripe", "api_version": API_VERSION})
            else:
                self._send_json(404, _unrecognized(method, path).body())
        except ConnectionDropped:
            self._drop_connection()
        except StripeError as exc:
            self._send_json(exc.status, exc.body(), exc.headers)
        except Exception as exc:  # an emulator bug: answer like Stripe's 500, keep the trace
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            error = StripeError(
                500, f"Stripe emulator bug: {type(exc).__name__}: {exc}", error_type="api_error"
            )
            self._send_json(500, error.body())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would poison the connection
            raise invalid_request("Request body too large.", status=413)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away before its body arrived (a killed process): Stripe never
            # sees such a request, so nothing runs, nothing is logged and no key is taken.
            raise ConnectionDropped()
        return body

    # --- the API pipeline -------------------------------------------------------------------

    def _api(self, method: str, path: str, query: str, body: bytes) -> None:
        store = self.server.store
        started = time.time()
        request_id = "req_" + random_token(14)
        entry: dict[str, Any] = {
            "id": request_id,
            "method": method,
            "path": path,
            "params": {},
            "status": None,
            "time": started,
            "emulator_time": store.clock.now(),
            "idempotency_key": None,
            "idempotent_replayed": False,
            "fault": None,
            "account": None,
            "livemode": None,
        }
        secret_key: str | None = None
        try:
            raw_params = decode(query)
            if method == "POST":
                raw_params.update(decode(body.decode("utf-8", errors="replace")))
            entry["params"] = raw_params
            secret_key = self._secret_key()
            account = store.account(secret_key)
            entry["account"] = mask_key(secret_key)
            entry["emulator_time"] = account.now(store.clock)
            entry["livemode"] = account.livemode
            idempotency_key = self.headers.get("Idempotency-Key") if method == "POST" else None
            entry["idempotency_key"] = idempotency_key
            status, payload, headers = self._api_for_account(
                account, method, path, raw_params, idempotency_key, request_id, entry
            )
        except ConnectionDropped:
            entry["duration_ms"] = round((time.time() - started) * 1000, 3)
            store.log_request(entry, secret_key)
            self._drop_connection()
            return
        except StripeError as exc:
            status, payload, headers = exc.status, _json(exc.body(request_id)), exc.headers
        except Exception as exc:  # an emulator bug: a logged 500 rather than a dropped socket
            traceback.print_exc(file=sys.stderr)
            error = StripeError(
                500, f"Stripe emulator bug: {type(exc).__name__}: {exc}", error_type="api_error"
            )
            status, payload, headers = 500, _json(error.body(request_id)), {}
        if status == 401:
            headers = {"WWW-Authenticate": 'Basic realm="Stripe"', **headers}
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": self.headers.get("Stripe-Version") or API_VERSION,
            **headers,
        }
        if entry["idempotency_key"]:
            headers["Idempotency-Key"] = entry["idempotency_key"]
        entry["status"] = status
        entry["duration_ms"] = round((time.time() - started) * 1000, 3)
        store.log_request(entry, secret_key)
        self._send(status, payload, {"Content-Type": "application/json", **headers})

    def _secret_key(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        if scheme.lower() == "basic" and credentials:
            try:
                decoded = base64.b64decode(credentials).decode()
            except ValueError:
                decoded = ""
            user = decoded.partition(":")[0]
            if user:
                return user
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/.",
        )

    def _api_for_account(
        self,
        account: Account,
        method: str,
        path: str,
        raw_params: dict[str, Any],
        idempotency_key: str | None,
        request_id: str,
        entry: dict[str, Any],
    ) -> tuple[int, bytes, dict[str, str]]:
        store = self.server.store
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
            if fault == "500":
                error = StripeError(500, "An unknown error occurred", error_type="api_error")
                if idempotency_key is not None:
                    error.headers["Stripe-Should-Retry"] = "false"
                status, payload, headers = 500, _json(error.body(request_id)), error.headers
            else:
                status, payload, headers = self._execute(
                    account, method, path, raw_params, idempotency_key, request_id, forget_key
                )
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
    ) -> tuple[int, bytes, dict[str, str]]:
        store = self.server.store
        matched = match_route(method, path)
        if not isinstance(matched, tuple):
            forget_key()
            raise _unrecognized(method, path)
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
                automatic = Ctx(
                    store=store,
                    account=account,
                    now=ctx.now,
                    request_id=None,
                    idempotency_key=None,
                    deliveries=deliveries,
                )
                advance_automatic_invoices(automatic)
                result = route.handler(ctx, params, **path_args)
            status, payload, headers = 200, _json(result), {}
        except StripeError as exc:
            status, payload, headers = exc.status, _json(exc.body(request_id)), exc.headers
        if deliveries:
            self.server.dispatcher.submit(deliveries)
        return status, payload, headers

    def _enforce_rate_limit(self, account: Account) -> None:
        limit = account.config.rate_limit
        if limit is None:
            return
        now = time.monotonic()
        with self.server.store.lock:
            window = account.request_times
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                raise _fault_error("429")
            window.append(now)

    def _pick_fault(self, account: Account, method: str, path: str) -> str | None:
        config = account.config
        with self.server.store.lock:
            for index, rule in enumerate(config.fail_next):
                if rule.matches(method, path):
                    del config.fail_next[index]
                    return rule.error
        method_selected = config.error_methods is None or method in config.error_methods
        if config.error_rate and method_selected and account.random() < config.error_rate:
            errors = config.errors
            return errors[int(account.random() * len(errors)) % len(errors)]
        return None

    # --- responses ----------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, _json(payload), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        """Write status line, headers and body in one ``send``.

        Two writes (headers, then body) on a keep-alive connection meet Nagle's algorithm and
        the client's delayed ACK: every response would then take ~40 ms.
        """
        phrase = HTTPStatus(status).phrase if status in _PHRASES else ""
        head = [
            f"{self.protocol_version} {status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in headers.items()),
            f"Content-Length: {len(payload)}",
        ]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += payload
        self.wfile.write(data)

    def _drop_connection(self) -> None:
        """Reset the TCP connection (RST, no response), like a network failure mid-request."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_PHRASES = {status.value for status in HTTPStatus}


def _json(payload: Any) -> bytes:
    return json.dumps(payload, indent=2).encode()


def _unrecognized(method: str, path: str) -> StripeError:
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


def parse_simple_query(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


__all__ = ["EmulatorServer", "FaultRule", "parse_simple_query"]
