"""Process-wide state: accounts by secret key, the global id index, the request log."""

from __future__ import annotations

import collections
import re
import threading
from typing import Any

from .clock import Clock
from .errors import StripeError
from .ids import random_token
from .models import Account

KEY_PATTERN = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{1,247}$")
REQUEST_LOG_LIMIT = 200_000


def mask_key(key: str) -> str:
    return f"{key[:8]}...{key[-4:]}" if len(key) > 12 else key[:8] + "..."


def expired_key(key: str) -> StripeError:
    """What Stripe answers to a rolled key past its expiry: docs "API keys" say a deleted or
    expired key gets an authentication error; Stripe's body (as the Stripe CLI shows it) is
    ``api_key_expired`` with the key masked but for its prefix and last six characters.
    """
    prefix = key[: key.index("_", 3) + 1]
    masked = prefix + "*" * max(len(key) - len(prefix) - 6, 0) + key[-6:]
    return StripeError(401, f"Expired API Key provided: {masked}", code="api_key_expired")


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
        self._key_expires_at: dict[str, float] = {}
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
            expires_at = self._key_expires_at.get(secret_key, float("inf"))
            if account is not None and account.now(self.clock) >= expires_at:
                raise expired_key(secret_key)
            if account is None:
                account = Account(secret_key, livemode="_live_" in secret_key[:8])
                self._accounts[secret_key] = account
            return account

    def existing_account(self, secret_key: str) -> Account | None:
        with self.lock:
            return self._accounts.get(secret_key)

    def roll_key(self, secret_key: str, *, expires_in: float) -> tuple[str, float]:
        """Another secret key for the account of ``secret_key``, which stays valid for
        ``expires_in`` more seconds of the account's clock (0: expires now), as the Dashboard's
        "Roll key" does. Returns the new key and when the old one expires.
        """
        account = self.account(secret_key)
        prefix = secret_key[: secret_key.index("_", 3) + 1]  # sk_test_, rk_live_...
        with self.lock:
            new_key = prefix + random_token(99)
            self._accounts[new_key] = account
            expires_at = account.now(self.clock) + expires_in
            self._key_expires_at[secret_key] = min(
                expires_at, self._key_expires_at.get(secret_key, expires_at)
            )
            return new_key, self._key_expires_at[secret_key]

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

    def _canonical_key(self, secret_key: str | None) -> str | None:
        """The key an account was created with: a rolled key logs under its account's.

        No lock: a dict lookup is atomic, and the log must not wait for a running request.
        """
        account = self._accounts.get(secret_key) if secret_key is not None else None
        return account.secret_key if account is not None else secret_key

    def log_request(self, entry: dict[str, Any], secret_key: str | None) -> None:
        entry["_key"] = self._canonical_key(secret_key)
        with self._log_lock:
            self._log.append(entry)

    def requests(self, secret_key: str | None) -> list[dict[str, Any]]:
        secret_key = self._canonical_key(secret_key)
        with self._log_lock:
            entries = list(self._log)
        return [
            {k: v for k, v in entry.items() if k != "_key"}
            for entry in entries
            if secret_key is None or entry["_key"] == secret_key
        ]

    def clear_requests(self, secret_key: str | None) -> None:
        secret_key = self._canonical_key(secret_key)
        with self._log_lock:
            if secret_key is None:
                self._log.clear()
            else:
                kept = [entry for entry in self._log if entry["_key"] != secret_key]
                self._log.clear()
                self._log.extend(kept)
