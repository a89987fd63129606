"""A conference (one Stripe account, its invoice terms) and its Stripe customers."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from invoicing import billing_details, money
from invoicing.fields import EncryptedSecretField

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


def validate_billing_address(value: object) -> None:
    problems = billing_details.address_problems(value)
    if problems:
        raise ValidationError(problems)


def validate_tax_ids(value: object) -> None:
    problems = billing_details.tax_id_problems(value)
    if problems:
        raise ValidationError(problems)


def default_tax_ids() -> list[dict[str, str]]:
    return []


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
    # The Stripe account behind the key (GET /v1/account), when it was checked: a new key for a
    # conference with open invoices must belong to it (services/conference_settings.py).
    stripe_account_id = models.CharField(max_length=255, blank=True, default="")
    is_active = models.BooleanField(default=True)
    approvals_need_second_person = models.BooleanField(
        default=False,
        help_text=(
            "Approvals need a second person: whoever created or last edited a purchase order "
            "cannot approve it."
        ),
    )
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
    invoice_shows_our_reference = models.BooleanField(
        default=False,
        help_text="Print our PO reference on invoices (“Our reference”), next to the buyer's.",
    )
    automatic_tax = models.BooleanField(
        default=False,
        help_text=(
            "Stripe Tax computes the tax on each invoice (needs Stripe Tax set up in the account, "
            "and a billing address on every PO); the company then owes the invoice's total."
        ),
    )
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
    """Our record of a conference's Stripe customer for one organization.

    Keyed by the organization (``billing_details.organization_key``), not the e-mail: two
    companies sharing an accounts-payable mailbox are two customers. Created (or claimed)
    *before* the Stripe call, so the idempotency key ``customer-<uid>`` exists before the
    customer does. ``name``, ``email``, ``address`` and ``tax_ids`` are what the customer says
    at Stripe as last confirmed; ``details_digest`` fingerprints them, and an update to new
    details runs under ``customer-<uid>-u<details_version>`` (services/stripe_customers.py).
    """

    conference = models.ForeignKey(
        Conference, on_delete=models.PROTECT, related_name="stripe_customers"
    )
    organization_key = models.CharField(max_length=200)
    email = models.EmailField(help_text="Normalized: trimmed, lowercase.")
    name = models.CharField(max_length=200, blank=True, default="")
    address = models.JSONField(default=dict, blank=True)
    tax_ids = models.JSONField(default=default_tax_ids, blank=True)
    details_digest = models.CharField(max_length=64, blank=True, default="")
    pending_digest = models.CharField(max_length=64, blank=True, default="")
    details_version = models.PositiveIntegerField(default=0)
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    key_epoch = models.PositiveIntegerField(default=0)  # see PurchaseOrder.key_epoch
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("conference", "organization_key"),
                name="stripe_customer_unique_organization",
            ),
            models.UniqueConstraint(
                fields=("conference", "stripe_customer_id"),
                condition=~Q(stripe_customer_id=""),
                name="stripe_customer_unique_stripe_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.email} ({self.stripe_customer_id or 'not created yet'})"

    @staticmethod
    def normalize_email(email: str) -> str:
        return email.strip().lower()

    @property
    def idempotency_key(self) -> str:
        suffix = f"-e{self.key_epoch}" if self.key_epoch else ""
        return f"customer-{self.uid}{suffix}"
