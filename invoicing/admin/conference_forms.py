"""The conference's form: write-only Stripe secrets, and the guard on where the money goes.

Changing a money-routing setting (``MONEY_ROUTING_FIELDS`` of
:mod:`invoicing.services.conference_settings`) takes the person's password, typed again on the
form, and a new key for a conference with open invoices must reach the same Stripe account unless
"Switch Stripe account" is ticked. A refusal is a form error, changes nothing, and stays on the
conference's record of changes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from invoicing.admin.common import staff_member
from invoicing.models import (
    INVOICE_PAYMENT_METHOD_TYPES,
    Conference,
    PurchaseOrder,
    PurchaseOrderPayment,
)
from invoicing.services import conference_settings
from invoicing.services.conference_settings import (
    MONEY_ROUTING_FIELDS,
    SettingsChangeRefused,
    StripeAccountCheck,
)

Method = PurchaseOrderPayment.Method

SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secret")
# Inputs that only confirm a change; never saved, never shown to someone who cannot change.
CONFIRMATION_FIELDS = ("current_password", "switch_stripe_account")
_SECRET_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
_MODEL_FIELDS = frozenset(field.name for field in Conference._meta.concrete_fields)


def key_mode(key: str) -> str:
    return "live" if key.startswith(("sk_live_", "rk_live_")) else "test"


def _write_only_secret(*, label: str, help_text: str) -> forms.CharField:
    """An input that is never filled in from the stored value; blank means "keep it"."""
    return forms.CharField(
        required=False,
        strip=True,
        label=label,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=help_text,
    )


class ConferenceAdminForm(forms.ModelForm[Conference]):
    """Secrets are write-only: blank input keeps the stored value, which never reaches the page."""

    # The request of the person saving (set by ConferenceAdmin.get_form): whose password.
    request: ClassVar[HttpRequest | None] = None

    stripe_secret_key = _write_only_secret(
        label="New Stripe secret key",
        help_text=(
            "The conference's own secret key (sk_test_… / sk_live_…) or a restricted key "
            "(rk_…). Stored encrypted. Leave empty to keep the current key."
        ),
    )
    stripe_webhook_secret = _write_only_secret(
        label="New webhook signing secret",
        help_text=(
            "whsec_… Only needed when the endpoint was not registered with "
            "register_stripe_webhook (e.g. `stripe listen`). Leave empty to keep the current one."
        ),
    )
    current_password = forms.CharField(
        required=False,
        strip=False,
        label="Your password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "current-password"}),
        help_text=(
            "Needed to change the Stripe key or webhook secret, the payment methods, the memo "
            "or the footer: they decide where the money goes and what the customer reads."
        ),
    )
    payment_method_types = forms.MultipleChoiceField(
        label="Payment methods",
        choices=[
            (name, "ACH direct debit" if name == "us_bank_account" else name.replace("_", " "))
            for name in sorted(INVOICE_PAYMENT_METHOD_TYPES)
        ],
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": "Tick at least one payment method.",
            "invalid_choice": "Unknown payment method type for invoices: %(value)s.",
        },
        help_text="How customers may pay on the hosted invoice page (Stripe's names).",
    )
    switch_stripe_account = forms.BooleanField(
        required=False,
        label="Switch Stripe account",
        help_text=(
            "Tick only to move a conference with open invoices to another Stripe account: those "
            "invoices stay in the old account, out of this ledger's reach."
        ),
    )

    class Meta:
        model = Conference
        fields = (
            "slug",
            "name",
            "currency",
            "is_active",
            "approvals_need_second_person",
            "stripe_secret_key",
            "stripe_webhook_secret",
            "invoice_days_until_due",
            "payment_method_types",
            "invoice_memo",
            "invoice_footer",
            "invoice_shows_our_reference",
            "automatic_tax",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored plaintext must not even sit in the form's initial data.
        for name in SECRET_FIELDS:
            self.initial.pop(name, None)
        self.account_check: StripeAccountCheck | None = None

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
        if previous and key_mode(previous) != key_mode(key) and self._has_stripe_history():
            raise ValidationError(
                f"This conference has invoices in {key_mode(previous)} mode; a "
                f"{key_mode(key)}-mode key would make them unreachable and its webhooks would "
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
        for name in SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        money = [name for name in self.fields_to_save if name in MONEY_ROUTING_FIELDS]
        if money and not self.errors:
            self._guard_money_routing(money, cleaned)
        return cleaned

    def _guard_money_routing(self, money: list[str], cleaned: dict[str, Any]) -> None:
        """The password, then the Stripe account; a refusal is recorded and raised."""
        if not self._password_confirmed():
            self._refuse(
                money,
                "current_password",
                "Type your password again to change "
                f"{', '.join(self._labels(money))}: they decide where the money goes.",
            )
            return
        if "stripe_secret_key" not in money:
            return
        try:
            self.account_check = conference_settings.check_new_stripe_key(
                conference=self.instance,
                new_secret_key=cleaned["stripe_secret_key"],
                switch_stripe_account=bool(cleaned.get("switch_stripe_account")),
            )
        except SettingsChangeRefused as refusal:
            self._refuse(money, "stripe_secret_key", str(refusal))

    def _password_confirmed(self) -> bool:
        request = self.request
        password = self.cleaned_data.get("current_password") or ""
        if request is None or not password or not request.user.is_authenticated:
            return False
        # authenticate(), not check_password(): a wrong password counts as a failed login, so
        # the lockout (django-axes) stops guessing here too.
        person = authenticate(request, username=request.user.get_username(), password=password)
        return person is not None and person.pk == request.user.pk

    def _refuse(self, money: list[str], field: str, reason: str) -> None:
        if self.instance.pk is not None and self.request is not None:
            conference_settings.record_refused_change(
                conference=self.instance,
                changed_by=staff_member(self.request),
                fields=money,
                reason=reason,
            )
        self.add_error(field, reason)

    def _labels(self, names: list[str]) -> list[str]:
        return [str(self.fields[name].label or name).lower() for name in names]

    @property
    def fields_to_save(self) -> list[str]:
        """Changed model fields; a blank secret input is "keep", not a change."""
        return [
            name
            for name in self.changed_data
            if name in _MODEL_FIELDS
            and (name not in SECRET_FIELDS or str(self.data.get(name, "")).strip())
        ]
