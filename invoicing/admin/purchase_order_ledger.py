"""The PO page's read-only views of money that changed besides payments: credit notes, disputes.

The rows are written only by the ledger (from Stripe's events and reconciliation, or the actions
that ask Stripe for a refund or a credit note); here they are shown, never edited.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from invoicing.admin.common import ReadOnlyAdminMixin, amount_or_dash
from invoicing.admin.scoping import ConferenceScopedInline
from invoicing.models import PurchaseOrder, PurchaseOrderCredit, PurchaseOrderDispute


class CreditInline(
    ReadOnlyAdminMixin,
    ConferenceScopedInline[PurchaseOrderCredit, PurchaseOrder],
    admin.TabularInline[PurchaseOrderCredit, PurchaseOrder],
):
    """Credit notes: what they took off the amount owed (a voided one no longer counts)."""

    model = PurchaseOrderCredit
    extra = 0
    can_delete = False
    verbose_name = "credit note"
    verbose_name_plural = "Credit notes: reductions of what is owed (read-only)"
    fields = (
        "number",
        "amount_display",
        "purpose",
        "counted_display",
        "reason",
        "memo",
        "stripe_invoice_id",
        "issued_at",
        "voided_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrderCredit]:
        return super().get_queryset(request).select_related("purchase_order")

    @admin.display(description="Amount")
    def amount_display(self, obj: PurchaseOrderCredit) -> str:
        return amount_or_dash(obj.amount, obj.purchase_order.currency)

    @admin.display(description="Lowers what is owed")
    def counted_display(self, obj: PurchaseOrderCredit) -> str:
        if obj.voided_at is not None:
            return "no: voided"
        if not obj.counted:
            return "no: asked again by the replacement invoice"
        return "yes"


class DisputeInline(
    ReadOnlyAdminMixin,
    ConferenceScopedInline[PurchaseOrderDispute, PurchaseOrder],
    admin.TabularInline[PurchaseOrderDispute, PurchaseOrder],
):
    """Chargebacks on the PO's payments; their money is in the payment ledger above."""

    model = PurchaseOrderDispute
    extra = 0
    can_delete = False
    verbose_name = "dispute"
    verbose_name_plural = "Disputes (read-only)"
    fields = (
        "stripe_dispute_id",
        "status",
        "open_display",
        "amount_display",
        "reason",
        "stripe_charge_id",
        "opened_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrderDispute]:
        return super().get_queryset(request).select_related("purchase_order")

    @admin.display(description="Amount")
    def amount_display(self, obj: PurchaseOrderDispute) -> str:
        return amount_or_dash(obj.amount, obj.purchase_order.currency)

    @admin.display(description="Open", boolean=True)
    def open_display(self, obj: PurchaseOrderDispute) -> bool:
        return obj.is_open
