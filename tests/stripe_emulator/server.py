"""The HTTP server: Stripe's ``/v1`` API, the ``/_emulator`` control API, the hosted invoice page.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (stripe-python's requests
session reuses connections). An API request is read, authenticated and logged here; the rest of
Stripe's pipeline (rate limit, idempotency, faults, validation, the handler) is in
:mod:`.pipeline`.
"""

from __future__ import annotations

import base64
import socket
import struct
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from . import control, hosted
from .errors import StripeError, invalid_request
from .forms import decode
from .ids import random_token
from .pipeline import ApiPipeline, ConnectionDropped, json_bytes, unrecognized_url
from .render import API_VERSION
from .store import Store, mask_key
from .webhooks import Dispatcher

MAX_BODY_BYTES = 10 * 1024 * 1024


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
        self.pipeline = ApiPipeline(self.store, self.dispatcher)

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
                self._send_json(404, unrecognized_url(method, path).body())
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

    # --- /v1 requests: read, authenticate, log (the pipeline does the rest) ------------------

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
            status, payload, headers = self.server.pipeline.run(
                account, method, path, raw_params, idempotency_key, request_id, entry
            )
        except ConnectionDropped:
            entry["duration_ms"] = round((time.time() - started) * 1000, 3)
            store.log_request(entry, secret_key)
            self._drop_connection()
            return
        except StripeError as exc:
            status, payload, headers = exc.status, json_bytes(exc.body(request_id)), exc.headers
        except Exception as exc:  # an emulator bug: a logged 500 rather than a dropped socket
            traceback.print_exc(file=sys.stderr)
            error = StripeError(
                500, f"Stripe emulator bug: {type(exc).__name__}: {exc}", error_type="api_error"
            )
            status, payload, headers = 500, json_bytes(error.body(request_id)), {}
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

    # --- responses ----------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, json_bytes(payload), {"Content-Type": "application/json", **(headers or {})}
        )

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
