"""The purchase order's forms and inlines: its terms, its lines, its ledger, a manual payment.

Lines and terms are editable only while the PO is a draft; recorded payments are never editable,
and a new wire, check or other payment goes through ``record_payment``, never ``form.save()``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminDateWidget
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from invoicing import billing_details, money
from invoicing.admin.common import ReadOnlyAdminMixin, amount_or_dash, staff_member
from invoicing.admin.scoping import ConferenceScopedInline
from invoicing.errors import InvalidPayment
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderLineItem, PurchaseOrderPayment
from invoicing.services import purchase_orders
from invoicing.services.ledger_off_stripe import report_outlook

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method

EDITABLE_IN_DRAFT = (
    "conference",
    "reference",
    "organization_name",
    "contact_name",
    "contact_email",
    "currency",
    "buyer_po_number",
    "legal_name",
    "billing_address",
    "tax_ids",
    "notes",
)
EDITABLE_ALWAYS = ("notes",)


def is_locked(obj: PurchaseOrder | None) -> bool:
    """Once approved, a PO's lines and terms are what the invoice says: no more edits."""
    return obj is not None and obj.status != Status.DRAFT


class AddressWidget(forms.MultiWidget):
    def __init__(self) -> None:
        labels = ("Street", "Street (2nd line)", "City", "State/region", "Postal code", "Country")
        super().__init__(
            [forms.TextInput(attrs={"placeholder": label, "aria-label": label}) for label in labels]
        )

    def decompress(self, value: Any) -> list[str]:
        value = value if isinstance(value, dict) else {}
        return [str(value.get(key, "")) for key in billing_details.ADDRESS_KEYS]


class AddressField(forms.MultiValueField):
    """Stripe's address keys as six inputs; all empty means no address."""

    widget = AddressWidget

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        kwargs.pop("max_length", None)
        subfields = [forms.CharField(required=False) for _ in billing_details.ADDRESS_KEYS]
        super().__init__(subfields, require_all_fields=False, required=False, **kwargs)

    def compress(self, data_list: list[str]) -> dict[str, str]:
        values = dict(zip(billing_details.ADDRESS_KEYS, data_list or [], strict=False))
        if values.get("country"):
            values["country"] = values["country"].strip().upper()
        return billing_details.normalize_address(values)

    def validate(self, value: Any) -> None:
        problems = billing_details.address_problems(value)
        if problems:
            raise ValidationError(problems)


class TaxIdsField(forms.CharField):
    """One tax ID per line: its Stripe type, a space, its value (``eu_vat DE123456789``)."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 40, "placeholder": "eu_vat DE123456789"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        kwargs["required"] = False
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return billing_details.format_tax_ids(value)
        return value

    def to_python(self, value: Any) -> Any:
        if isinstance(value, list):
            return value
        return billing_details.parse_tax_ids(super().to_python(value) or "")

    def validate(self, value: Any) -> None:
        problems = billing_details.tax_id_problems(value)
        if problems:
            raise ValidationError(problems)


class PurchaseOrderAdminForm(forms.ModelForm[PurchaseOrder]):
    approve = forms.BooleanField(
        required=False,
        label="Approve when saving",
        help_text="The invoice is then created and sent automatically; lines and terms freeze.",
    )
    currency = forms.CharField(
        required=False,
        max_length=3,
        help_text="Lowercase ISO code, e.g. usd. Empty: the conference's currency.",
    )

    billing_address = AddressField(
        help_text="Printed on the invoice (the Stripe customer's address). Country: ISO code, "
        "e.g. DE."
    )
    tax_ids = TaxIdsField(
        help_text="One per line: Stripe's tax ID type and the number, e.g. “eu_vat DE123456789”."
    )

    class Meta:
        model = PurchaseOrder
        fields = EDITABLE_IN_DRAFT

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "currency" in self.fields and not cleaned.get("currency"):
            conference = cleaned.get("conference")
            if isinstance(conference, Conference):
                cleaned["currency"] = conference.currency
        return cleaned


class LineItemForm(forms.ModelForm[PurchaseOrderLineItem]):
    class Meta:
        model = PurchaseOrderLineItem
        fields = ("description", "quantity", "unit_price")


class LineItemFormSet(
    BaseInlineFormSet[PurchaseOrderLineItem, PurchaseOrder, forms.ModelForm[PurchaseOrderLineItem]]
):
    def clean(self) -> None:
        super().clean()
        currency = self.instance.currency
        if not currency:
            return
        total, complete = Decimal(0), True
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            price = form.cleaned_data.get("unit_price")
            quantity = form.cleaned_data.get("quantity")
            if isinstance(price, Decimal) and isinstance(quantity, int):
                total += price * quantity
            elif form.has_changed():
                complete = False
            if not form.has_changed():
                continue
            if isinstance(price, Decimal) and not money.is_representable(price, currency):
                form.add_error(
                    "unit_price",
                    f"{price} cannot be charged in {currency.upper()}: it has more decimals "
                    "than the currency.",
                )
        if complete and total > 0 and (problem := money.charge_limit_problem(total, currency)):
            # Stripe's limits, checked before approval rather than refused by Stripe after it.
            raise ValidationError(problem)


class LineItemInline(
    ConferenceScopedInline[PurchaseOrderLineItem, PurchaseOrder],
    admin.TabularInline[PurchaseOrderLineItem, PurchaseOrder],
):
    model = PurchaseOrderLineItem
    form = LineItemForm
    formset = LineItemFormSet
    extra = 0
    readonly_fields = ("unit_price_display", "amount_display")
    verbose_name = "line"
    verbose_name_plural = "Lines (editable while the PO is a draft)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrderLineItem]:
        return super().get_queryset(request).select_related("purchase_order")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # ``obj`` is the parent PO. Read-only lines show prices with the currency's decimals
        # (5000.00 USD, not the database's 5000.000).
        if is_locked(obj):
            return ("description", "quantity", "unit_price_display", "amount_display")
        return ("description", "quantity", "unit_price", "amount_display")

    @admin.display(description="Unit price")
    def unit_price_display(self, obj: PurchaseOrderLineItem) -> str:
        return amount_or_dash(obj.unit_price, obj.purchase_order.currency)

    def get_extra(
        self, request: HttpRequest, obj: PurchaseOrder | None = None, **kwargs: Any
    ) -> int:
        return 1 if obj is None else 0

    def get_min_num(
        self, request: HttpRequest, obj: PurchaseOrder | None = None, **kwargs: Any
    ) -> int:
        return 0 if is_locked(obj) else 1

    @admin.display(description="Amount")
    def amount_display(self, obj: PurchaseOrderLineItem) -> str:
        if not obj.purchase_order_id or obj.unit_price is None:  # a blank extra row
            return "-"
        return amount_or_dash(obj.amount, obj.purchase_order.currency)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not is_locked(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not is_locked(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not is_locked(obj) and super().has_delete_permission(request, obj)


class PaymentLedgerInline(
    ReadOnlyAdminMixin,
    ConferenceScopedInline[PurchaseOrderPayment, PurchaseOrder],
    admin.TabularInline[PurchaseOrderPayment, PurchaseOrder],
):
    """Every ledger entry, read-only: payments in, refunds and disputes out (the ledger writes)."""

    model = PurchaseOrderPayment
    extra = 0
    can_delete = False
    verbose_name = "ledger entry"
    verbose_name_plural = "Ledger: payments, refunds, disputes (read-only)"
    fields = (
        "payment_date",
        "kind",
        "method",
        "amount_display",
        "reference",
        "stripe_invoice_id",
        "stripe_report_display",
        "note",
        "created_by",
        "recorded_at",
    )
    readonly_fields = fields

    @admin.display(description="At Stripe")
    def stripe_report_display(self, obj: PurchaseOrderPayment) -> str:
        """Where a payment made outside Stripe stands at Stripe, and why if it went nowhere."""
        parts = []
        if left_po := obj.left_po_description():
            parts.append(left_po)
        elif obj.method == Method.CREDIT_BALANCE:
            parts.append(f"credit balance applied to invoice {obj.applied_invoice_id}")
        elif obj.stripe_attached_at is not None:
            parts.append(
                f"reported ({obj.stripe_payment_record_id}) and attached to invoice "
                f"{obj.applied_invoice_id}"
            )
        elif obj.off_stripe_paid_after is not None:
            parts.append(f"marked paid outside Stripe on invoice {obj.applied_invoice_id}")
        elif obj.report_to_stripe and not obj.stripe_report_error:
            parts.append("being reported to Stripe")
        if obj.stripe_report_error:
            parts.append(obj.stripe_report_error)
        if obj.overpayment_reason:
            parts.append(f"overpayment on purpose: {obj.overpayment_reason}")
        return "; ".join(parts) or "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrderPayment]:
        return super().get_queryset(request).select_related("purchase_order", "created_by")

    @admin.display(description="Amount")
    def amount_display(self, obj: PurchaseOrderPayment) -> str:
        return amount_or_dash(obj.amount, obj.purchase_order.currency)


class ManualPaymentForm(forms.ModelForm[PurchaseOrderPayment]):
    # Stripe's own entries (its payments, a customer's credit balance) come only from Stripe.
    method = forms.ChoiceField(
        choices=[
            (choice.value, choice.label)
            for choice in Method
            if choice not in {Method.STRIPE, Method.CREDIT_BALANCE}
        ],
        widget=forms.Select(attrs={"style": "width: 9em"}),
    )
    payment_date = forms.DateField(initial=timezone.localdate, widget=AdminDateWidget)
    overpayment_reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 12}),
        help_text="Only to record more than is still due, on purpose: why.",
    )
    # The payment's own key, posted back: the same form submitted twice records one payment.
    payment_uid = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4, required=False)

    class Meta:
        model = PurchaseOrderPayment
        fields = ("amount", "method", "payment_date", "reference", "note")
        # Narrow inputs: the row fits the PO's page at 1366 px.
        widgets: ClassVar = {
            "note": forms.Textarea(attrs={"rows": 1, "cols": 12}),
            "reference": forms.TextInput(attrs={"size": 10}),
            "amount": forms.NumberInput(attrs={"style": "width: 8em"}),
        }

    def has_changed(self) -> bool:
        # The hidden key is new on every page: only what the organizer typed counts.
        return bool(set(self.changed_data) - {"payment_uid"})

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount <= 0:
            raise ValidationError("The amount must be greater than zero.")
        return amount

    def clean_payment_date(self) -> Any:
        payment_date = self.cleaned_data["payment_date"]
        if payment_date > timezone.localdate():
            raise ValidationError("A payment cannot be dated in the future.")
        return payment_date


class PaymentRefused(Exception):
    """The payment could not be recorded: the whole save is undone, so no success is claimed."""


class ManualPaymentFormSet(
    BaseInlineFormSet[PurchaseOrderPayment, PurchaseOrder, forms.ModelForm[PurchaseOrderPayment]]
):
    """New wire/check/other payments; saved through ``record_payment``, never ``form.save()``."""

    def clean(self) -> None:
        super().clean()
        currency = self.instance.currency
        for form in self.forms:
            amount = form.cleaned_data.get("amount") if form.has_changed() else None
            if isinstance(amount, Decimal) and not money.is_representable(amount, currency):
                form.add_error(
                    "amount",
                    f"{amount} cannot be expressed in {currency.upper()} (too many decimals).",
                )

    def record(self, request: HttpRequest, purchase_order: PurchaseOrder) -> None:
        self.new_objects: list[PurchaseOrderPayment] = []
        self.changed_objects: list[tuple[PurchaseOrderPayment, list[str]]] = []
        self.deleted_objects: list[PurchaseOrderPayment] = []
        for form in self.forms:
            if not form.has_changed():
                continue
            data = form.cleaned_data
            try:
                payment = purchase_orders.record_payment(
                    purchase_order,
                    amount=data["amount"],
                    method=data["method"],
                    reference=data.get("reference") or "",
                    payment_date=data["payment_date"],
                    note=data.get("note") or "",
                    created_by=staff_member(request),
                    uid=data.get("payment_uid"),
                    overpayment_reason=data.get("overpayment_reason") or "",
                )
            except InvalidPayment as error:
                raise PaymentRefused(
                    f"{purchase_order.reference}: payment not recorded: {error} Nothing on this "
                    "page was saved."
                ) from error
            purchase_order.refresh_from_db(fields=["status"])
            amount = amount_or_dash(payment.amount, purchase_order.currency)
            if payment.repeated_submit:
                messages.info(
                    request,
                    f"{purchase_order.reference}: this payment ({amount}) was already recorded "
                    "(a repeated submit); nothing new was recorded.",
                )
                continue
            self.new_objects.append(payment)
            messages.success(
                request,
                f"{purchase_order.reference}: recorded a {payment.get_method_display().lower()} "
                f"payment of {amount}; the PO is now "
                f"{purchase_order.get_status_display().lower()}; {report_outlook(payment)}.",
            )


class ManualPaymentInline(
    ConferenceScopedInline[PurchaseOrderPayment, PurchaseOrder],
    admin.TabularInline[PurchaseOrderPayment, PurchaseOrder],
):
    """A blank row to record a wire, check or other payment (shown once the PO is approved), for
    the conference's organizers."""

    model = PurchaseOrderPayment
    form = ManualPaymentForm
    formset = ManualPaymentFormSet
    extra = 1
    max_num = 1
    can_delete = False
    verbose_name = "Record a wire, check or other payment"
    verbose_name_plural = verbose_name

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrderPayment]:
        return super().get_queryset(request).none()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
