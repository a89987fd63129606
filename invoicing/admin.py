"""The organizer's admin: purchase orders and their ledger, conferences, the webhook inbox.

Rules the admin keeps, whatever a staff member clicks:

- State moves only through the services (approve, record a payment, cancel...) or the tasks that
  call them; the admin never sets a status, a Stripe field or a ledger row itself.
- A saved form writes only the fields the form changed (``update_fields``), under the PO's row
  lock, so a webhook that landed while the page was open is never overwritten by stale values.
- Lines and terms are editable only while the PO is a draft; recorded payments are never editable.
- Stripe secrets are write-only: never sent to the browser, a blank input keeps the stored one.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, cast

import django_stubs_ext
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AdminDateWidget
from django.core.exceptions import ValidationError
from django.db.models import (
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from invoicing import background, money
from invoicing.background import Job
from invoicing.errors import InvalidPayment
from invoicing.logging import log_state_change, mask_secret
from invoicing.models import (
    MONEY_DECIMAL_PLACES,
    MONEY_MAX_DIGITS,
    ZERO,
    Conference,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
    StripeCustomer,
    StripeEvent,
)
from invoicing.selectors import cancel_refusal, reissue_refusal, sync_refusal, void_refusal
from invoicing.services import ledger, purchase_orders, stripe_events
from invoicing.services.webhook_endpoints import webhook_path

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Lets ModelAdmin[...] / ModelForm[...] be subscripted at runtime, as django-stubs types them.
django_stubs_ext.monkeypatch()

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status
Method = PurchaseOrderPayment.Method

admin.site.site_header = "PO invoicing"
admin.site.site_title = "PO invoicing"
admin.site.index_title = "Purchase orders, Stripe invoices and payments"


def _money_field() -> DecimalField[Any, Any]:
    return DecimalField(max_digits=MONEY_MAX_DIGITS + 6, decimal_places=MONEY_DECIMAL_PLACES)


def _staff(request: HttpRequest) -> User | None:
    """The signed-in staff member, for the ``*_by`` columns of the services."""
    user = request.user
    return user if user.is_authenticated else None


class ConcurrentChange(Exception):
    """The PO changed state between loading the form and saving it; nothing was saved."""


# --- Conferences ---------------------------------------------------------------------------

_SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secret")
_SECRET_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")


def _key_mode(key: str) -> str:
    return "live" if key.startswith(("sk_live_", "rk_live_")) else "test"


class ConferenceAdminForm(forms.ModelForm[Conference]):
    """Secrets are write-only: blank input keeps the stored value, which never reaches the page."""

    stripe_secret_key = forms.CharField(
        required=False,
        strip=True,
        label="New Stripe secret key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=(
            "The conference's own secret key (sk_test_… / sk_live_…) or a restricted key "
            "(rk_…). Stored encrypted. Leave empty to keep the current key."
        ),
    )
    stripe_webhook_secret = forms.CharField(
        required=False,
        strip=True,
        label="New webhook signing secret",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=(
            "whsec_… Only needed when the endpoint was not registered with "
            "register_stripe_webhook (e.g. `stripe listen`). Leave empty to keep the current one."
        ),
    )

    class Meta:
        model = Conference
        fields = (
            "slug",
            "name",
            "currency",
            "is_active",
            "stripe_secret_key",
            "stripe_webhook_secret",
            "invoice_days_until_due",
            "payment_method_types",
            "invoice_memo",
            "invoice_footer",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored plaintext must not even sit in the form's initial data.
        for name in _SECRET_FIELDS:
            self.initial.pop(name, None)

    def clean_stripe_secret_key(self) -> str:
        key: str = self.cleaned_data.get("stripe_secret_key") or ""
        if not key:
            return key
        if key.startswith("pk_"):
            raise ValidationError(
                "That is a publishable key (pk_…). Paste the secret key (sk_…) or a restricted "
                "key (rk_…) from the Stripe Dashboard, Developers > API keys."
            )
        if not key.startswith(_SECRET_KEY_PREFIXES) or not key.replace("_", "").isalnum():
            raise ValidationError(
                "A Stripe secret key looks like sk_test_… or sk_live_… (or rk_… when restricted)."
            )
        previous = self.instance.stripe_secret_key if self.instance.pk else ""
        if previous and _key_mode(previous) != _key_mode(key) and self._has_stripe_history():
            raise ValidationError(
                f"This conference has invoices in {_key_mode(previous)} mode; a "
                f"{_key_mode(key)}-mode key would make them unreachable and its webhooks would "
                "be refused. Use a new conference for the other mode."
            )
        return key

    def clean_stripe_webhook_secret(self) -> str:
        secret: str = self.cleaned_data.get("stripe_webhook_secret") or ""
        if secret and (not secret.startswith("whsec_") or not secret[6:].isalnum()):
            raise ValidationError("A webhook signing secret looks like whsec_….")
        return secret

    def _has_stripe_history(self) -> bool:
        return (
            PurchaseOrder.objects.filter(conference=self.instance)
            .exclude(stripe_invoice_id="")
            .exists()
            or PurchaseOrderPayment.objects.filter(
                purchase_order__conference=self.instance, method=Method.STRIPE
            ).exists()
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in _SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned

    @property
    def fields_to_save(self) -> list[str]:
        """Changed fields; a blank secret input is "keep", not a change."""
        return [
            name
            for name in self.changed_data
            if name not in _SECRET_FIELDS or self.data.get(name, "").strip()
        ]


@admin.register(Conference)
class ConferenceAdmin(admin.ModelAdmin[Conference]):
    form = ConferenceAdminForm
    list_display = (
        "name",
        "slug",
        "currency",
        "is_active",
        "stripe_key_display",
        "webhook_secret_display",
        "webhook_path_display",
    )
    list_filter = ("is_active", "currency")
    search_fields = ("name", "slug")
    actions = ("reconcile_selected",)

    @admin.action(description="Reconcile with Stripe now", permissions=["change"])
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[Conference]) -> None:
        for conference in queryset.order_by("slug"):
            if not conference.is_active or not conference.has_stripe_key:
                self.message_user(
                    request,
                    f"{conference.slug}: not reconciled: it is inactive or has no Stripe key.",
                    messages.WARNING,
                )
                continue
            if background.request(Job.RECONCILE_CONFERENCE, conference.pk):
                self.message_user(
                    request,
                    f"{conference.slug}: reconciliation queued (Stripe's events and every open "
                    "invoice are compared with the ledger).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{conference.slug}: could not queue the reconciliation (the broker did not "
                    "answer); try again in a moment.",
                    messages.ERROR,
                )

    def get_readonly_fields(self, request: HttpRequest, obj: Conference | None = None) -> list[str]:
        fields = [
            "stripe_key_display",
            "webhook_secret_display",
            "stripe_webhook_endpoint_id",
            "created_at",
            "updated_at",
        ]
        if obj is not None:
            # The slug is in the webhook URL and in every invoice's metadata: it never changes.
            fields.insert(0, "slug")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Conference | None = None) -> Any:
        general: list[str] = ["slug", "name", "currency", "is_active"]
        stripe_fields = [
            "stripe_key_display",
            "stripe_secret_key",
            "webhook_secret_display",
            "stripe_webhook_secret",
            "stripe_webhook_endpoint_id",
        ]
        description = (
            "Each conference uses its own Stripe account. Give Stripe this webhook endpoint: "
            "<code>https://&lt;this site&gt;/stripe/webhooks/&lt;slug&gt;/</code>."
        )
        if obj is not None:
            endpoint = request.build_absolute_uri(webhook_path(obj))
            description = format_html(
                "Each conference uses its own Stripe account. Webhook endpoint to give Stripe: "
                "<code>{}</code><br>Register it (and store its signing secret) with "
                "<code>python manage.py register_stripe_webhook --conference {} --url {}</code>, "
                "or paste the secret of an endpoint made in the Dashboard or by "
                "<code>stripe listen</code> below.",
                endpoint,
                obj.slug,
                request.build_absolute_uri("/"),
            )
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": general}),
            ("Stripe", {"fields": stripe_fields, "description": description}),
            (
                "Invoices",
                {
                    "fields": [
                        "invoice_days_until_due",
                        "payment_method_types",
                        "invoice_memo",
                        "invoice_footer",
                    ]
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("History", {"fields": ["created_at", "updated_at"]}))
        return fieldsets

    @admin.display(description="Stripe secret key")
    def stripe_key_display(self, obj: Conference) -> str:
        key = obj.stripe_secret_key
        if not key:
            return "not set"
        return f"{mask_secret(key)} ({_key_mode(key)} mode)"

    @admin.display(description="Webhook signing secret")
    def webhook_secret_display(self, obj: Conference) -> str:
        return "set" if obj.stripe_webhook_secret else "not set"

    @admin.display(description="Webhook endpoint path")
    def webhook_path_display(self, obj: Conference) -> str:
        return webhook_path(obj)

    def save_model(self, request: HttpRequest, obj: Conference, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        fields = cast(ConferenceAdminForm, form).fields_to_save
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])
            logger.info(
                "conference %s: changed in the admin by %s (%s)",
                obj.slug,
                request.user,
                ", ".join(sorted(fields)),
            )


# --- Purchase orders -----------------------------------------------------------------------

_EDITABLE_IN_DRAFT = (
    "conference",
    "reference",
    "organization_name",
    "contact_name",
    "contact_email",
    "currency",
    "notes",
)
_EDITABLE_ALWAYS = ("notes",)
# record_payment takes manual payments on any PO that is neither a draft nor cancelled.
_MANUAL_PAYMENT_STATUSES: frozenset[str] = frozenset(Status.values) - {
    Status.DRAFT.value,
    Status.CANCELLED.value,
}


def _is_locked(obj: PurchaseOrder | None) -> bool:
    """Once approved, a PO's lines and terms are what the invoice says: no more edits."""
    return obj is not None and obj.status != Status.DRAFT


def _format(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else money.format_amount(amount, currency)


def _link(url: str, label: str) -> SafeString | str:
    if not url.startswith(("https://", "http://")):
        return "-"
    return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, label)


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

    class Meta:
        model = PurchaseOrder
        fields = _EDITABLE_IN_DRAFT

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
        for form in self.forms:
            if not form.has_changed() or form.cleaned_data.get("DELETE"):
                continue
            price = form.cleaned_data.get("unit_price")
            if isinstance(price, Decimal) and not money.is_representable(price, currency):
                form.add_error(
                    "unit_price",
                    f"{price} cannot be charged in {currency.upper()}: it has more decimals "
                    "than the currency.",
                )


class LineItemInline(admin.TabularInline[PurchaseOrderLineItem, PurchaseOrder]):
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
        if _is_locked(obj):
            return ("description", "quantity", "unit_price_display", "amount_display")
        return ("description", "quantity", "unit_price", "amount_display")

    @admin.display(description="Unit price")
    def unit_price_display(self, obj: PurchaseOrderLineItem) -> str:
        return _format(obj.unit_price, obj.purchase_order.currency)

    def get_extra(
        self, request: HttpRequest, obj: PurchaseOrder | None = None, **kwargs: Any
    ) -> int:
        return 1 if obj is None else 0

    def get_min_num(
        self, request: HttpRequest, obj: PurchaseOrder | None = None, **kwargs: Any
    ) -> int:
        return 0 if _is_locked(obj) else 1

    @admin.display(description="Amount")
    def amount_display(self, obj: PurchaseOrderLineItem) -> str:
        if not obj.purchase_order_id or obj.unit_price is None:  # a blank extra row
            return "-"
        return _format(obj.amount, obj.purchase_order.currency)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_locked(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_locked(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_locked(obj) and super().has_delete_permission(request, obj)


class PaymentLedgerInline(admin.TabularInline[PurchaseOrderPayment, PurchaseOrder]):
    """Every recorded payment, read-only: the ledger changes only through ``record_payment``."""

    model = PurchaseOrderPayment
    extra = 0
    can_delete = False
    verbose_name = "recorded payment"
    verbose_name_plural = "Payment ledger (read-only)"
    fields = (
        "payment_date",
        "method",
        "amount_display",
        "reference",
        "stripe_invoice_id",
        "note",
        "created_by",
        "recorded_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrderPayment]:
        return super().get_queryset(request).select_related("purchase_order", "created_by")

    @admin.display(description="Amount")
    def amount_display(self, obj: PurchaseOrderPayment) -> str:
        return _format(obj.amount, obj.purchase_order.currency)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ManualPaymentForm(forms.ModelForm[PurchaseOrderPayment]):
    method = forms.ChoiceField(
        choices=[(choice.value, choice.label) for choice in Method if choice != Method.STRIPE]
    )
    payment_date = forms.DateField(initial=timezone.localdate, widget=AdminDateWidget)

    class Meta:
        model = PurchaseOrderPayment
        fields = ("amount", "method", "payment_date", "reference", "note")
        widgets: ClassVar = {"note": forms.Textarea(attrs={"rows": 2, "cols": 30})}

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
                    created_by=_staff(request),
                )
            except InvalidPayment as error:
                messages.error(
                    request, f"{purchase_order.reference}: payment not recorded: {error}"
                )
                continue
            self.new_objects.append(payment)
            purchase_order.refresh_from_db(fields=["status"])
            messages.success(
                request,
                f"{purchase_order.reference}: recorded a {payment.get_method_display().lower()} "
                f"payment of {_format(payment.amount, purchase_order.currency)}; the PO is now "
                f"{purchase_order.get_status_display().lower()}.",
            )


class ManualPaymentInline(admin.TabularInline[PurchaseOrderPayment, PurchaseOrder]):
    """A blank row to record a wire, check or other payment (shown once the PO is approved)."""

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


class PurchaseOrderQuerySetMixin:
    """Totals for the changelist in the same query as the rows (no query per row)."""

    @staticmethod
    def annotate_totals(queryset: QuerySet[PurchaseOrder]) -> QuerySet[PurchaseOrder]:
        line_total = (
            PurchaseOrderLineItem.objects.filter(purchase_order=OuterRef("pk"))
            .order_by()
            .values("purchase_order")
            .annotate(
                total=Sum(
                    ExpressionWrapper(F("quantity") * F("unit_price"), output_field=_money_field())
                )
            )
            .values("total")
        )
        paid_total = (
            PurchaseOrderPayment.objects.filter(purchase_order=OuterRef("pk"))
            .order_by()
            .values("purchase_order")
            .annotate(total=Sum("amount"))
            .values("total")
        )
        zero = Value(ZERO, output_field=_money_field())
        return queryset.annotate(
            admin_total=Coalesce(Subquery(line_total, output_field=_money_field()), zero),
            admin_paid=Coalesce(Subquery(paid_total, output_field=_money_field()), zero),
        ).annotate(
            admin_balance=ExpressionWrapper(
                F("admin_total") - F("admin_paid"), output_field=_money_field()
            )
        )


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(PurchaseOrderQuerySetMixin, admin.ModelAdmin[PurchaseOrder]):
    form = PurchaseOrderAdminForm
    list_display = (
        "reference",
        "organization_name",
        "conference",
        "status",
        "total_display",
        "paid_display",
        "balance_display",
        "invoice_link",
        "stripe_invoice_number",
    )
    list_display_links = ("reference",)
    list_select_related = ("conference",)
    list_filter = ("status", "conference", ("approved_at", admin.DateFieldListFilter))
    search_fields = (
        "reference",
        "organization_name",
        "contact_email",
        "stripe_invoice_id",
        "stripe_invoice_number",
    )
    ordering = ("-created_at",)
    actions = (
        "approve_selected",
        "sync_selected",
        "void_selected",
        "reissue_selected",
        "cancel_selected",
    )
    inlines = (LineItemInline, PaymentLedgerInline, ManualPaymentInline)

    _READONLY_ALWAYS: ClassVar = [
        "status",
        "invoice_error",
        "invoice_error_at",
        "invoice_creation_blocked",
        "total_display",
        "received_display",
        "balance_display",
        "approved_at",
        "approved_by",
        "cancelled_at",
        "cancelled_by",
        "cancellation_reason",
        "invoice_link",
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
        "last_synced_at",
        "uid",
        "invoice_create_started_at",
        "invoice_created_at",
        "invoice_lines_added_at",
        "invoice_finalized_at",
        "invoice_sent_at",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrder]:
        return self.annotate_totals(super().get_queryset(request))

    def get_readonly_fields(
        self, request: HttpRequest, obj: PurchaseOrder | None = None
    ) -> list[str]:
        fields = list(self._READONLY_ALWAYS)
        if _is_locked(obj):
            fields += [name for name in _EDITABLE_IN_DRAFT if name not in _EDITABLE_ALWAYS]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: PurchaseOrder | None = None) -> Any:
        terms_fields: list[str] = list(_EDITABLE_IN_DRAFT)
        if not _is_locked(obj):
            terms_fields.append("approve")
        terms = (None, {"fields": terms_fields})
        if obj is None:
            return [terms]
        status_fields: list[Any] = [
            "status",
            ("total_display", "received_display", "balance_display"),
            ("approved_at", "approved_by"),
            ("cancelled_at", "cancelled_by"),
            "cancellation_reason",
        ]
        if obj.invoice_error:
            # Why the last background action (creation, sync, void, re-issue, cancel) failed.
            status_fields.insert(
                1, ("invoice_error", "invoice_error_at", "invoice_creation_blocked")
            )
        return [
            terms,
            ("Status and money", {"fields": status_fields}),
            (
                "Stripe invoice (read-only: Stripe and the worker keep it)",
                {
                    "fields": [
                        "invoice_link",
                        ("stripe_invoice_id", "stripe_invoice_number", "stripe_invoice_status"),
                        "stripe_amounts_display",
                        ("generation", "invoice_credit"),
                        "stripe_customer",
                        "last_synced_at",
                    ]
                },
            ),
            (
                "Invoice creation steps",
                {
                    "classes": ["collapse"],
                    "fields": [
                        "uid",
                        "invoice_create_started_at",
                        "invoice_created_at",
                        "invoice_lines_added_at",
                        "invoice_finalized_at",
                        "invoice_sent_at",
                        ("created_at", "updated_at"),
                    ],
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
        if name == "total":
            return obj.total
        return obj.amount_received if name == "paid" else obj.balance_due

    @admin.display(description="Total", ordering="admin_total")
    def total_display(self, obj: PurchaseOrder) -> str:
        return _format(self._amount(obj, "total"), obj.currency)

    @admin.display(description="Paid", ordering="admin_paid")
    def paid_display(self, obj: PurchaseOrder) -> str:
        return _format(self._amount(obj, "paid"), obj.currency)

    @admin.display(description="Received (all methods)")
    def received_display(self, obj: PurchaseOrder) -> str:
        return self.paid_display(obj)

    @admin.display(description="Balance", ordering="admin_balance")
    def balance_display(self, obj: PurchaseOrder) -> str:
        return _format(self._amount(obj, "balance"), obj.currency)

    @admin.display(description="At Stripe")
    def stripe_amounts_display(self, obj: PurchaseOrder) -> str:
        if obj.stripe_amount_due is None:
            return "-"
        return (
            f"due {_format(obj.stripe_amount_due, obj.currency)}, "
            f"paid {_format(obj.stripe_amount_paid, obj.currency)}, "
            f"remaining {_format(obj.stripe_amount_remaining, obj.currency)}"
        )

    @admin.display(description="Hosted invoice")
    def invoice_link(self, obj: PurchaseOrder) -> SafeString | str:
        return _link(obj.stripe_invoice_url, "Open invoice ↗")

    # --- saving --------------------------------------------------------------------------------

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ConcurrentChange as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: PurchaseOrder, form: Any, change: bool) -> None:
        if not change:
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
        editable = _EDITABLE_ALWAYS if _is_locked(locked) else _EDITABLE_IN_DRAFT
        fields = [name for name in form.changed_data if name in editable]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if isinstance(formset, ManualPaymentFormSet):
            formset.record(request, form.instance)
            return
        if isinstance(formset, LineItemFormSet):
            if _is_locked(form.instance):
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
            return
        super().save_formset(request, form, formset, change)

    # --- permissions ---------------------------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: PurchaseOrder | None = None) -> bool:
        # Only a draft: anything later has (or is getting) an invoice at Stripe, or payments.
        if obj is not None and obj.status != Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # The bulk delete would skip the per-PO rule above.
        actions.pop("delete_selected", None)
        return actions

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        po: PurchaseOrder = form.instance
        if form.cleaned_data.get("approve") and po.status == Status.DRAFT:
            # After the lines are saved: approval checks them as they now are. The invoice is
            # queued when the admin's transaction commits (invoicing/signals.py).
            self._approve(request, po)

    # --- actions -------------------------------------------------------------------------------
    # Each action says, for every selected PO, what was done or queued, or why it was refused.
    # Stripe is only ever called by the worker: the actions queue the pipeline's tasks.

    def _approve(self, request: HttpRequest, po: PurchaseOrder) -> None:
        try:
            purchase_orders.approve_purchase_order(po, approved_by=_staff(request))
        except ValueError as error:  # InvalidTransition, InvalidPurchaseOrder: nothing changed
            self.message_user(request, f"{po.reference}: not approved: {error}", messages.WARNING)
        else:
            self.message_user(
                request,
                f"{po.reference}: approved; its Stripe invoice is being created and sent (queued).",
                messages.SUCCESS,
            )

    @admin.action(description="Approve: create and send the Stripe invoice", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]) -> None:
        for po in queryset.order_by("reference"):
            self._approve(request, po)

    def _queue(
        self,
        request: HttpRequest,
        po: PurchaseOrder,
        *,
        event: str,
        what: str,
        next_step: str,
        job: Job,
        args: tuple[Any, ...],
    ) -> None:
        queued = background.request(job, po.pk, *args)
        log_state_change(
            logger,
            event=f"{event}_requested" if queued else f"{event}_not_queued",
            po_reference=po.reference,
            invoice_id=po.stripe_invoice_id or None,
            requested_by=getattr(_staff(request), "pk", None),
            level=logging.INFO if queued else logging.WARNING,
        )
        if queued:
            self.message_user(
                request, f"{po.reference}: {what} queued; {next_step}", messages.SUCCESS
            )
        else:
            self.message_user(
                request,
                f"{po.reference}: {what} could not be queued (the broker did not answer); "
                "nothing changed, try again in a moment.",
                messages.ERROR,
            )

    def _refuse(self, request: HttpRequest, po: PurchaseOrder, verb: str, why: str) -> None:
        self.message_user(request, f"{po.reference}: not {verb}: {why}", messages.WARNING)

    @admin.action(description="Sync with Stripe now", permissions=["change"])
    def sync_selected(self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]) -> None:
        for po in queryset.order_by("reference"):
            why = sync_refusal(po)
            if why:
                self._refuse(request, po, "synced", why)
                continue
            self._queue(
                request,
                po,
                event="sync",
                what=f"sync of invoice {po.stripe_invoice_id}",
                next_step="new payments and the invoice's status will show here shortly.",
                job=Job.SYNC_PURCHASE_ORDER,
                args=(),
            )

    @admin.action(
        description="Void the Stripe invoice (then re-issue or cancel)", permissions=["change"]
    )
    def void_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> TemplateResponse | None:
        confirmation = self._confirm(
            request,
            queryset,
            action="void_selected",
            title="Void these invoices?",
            explanation=(
                "Each open or uncollectible invoice is voided at Stripe: the customer can no "
                "longer pay it. Payments already received stay in the ledger. The PO then shows "
                "“Invoice voided”, and you re-issue or cancel it."
            ),
            ask_reason=False,
        )
        if confirmation is not None:
            return confirmation
        for po in queryset.order_by("reference"):
            why = void_refusal(po)
            if why:
                self._refuse(request, po, "voided", why)
                continue
            self._queue(
                request,
                po,
                event="void",
                what=f"void of invoice {po.stripe_invoice_id}",
                next_step="the PO will show “Invoice voided”; then re-issue or cancel it.",
                job=Job.VOID_INVOICE,
                args=(getattr(_staff(request), "pk", None),),
            )
        return None

    @admin.action(description="Re-issue the invoice (for the balance)", permissions=["change"])
    def reissue_selected(self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]) -> None:
        for po in queryset.order_by("reference"):
            why = reissue_refusal(po)
            if why:
                self._refuse(request, po, "re-issued", why)
                continue
            self._queue(
                request,
                po,
                event="reissue",
                what=f"re-issue (replacing invoice {po.stripe_invoice_id})",
                next_step=(
                    "a new invoice for the balance is created and sent; payments received so far "
                    "are credited on it."
                ),
                job=Job.REISSUE_INVOICE,
                args=(getattr(_staff(request), "pk", None),),
            )

    @admin.action(description="Cancel (voids the Stripe invoice first)", permissions=["change"])
    def cancel_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> TemplateResponse | None:
        confirmation = self._confirm(
            request,
            queryset,
            action="cancel_selected",
            title="Cancel these purchase orders?",
            explanation=(
                "A PO with a Stripe invoice is cancelled by the worker once the invoice is voided "
                "(or its draft deleted) at Stripe, so it can never be paid afterwards; one without "
                "an invoice is cancelled now. Payments already received stay in the ledger. A paid "
                "PO must be refunded first."
            ),
            ask_reason=True,
        )
        if confirmation is not None:
            return confirmation
        reason = str(request.POST.get("reason", "")).strip()
        for po in queryset.order_by("reference"):
            why = cancel_refusal(po)
            if why:
                self._refuse(request, po, "cancelled", why)
                continue
            if not po.stripe_invoice_id:
                try:
                    purchase_orders.cancel_purchase_order(
                        po, cancelled_by=_staff(request), reason=reason
                    )
                except ValueError as error:  # raced into a state that has an invoice
                    self._refuse(request, po, "cancelled", str(error))
                else:
                    self.message_user(request, f"{po.reference}: cancelled.", messages.SUCCESS)
                continue
            self._queue(
                request,
                po,
                event="cancel",
                what=f"cancellation (voiding invoice {po.stripe_invoice_id} first)",
                next_step="the PO shows “Cancelled” once Stripe confirmed the void.",
                job=Job.CANCEL_PURCHASE_ORDER,
                args=(getattr(_staff(request), "pk", None), reason),
            )
        return None

    def _confirm(
        self,
        request: HttpRequest,
        queryset: QuerySet[PurchaseOrder],
        *,
        action: str,
        title: str,
        explanation: str,
        ask_reason: bool,
    ) -> TemplateResponse | None:
        """The intermediate page of a destructive action; None once the person confirmed."""
        if request.POST.get("confirm") == "yes":
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "explanation": explanation,
            "ask_reason": ask_reason,
            "action": action,
            "objects": list(queryset.select_related("conference").order_by("reference")),
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/invoicing/purchaseorder/confirm_action.html", context
        )


# --- Stripe customers and events -------------------------------------------------------------


class ReadOnlyAdminMixin:
    """Rows only the services write: visible, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[StripeCustomer]):
    list_display = ("email", "name", "conference", "stripe_customer_id", "created_at")
    list_filter = ("conference",)
    list_select_related = ("conference",)
    search_fields = ("email", "name", "stripe_customer_id")


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    list_display = (
        "stripe_event_id",
        "type",
        "conference",
        "status",
        "attempts",
        "last_error_short",
        "received_at",
        "processed_at",
    )
    list_filter = ("status", "type", "conference", ("received_at", admin.DateFieldListFilter))
    list_select_related = ("conference",)
    search_fields = ("stripe_event_id", "type", "payload__data__object__id")
    date_hierarchy = "received_at"
    fields = (
        "stripe_event_id",
        "type",
        "conference",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "received_at",
        "processed_at",
        "livemode",
        "api_version",
        "payload_pretty",
    )
    readonly_fields = fields
    actions = ("replay_selected",)

    @admin.action(description="Replay: reset and queue again")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        selected = list(queryset.order_by("received_at", "pk"))
        result = stripe_events.replay_stripe_events(
            stripe_event_ids=[event.stripe_event_id for event in selected]
        )
        by_id = {event.stripe_event_id: event for event in selected}
        for event_id in result.replayed:
            event = by_id[event_id]
            self.message_user(
                request,
                f"{event_id} ({event.type}, was {event.get_status_display().lower()}): queued "
                "again with a fresh retry budget.",
                messages.SUCCESS,
            )
        for event_id in result.in_progress:
            self.message_user(
                request,
                f"{event_id}: a worker is processing it right now; left alone.",
                messages.WARNING,
            )
        for event_id in result.not_found:
            self.message_user(request, f"{event_id}: no longer recorded.", messages.WARNING)
        if result.replayed:
            self.message_user(
                request, f"{len(result.replayed)} event(s) queued again.", messages.SUCCESS
            )

    @admin.display(description="Last error")
    def last_error_short(self, obj: StripeEvent) -> str:
        text = obj.last_error.strip()
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="Payload")
    def payload_pretty(self, obj: StripeEvent) -> SafeString:
        pretty = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', pretty)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
