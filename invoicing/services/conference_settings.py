"""A conference's settings, where its money goes above all: checked, saved, and on the record.

The money-routing settings (:data:`MONEY_ROUTING_FIELDS`) decide which Stripe account collects the
conference's invoices and what the invoices tell the customer. Only a finance admin changes them,
re-entering their password (the admin's form), and every change or refused attempt leaves a
:class:`~invoicing.models.teams.ConferenceSettingsChange` naming who, when and which fields, never
the values.

A new secret key for a conference with open invoices must belong to the same Stripe account
(``GET /v1/account``, the one Stripe call a person waits for here: it must be answered before the
key is stored). Another account would strand the open invoices, so it takes an explicit switch.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import stripe
from django.db import transaction

from invoicing.errors import InvoicingError
from invoicing.models import Conference, ConferenceSettingsChange, PurchaseOrder
from invoicing.retry import describe_error
from invoicing.services.stripe_client import build_stripe_client_for_key

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Outcome = ConferenceSettingsChange.Outcome
Status = PurchaseOrder.Status

MONEY_ROUTING_FIELDS = (
    "stripe_secret_key",
    "stripe_webhook_secret",
    "payment_method_types",
    "invoice_memo",
    "invoice_footer",
    "automatic_tax",  # changes what companies are charged
)

# Invoices a customer may still pay: the account holding them must stay reachable.
_SETTLED_INVOICE_STATUSES = ("paid", "void", "deleted")


class SettingsChangeRefused(InvoicingError):
    """The change was refused (and recorded as refused); nothing was saved."""


@dataclass(frozen=True)
class StripeAccountCheck:
    """What the key check found: the new key's account ("" when not asked) and whether it moves."""

    account_id: str = ""
    switched: bool = False


def open_invoice_count(conference: Conference) -> int:
    """POs of the conference whose Stripe invoice may still take money."""
    return (
        PurchaseOrder.objects.filter(conference=conference)
        .exclude(stripe_invoice_id="")
        .exclude(status=Status.CANCELLED)
        .exclude(stripe_invoice_status__in=_SETTLED_INVOICE_STATUSES)
        .count()
    )


def stripe_account_of(*, secret_key: str) -> str:
    """The id of the Stripe account behind ``secret_key`` (``GET /v1/account``)."""
    account = build_stripe_client_for_key(secret_key).v1.accounts.retrieve_current()
    return str(account.id)


def check_new_stripe_key(
    *, conference: Conference, new_secret_key: str, switch_stripe_account: bool
) -> StripeAccountCheck:
    """Whether ``new_secret_key`` may replace the conference's key; raises the refusal.

    Without open invoices any key may follow (nothing is stranded). With open invoices the new
    key must reach the same account, unless ``switch_stripe_account`` says the move is meant.

    Raises:
        SettingsChangeRefused: the reason, in the organizer's words (not yet recorded).
    """
    if conference.pk is None or not conference.stripe_secret_key:
        return StripeAccountCheck()
    if new_secret_key == conference.stripe_secret_key:
        return StripeAccountCheck(account_id=conference.stripe_account_id)
    open_invoices = open_invoice_count(conference)
    if not open_invoices:
        return StripeAccountCheck()
    try:
        new_account = stripe_account_of(secret_key=new_secret_key)
    except stripe.AuthenticationError:
        raise SettingsChangeRefused(
            "Stripe does not accept the new secret key (revoked, expired or mistyped)."
        ) from None
    except stripe.StripeError as error:
        raise SettingsChangeRefused(
            "Stripe could not be asked which account the new key belongs to "
            f"({describe_error(error)}); try again in a moment."
        ) from None
    current_account = conference.stripe_account_id
    if not current_account:
        try:
            current_account = stripe_account_of(secret_key=conference.stripe_secret_key)
        except stripe.StripeError:
            current_account = ""  # the old key no longer answers: the accounts cannot be compared
    if new_account == current_account:
        return StripeAccountCheck(account_id=new_account)
    if switch_stripe_account:
        return StripeAccountCheck(account_id=new_account, switched=True)
    which = (
        "belongs to another Stripe account"
        if current_account
        else "cannot be compared with the current key's account (the current key no longer works)"
    )
    raise SettingsChangeRefused(
        f"The new secret key {which}, and this conference has {open_invoices} open invoice(s) in "
        "its current account: they could no longer be synced, voided or re-issued from here. Use "
        "a new conference for the other account, or tick “Switch Stripe account” to move this "
        "one anyway."
    )


def record_refused_change(
    *, conference: Conference, changed_by: User | None, fields: Collection[str], reason: str
) -> ConferenceSettingsChange:
    """Put a refused attempt on the conference's record (field names and the reason only)."""
    entry = ConferenceSettingsChange.objects.create(
        conference=conference,
        changed_by=changed_by,
        fields=sorted(fields),
        outcome=Outcome.REFUSED,
        reason=reason,
    )
    logger.warning(
        "conference %s: change of %s by %s refused: %s",
        conference.slug,
        ", ".join(sorted(fields)),
        changed_by.get_username() if changed_by else "?",
        reason,
    )
    return entry


def save_conference_settings(
    *,
    conference: Conference,
    fields: Collection[str],
    changed_by: User | None,
    account_check: StripeAccountCheck | None = None,
) -> None:
    """Save the changed ``fields`` of ``conference`` (all of it when new) and record the change.

    A new key's account, when it was checked, is kept so the next change compares against it;
    otherwise the stored account is forgotten with the key it belonged to.
    """
    fields = sorted(fields)
    creating = conference.pk is None
    switched = bool(account_check and account_check.switched)
    with transaction.atomic():
        if "stripe_secret_key" in fields:
            conference.stripe_account_id = account_check.account_id if account_check else ""
        if creating:
            conference.save()
        elif fields:
            conference.save(update_fields=[*fields, "stripe_account_id", "updated_at"])
        if fields:
            ConferenceSettingsChange.objects.create(
                conference=conference,
                changed_by=changed_by,
                fields=fields,
                outcome=Outcome.APPLIED,
                switched_stripe_account=switched,
            )
    if fields:
        logger.info(
            "conference %s: %s changed by %s%s",
            conference.slug,
            ", ".join(fields),
            changed_by.get_username() if changed_by else "?",
            " (switched to another Stripe account)" if switched else "",
        )
