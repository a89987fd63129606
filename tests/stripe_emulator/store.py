"""Process-wide state: accounts by secret key, the global id index, the request log."""

from __future__ import annotations

import collections
import re
import threading
from typing import Any

from .clock import Clock
from .errors import StripeError
from .models import Account

KEY_PATTERN = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{1,247}$")
REQUEST_LOG_LIMIT = 200_000


def mask_key(key: str) -> str:
    return f"{key[:8]}...{key[-4:]}" if len(key) > 12 else key[:8] + "..."


class Store:
    """Everything the emulator remembers, behind one re-entrant lock.

    A single lock keeps every request atomic (Stripe's own per-object locking is finer, but
    atomic requests are what clients may rely on); handlers are microseconds long, so the lock
    is not what limits throughput (see ``tests/benchmarks/emulator_throughput.py``).
    """

    def __init__(self, *, public_url: str) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.public_url = public_url.rstrip("/")
        self._accounts: dict[str, Account] = {}
        self._invoice_owner: dict[str, Account] = {}
        self._payment_owner: dict[str, Account] = {}
        self._owner: dict[str, Account] = {}
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_LIMIT)
        self._log_lock = threading.Lock()

    # accounts --------------------------------------------------------------------------------

    def account(self, secret_key: str) -> Account:
        """The account of a well-formed key, created on first use (any such key is an account)."""
        if secret_key.startswith("pk_"):
            raise StripeError(
                401,
                "This API call cannot be made with a publishable API key. Please use a secret "
                "API key. You can find a list of your API keys at "
                "https://dashboard.stripe.com/account/apikeys.",
                code="secret_key_required",
            )
        if not KEY_PATTERN.match(secret_key):
            raise StripeError(401, f"Invalid API Key provided: {mask_key(secret_key)}")
        with self.lock:
            account = self._accounts.get(secret_key)
            if account is None:
                account = Account(secret_key, livemode="_live_" in secret_key[:8])
                self._accounts[secret_key] = account
            return account

    def existing_account(self, secret_key: str) -> Account | None:
        with self.lock:
            return self._accounts.get(secret_key)

    def index(self, object_id: str, account: Account) -> None:
        """Remember whose object this is, for the control API (which finds objects by id)."""
        self._owner[object_id] = account

    def owner(self, object_id: str) -> Account | None:
        with self.lock:
            return self._owner.get(object_id)

    def index_invoice(self, invoice_id: str, account: Account) -> None:
        self._invoice_owner[invoice_id] = account

    def index_payment(self, payment_id: str, account: Account) -> None:
        self._payment_owner[payment_id] = account

    def invoice_owner(self, invoice_id: str) -> Account | None:
        with self.lock:
            return self._invoice_owner.get(invoice_id)

    def payment_owner(self, payment_id: str) -> Account | None:
        with self.lock:
            return self._payment_owner.get(payment_id)

    # request log -----------------------------------------------------------------------------

    def log_request(self, entry: dict[str, Any], secret_key: str | None) -> None:
        entry["_key"] = secret_key
        with self._log_lock:
            self._log.append(entry)

    def requests(self, secret_key: str | None) -> list[dict[str, Any]]:
        with self._log_lock:
            entries = list(self._log)
        return [
            {k: v for k, v in entry.items() if k != "_key"}
            for entry in entries
            if secret_key is None or entry["_key"] == secret_key
        ]

    def clear_requests(self, secret_key: str | None) -> None:
        with self._log_lock:
            if secret_key is None:
                self._log.clear()
            else:
                kept = [entry for entry in self._log if entry["_key"] != secret_key]
                self._log.clear()
                self._log.extend(kept)
