"""An organizer's refund or reduction, recorded before anything is asked of Stripe.

The request is checked (in the organizer's words) and saved under the PO's row lock, so two
requests made at once cannot both spend the same refundable money. The worker then carries it
out (:mod:`.refunds`, :mod:`.amount_owed`); this module also holds the row's state changes they
share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction

from invoicing.errors import InvalidTransition, InvoicingError
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, StripeWriteRequest
from invoicing.selectors import (
    reduce_amount_refusal,
    reduce_refusal,
    refund_amount_refusal,
    refund_refusal,
)
from invoicing.services.ledger import lock_purchase_order

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
    *, purchase_order: PurchaseOrder, kind: str, amount: object, reason: str, by: User | None
) -> str:
    """Why this request would be refused ("" when it is fine): the admin's form asks this."""
    state_refusal, amount_refusal, _ = _RULES[kind]
    if why := state_refusal(purchase_order, by=by):
        return why
    if not reason.strip():
        return "give a reason (it is kept with the request and sent to Stripe)."
    return amount_refusal(purchase_order, amount)


def record_request(
    *,
    purchase_order: PurchaseOrder,
    kind: str,
    amount: Decimal,
    reason: str,
    requested_by: User | None,
) -> StripeWriteRequest:
    """Save the request (queued) after checking it under the PO's row lock.

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
            purchase_order=locked, kind=kind, amount=amount, reason=reason, by=requested_by
        ):
            raise InvalidStripeWriteRequest(f"{locked.reference}: not {verb}: {why}")
        row = StripeWriteRequest.objects.create(
            purchase_order=locked,
            kind=kind,
            amount=amount,
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
