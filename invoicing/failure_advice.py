"""What a recorded failure means for the organizer, and what to do about it (pure).

The PO keeps the technical line (``invoice_error``, e.g. ``Invoice creation failed: Stripe
AuthenticationError 401: Invalid API Key provided``) for whoever debugs; the admin shows this
reading of it first, in plain words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_RETRY: Final = "then use “Retry invoice creation” on this page."


@dataclass(frozen=True)
class Advice:
    problem: str
    what_to_do: str


# (markers, any of which in the recorded error, -> advice when creation is blocked). First wins.
_BLOCKED: Final[tuple[tuple[tuple[str, ...], Advice], ...]] = (
    (
        ("AuthenticationError", "Invalid API Key", "StripeKeyMissing", "no Stripe secret key"),
        Advice(
            "Stripe did not accept the conference's secret key (mistyped, rolled or revoked), so "
            "no invoice could be created.",
            "A finance admin enters the right key on the conference's page; " + _RETRY,
        ),
    ),
    (
        ("PermissionError",),
        Advice(
            "The conference's Stripe key is not allowed to create invoices (a restricted key "
            "without the Invoices permission).",
            "A finance admin gives the key that permission at Stripe or enters a full secret "
            "key; " + _RETRY,
        ),
    ),
    (
        ("amount_too_large", "amount_too_small", "AmountNotRepresentable"),
        Advice(
            "Stripe refused the amount of this purchase order: it is outside what Stripe charges "
            "on one invoice in this currency.",
            "Cancel this PO (a draft invoice left at Stripe is deleted) and create POs within "
            "Stripe's limits.",
        ),
    ),
    (
        ("payment method", "payment_method_types"),
        Advice(
            "Stripe refused the conference's payment methods for this invoice.",
            "A finance admin corrects the payment methods on the conference's page; " + _RETRY,
        ),
    ),
    (
        ("InvoiceMismatch", "resolve by hand", "was the draft edited"),
        Advice(
            "The invoice at Stripe no longer matches this purchase order (edited or deleted "
            "there by hand).",
            "Check the invoice in Stripe's Dashboard; cancel this PO, or put the invoice back "
            "as it was and " + _RETRY.removeprefix("then "),
        ),
    ),
)

_BLOCKED_DEFAULT: Final = Advice(
    "Creating the Stripe invoice failed in a way that retrying alone does not fix.",
    "Read the technical detail below, fix its cause; " + _RETRY,
)


def advise(error: str, *, creation_blocked: bool) -> Advice:
    """The plain-words reading of a recorded failure (``error``: the PO's ``invoice_error``)."""
    if creation_blocked:
        for markers, advice in _BLOCKED:
            if any(marker in error for marker in markers):
                return advice
        return _BLOCKED_DEFAULT
    if ", retry " in error:
        return Advice(
            "Stripe or the network failed for a moment.",
            "Nothing: the worker retries by itself; this note goes away once it succeeds.",
        )
    if " after " in error and " retries" in error:
        return Advice(
            "Stripe or the network kept failing; the worker stopped retrying for now.",
            "The beat tries again within minutes; you can also run the action again.",
        )
    return Advice(
        "The last background action on this purchase order failed.",
        "Read the technical detail below; fix its cause and run the action again.",
    )
