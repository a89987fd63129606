"""``EmulatorHandle``: what tests hold to talk to a running emulator (plain HTTP, no Django).

The handle drives the emulator's control API (``/_emulator/...``); the Stripe API itself is
reached through ``handle.client(key)``, a real ``stripe.StripeClient`` pointed at the emulator.
"""

from __future__ import annotations

import json
import secrets
import string
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import stripe
from stripe._base_address import BaseAddresses

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_ALPHABET = string.ascii_letters + string.digits


class EmulatorError(RuntimeError):
    """A control-API call failed; ``status`` and ``body`` hold the emulator's answer."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else body
        super().__init__(f"emulator answered {status}: {message}")
        self.status = status
        self.body = body


class EmulatorHandle:
    def __init__(self, base_url: str, *, pid: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.pid = pid

    # --- accounts and clients -----------------------------------------------------------------

    def new_secret_key(self, *, livemode: bool = False) -> str:
        """A fresh account: any well-formed key is one, so a random key is a new, empty account."""
        mode = "live" if livemode else "test"
        return f"sk_{mode}_" + "".join(secrets.choice(_ALPHABET) for _ in range(32))

    def client(self, secret_key: str, **kwargs: Any) -> stripe.StripeClient:
        kwargs.setdefault("max_network_retries", 0)
        base_addresses: BaseAddresses = {"api": self.base_url}
        base_addresses.update(kwargs.pop("base_addresses", {}))
        return stripe.StripeClient(secret_key, base_addresses=base_addresses, **kwargs)

    # --- control API --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        secret_key: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if secret_key is not None:
            headers["Authorization"] = f"Bearer {secret_key}"
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            exc.close()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise EmulatorError(exc.code, parsed) from None
        return json.loads(body) if body else None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_emulator/health", timeout=2.0)
        return result

    def configure(self, secret_key: str, **options: Any) -> dict[str, Any]:
        """Set faults / webhook chaos for one account; returns the account's whole config."""
        result: dict[str, Any] = self._call(
            "POST", "/_emulator/config", options, secret_key=secret_key
        )
        return result

    def config(self, secret_key: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_emulator/config", secret_key=secret_key)
        return result

    def pay_invoice(
        self,
        invoice_id: str,
        *,
        amount: int | None = None,
        payment_method_type: str = "card",
        pending: bool = False,
        failure_code: str | None = None,
    ) -> dict[str, Any]:
        """A payment on the invoice: ``amount=None`` is the customer paying everything that
        remains on the hosted page (the default payment); an ``amount`` in minor units is the
        Dashboard's "Charge customer" (any amount up to the remainder, a separate payment).

        ``pending=True`` (``us_bank_account`` only) leaves the ACH debit processing until
        :meth:`settle_payment` or :meth:`fail_payment`; ``failure_code`` makes it fail at once.
        Returns ``{"invoice_payment": {...}, "invoice": {...}}``.
        """
        payload: dict[str, Any] = {"payment_method_type": payment_method_type}
        if amount is not None:
            payload["amount"] = amount
        if pending:
            payload["pending"] = "true"
        if failure_code is not None:
            payload["failure_code"] = failure_code
        result: dict[str, Any] = self._call(
            "POST", f"/_emulator/invoices/{invoice_id}/payments", payload
        )
        return result

    def settle_payment(self, invoice_payment_id: str) -> dict[str, Any]:
        """A pending ACH debit succeeds (``invoice_payment.paid``, ``invoice.updated``...)."""
        result: dict[str, Any] = self._call(
            "POST", f"/_emulator/invoice_payments/{invoice_payment_id}/succeed", {}
        )
        return result

    def fail_payment(
        self, invoice_payment_id: str, *, failure_code: str = "insufficient_funds"
    ) -> dict[str, Any]:
        """A pending ACH debit fails days later: ``invoice.payment_failed``, nothing is paid."""
        result: dict[str, Any] = self._call(
            "POST",
            f"/_emulator/invoice_payments/{invoice_payment_id}/fail",
            {"failure_code": failure_code},
        )
        return result

    def settle_refund(self, refund_id: str) -> dict[str, Any]:
        """A pending ACH refund succeeds. Returns ``{"refund": {...}, "charge": {...}}``."""
        result: dict[str, Any] = self._call("POST", f"/_emulator/refunds/{refund_id}/succeed", {})
        return result

    def fail_refund(self, refund_id: str, *, failure_reason: str = "declined") -> dict[str, Any]:
        """A pending ACH refund fails: ``refund.failed``, its amount goes back to the charge."""
        result: dict[str, Any] = self._call(
            "POST", f"/_emulator/refunds/{refund_id}/fail", {"failure_reason": failure_reason}
        )
        return result

    def open_dispute(
        self, charge_id: str, *, amount: int | None = None, reason: str = "fraudulent"
    ) -> dict[str, Any]:
        """The card network opens a dispute (funds withdrawn). ``{"dispute", "charge"}``."""
        payload: dict[str, Any] = {"reason": reason}
        if amount is not None:
            payload["amount"] = amount
        result: dict[str, Any] = self._call(
            "POST", f"/_emulator/charges/{charge_id}/dispute", payload
        )
        return result

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        """The card network decides: won (funds reinstated) or lost."""
        result: dict[str, Any] = self._call(
            "POST",
            f"/_emulator/disputes/{dispute_id}/close",
            {"outcome": "won" if won else "lost"},
        )
        return result

    def roll_key(self, secret_key: str, *, expires_in: float = 0) -> str:
        """The Dashboard's "Roll key": a new key for the same account; ``secret_key`` keeps
        working ``expires_in`` more seconds (of the account's clock)."""
        result = self._call(
            "POST", "/_emulator/keys/roll", {"expires_in": expires_in}, secret_key=secret_key
        )
        new_key: str = result["secret_key"]
        return new_key

    def requests(self, secret_key: str | None = None) -> list[dict[str, Any]]:
        """The API request log, oldest first (one account's, or every account's)."""
        result = self._call("GET", "/_emulator/requests", secret_key=secret_key)
        data: list[dict[str, Any]] = result["data"]
        return data

    def raw_events(self, secret_key: str) -> list[dict[str, Any]]:
        """Every event of the account through ``GET /v1/events``, oldest first: the JSON a webhook
        delivery would carry, for tests that deliver events themselves."""
        events: list[dict[str, Any]] = []
        after = ""
        while True:
            page = self._call("GET", f"/v1/events?limit=100{after}", secret_key=secret_key)
            events.extend(page["data"])
            if not page["has_more"]:
                return events[::-1]
            after = f"&starting_after={page['data'][-1]['id']}"

    def clear_requests(self, secret_key: str | None = None) -> None:
        self._call("DELETE", "/_emulator/requests", secret_key=secret_key)

    def advance_clock(self, seconds: float, *, secret_key: str | None = None) -> None:
        """Move the emulator's clock forward (no sleeping).

        Without ``secret_key`` the whole emulator moves (every account, every later test in the
        session); with it only that account's clock does, which keeps tests independent.
        """
        self._call("POST", "/_emulator/clock/advance", {"seconds": seconds}, secret_key=secret_key)

    def freeze_clock(self, secret_key: str, *, frozen: bool = True) -> None:
        """Stop the account's clock (every object it creates gets the same ``created``) until
        advanced or let run again (``frozen=False``), as a Stripe test clock."""
        self._call("POST", "/_emulator/clock/freeze", {"frozen": frozen}, secret_key=secret_key)

    def now(self, *, secret_key: str | None = None) -> float:
        result = self._call("GET", "/_emulator/clock", secret_key=secret_key)
        now: float = result["now"]
        return now

    def deliveries(self, secret_key: str) -> list[dict[str, Any]]:
        """Webhook delivery attempts of the account, in the order they happened."""
        result = self._call("GET", "/_emulator/deliveries", secret_key=secret_key)
        data: list[dict[str, Any]] = result["data"]
        return data

    def pending_deliveries(self, secret_key: str) -> int:
        result = self._call("GET", "/_emulator/deliveries", secret_key=secret_key)
        pending: int = result["pending"]
        return pending

    def wait_for_deliveries(
        self, secret_key: str, *, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Block until no delivery of the account is scheduled or in flight; return attempts."""
        deadline = time.monotonic() + timeout
        while True:
            result = self._call("GET", "/_emulator/deliveries", secret_key=secret_key)
            if result["pending"] == 0:
                data: list[dict[str, Any]] = result["data"]
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"{result['pending']} webhook deliveries still pending")
            time.sleep(0.02)

    def hosted_page(self, invoice_id: str) -> str:
        """The hosted invoice page's HTML (``EmulatorError`` 404 for drafts and unknown ids)."""
        request = urllib.request.Request(self.base_url + f"/i/{invoice_id}")
        try:
            with _OPENER.open(request, timeout=10) as response:
                text: str = response.read().decode()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            exc.close()
            raise EmulatorError(exc.code, json.loads(raw)) from None
        return text

    def post_form(self, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """POST a form as a browser would (no redirect following): status, headers, body."""

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        request = urllib.request.Request(
            self.base_url + path,
            data=urlencode(fields).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers), exc.read()
