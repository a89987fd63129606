"""An organizer's refund or reduction, recorded before anything is asked of Stripe.

The request is checked (in the organizer's words) and saved under the PO's row lock, so two
requests made at once cannot both spend the same refundable money. The worker then carries it
out (:mod:`.refunds`, :mod:`.amount_owed`); this module also holds the row's state changes they
share, and :func:`apply_refund_view`, through which every view of a refund (our own call, its
webhooks, the reconciliation) reaches both the ledger and the request that made it: an ACH refund
is settled by the bank days after the request was sent, and the organizer reads the outcome on
the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from django.db import transaction

from invoicing import money
from invoicing.errors import InvalidTransition, InvoicingError
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, StripeWriteRequest
from invoicing.selectors import (
    reduce_amount_refusal,
    reduce_refusal,
    refund_amount_refusal,
    refund_refusal,
)
from invoicing.selectors_credit_lines import lines_amount, lines_refusal
from invoicing.services.ledger import apply_refund, lock_purchase_order
from invoicing.services.ledger_objects import (
    REFUND_STAGE,
    REFUND_UNDONE,
    RefundFacts,
    StripeLike,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Kind = StripeWriteRequest.Kind
State = StripeWriteRequest.State


class InvalidStripeWriteRequest(InvoicingError):
    """The refund or reduction cannot be asked for; nothing was saved."""


_RULES: dict[str, tuple[Callable[..., str], Callable[[PurchaseOrder, object], str], str]] = {
    Kind.REFUND: (refund_refusal, refund_amount_refusal, "refunded"),
    Kind.REDUCE: (reduce_refusal, reduce_amount_refusal, "reduced"),
}


def refusal(
    *,
    purchase_order: PurchaseOrder,
    kind: str,
    amount: object,
    reason: str,
    by: User | None,
    lines: Mapping[int, int] | None = None,
) -> str:
    """Why this request would be refused ("" when it is fine): the admin's form asks this.

    A reduction is by ``amount`` or by ``lines`` (PO line position -> quantity to credit).
    """
    state_refusal, amount_refusal, _ = _RULES[kind]
    if why := state_refusal(purchase_order, by=by):
        return why
    if not reason.strip():
        return "give a reason (it is kept with the request and sent to Stripe)."
    if lines is None:
        return amount_refusal(purchase_order, amount)
    if kind != Kind.REDUCE:
        return "only a reduction of the amount owed can be made by line."
    if amount is not None:
        return "reduce either by an amount or by lines, not both."
    return lines_refusal(purchase_order, lines)


def _line_plan(po: PurchaseOrder, lines: Mapping[int, int]) -> list[dict[str, object]]:
    """What the request credits, per PO line, fixed before Stripe is asked (see the model)."""
    by_position = {line.position: line for line in po.line_items.all()}
    return [
        {
            "po_line": position,
            "description": by_position[position].description,
            "quantity": quantity,
            "billed": by_position[position].quantity,
            "unit_amount": money.to_minor_units(by_position[position].unit_price, po.currency),
        }
        for position, quantity in sorted(lines.items())
        if quantity
    ]


def record_request(
    *,
    purchase_order: PurchaseOrder,
    kind: str,
    amount: Decimal | None,
    reason: str,
    requested_by: User | None,
    lines: Mapping[int, int] | None = None,
) -> StripeWriteRequest:
    """Save the request (queued) after checking it under the PO's row lock.

    ``lines`` (a reduction by line: PO line position -> quantity) instead of ``amount``: the row
    keeps what was asked per line, and its amount is what those lines come to.

    Raises:
        InvalidStripeWriteRequest: the person, the PO's state or the amount refuses it; the
            message is the organizer's reason, and nothing was saved.
    """
    if kind not in _RULES:
        raise InvalidStripeWriteRequest(f"Unknown request kind {kind!r}.")
    verb = _RULES[kind][2]
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        if why := refusal(
            purchase_order=locked,
            kind=kind,
            amount=amount,
            reason=reason,
            by=requested_by,
            lines=lines,
        ):
            raise InvalidStripeWriteRequest(f"{locked.reference}: not {verb}: {why}")
        total = amount if lines is None else lines_amount(locked, lines)
        if total is None:  # refusal() says so first; this keeps the types honest
            raise InvalidStripeWriteRequest(f"{locked.reference}: not {verb}: enter an amount.")
        row = StripeWriteRequest.objects.create(
            purchase_order=locked,
            kind=kind,
            amount=total,
            plan=[] if lines is None else _line_plan(locked, lines),
            reason=reason.strip(),
            requested_by=requested_by,
            stripe_invoice_id=locked.stripe_invoice_id if kind == Kind.REDUCE else "",
        )
    log_state_change(
        logger,
        event=f"{kind}_requested",
        po_reference=locked.reference,
        invoice_id=row.stripe_invoice_id or None,
        requested_by=getattr(requested_by, "pk", None),
        request_id=row.pk,
    )
    return row


def lock_request(row: StripeWriteRequest) -> StripeWriteRequest:
    """The request reloaded under its row lock (inside a transaction), with its PO."""
    return (
        StripeWriteRequest.objects.select_for_update(of=("self",))
        .select_related("purchase_order", "purchase_order__conference")
        .get(pk=row.pk)
    )


def finish(row: StripeWriteRequest, *, state: str, error: str = "") -> None:
    """Store where the request ended (or that it waits for the bank), once."""
    with transaction.atomic():
        locked = lock_request(row)
        if locked.state in {State.SUCCEEDED, State.FAILED}:
            return
        locked.state, locked.error = state, error
        locked.save(update_fields=["state", "error", "updated_at"])
    row.refresh_from_db()
    log_state_change(
        logger,
        event=f"{row.kind}_{state}",
        po_reference=row.purchase_order.reference,
        invoice_id=row.stripe_invoice_id or None,
        level=logging.WARNING if state == State.FAILED else logging.INFO,
        request_id=row.pk,
        **({"error": error} if error else {}),
    )


def refuse(row: StripeWriteRequest, why: str) -> None:
    """Fail the request with the organizer's reason and raise it (permanent: no retry)."""
    finish(row, state=State.FAILED, error=why)
    raise InvalidTransition(f"PO {row.purchase_order.reference}: {why}")


def record_broker_refusal(row: StripeWriteRequest) -> None:
    """The broker did not take the job: nothing was sent to Stripe, and nothing ever will be."""
    finish(
        row,
        state=State.FAILED,
        error="could not be queued (the broker did not answer); nothing was sent to Stripe.",
    )


# --- A refund request follows its refunds at the bank ---------------------------------------------

# Refund.failure_reason (API reference, "The refund object"), in the organizer's words.
_FAILURE_WORDS: Final = {
    "charge_for_pending_refund_disputed": "the payment was disputed while the refund was pending",
    "declined": "the customer's bank declined it",
    "expired_or_canceled_card": "the card has expired or was cancelled",
    "insufficient_funds": "the Stripe balance could not cover it",
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "merchant_request": "it was cancelled at the account's request",
    "unknown": "Stripe gives no reason",
}
_COULD_NOT: Final = "Stripe could not refund"


def apply_refund_view(
    *,
    purchase_order: PurchaseOrder,
    refund: StripeLike,
    source: str,
    event_id: str = "",
    stripe_invoice_id: str = "",
) -> Decimal:
    """The ledger's :func:`~invoicing.services.ledger.apply_refund`, and the request that made
    the refund follows it, in one transaction: the ledger never holds an outcome the request
    does not show.

    Raises:
        EventRejected: the ledger refuses the refund (nothing changes, the request neither).
    """
    with transaction.atomic():
        change = apply_refund(
            purchase_order=purchase_order,
            refund=refund,
            source=source,
            event_id=event_id,
            stripe_invoice_id=stripe_invoice_id,
        )
        _follow_refund(purchase_order, RefundFacts.parse(refund))
    return change


def _moves_request(known: str | None, status: str) -> bool:
    """Whether a view of a refund at ``status`` moves the request that last saw it at ``known``."""
    return known is None or REFUND_STAGE[status] > REFUND_STAGE.get(known, 0)


def refunds_moving_a_request(refunds: Iterable[RefundFacts]) -> set[str]:
    """The refunds whose view would move a request still waiting for them.

    The reconciliation applies those even though the ledger holds them already (a request sent
    before requests followed their refunds).
    """
    awaited: dict[str, str | None] = {}
    plans = StripeWriteRequest.objects.filter(kind=Kind.REFUND, state=State.PENDING)
    for plan in plans.values_list("plan", flat=True):
        for item in plan:
            if item.get("refund"):
                awaited[str(item["refund"])] = item.get("status")
    return {
        refund.id
        for refund in refunds
        if refund.id in awaited and _moves_request(awaited[refund.id], refund.status)
    }


def _follow_refund(po: PurchaseOrder, facts: RefundFacts) -> None:
    """Record the refund's outcome on the PO's request that made it (none: a Dashboard refund)."""
    plans = StripeWriteRequest.objects.filter(purchase_order=po, kind=Kind.REFUND)
    pk = next(
        (
            pk
            for pk, plan in plans.values_list("pk", "plan")
            if any(item.get("refund") == facts.id for item in plan)
        ),
        None,
    )
    if pk is None:
        return  # not ours, or sent by a run that has not stored its id yet (that run follows it)
    row = StripeWriteRequest.objects.select_for_update().get(pk=pk)
    plan: list[dict[str, Any]] = [dict(item) for item in row.plan]
    item = next(item for item in plan if item.get("refund") == facts.id)
    if _moves_request(item.get("status"), facts.status):
        item["status"] = facts.status
        if facts.undone:
            item["failure_reason"] = facts.failure_reason or "unknown"
    state, error = _outcome(row, plan, currency=po.currency)
    if (plan, state, error) == (row.plan, row.state, row.error):
        return
    previous = row.state
    row.plan, row.state, row.error = plan, state, error
    row.save(update_fields=["plan", "state", "error", "updated_at"])
    if state != previous:
        log_state_change(
            logger,
            event=f"{row.kind}_{state}",
            po_reference=po.reference,
            level=logging.WARNING if state == State.FAILED else logging.INFO,
            request_id=row.pk,
            refund=facts.id,
            **({"error": error} if error else {}),
        )


def _failure_words(item: dict[str, Any], currency: str) -> str:
    amount = money.from_minor_units(int(item["amount"]), currency)
    code = str(item.get("failure_reason") or "unknown")
    return (
        f"{_COULD_NOT} {money.format_amount(amount, currency)} ({item['refund']}): "
        f"{_FAILURE_WORDS.get(code, 'Stripe gives no reason')} ({code})"
    )


def _outcome(
    row: StripeWriteRequest, plan: list[dict[str, Any]], *, currency: str
) -> tuple[str, str]:
    """The request's state and error once its plan holds these refund outcomes.

    Failed is final (a later failure adds its words); until every planned refund exists the
    request stays queued, since the worker still has refunds to send.
    """
    failed = [item for item in plan if item.get("status") in REFUND_UNDONE]
    if failed:
        error = (
            "; ".join(_failure_words(item, currency) for item in failed)
            + ". That money was not given back; it may be refunded again."
        )
        if row.state == State.FAILED:  # it may have failed for another cause first: keep that
            cause = row.error.split(_COULD_NOT, 1)[0].strip()
            error = f"{cause} {error}" if cause else error
        return State.FAILED, error
    if row.state == State.FAILED or not all(item.get("refund") for item in plan):
        return row.state, row.error
    if all(item.get("status") == "succeeded" for item in plan):
        return State.SUCCEEDED, ""
    return State.PENDING, ""
