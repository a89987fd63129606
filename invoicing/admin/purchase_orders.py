"""The purchase order's page and changelist: totals, the Stripe invoice, saving under the row lock.

A saved form writes only the fields the form changed (``update_fields``), under the PO's row lock,
so a webhook that landed while the page was open is never overwritten by stale values. The actions
are in :mod:`invoicing.admin.purchase_order_actions`, the forms and inlines in
:mod:`invoicing.admin.purchase_order_forms`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db.models import (
    ForeignKey,
    QuerySet,
)
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import linebreaksbr
from django.utils.html import format_html
from django.utils.safestring import SafeString

from invoicing import access, billing_details
from invoicing.admin.common import amount_or_dash, staff_member
from invoicing.admin.exports import PurchaseOrderExports
from invoicing.admin.purchase_order_actions import PurchaseOrderActions
from invoicing.admin.purchase_order_forms import (
    EDITABLE_ALWAYS,
    EDITABLE_IN_DRAFT,
    LineItemFormSet,
    LineItemInline,
    ManualPaymentFormSet,
    ManualPaymentInline,
    PaymentLedgerInline,
    PaymentRefused,
    PurchaseOrderAdminForm,
    is_locked,
)
from invoicing.admin.purchase_order_ledger import credit_notes_table, disputes_table
from invoicing.admin.purchase_order_money import PurchaseOrderMoneyViews, StripeWriteRequestInline
from invoicing.admin.purchase_order_paid_back import PurchaseOrderPaidBackView
from invoicing.admin.purchase_order_story import NeedsAttentionFilter, PurchaseOrderStory
from invoicing.admin.receivables import ReceivablesFilter
from invoicing.models import (
    PurchaseOrder,
    PurchaseOrderLineItem,
    Role,
)
from invoicing.selectors import open_disputes
from invoicing.selectors_overview import with_money_totals
from invoicing.services import ledger

Status = PurchaseOrder.Status

# record_payment takes manual payments on any PO that is neither a draft nor cancelled.
_MANUAL_PAYMENT_STATUSES: frozenset[str] = frozenset(Status.values) - {
    Status.DRAFT.value,
    Status.CANCELLED.value,
}


# Where the resumable invoice creation stands (read-only; the worker writes them).
_CREATION_STEPS = (
    "uid",
    "invoice_create_started_at",
    "invoice_created_at",
    "invoice_lines_added_at",
    "invoice_finalized_at",
    "invoice_sent_at",
)


# Read-only (approved) billing details are shown as people read them, not as the stored JSON.
_READ_AS = {"billing_address": "billing_address_display", "tax_ids": "tax_ids_display"}


def _lines(lines: list[str]) -> SafeString | str:
    if not lines:
        return "-"
    return linebreaksbr("\n".join(lines), autoescape=True)


class ConcurrentChange(Exception):
    """The PO changed state between loading the form and saving it; nothing was saved."""


def _link(url: str, label: str) -> SafeString | str:
    if not url.startswith(("https://", "http://")):
        return "-"
    return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, label)


class PurchaseOrderQuerySetMixin:
    """Totals for the changelist in the same query as the rows (no query per row)."""

    @staticmethod
    def annotate_totals(queryset: QuerySet[PurchaseOrder]) -> QuerySet[PurchaseOrder]:
        return with_money_totals(queryset)


class PurchaseOrderAdmin(
    PurchaseOrderExports,
    PurchaseOrderQuerySetMixin,
    PurchaseOrderMoneyViews,
    PurchaseOrderPaidBackView,
    PurchaseOrderStory,
    PurchaseOrderActions,
):
    form = PurchaseOrderAdminForm
    # Seven columns, the conference under the organization: the list fits 1366 px.
    list_display = (
        "reference",
        "organization_display",
        "status_badge",
        "total_display",
        "paid_display",
        "balance_display",
        "invoice_display",
    )
    list_display_links = ("reference",)
    list_select_related = ("conference",)
    list_filter = (
        NeedsAttentionFilter,
        "status",
        ReceivablesFilter,
        ("conference", admin.RelatedOnlyFieldListFilter),
        "currency",
        ("approved_at", admin.DateFieldListFilter),
    )
    search_fields = (
        "reference",
        "organization_name",
        "contact_email",
        "stripe_invoice_id",
        "stripe_invoice_number",
    )
    ordering = ("-created_at",)
    inlines = (
        LineItemInline,
        PaymentLedgerInline,
        ManualPaymentInline,
        StripeWriteRequestInline,
    )

    _READONLY_ALWAYS: ClassVar = [
        "status",
        "page_actions_viewer",
        "page_actions_organizer",
        "page_actions_finance",
        "problem_display",
        "generations_display",
        "timeline_display",
        "invoice_error",
        "invoice_error_at",
        "invoice_creation_blocked",
        "total_display",
        "credited_display",
        "given_back_display",
        "received_display",
        "balance_display",
        "dispute_display",
        "credit_notes_display",
        "disputes_display",
        "approved_at",
        "approved_by",
        "cancelled_at",
        "cancelled_by",
        "cancellation_reason",
        "created_by",
        "last_edited_by",
        "invoice_link",
        "invoice_pdf_link",
        "stripe_amounts_display",
        "stripe_invoice_id",
        "stripe_invoice_number",
        "stripe_invoice_status",
        "stripe_amount_due",
        "stripe_amount_paid",
        "stripe_amount_remaining",
        "stripe_customer",
        "generation",
        "invoice_credit",
        "invoice_credit_display",
        "last_synced_at",
        *_CREATION_STEPS,
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrder]:
        return self.annotate_totals(super().get_queryset(request))

    def get_readonly_fields(
        self, request: HttpRequest, obj: PurchaseOrder | None = None
    ) -> list[str]:
        fields = list(self._READONLY_ALWAYS)
        if is_locked(obj):
            fields += [
                _READ_AS.get(name, name)
                for name in EDITABLE_IN_DRAFT
                if name not in EDITABLE_ALWAYS
            ]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: PurchaseOrder | None = None) -> Any:
        terms_fields: list[str] = list(EDITABLE_IN_DRAFT)
        if is_locked(obj):
            terms_fields = [_READ_AS.get(name, name) for name in terms_fields]
        else:
            terms_fields.append("approve")
        terms = (None, {"fields": terms_fields})
        if obj is None:
            return [terms]
        status_fields: list[Any] = [
            self.page_actions_field(request, obj),
            "status",
            (
                "total_display",
                "credited_display",
                "given_back_display",
                "received_display",
                "balance_display",
            ),
            ("created_by", "last_edited_by"),
            ("approved_at", "approved_by"),
            ("cancelled_at", "cancelled_by"),
            "cancellation_reason",
        ]
        if obj.invoice_error or obj.invoice_creation_blocked:
            # Why the last background action (creation, sync, void, re-issue, cancel) failed,
            # in plain words and what to do, above everything else.
            status_fields.insert(0, "problem_display")
        if obj.disputes.exists():
            status_fields.insert(status_fields.index("status") + 1, "dispute_display")
            status_fields.append("disputes_display")
        if obj.credits.exists():
            status_fields.append("credit_notes_display")
        return [
            terms,
            ("Status and money", {"fields": status_fields}),
            (
                "Stripe invoice (read-only: Stripe and the worker keep it)",
                {
                    "fields": [
                        ("invoice_link", "invoice_pdf_link"),
                        ("stripe_invoice_id", "stripe_invoice_number", "stripe_invoice_status"),
                        "stripe_amounts_display",
                        ("generation", "invoice_credit_display"),
                        "stripe_customer",
                        "last_synced_at",
                    ]
                },
            ),
            ("Invoices and history", {"fields": ["generations_display", "timeline_display"]}),
            (
                "Invoice creation steps",
                {
                    "classes": ["collapse"],
                    "fields": [*_CREATION_STEPS, ("created_at", "updated_at")],
                },
            ),
        ]

    def get_inline_instances(
        self, request: HttpRequest, obj: PurchaseOrder | None = None
    ) -> list[Any]:
        instances = super().get_inline_instances(request, obj)
        if obj is None:  # the add form: lines only
            return [inline for inline in instances if isinstance(inline, LineItemInline)]
        if obj.status in _MANUAL_PAYMENT_STATUSES:
            return instances
        return [inline for inline in instances if not isinstance(inline, ManualPaymentInline)]

    # --- columns -------------------------------------------------------------------------------

    @staticmethod
    def _amount(obj: PurchaseOrder, name: str) -> Decimal:
        """The changelist's annotation, or (detail page) the model's own computation."""
        value = getattr(obj, f"admin_{name}", None)
        if isinstance(value, Decimal):
            return value
        if name == "total":  # as the list's: the lines plus any tax, before anything came off
            return obj.total_with_tax
        return obj.amount_received if name == "paid" else obj.balance_due

    @admin.display(description="Total", ordering="admin_total")
    def total_display(self, obj: PurchaseOrder) -> str:
        return amount_or_dash(self._amount(obj, "total"), obj.currency)

    @admin.display(description="Paid", ordering="admin_paid")
    def paid_display(self, obj: PurchaseOrder) -> str:
        return amount_or_dash(self._amount(obj, "paid"), obj.currency)

    @admin.display(description="Received, net (all methods, less refunds and disputes)")
    def received_display(self, obj: PurchaseOrder) -> str:
        return self.paid_display(obj)

    @admin.display(description="Credited (credit notes)")
    def credited_display(self, obj: PurchaseOrder) -> str:
        return amount_or_dash(obj.amount_credited, obj.currency)

    @admin.display(description="Given back (refunds owed no more)")
    def given_back_display(self, obj: PurchaseOrder) -> str:
        return amount_or_dash(obj.amount_given_back, obj.currency)

    @admin.display(description="Credit notes (read-only)")
    def credit_notes_display(self, obj: PurchaseOrder) -> SafeString | str:
        return credit_notes_table(obj)

    @admin.display(description="Disputes (read-only)")
    def disputes_display(self, obj: PurchaseOrder) -> SafeString | str:
        return disputes_table(obj)

    @admin.display(description="Dispute")
    def dispute_display(self, obj: PurchaseOrder) -> str:
        disputes = open_disputes(obj)
        if not disputes:
            return "None open"
        return "; ".join(
            f"OPEN: {dispute.stripe_dispute_id} ({dispute.status.replace('_', ' ')}, "
            f"{dispute.reason or 'no reason given'}) for "
            f"{amount_or_dash(dispute.amount, obj.currency)}"
            for dispute in disputes
        )

    @admin.display(description="Balance", ordering="admin_balance")
    def balance_display(self, obj: PurchaseOrder) -> str:
        return self.owed_display(obj, self._amount(obj, "balance"))

    @admin.display(description="Billing address")
    def billing_address_display(self, obj: PurchaseOrder) -> SafeString | str:
        return _lines(billing_details.address_lines(obj.billing_address))

    @admin.display(description="Tax IDs")
    def tax_ids_display(self, obj: PurchaseOrder) -> SafeString | str:
        return _lines(billing_details.tax_id_lines(obj.tax_ids))

    @admin.display(description="Credited on this invoice")
    def invoice_credit_display(self, obj: PurchaseOrder) -> str:
        return amount_or_dash(obj.invoice_credit, obj.currency)

    @admin.display(description="At Stripe")
    def stripe_amounts_display(self, obj: PurchaseOrder) -> str:
        if obj.stripe_amount_due is None:
            return "-"
        tax = (
            f"total {amount_or_dash(obj.stripe_invoice_total, obj.currency)} incl. tax "
            f"{amount_or_dash(obj.stripe_invoice_tax, obj.currency)}, "
            if obj.stripe_invoice_tax
            else ""
        )
        return (
            f"{tax}due {amount_or_dash(obj.stripe_amount_due, obj.currency)}, "
            f"paid {amount_or_dash(obj.stripe_amount_paid, obj.currency)}, "
            f"remaining {amount_or_dash(obj.stripe_amount_remaining, obj.currency)}"
        )

    @admin.display(description="Hosted invoice")
    def invoice_link(self, obj: PurchaseOrder) -> SafeString | str:
        return _link(obj.stripe_invoice_url, "Open invoice ↗")

    @admin.display(description="Invoice PDF")
    def invoice_pdf_link(self, obj: PurchaseOrder) -> SafeString | str:
        return _link(obj.stripe_invoice_pdf, "Download PDF ↗")

    # --- saving --------------------------------------------------------------------------------

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        po = self.get_object(request, object_id) if object_id else None
        if po is not None:
            # The buttons of the money actions this person may take on this PO, and only those.
            labels = {
                "refund": "Refund payments…",
                "reduce": "Reduce amount owed…",
                "paid_back": "Record money paid back…",
            }
            refusals = self.money_refusals(request, po)
            extra_context = {
                **(extra_context or {}),
                "money_actions": [
                    (kind, labels[kind]) for kind, why in refusals.items() if not why
                ],
            }
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ConcurrentChange, PaymentRefused) as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(request.get_full_path())

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "conference":
            # A PO is only ever created in, or moved to, a conference the person organizes.
            kwargs["queryset"] = access.conferences(request.user, role=Role.ORGANIZER)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: PurchaseOrder, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = obj.last_edited_by = staff_member(request)
            obj.save()
            return
        # The admin's change view runs in one transaction: this lock serializes the save with
        # approval, webhooks and payments until the inlines are saved too.
        locked = ledger.lock_purchase_order(obj)
        if locked.status != obj.status:
            raise ConcurrentChange(
                f"{obj.reference} became “{locked.get_status_display()}” while you edited it; "
                "nothing was saved. Check the page and try again."
            )
        editable = EDITABLE_ALWAYS if is_locked(locked) else EDITABLE_IN_DRAFT
        fields = [name for name in form.changed_data if name in editable]
        if fields:
            obj.last_edited_by = staff_member(request)
            obj.save(update_fields=[*fields, "last_edited_by", "updated_at"])

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if isinstance(formset, ManualPaymentFormSet):
            formset.record(request, form.instance)
            return
        if isinstance(formset, LineItemFormSet):
            if is_locked(form.instance):
                # Read-only lines: nothing was posted. (A PO approved while this request ran was
                # caught by save_model, under the row lock, before anything was written.)
                formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
                return
            lines = formset.save(commit=False)
            for deleted in formset.deleted_objects:
                deleted.delete()
            position = (
                PurchaseOrderLineItem.objects.filter(purchase_order=form.instance)
                .order_by("-position")
                .values_list("position", flat=True)
                .first()
                or 0
            )
            for line in lines:
                if line._state.adding:
                    position += 1
                    line.position = position
                line.save()
            if lines or formset.deleted_objects:
                # Lines are terms too: whoever changed them may not be the second approver.
                form.instance.last_edited_by = staff_member(request)
                form.instance.save(update_fields=["last_edited_by", "updated_at"])
            return
        super().save_formset(request, form, formset, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        po: PurchaseOrder = form.instance
        if form.cleaned_data.get("approve") and po.status == Status.DRAFT:
            # After the lines are saved: approval checks them as they now are. The invoice is
            # queued when the admin's transaction commits (invoicing/signals.py).
            self._approve(request, po)

    # --- permissions ---------------------------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: PurchaseOrder | None = None) -> bool:
        # Only a draft: anything later has (or is getting) an invoice at Stripe, or payments.
        if obj is not None and obj.status != Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)
