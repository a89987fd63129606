"""Disputes: a customer's bank takes a payment back; ``/v1/disputes`` reads them.

Only the card network opens and decides a dispute, so :func:`open_dispute` and
:func:`close_dispute` are the control API's (``control.py``). What Stripe does, per its event
reference: ``charge.dispute.created`` "whenever a customer disputes a charge with their bank",
``charge.dispute.funds_withdrawn`` "when funds are removed from your account due to a dispute",
``charge.dispute.closed`` "when a dispute is closed and the dispute status changes to lost,
warning_closed, or won", and ``charge.dispute.funds_reinstated`` "when funds are reinstated to
your account after a dispute is closed". Each movement of money is one of the dispute's
``balance_transactions``. The charge stays ``disputed`` (it was disputed), whatever the outcome.
"""

from __future__ import annotations

from ..errors import invalid_request, require
from ..ids import new_id
from ..models import JSON, BalanceTransactionRec, ChargeRec, DisputeRec
from ..render_money import render_dispute
from .context import Ctx, Params
from .events import emit
from .lists import list_page
from .params import expansions

# Dispute.reason values a card network sends (API reference, "The dispute object").
REASONS = frozenset(
    {
        "bank_cannot_process",
        "check_returned",
        "credit_not_processed",
        "customer_initiated",
        "debit_not_authorized",
        "duplicate",
        "fraudulent",
        "general",
        "incorrect_account_details",
        "insufficient_funds",
        "noncompliant",
        "product_not_received",
        "product_unacceptable",
        "subscription_canceled",
        "unrecognized",
    }
)
EVIDENCE_WINDOW = 21 * 86400  # Visa and Mastercard: about three weeks to respond


def _movement(ctx: Ctx, dispute: DisputeRec, amount: int, description: str) -> None:
    dispute.balance_transactions.append(
        BalanceTransactionRec(
            id=new_id("txn"),
            created=ctx.now,
            amount=amount,
            currency=dispute.currency,
            description=description,
            source=dispute.id,
        )
    )


def open_dispute(ctx: Ctx, charge: ChargeRec, *, amount: int | None, reason: str) -> DisputeRec:
    if charge.status != "succeeded":
        raise invalid_request(
            f"Only a succeeded charge can be disputed; {charge.id} is {charge.status}."
        )
    if charge.dispute is not None:
        raise invalid_request(f"The charge {charge.id} is already disputed ({charge.dispute}).")
    if reason not in REASONS:
        raise invalid_request(
            f"Invalid reason: must be one of {', '.join(sorted(REASONS))}", param="reason"
        )
    disputable = charge.refundable
    amount = disputable if amount is None else amount
    if not 0 < amount <= disputable:
        raise invalid_request(
            f"The disputed amount must be between 1 and {disputable}, what the customer paid "
            "and was not refunded.",
            param="amount",
        )
    dispute = DisputeRec(
        id=new_id("dp"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        charge=charge.id,
        payment_intent=charge.payment_intent,
        amount=amount,
        currency=charge.currency,
        reason=reason,
        payment_method_type=charge.payment_method_type,
        evidence_due_by=ctx.now + EVIDENCE_WINDOW,
        seq=ctx.account.next_seq(),
    )
    ctx.account.disputes[dispute.id] = dispute
    ctx.store.index(dispute.id, ctx.account)
    charge.dispute = dispute.id
    emit(ctx, "charge.dispute.created", render_dispute(dispute))
    _movement(ctx, dispute, -amount, f"Chargeback withdrawal for {charge.id}")
    emit(ctx, "charge.dispute.funds_withdrawn", render_dispute(dispute))
    return dispute


def close_dispute(ctx: Ctx, dispute: DisputeRec, *, won: bool) -> None:
    if dispute.status in ("won", "lost"):
        raise invalid_request(f"The dispute {dispute.id} is already closed ({dispute.status}).")
    dispute.status = "won" if won else "lost"
    emit(ctx, "charge.dispute.closed", render_dispute(dispute))
    if won:
        _movement(ctx, dispute, dispute.amount, f"Chargeback reversal for {dispute.charge}")
        emit(ctx, "charge.dispute.funds_reinstated", render_dispute(dispute))


def retrieve_dispute(ctx: Ctx, params: Params, dispute_id: str) -> JSON:
    expansions(params, ())
    return render_dispute(require(ctx.account.disputes, dispute_id, "dispute"))


def list_disputes(ctx: Ctx, params: Params) -> JSON:
    expansions(params, (), prefix="data.")
    return list_page(
        ctx.account.disputes.values(),
        params,
        filters=("charge", "payment_intent"),
        url="/v1/disputes",
        render=render_dispute,
        kind="dispute",
    )
