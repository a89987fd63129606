"""Recording a PO's story (:class:`~invoicing.models.PurchaseOrderActivity`).

Called by the services where they act, inside their transaction when they have one, so a rolled
back action leaves no line behind. Never raises for the caller's sake: it is one INSERT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoicing.models import PurchaseOrder, PurchaseOrderActivity

if TYPE_CHECKING:
    from django.contrib.auth.models import User

Kind = PurchaseOrderActivity.Kind


def record_activity(
    *,
    purchase_order: PurchaseOrder,
    kind: Kind,
    actor: User | None = None,
    detail: str = "",
) -> PurchaseOrderActivity:
    """Add one line to the PO's story, with its Stripe invoice as it stands now."""
    return PurchaseOrderActivity.objects.create(
        purchase_order_id=purchase_order.pk,
        kind=kind,
        actor=actor,
        detail=detail[:2000],
        generation=purchase_order.generation,
        stripe_invoice_id=purchase_order.stripe_invoice_id,
        stripe_invoice_number=purchase_order.stripe_invoice_number,
        stripe_invoice_url=purchase_order.stripe_invoice_url,
    )
