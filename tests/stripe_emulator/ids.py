"""Stripe-shaped identifiers, unique across every account of the process."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """``in_1Pgc6tB7WZ01zgkWu9fdqL6I``-style id; 24 random characters make collisions moot.

    Ids are global (not per account) because the hosted invoice page and the payments
    endpoint find an invoice by id alone, without a key.
    """
    return f"{prefix}_1{random_token(length - 1)}"


def new_invoice_prefix() -> str:
    return random_token(8).upper().replace("O", "0")[:8]
