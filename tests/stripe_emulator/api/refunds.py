"""``/v1/refunds``: money going back to the customer, on the charge it came from.

Rules (docs "Refunds" and the API reference): a refund names a ``charge`` or a
``payment_intent``; ``amount`` defaults to what is left to refund, and "you can't refund a total
greater than the original charge amount"; refunds of card payments succeed at once, refunds of
ACH debits (``us_bank_account``) stay ``pending`` until the bank answers (the control API settles
them ``succeeded`` or ``failed``). A charge's ``amount_refunded`` counts pending refunds and gives
back what a failed one had taken. A refund does not change its invoice: Stripe records what was
refunded on the charge, and an invoice's ``amount_paid`` stays what was paid (to reduce what an
invoice asks for, issue a credit note, which may create the refund itself).
"""

from __future__ import annotations

from .. import currencies
from ..errors import StripeError, invalid_request, parameters_exclusive, require
from ..ids import new_id
from ..models import JSON, ChargeRec, RefundRec
from ..render_money import render_charge, render_refund
from .context import Ctx, Params
from .events import emit, previous_attributes
from .lists import list_page
from .params import expansions, merge_metadata, reject_unsupported

_UNSUPPORTED = (
    "currency",
    "customer",
    "instructions_email",
    "origin",
    "refund_application_fee",
    "reverse_transfer",
)


def _money(amount: int, currency: str) -> str:
    """Stripe's refund errors print amounts like ``$25.00``."""
    text = currencies.format_amount(amount, currency)
    return "$" + text.removesuffix(" USD") if currency == "usd" else text


def refund_target(ctx: Ctx, params: Params) -> ChargeRec:
    """The charge a ``POST /v1/refunds`` names, directly or through its PaymentIntent."""
    charge_id, intent_id = params.get("charge"), params.get("payment_intent")
    if charge_id is None and intent_id is None:
        raise invalid_request(
            "One of the following params should be provided for this request: charge or "
            "payment_intent."
        )
    charge = None
    if charge_id is not None:
        charge = require(ctx.account.charges, charge_id, "charge", param="charge", status=400)
    if intent_id is not None:
        intent = require(
            ctx.account.payment_intents,
            intent_id,
            "payment_intent",
            param="payment_intent",
            status=400,
        )
        if intent.status != "succeeded" or intent.latest_charge is None:
            raise invalid_request(
                f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        if charge is not None and charge.payment_intent != intent.id:
            raise parameters_exclusive("charge", "payment_intent")
        charge = ctx.account.charges[intent.latest_charge]
    assert charge is not None
    return charge


def check_refundable(ctx: Ctx, charge: ChargeRec, amount: int | None) -> int:
    """The amount to refund (``None``: all that is left); raises what Stripe refuses."""
    if charge.status == "failed":
        raise invalid_request(f"Charge {charge.id} has failed and cannot be refunded.")
    if charge.status == "pending":
        raise invalid_request(
            f"The Stripe emulator does not refund pending charges ({charge.id}); settle the "
            "payment first."
        )
    if charge.dispute is not None and ctx.account.disputes[charge.dispute].status != "won":
        # Error code charge_disputed: "The charge you're attempting to refund has been
        # charged back."
        raise StripeError(
            400,
            f"Charge {charge.id} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    if charge.refundable == 0:
        raise StripeError(
            400, f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
        )
    if amount is None:
        return charge.refundable
    if amount <= 0:
        raise invalid_request("Invalid positive integer", param="amount")
    if amount > charge.refundable:
        raise invalid_request(
            f"Refund amount ({_money(amount, charge.currency)}) is greater than unrefunded "
            f"amount on charge ({_money(charge.refundable, charge.currency)})",
            param="amount",
        )
    return amount


def issue_refund(
    ctx: Ctx, charge: ChargeRec, amount: int, *, reason: str | None, metadata: dict[str, str]
) -> RefundRec:
    """Refund ``amount`` (checked) of ``charge``: ``refund.created``, ``charge.refunded``."""
    refund = RefundRec(
        id=new_id("re"),
        created=ctx.now,
        amount=amount,
        currency=charge.currency,
        charge=charge.id,
        payment_intent=charge.payment_intent,
        payment_method=charge.payment_method,
        payment_method_type=charge.payment_method_type,
        balance_transaction=new_id("txn"),
        reason=reason,
        metadata=metadata,
        status="pending" if charge.payment_method_type == "us_bank_account" else "succeeded",
        seq=ctx.account.next_seq(),
    )
    ctx.account.refunds[refund.id] = refund
    ctx.store.index(refund.id, ctx.account)
    before = render_charge(charge)
    charge.amount_refunded += amount
    emit(ctx, "refund.created", render_refund(refund))
    after = render_charge(charge)
    emit(ctx, "charge.refunded", after, previous_attributes(before, after))
    return refund


def settle_refund(ctx: Ctx, refund: RefundRec, *, failure_reason: str | None) -> None:
    """The bank answers a pending (ACH) refund: ``succeeded``, or ``failed`` with its amount
    returned to the charge ("In the rare instance that a refund fails, we notify you using the
    refund.failed event").
    """
    if refund.status != "pending":
        raise invalid_request(f"The refund {refund.id} is {refund.status}, not pending.")
    before = render_refund(refund)
    if failure_reason is None:
        refund.status = "succeeded"
    else:
        refund.status = "failed"
        refund.failure_reason = failure_reason
        refund.failure_balance_transaction = new_id("txn")
        ctx.account.charges[refund.charge].amount_refunded -= refund.amount
    after = render_refund(refund)
    emit(ctx, "refund.updated", after, previous_attributes(before, after))
    if failure_reason is not None:
        emit(ctx, "refund.failed", after)


def create_refund(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, _UNSUPPORTED)
    expansions(params, ())
    charge = refund_target(ctx, params)
    amount = check_refundable(ctx, charge, params.get("amount"))
    metadata = merge_metadata(params.get("metadata", {}), param="metadata")
    refund = issue_refund(ctx, charge, amount, reason=params.get("reason"), metadata=metadata)
    return render_refund(refund)


def retrieve_refund(ctx: Ctx, params: Params, refund_id: str) -> JSON:
    expansions(params, ())
    return render_refund(require(ctx.account.refunds, refund_id, "refund"))


def update_refund(ctx: Ctx, params: Params, refund_id: str) -> JSON:
    refund = require(ctx.account.refunds, refund_id, "refund")
    expansions(params, ())
    if "metadata" in params:
        before = render_refund(refund)
        refund.metadata = merge_metadata(params["metadata"], refund.metadata, param="metadata")
        after = render_refund(refund)
        previous = previous_attributes(before, after)
        if previous:
            emit(ctx, "refund.updated", after, previous)
    return render_refund(refund)


def list_refunds(ctx: Ctx, params: Params) -> JSON:
    expansions(params, (), prefix="data.")
    return list_page(
        ctx.account.refunds.values(),
        params,
        filters=("charge", "payment_intent"),
        url="/v1/refunds",
        render=render_refund,
        kind="refund",
    )
