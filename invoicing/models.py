"""Conferences, purchase orders, their payment ledger, Stripe customers and the webhook inbox.

Invariants the database enforces (not just the code):

- A PO's reference is unique within its conference; a Stripe invoice belongs to at most one PO.
- A Stripe payment row is unique on ``(stripe_invoice_id, stripe_amount_paid_after)``: replaying
  the same invoice snapshot can never insert it twice (README, "The ledger equals Stripe").
- Payments are positive; only ``stripe`` payments carry Stripe invoice data, and they always do.
- One Stripe customer per (conference, email); one inbox row per Stripe event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce

from invoicing import money
from invoicing.fields import EncryptedSecretField
from invoicing.stripe_invoice_status import PAST_OPEN_STATUSES

MONEY_MAX_DIGITS = 14
MONEY_DECIMAL_PLACES = 3  # README, Money: every currency's exponent fits
# Amounts the money columns hold are below this (10**11 major units).
MONEY_LIMIT = Decimal(10) ** (MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES)
ZERO = Decimal("0")

# Payment method types an invoice may offer (stripe-python's InvoiceCreateParams literal list).
INVOICE_PAYMENT_METHOD_TYPES = frozenset(
    {
        "ach_credit_transfer",
        "ach_debit",
        "acss_debit",
        "affirm",
        "alipay",
        "amazon_pay",
        "au_becs_debit",
        "bacs_debit",
        "bancontact",
        "billie",
        "blik",
        "boleto",
        "card",
        "cashapp",
        "crypto",
        "custom",
        "customer_balance",
        "eps",
        "fpx",
        "giropay",
        "grabpay",
        "ideal",
        "jp_credit_transfer",
        "kakao_pay",
        "klarna",
        "konbini",
        "kr_card",
        "link",
        "mb_way",
        "multibanco",
        "naver_pay",
        "nz_bank_account",
        "p24",
        "pay_by_bank",
        "payco",
        "paynow",
        "paypal",
        "payto",
        "pix",
        "promptpay",
        "revolut_pay",
        "satispay",
        "sepa_credit_transfer",
        "sepa_debit",
        "sequra",
        "sofort",
        "swish",
        "twint",
        "upi",
        "us_bank_account",
        "wechat_pay",
    }
)
DEFAULT_PAYMENT_METHOD_TYPES = ("card", "us_bank_account")


def default_payment_method_types() -> list[str]:
    """Card and ACH, the two ways the issue promises companies can pay."""
    return list(DEFAULT_PAYMENT_METHOD_TYPES)


def validate_payment_method_types(value: object) -> None:
    """A non-empty list of distinct payment method types Stripe invoices accept."""
    if not isinstance(value, list) or not value:
        raise ValidationError("Give a non-empty list of payment method types, e.g. ['card'].")
    unknown = [item for item in value if item not in INVOICE_PAYMENT_METHOD_TYPES]
    if unknown:
        raise ValidationError(f"Unknown payment method type(s) for invoices: {unknown!r}.")
    if len(set(value)) != len(value):
        raise ValidationError("Payment method types must not repeat.")


def validate_currency(value: str) -> None:
    """Lowercase three-letter ISO 4217 code, as Stripe spells it."""
    try:
        code = money.normalize_currency(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if code != value:
        raise ValidationError(f"Write the currency in lowercase, as Stripe does: {code!r}.")


class Conference(models.Model):
    """A conference with its own Stripe account; nothing crosses from one conference to another."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(
        max_length=3,
        default="usd",
        validators=[validate_currency],
        help_text="Default currency of new purchase orders (lowercase ISO code, e.g. usd).",
    )
    stripe_secret_key = EncryptedSecretField(max_length=255, blank=True, default="")
    stripe_webhook_secret = EncryptedSecretField(max_length=255, blank=True, default="")
    stripe_webhook_endpoint_id = models.CharField(max_length=255, blank=True, default="")
    is_active = models.BooleanField(default=True)
    invoice_days_until_due = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    payment_method_types = models.JSONField(
        default=default_payment_method_types, validators=[validate_payment_method_types]
    )
    invoice_memo = models.TextField(
        blank=True, default="", help_text="Shown on every invoice (Stripe 'description')."
    )
    invoice_footer = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(invoice_days_until_due__gte=1, invoice_days_until_due__lte=365),
                name="conference_days_until_due_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never the secrets: only what identifies the row.
        return f"<Conference {self.slug!r} pk={self.pk}>"

    @property
    def has_stripe_key(self) -> bool:
        return bool(self.stripe_secret_key)

    @property
    def stripe_livemode(self) -> bool | None:
        """True for a live key, False for a test key, None without a (recognizable) key."""
        key: str = self.stripe_secret_key or ""
        if key.startswith(("sk_live_", "rk_live_")):
            return True
        if key.startswith(("sk_test_", "rk_test_")):
            return False
        return None


class StripeCustomer(models.Model):
    """Our record of a conference's Stripe customer for one billing email.

    Created (or claimed) *before* the Stripe call, so the idempotency key ``customer-<uid>`` exists
    before the customer does; later POs from the same email reuse it.
    """

    conference = models.ForeignKey(
        Conference, on_delete=models.PROTECT, related_name="stripe_customers"
    )
    email = models.EmailField(help_text="Normalized: trimmed, lowercase.")
    name = models.CharField(max_length=200, blank=True, default="")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    key_epoch = models.PositiveIntegerField(default=0)  # see PurchaseOrder.key_epoch
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("conference", "email"), name="stripe_customer_unique_email"
            ),
            models.UniqueConstraint(
                fields=("conference", "stripe_customer_id"),
                condition=~Q(stripe_customer_id=""),
                name="stripe_customer_unique_stripe_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.stripe_customer_id or 'not created yet'})"

    @staticmethod
    def normalize_email(email: str) -> str:
        return email.strip().lower()

    @property
    def idempotency_key(self) -> str:
        suffix = f"-e{self.key_epoch}" if self.key_epoch else ""
        return f"customer-{self.uid}{suffix}"


class PurchaseOrderStatus(models.TextChoices):
    """Where a PO stands; ``ledger.update_po_status`` derives it from the ledger."""

    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved (invoice being created)"
    INVOICED = "invoiced", "Invoiced"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid", "Paid"
    OVERPAID = "overpaid", "Overpaid"
    INVOICE_VOIDED = "invoice_voided", "Invoice voided: re-issue or cancel"
    INVOICE_UNCOLLECTIBLE = "invoice_uncollectible", "Invoice uncollectible: re-issue or cancel"
    CANCELLED = "cancelled", "Cancelled"


PURCHASE_ORDER_STATUSES = [choice.value for choice in PurchaseOrderStatus]


class PurchaseOrder(models.Model):
    """A company's purchase order: approved by staff, invoiced through the conference's Stripe."""

    Status = PurchaseOrderStatus

    conference = models.ForeignKey(
        Conference, on_delete=models.PROTECT, related_name="purchase_orders"
    )
    reference = models.CharField(max_length=64)
    organization_name = models.CharField(max_length=200)
    contact_name = models.CharField(max_length=200, blank=True, default="")
    contact_email = models.EmailField()
    currency = models.CharField(max_length=3, validators=[validate_currency])
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.DRAFT)
    notes = models.TextField(blank=True, default="")

    # Idempotency: keys are po-<uid>-g<generation>-<step>; generation grows on every re-issue.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    generation = models.PositiveIntegerField(default=1)
    # Bumped when Stripe cached a server error under a key and the step provably did not happen:
    # Stripe replays that error for 24 h, so the step continues under a fresh key.
    key_epoch = models.PositiveIntegerField(default=0)
    # Money already received when this generation's invoice was issued; the invoice deducts it.
    invoice_credit = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, default=ZERO
    )

    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    cancellation_reason = models.TextField(blank=True, default="")

    # The Stripe invoice of the current generation, mirrored as last seen.
    stripe_customer = models.ForeignKey(
        StripeCustomer,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="purchase_orders",
    )
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_invoice_url = models.URLField(max_length=1000, blank=True, default="")
    stripe_invoice_number = models.CharField(max_length=255, blank=True, default="")
    stripe_invoice_status = models.CharField(max_length=32, blank=True, default="")
    stripe_amount_due = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    stripe_amount_paid = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    stripe_amount_remaining = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )

    # Creation steps, each stamped in its own transaction as soon as Stripe confirms it.
    invoice_create_started_at = models.DateTimeField(null=True, blank=True)
    invoice_created_at = models.DateTimeField(null=True, blank=True)
    invoice_lines_added_at = models.DateTimeField(null=True, blank=True)
    invoice_finalized_at = models.DateTimeField(null=True, blank=True)
    invoice_sent_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    # The last failure of a background invoice action (creation, re-issue, void, cancel, sync), for
    # the organizer; cleared when one succeeds. ``invoice_creation_blocked``: creating the invoice
    # failed in a way retrying cannot fix (a refused parameter, a revoked key, a mismatch): the
    # resume task leaves the PO alone until someone acts.
    invoice_error = models.TextField(blank=True, default="")
    invoice_error_at = models.DateTimeField(null=True, blank=True)
    invoice_creation_blocked = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("conference", "reference"), name="purchase_order_unique_reference"
            ),
            models.UniqueConstraint(
                fields=("stripe_invoice_id",),
                condition=~Q(stripe_invoice_id=""),
                name="purchase_order_unique_stripe_invoice",
            ),
            models.CheckConstraint(
                condition=Q(status__in=PURCHASE_ORDER_STATUSES),
                name="purchase_order_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(generation__gte=1), name="purchase_order_generation_positive"
            ),
            models.CheckConstraint(
                condition=Q(invoice_credit__gte=0),
                name="purchase_order_invoice_credit_not_negative",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=("conference", "status"), name="purchase_order_conf_status"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.organization_name})"

    # The status as last read from or written to the database (None: a new PO, or the column was
    # deferred). The approval signal compares it with the saved status (invoicing/signals.py).
    _loaded_status: str | None = None

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any]
    ) -> PurchaseOrder:
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    def refresh_from_db(
        self,
        using: str | None = None,
        fields: Iterable[str] | None = None,
        from_queryset: models.QuerySet[PurchaseOrder] | None = None,
    ) -> None:
        fields = list(fields) if fields is not None else None
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if fields is None or "status" in fields:
            self._loaded_status = self.__dict__.get("status")

    @property
    def total(self) -> Decimal:
        """Sum of the lines (quantity x unit price)."""
        return sum((line.amount for line in self.line_items.all()), ZERO)

    @property
    def amount_received(self) -> Decimal:
        """Everything received, all methods and all invoice generations."""
        result: Decimal = self.payments.aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
        return result

    @property
    def balance_due(self) -> Decimal:
        return self.total - self.amount_received

    @property
    def has_complete_invoice(self) -> bool:
        """The current generation's invoice was sent, or left the open state at Stripe anyway."""
        return bool(self.stripe_invoice_id) and (
            self.invoice_sent_at is not None or self.stripe_invoice_status in PAST_OPEN_STATUSES
        )

    def idempotency_key(self, step: str) -> str:
        """Stripe idempotency key of one write of the current generation."""
        suffix = f"-e{self.key_epoch}" if self.key_epoch else ""
        return f"po-{self.uid}-g{self.generation}-{step}{suffix}"


class PurchaseOrderLineItem(models.Model):
    """One line of a PO; becomes one invoice line at Stripe (quantity x unit price)."""

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.CASCADE, related_name="line_items"
    )
    position = models.PositiveIntegerField()
    description = models.CharField(max_length=250)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    unit_price = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
        validators=[MinValueValidator(ZERO)],
    )

    class Meta:
        ordering = ("position",)
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("purchase_order", "position"), name="po_line_unique_position"
            ),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="po_line_quantity_positive"),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="po_line_unit_price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.description}"

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


class PurchaseOrderPayment(models.Model):
    """One entry of a PO's ledger.

    ``stripe`` rows are written only by the invoice-snapshot code: each one is the growth of a
    Stripe invoice's ``amount_paid`` up to ``stripe_amount_paid_after`` (minor units, as Stripe
    reports it), so the pair ``(stripe_invoice_id, stripe_amount_paid_after)`` identifies it.
    """

    class Method(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        WIRE = "wire", "Wire transfer"
        CHECK = "check", "Check"
        OTHER = "other", "Other"

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
    )
    method = models.CharField(max_length=16, choices=Method.choices)
    reference = models.CharField(max_length=255, blank=True, default="")
    payment_date = models.DateField()
    note = models.TextField(blank=True, default="")
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_amount_paid_after = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The invoice's amount_paid (minor units) after this payment.",
    )
    recorded_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("recorded_at", "pk")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("stripe_invoice_id", "stripe_amount_paid_after"),
                condition=Q(method="stripe"),
                name="payment_unique_stripe_snapshot",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(method__in=["stripe", "wire", "check", "other"]),
                name="payment_method_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(method="stripe", stripe_amount_paid_after__gt=0) & ~Q(stripe_invoice_id="")
                )
                | (
                    ~Q(method="stripe")
                    & Q(stripe_invoice_id="", stripe_amount_paid_after__isnull=True)
                ),
                name="payment_stripe_fields_iff_stripe",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=("stripe_invoice_id",), name="payment_stripe_invoice"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} by {self.method} on {self.payment_date}"


class StripeEvent(models.Model):
    """The webhook inbox: a verified event, durably stored before the view answers 2xx.

    The dispatcher (``services/stripe_events.py``) moves rows from ``pending`` to a final state;
    ``next_attempt_at`` drives retries with backoff and the scan that re-enqueues stuck rows.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    conference = models.ForeignKey(
        Conference, on_delete=models.PROTECT, related_name="stripe_events"
    )
    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    livemode = models.BooleanField()
    api_version = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("received_at", "pk")
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "processed", "ignored", "failed"]),
                name="stripe_event_status_valid",
            ),
        ]
        indexes: ClassVar = [
            # The re-enqueue scan: rows still to do, oldest due first.
            models.Index(
                fields=("status", "next_attempt_at"),
                name="stripe_event_due",
                condition=Q(status__in=["pending", "processing", "failed"]),
            ),
            models.Index(fields=("conference", "received_at"), name="stripe_event_conf_received"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_event_id} ({self.status})"


class StripeSyncState(models.Model):
    """Where reconciliation stands for one conference (``services/reconciliation.py``).

    ``events_cursor`` is the ``created`` time (Unix seconds, Stripe's clock) of the newest event the
    last successful run saw; the next run lists events from a little before it. ``lease_expires_at``
    keeps two runs for the same conference from overlapping.
    """

    conference = models.OneToOneField(
        Conference, on_delete=models.CASCADE, related_name="stripe_sync_state"
    )
    events_cursor = models.BigIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_summary = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"Stripe sync of conference {self.conference_id}"
