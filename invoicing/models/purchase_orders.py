"""A purchase order, its status and its lines: what the invoice says."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce

from invoicing.billing_details import BUYER_PO_NUMBER_LABEL, CUSTOM_FIELD_VALUE_MAX
from invoicing.models.amounts import (
    MONEY_DECIMAL_PLACES,
    MONEY_MAX_DIGITS,
    ZERO,
    owed_after_refunds,
)
from invoicing.models.conferences import (
    Conference,
    StripeCustomer,
    default_tax_ids,
    validate_billing_address,
    validate_currency,
    validate_tax_ids,
)
from invoicing.models.money_kinds import (
    CLOSED_DISPUTE_STATUSES,
    COUNTED_CREDIT_PURPOSES,
    REFUND_KINDS,
)
from invoicing.stripe_invoice_status import PAST_OPEN_STATUSES


class PurchaseOrderStatus(models.TextChoices):
    """Where a PO stands; ``ledger.update_po_status`` derives it from the ledger."""

    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved (invoice being created)"
    INVOICED = "invoiced", "Invoiced"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid", "Paid"
    OVERPAID = "overpaid", "Overpaid"
    REFUNDED = "refunded", "Refunded"
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

    # What the company's accounts payable needs on the invoice (frozen at approval, like the
    # lines): its own PO number (an invoice custom field), and for its Stripe customer its legal
    # name, billing address (Stripe's address keys) and tax IDs ([{"type", "value"}]).
    buyer_po_number = models.CharField(
        max_length=CUSTOM_FIELD_VALUE_MAX,
        blank=True,
        default="",
        verbose_name="buyer's PO number",
        help_text=f"The company's own purchase order number; printed as “{BUYER_PO_NUMBER_LABEL}”.",
    )
    legal_name = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The name invoices must carry, if it differs from the organization name.",
    )
    billing_address = models.JSONField(
        default=dict, blank=True, validators=[validate_billing_address]
    )
    tax_ids = models.JSONField(default=default_tax_ids, blank=True, validators=[validate_tax_ids])

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
    # Who wrote the PO's terms and lines (the second-approver rule: invoicing/access.py).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

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
    stripe_invoice_pdf = models.URLField(max_length=1000, blank=True, default="")
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
    # The invoice's ``total`` and the tax in it (Stripe Tax, when the conference turns it on):
    # with tax, what the company owes is the invoice's total, not the PO's net total.
    stripe_invoice_total = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    stripe_invoice_tax = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    # The invoice's due_date as Stripe set it at finalization (the receivables' overdue ages).
    invoice_due_at = models.DateTimeField(null=True, blank=True)

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
        """Net received: every payment (all methods, all invoices) less refunds and disputes."""
        result: Decimal = self.payments.aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
        return result

    @property
    def amount_credited(self) -> Decimal:
        """Credit notes that lower what is owed: issued, and not a re-issue's moved remainder."""
        result: Decimal = self.credits.filter(
            voided_at__isnull=True, purpose__in=COUNTED_CREDIT_PURPOSES
        ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
        return result

    @property
    def amount_refunded(self) -> Decimal:
        """The refunds that succeeded (>= 0): refund entries less their reversals."""
        result: Decimal = self.payments.filter(kind__in=REFUND_KINDS).aggregate(
            total=Coalesce(Sum("amount"), ZERO)
        )["total"]
        return -result

    @property
    def total_with_tax(self) -> Decimal:
        """What the company is asked for: the lines plus any tax Stripe Tax put on the invoice
        (stored on the PO, so a re-issue keeps counting it)."""
        return self.total + (self.stripe_invoice_tax or ZERO)

    @property
    def amount_owed(self) -> Decimal:
        """What the company owes: :attr:`total_with_tax` less the credits that count and the
        refunds that did not give back an overpayment (:func:`owed_after_refunds`)."""
        return owed_after_refunds(
            owed=self.total_with_tax - self.amount_credited,
            received=self.amount_received,
            refunded=self.amount_refunded,
        )

    @property
    def amount_given_back(self) -> Decimal:
        """The refunds that lowered what is owed: what they gave back beyond an overpayment."""
        return self.total_with_tax - self.amount_credited - self.amount_owed

    @property
    def balance_due(self) -> Decimal:
        return self.amount_owed - self.amount_received

    @property
    def has_open_dispute(self) -> bool:
        """A chargeback on one of its payments is not decided yet."""
        return self.disputes.exclude(status__in=CLOSED_DISPUTE_STATUSES).exists()

    @property
    def has_complete_invoice(self) -> bool:
        """The current generation's invoice was sent, or left the open state at Stripe anyway."""
        return bool(self.stripe_invoice_id) and (
            self.invoice_sent_at is not None or self.stripe_invoice_status in PAST_OPEN_STATUSES
        )

    @property
    def invoice_name(self) -> str:
        """The name the invoice and the Stripe customer carry."""
        return self.legal_name or self.organization_name

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
