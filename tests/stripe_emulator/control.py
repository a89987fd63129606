"""The ``/_emulator`` control API: what the Stripe Dashboard and the customer's browser do.

Tests and the demo use it to configure faults and chaos per account, read the request log and
the webhook delivery attempts, move the clock, and make the customer pay (card or ACH, in full or
in part) or have an ACH debit fail later. What banks and card networks do to money already paid
(ACH refunds settling, disputes) and the Dashboard's key roll are in :mod:`.control_money`.
Errors use Stripe's error shape.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import control_money, currencies
from .api.context import Ctx
from .api.invoice_payments import apply_payment, fail_payment, in_flight, settle_payment
from .api.pricing import check_amount_for_currency
from .config import ConfigError
from .errors import StripeError, invalid_request, no_such
from .forms import decode
from .models import Account, amount_remaining
from .render import render_invoice, render_invoice_payment

if TYPE_CHECKING:
    from .store import Store
    from .webhooks import Dispatcher

Response = tuple[int, bytes, dict[str, str]]
PAYMENT_METHOD_TYPES = ("card", "us_bank_account")


def _ok(payload: Any, status: int = 200) -> Response:
    return status, json.dumps(payload, indent=2).encode(), {"Content-Type": "application/json"}


def _body(body: bytes, headers: Message) -> dict[str, Any]:
    if not body:
        return {}
    if (headers.get("Content-Type") or "").startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise invalid_request(f"Invalid JSON body: {exc}") from exc
        if not isinstance(parsed, dict):
            raise invalid_request("The JSON body must be an object.")
        return parsed
    return decode(body.decode("utf-8", errors="replace"))


def _optional_key(headers: Message) -> str | None:
    header = headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _account(store: Store, headers: Message) -> Account:
    key = _optional_key(headers)
    if key is None:
        raise StripeError(401, "This emulator endpoint needs 'Authorization: Bearer <secret key>'.")
    return store.account(key)


def handle(
    store: Store,
    dispatcher: Dispatcher,
    method: str,
    path: str,
    query: str,
    body: bytes,
    headers: Message,
) -> Response:
    parts = path.strip("/").split("/")[1:]  # drop "_emulator"
    if parts == ["health"] and method == "GET":
        return _ok({"ok": True, "base_url": store.public_url})
    if parts == ["config"]:
        account = _account(store, headers)
        if method == "POST":
            options = _body(body, headers)
            try:
                with store.lock:
                    account.config.update(options)
                    if "seed" in options:
                        account.reseed(account.config.seed)
            except ConfigError as exc:
                raise invalid_request(str(exc)) from exc
        elif method != "GET":
            raise _method_not_allowed(method, path)
        with store.lock:
            return _ok(account.config.as_json())
    if parts == ["requests"]:
        key = _optional_key(headers)
        if method == "GET":
            return _ok({"object": "list", "data": store.requests(key)})
        if method == "DELETE":
            store.clear_requests(key)
            return _ok({"deleted": True})
        raise _method_not_allowed(method, path)
    if parts == ["clock"] and method == "GET":
        return _clock(store, _optional_key(headers))
    if parts == ["clock", "advance"] and method == "POST":
        options = _body(body, headers)
        key = _optional_key(headers)
        try:
            seconds = float(options.get("seconds", 0))
            if seconds < 0:
                raise ValueError("the clock only moves forward")
        except (TypeError, ValueError) as exc:
            raise invalid_request(f"Invalid seconds: {exc}", param="seconds") from exc
        if key is None:
            store.clock.advance(seconds)
        else:
            account = store.account(key)
            with store.lock:
                account.advance_clock(seconds)
        return _clock(store, key)
    if parts == ["clock", "freeze"] and method == "POST":
        options = _body(body, headers)
        frozen = options.get("frozen", True)
        if not isinstance(frozen, bool):
            raise invalid_request("Invalid frozen: true or false.", param="frozen")
        account = _account(store, headers)
        with store.lock:
            account.freeze_clock(store.clock, frozen=frozen)
        return _clock(store, _optional_key(headers))
    if parts == ["deliveries"] and method == "GET":
        account = _account(store, headers)
        with store.lock:
            attempts = [dict(attempt) for attempt in account.deliveries]
        return _ok(
            {
                "object": "list",
                "data": attempts,
                "pending": dispatcher.pending(account.secret_key),
            }
        )
    if len(parts) == 3 and parts[0] == "invoices" and parts[2] == "payments":
        if method != "POST":
            raise _method_not_allowed(method, path)
        options = _body(body, headers)
        if options.get("return_to") != "hosted":
            return _pay(store, dispatcher, parts[1], options)
        # The hosted invoice page's forms: answer with a redirect back to the page.
        try:
            if any(options.get(name) not in (None, "") for name in ("amount", "display_amount")):
                # Stripe's page pays the default payment, the whole amount remaining.
                raise invalid_request(
                    "The hosted invoice page pays the whole amount remaining; partial payments "
                    "are charged from the Dashboard (Charge customer).",
                    param="amount",
                )
            _, payload, _ = _pay(store, dispatcher, parts[1], options)
            payment = json.loads(payload)["invoice_payment"]
            notice = f"Payment {payment['id']} {payment['status']}."
            location = hosted_redirect(parts[1], notice=notice)
        except StripeError as exc:
            location = hosted_redirect(parts[1], error=exc.message)
        return 303, b"", {"Location": location}
    if len(parts) == 3 and parts[0] == "invoice_payments" and parts[2] in ("succeed", "fail"):
        if method != "POST":
            raise _method_not_allowed(method, path)
        return _settle(store, dispatcher, parts[1], parts[2], _body(body, headers))
    if method == "POST":
        options = _body(body, headers)
        money = control_money.route(store, dispatcher, parts, options, _optional_key(headers))
        if money is not None:
            return money
    raise StripeError(404, f"Unrecognized emulator URL ({method}: {path}).")


def _clock(store: Store, key: str | None) -> Response:
    if key is None:
        return _ok({"now": store.clock.now(), "offset": store.clock.offset})
    account = store.account(key)
    return _ok(
        {
            "now": account.now(store.clock),
            "offset": store.clock.offset + account.clock_offset,
            "frozen": account.clock_frozen_at is not None,
        }
    )


def _method_not_allowed(method: str, path: str) -> StripeError:
    return StripeError(405, f"{method} is not allowed on {path}.")


def _parse_amount(options: dict[str, Any], currency: str) -> int | None:
    """``amount`` in minor units, or ``display_amount`` in major units (the hosted page form)."""
    if options.get("amount") not in (None, ""):
        raw = options["amount"]
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise invalid_request("Invalid integer: amount", param="amount")
        try:
            return int(raw)
        except ValueError as exc:
            raise StripeError(
                400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param="amount"
            ) from exc
    if options.get("display_amount") not in (None, ""):
        raw = str(options["display_amount"]).replace(",", "").strip()
        try:
            major = Decimal(raw)
        except InvalidOperation as exc:
            raise invalid_request(f"Invalid amount: {raw}", param="display_amount") from exc
        minor = major * (10 ** currencies.exponent(currency))
        if minor != minor.to_integral_value():
            raise invalid_request(
                f"Invalid amount {raw}: {currency.upper()} has "
                f"{currencies.exponent(currency)} decimal places.",
                param="display_amount",
            )
        return int(minor)
    return None


def _pay(
    store: Store, dispatcher: Dispatcher, invoice_id: str, options: dict[str, Any]
) -> Response:
    account = store.invoice_owner(invoice_id)
    if account is None:
        raise no_such("invoice", invoice_id)
    method_type = options.get("payment_method_type") or "card"
    if method_type not in PAYMENT_METHOD_TYPES:
        raise invalid_request(
            f"Invalid payment_method_type: must be one of {' or '.join(PAYMENT_METHOD_TYPES)}",
            param="payment_method_type",
        )
    pending = str(options.get("pending", "false")).lower() == "true"
    if pending and method_type != "us_bank_account":
        raise invalid_request("Only us_bank_account payments can stay pending.", param="pending")
    failure_code = options.get("failure_code") or None
    ctx = Ctx.unrequested(store, account)
    with store.lock:
        invoice = account.invoices.get(invoice_id)
        if invoice is None or invoice.deleted:
            raise no_such("invoice", invoice_id)
        if invoice.status == "draft":
            raise invalid_request("This invoice is a draft; it can be paid once finalized.")
        if invoice.status == "paid":
            raise invalid_request("Invoice is already paid")
        if invoice.status == "void":
            raise invalid_request("This invoice is void and can no longer be paid.")
        accepted = invoice.payment_method_types
        if accepted is not None and method_type not in accepted:
            raise invalid_request(
                f"This invoice does not accept {method_type} payments "
                f"(payment_settings.payment_method_types is {accepted}).",
                param="payment_method_type",
            )
        reserved = sum(payment.amount_requested for payment in in_flight(account, invoice))
        available = amount_remaining(account, invoice) - reserved
        amount = _parse_amount(options, invoice.currency)
        if amount is None:
            amount = available
        if amount <= 0:
            raise invalid_request(
                "The amount must be positive"
                + (" (pending payments already cover the rest)." if reserved else "."),
                param="amount",
            )
        if amount > available:
            raise invalid_request(
                f"The amount ({amount}) exceeds the amount remaining on the invoice ({available}).",
                param="amount",
            )
        check_amount_for_currency(amount, invoice.currency, param="amount")
        payment = apply_payment(
            ctx,
            invoice,
            amount=amount,
            method_type=method_type,
            failure_code=failure_code,
            pending=pending,
        )
        result = {
            "invoice_payment": render_invoice_payment(payment),
            "invoice": render_invoice(account, invoice),
        }
    if ctx.deliveries:
        dispatcher.submit(ctx.deliveries)
    return _ok(result)


def _settle(
    store: Store, dispatcher: Dispatcher, payment_id: str, outcome: str, options: dict[str, Any]
) -> Response:
    account = store.payment_owner(payment_id)
    if account is None:
        raise no_such("invoice_payment", payment_id)

    def action(ctx: Ctx, account: Account) -> dict[str, Any]:
        payment = account.invoice_payments[payment_id]
        if outcome == "succeed":
            settle_payment(ctx, payment)
        else:
            fail_payment(ctx, payment, str(options.get("failure_code") or "insufficient_funds"))
        return {
            "invoice_payment": render_invoice_payment(payment),
            "invoice": render_invoice(account, account.invoices[payment.invoice]),
        }

    return control_money.act(store, dispatcher, account, action)


def hosted_redirect(invoice_id: str, *, notice: str | None = None, error: str | None = None) -> str:
    query = ""
    if notice:
        query = f"?notice={quote(notice)}"
    elif error:
        query = f"?error={quote(error)}"
    return f"/i/{invoice_id}{query}"
