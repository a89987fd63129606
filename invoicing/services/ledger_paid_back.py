"""The ledger's record of money the conference paid back to a customer outside Stripe.

Owned by :mod:`invoicing.services.ledger` (which re-exports :func:`record_paid_back`), and, like
it, the only code that writes these entries. Money received by wire, check or other means goes
back the same way, outside Stripe: a finance admin records it here, with a reason, and the entry
(``refund_off_stripe``, negative) counts as a refund for the status (``REFUND_KINDS``): an
overpaid PO paid back its excess is paid, one paid back everything is refunded. Nothing is sent
to Stripe: the money never went through it, and an invoice that counts a payment as paid at
Stripe keeps it (:mod:`invoicing.selectors_paid_back` refuses that money).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction

from invoicing import money
from invoicing.errors import InvalidPayment
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.selectors_paid_back import OFF_STRIPE_METHODS, paid_back_refusal
from invoicing.services import notifications
from invoicing.services.ledger_core import (
    lock_purchase_order,
    recorded_from_form,
    update_po_status_locked,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Kind = PurchaseOrderPayment.Kind


def record_paid_back(
    purchase_order: PurchaseOrder,
    *,
    amount: Decimal,
    method: str,
    reason: str,
    payment_date: datetime.date,
    recorded_by: User,
    reference: str = "",
    uid: uuid.UUID | None = None,
) -> PurchaseOrderPayment:
    """Record ``amount`` (> 0) as paid back to the customer outside Stripe, under the PO's lock.

    Checked again under the lock with :func:`~invoicing.selectors_paid_back.paid_back_refusal`
    (who, the PO's state, the amount). ``uid``: the form's own key; the same ``uid`` again
    returns the entry already recorded, marked ``repeated_submit`` (a double submit records
    once). Returns the entry (its amount negative).

    Raises:
        InvalidPayment: refused, in the organizer's words; nothing was saved.
    """
    if method not in OFF_STRIPE_METHODS:
        raise InvalidPayment("Money paid back outside Stripe goes by wire, check or other.")
    if not reason.strip():
        raise InvalidPayment("Give a reason (it is kept with the entry).")
    if not isinstance(payment_date, datetime.date):
        raise InvalidPayment(f"The date must be a date, not {payment_date!r}.")
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        if uid is not None and (
            earlier := recorded_from_form(
                locked, uid=uid, what="entry", kind=Kind.REFUND_OFF_STRIPE, amount=-amount
            )
        ):
            return earlier
        if why := paid_back_refusal(locked, amount, by=recorded_by):
            raise InvalidPayment(f"Not recorded: {why}")
        entry = PurchaseOrderPayment(
            purchase_order=locked,
            kind=Kind.REFUND_OFF_STRIPE,
            amount=-amount,
            method=method,
            reference=reference.strip(),
            payment_date=payment_date,
            note=reason.strip(),
            created_by=recorded_by,
            **({"uid": uid} if uid is not None else {}),
        )
        entry.save(force_insert=True)
        shown = money.format_amount(amount, locked.currency)
        # Sent after commit, once per entry, to whoever chose refund and dispute e-mails.
        notifications.refund_or_dispute(
            locked,
            key=f"paid-back-{entry.uid}",
            description=f"{shown} paid back outside Stripe by {entry.get_method_display().lower()}",
        )
        log_state_change(
            logger,
            event="ledger_entry_recorded",
            po_reference=locked.reference,
            kind=entry.kind,
            method=method,
            amount=money.format_amount(entry.amount, locked.currency),
            reference=entry.reference,
            recorded_by=recorded_by.pk,
        )
        update_po_status_locked(locked)
    purchase_order.status = locked.status
    return entry
