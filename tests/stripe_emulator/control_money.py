"""The control API's money actions: what banks, card networks and the Dashboard do.

* ``POST /_emulator/refunds/<id>/succeed`` | ``/fail`` (``failure_reason``): the customer's bank
  answers a pending ACH refund.
* ``POST /_emulator/charges/<id>/dispute`` (``amount``, ``reason``): the card network opens a
  dispute; the disputed funds are withdrawn at once.
* ``POST /_emulator/disputes/<id>/close`` (``outcome``: ``won`` | ``lost``).
* ``POST /_emulator/keys/roll`` (``Authorization: Bearer <key>``, ``expires_in`` seconds, 0 =
  now): the Dashboard's "Roll key": another secret key for the same account; the old key works
  until it expires on the account's clock, then gets 401 ``api_key_expired``.

Each answers with the changed objects in Stripe's shapes; errors use Stripe's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .api.context import Ctx
from .api.disputes import close_dispute, open_dispute
from .api.payment_intents import charge_json
from .api.refunds import settle_refund
from .errors import StripeError, invalid_request, no_such, require
from .models import Account
from .render_money import render_dispute, render_refund

if TYPE_CHECKING:
    from .store import Store
    from .webhooks import Dispatcher

Response = tuple[int, bytes, dict[str, str]]
# Refund.failure_reason values (API reference, "The refund object").
REFUND_FAILURE_REASONS = frozenset(
    {
        "charge_for_pending_refund_disputed",
        "declined",
        "expired_or_canceled_card",
        "insufficient_funds",
        "lost_or_stolen_card",
        "merchant_request",
        "unknown",
    }
)


def _ok(payload: Any) -> Response:
    return 200, json.dumps(payload, indent=2).encode(), {"Content-Type": "application/json"}


Action = Callable[[Ctx, Account], dict[str, Any]]


def act(store: Store, dispatcher: Dispatcher, account: Account, action: Action) -> Response:
    """Run ``action`` for ``account`` under the store's lock, then send its webhooks."""
    ctx = Ctx.unrequested(store, account)
    with store.lock:
        result = action(ctx, account)
    if ctx.deliveries:
        dispatcher.submit(ctx.deliveries)
    return _ok(result)


def _act_on(
    store: Store, dispatcher: Dispatcher, object_id: str, kind: str, action: Action
) -> Response:
    """:func:`act` for the account that owns ``object_id`` (the control API takes no key)."""
    account = store.owner(object_id)
    if account is None:
        raise no_such(kind, object_id)
    return act(store, dispatcher, account, action)


def settle_refund_response(
    store: Store, dispatcher: Dispatcher, refund_id: str, outcome: str, options: dict[str, Any]
) -> Response:
    reason = None
    if outcome == "fail":
        reason = str(options.get("failure_reason") or "declined")
        if reason not in REFUND_FAILURE_REASONS:
            reasons = ", ".join(sorted(REFUND_FAILURE_REASONS))
            raise invalid_request(
                f"Invalid failure_reason: must be one of {reasons}", param="failure_reason"
            )

    def action(ctx: Ctx, account: Account) -> dict[str, Any]:
        refund = require(account.refunds, refund_id, "refund")
        settle_refund(ctx, refund, failure_reason=reason)
        return {
            "refund": render_refund(refund),
            "charge": charge_json(ctx, account.charges[refund.charge]),
        }

    return _act_on(store, dispatcher, refund_id, "refund", action)


def open_dispute_response(
    store: Store, dispatcher: Dispatcher, charge_id: str, options: dict[str, Any]
) -> Response:
    amount = options.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise invalid_request("Invalid integer: amount", param="amount")
    reason = str(options.get("reason") or "fraudulent")

    def action(ctx: Ctx, account: Account) -> dict[str, Any]:
        charge = require(account.charges, charge_id, "charge")
        dispute = open_dispute(ctx, charge, amount=amount, reason=reason)
        return {"dispute": render_dispute(dispute), "charge": charge_json(ctx, charge)}

    return _act_on(store, dispatcher, charge_id, "charge", action)


def close_dispute_response(
    store: Store, dispatcher: Dispatcher, dispute_id: str, options: dict[str, Any]
) -> Response:
    outcome = options.get("outcome")
    if outcome not in ("won", "lost"):
        raise invalid_request("Invalid outcome: must be won or lost", param="outcome")

    def action(ctx: Ctx, account: Account) -> dict[str, Any]:
        dispute = require(account.disputes, dispute_id, "dispute")
        close_dispute(ctx, dispute, won=outcome == "won")
        return {
            "dispute": render_dispute(dispute),
            "charge": charge_json(ctx, account.charges[dispute.charge]),
        }

    return _act_on(store, dispatcher, dispute_id, "dispute", action)


def roll_key_response(store: Store, secret_key: str, options: dict[str, Any]) -> Response:
    expires_in = options.get("expires_in", 0)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in < 0:
        raise invalid_request(
            "expires_in is how many seconds the old key keeps working (0: it expires now).",
            param="expires_in",
        )
    new_key, expires_at = store.roll_key(secret_key, expires_in=float(expires_in))
    return _ok({"secret_key": new_key, "previous_key_expires_at": expires_at})


def route(
    store: Store,
    dispatcher: Dispatcher,
    parts: list[str],
    options: dict[str, Any],
    secret_key: str | None,
) -> Response | None:
    """The response for a money action (``parts`` is the path after ``/_emulator``), or None."""
    if len(parts) == 3 and parts[0] == "refunds" and parts[2] in ("succeed", "fail"):
        return settle_refund_response(store, dispatcher, parts[1], parts[2], options)
    if len(parts) == 3 and parts[0] == "charges" and parts[2] == "dispute":
        return open_dispute_response(store, dispatcher, parts[1], options)
    if len(parts) == 3 and parts[0] == "disputes" and parts[2] == "close":
        return close_dispute_response(store, dispatcher, parts[1], options)
    if parts == ["keys", "roll"]:
        if secret_key is None:
            raise StripeError(401, "Rolling a key needs 'Authorization: Bearer <secret key>'.")
        return roll_key_response(store, secret_key, options)
    return None
