"""Retrying an invoice creation that a permanent failure blocked, once its cause is fixed.

A blocked PO (``invoice_creation_blocked``: a revoked or mistyped key, a refused parameter) waits
for a person; the beat's resume task leaves it alone. The organizer fixes the cause and asks for a
retry: the block is lifted under the PO's row lock and creation resumes from the stored steps
(:func:`~invoicing.services.invoice_creation.create_stripe_invoice`). A draft the failed attempt
left at Stripe is found again (its id on the PO, else the same idempotency key or our metadata) and
carried on, never created twice. If the cause is still there, the creation fails again and blocks
the PO again, with the new reason.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction

from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, PurchaseOrderActivity
from invoicing.selectors import awaits_invoice, ensure_allowed, retry_creation_refusal
from invoicing.services.activity import record_activity
from invoicing.services.invoice_creation import create_stripe_invoice
from invoicing.services.ledger import lock_purchase_order

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def retry_invoice_creation(
    *, purchase_order: PurchaseOrder, requested_by: User | None = None
) -> str:
    """Lift the PO's creation block and resume creating its invoice; returns the hosted URL.

    A repeated request (the block already lifted, the invoice already sent) resumes or returns
    quietly: creation is idempotent.

    Raises:
        InvalidTransition: :func:`~invoicing.selectors.retry_creation_refusal` refuses.
        ValueError, stripe.StripeError: as :func:`create_stripe_invoice` (the caller records them).
    """
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        if not locked.invoice_creation_blocked and not awaits_invoice(locked):
            return locked.stripe_invoice_url
        if locked.invoice_creation_blocked:
            ensure_allowed(retry_creation_refusal, locked, verb="retried")
            PurchaseOrder.objects.filter(pk=locked.pk).update(invoice_creation_blocked=False)
            record_activity(
                purchase_order=locked,
                kind=PurchaseOrderActivity.Kind.RETRY,
                actor=requested_by,
                detail=f"after: {locked.invoice_error}" if locked.invoice_error else "",
            )
            log_state_change(
                logger,
                event="invoice_creation_retried",
                po_reference=locked.reference,
                invoice_id=locked.stripe_invoice_id or None,
                requested_by=getattr(requested_by, "pk", None),
            )
    return create_stripe_invoice(purchase_order)
