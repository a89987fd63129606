"""PaymentIntents and charges: the money behind an invoice payment made on Stripe.

Stripe's invoice payments are backed by a PaymentIntent (``invoice_payment.payment.type =
"payment_intent"``); each attempt to collect it is a charge, the PaymentIntent's
``latest_charge``. A card charge succeeds or fails at once; an ACH debit (``us_bank_account``)
stays ``pending`` (PaymentIntent ``processing``) until it settles or fails days later. Since
API 2025-03-31.basil neither object names its invoice (changelog "Adds support for multiple
(partial) payments on invoices").

Only retrieval and listing are ``/v1`` endpoints here: the emulator creates PaymentIntents for
invoice payments, not for ``POST /v1/payment_intents``.
"""

from __future__ import annotations

from ..errors import require
from ..ids import new_id, random_token
from ..models import JSON, ChargeRec, InvoiceRec, PaymentIntentRec
from ..render_money import render_charge, render_payment_intent, render_refund
from .context import Ctx, Params
from .lists import list_page, newest_first
from .params import expansions, reject_unsupported

# What Stripe's test payment methods decline with (docs "Testing": declined payments).
DECLINE_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}


def open_intent(ctx: Ctx, invoice: InvoiceRec, *, amount: int) -> PaymentIntentRec:
    """A PaymentIntent waiting for a payment method: the one behind an invoice's default payment."""
    intent = PaymentIntentRec(
        id=new_id("pi"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        amount=amount,
        currency=invoice.currency,
        customer=invoice.customer,
        payment_method_types=list(invoice.payment_method_types or ["card", "us_bank_account"]),
        client_secret="",
        seq=ctx.account.next_seq(),
    )
    intent.client_secret = f"{intent.id}_secret_{random_token(25)}"
    ctx.account.payment_intents[intent.id] = intent
    return intent


def charge_intent(
    ctx: Ctx, intent: PaymentIntentRec, *, amount: int, method_type: str
) -> ChargeRec:
    """A new attempt on ``intent``: its charge, ``pending`` until settled or failed."""
    intent.amount = amount
    intent.status = "processing"
    intent.payment_method = new_id("pm")
    intent.payment_method_types = [method_type]
    intent.last_payment_error = None
    charge = ChargeRec(
        id=new_id("ch" if method_type == "card" else "py"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        amount=amount,
        currency=intent.currency,
        customer=intent.customer,
        payment_intent=intent.id,
        payment_method=intent.payment_method,
        payment_method_type=method_type,
        seq=ctx.account.next_seq(),
    )
    intent.latest_charge = charge.id
    ctx.account.charges[charge.id] = charge
    ctx.store.index(charge.id, ctx.account)
    return charge


def start_payment(
    ctx: Ctx, invoice: InvoiceRec, *, amount: int, method_type: str
) -> tuple[PaymentIntentRec, ChargeRec]:
    """A PaymentIntent for ``amount`` and its first charge, ``pending`` until settled/failed."""
    intent = open_intent(ctx, invoice, amount=amount)
    return intent, charge_intent(ctx, intent, amount=amount, method_type=method_type)


def succeed_payment(ctx: Ctx, intent: PaymentIntentRec) -> None:
    charge = ctx.account.charges[intent.latest_charge or ""]
    charge.status = "succeeded"
    charge.balance_transaction = new_id("txn")
    intent.status = "succeeded"
    intent.amount_received = charge.amount


def fail_payment_attempt(ctx: Ctx, intent: PaymentIntentRec, failure_code: str) -> None:
    """The charge fails; the PaymentIntent waits for another payment method, as at Stripe."""
    charge = ctx.account.charges[intent.latest_charge or ""]
    message = DECLINE_MESSAGES.get(failure_code, "The payment failed.")
    charge.status = "failed"
    charge.failure_code = failure_code
    charge.failure_message = message
    intent.status = "requires_payment_method"
    intent.payment_method = None
    card = charge.payment_method_type == "card"
    intent.last_payment_error = {
        "charge": charge.id,
        "code": failure_code if card else "payment_method_provider_decline",
        "decline_code": failure_code if card else None,
        "doc_url": f"https://stripe.com/docs/error-codes/{failure_code.replace('_', '-')}",
        "message": message,
        "payment_method_type": charge.payment_method_type,
        "type": "card_error" if card else "invalid_request_error",
    }


def cancel_payment(ctx: Ctx, intent: PaymentIntentRec, reason: str) -> None:
    intent.status = "canceled"
    intent.canceled_at = ctx.now
    intent.cancellation_reason = reason


def charge_json(ctx: Ctx, charge: ChargeRec, expand: set[str] | None = None) -> JSON:
    """A charge; ``expand`` may name ``refunds`` (includable) and ``payment_intent``."""
    expand = expand or set()
    refunds = None
    if "refunds" in expand:
        records = [
            refund
            for refund in newest_first(ctx.account.refunds.values())
            if refund.charge == charge.id
        ]
        refunds = {
            "object": "list",
            "data": [render_refund(refund) for refund in records],
            "has_more": False,
            "url": f"/v1/charges/{charge.id}/refunds",
        }
    intent = (
        render_payment_intent(ctx.account.payment_intents[charge.payment_intent])
        if "payment_intent" in expand
        else None
    )
    return render_charge(charge, refunds=refunds, payment_intent=intent)


def payment_intent_json(ctx: Ctx, intent: PaymentIntentRec, expand: set[str]) -> JSON:
    latest = None
    if "latest_charge" in expand and intent.latest_charge is not None:
        latest = charge_json(ctx, ctx.account.charges[intent.latest_charge])
    return render_payment_intent(intent, latest_charge=latest)


def retrieve_payment_intent(ctx: Ctx, params: Params, intent_id: str) -> JSON:
    intent = require(ctx.account.payment_intents, intent_id, "payment_intent")
    return payment_intent_json(ctx, intent, expansions(params, ("latest_charge",)))


def list_payment_intents(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, ("customer_account",))
    expand = expansions(params, ("latest_charge",), prefix="data.")
    return list_page(
        ctx.account.payment_intents.values(),
        params,
        filters=("customer",),
        url="/v1/payment_intents",
        render=lambda intent: payment_intent_json(ctx, intent, expand),
        kind="payment_intent",
    )


CHARGE_EXPANDABLE = ("refunds", "payment_intent")


def retrieve_charge(ctx: Ctx, params: Params, charge_id: str) -> JSON:
    charge = require(ctx.account.charges, charge_id, "charge")
    return charge_json(ctx, charge, expansions(params, CHARGE_EXPANDABLE))


def list_charges(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, ("transfer_group",))
    expand = expansions(params, CHARGE_EXPANDABLE, prefix="data.")
    return list_page(
        ctx.account.charges.values(),
        params,
        filters=("customer", "payment_intent"),
        url="/v1/charges",
        render=lambda charge: charge_json(ctx, charge, expand),
        kind="charge",
    )
