"""What we read from one view of a Stripe invoice, and how views compare.

Every way an invoice reaches us (webhook ``data.object``, a retrieve, a list page, an event from the
events API) is parsed here into an :class:`InvoiceSnapshot` before anything is written, so a payload
no Stripe history can produce is refused (:class:`EventRejected`) with the database untouched.
Pure: no database, no Stripe calls; the ledger decides what a snapshot changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import stripe

from invoicing import money
from invoicing.errors import EventRejected
from invoicing.stripe_invoice_status import STRIPE_REPORTED_STATUSES, StripeInvoiceStatus

# Stripe returns amount_paid_off_stripe only when asked for ("includable": expand[]=...), never in
# event payloads (changelog 2026-05-27.dahlia); every retrieve whose answer the ledger applies asks.
WITH_OFF_STRIPE: Final = ["amount_paid_off_stripe"]

# Order in which an invoice's status can move; a snapshot never moves the mirror backwards.
_STATUS_RANK: Final[Mapping[str, int]] = {
    StripeInvoiceStatus.DRAFT: 0,
    StripeInvoiceStatus.OPEN: 1,
    StripeInvoiceStatus.UNCOLLECTIBLE: 2,
    StripeInvoiceStatus.PAID: 3,
    StripeInvoiceStatus.VOID: 3,
    StripeInvoiceStatus.DELETED: 4,
}


def _require_str(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise EventRejected(f"Invoice payload: {key!r} is missing or not a string.")
    return value


def _require_int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventRejected(f"Invoice payload: {key!r} is missing or not an integer.")
    return value


def _optional_int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _included_int(data: Mapping[str, object], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventRejected(f"Invoice payload: {key!r} is not an integer.")
    return value


def _optional_str(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _total_tax(data: Mapping[str, object], invoice_id: str) -> int:
    """The sum of ``total_taxes[].amount`` (Stripe Tax's amounts on the invoice)."""
    taxes = data.get("total_taxes")
    if not isinstance(taxes, list):
        return 0
    total = 0
    for tax in taxes:
        amount = tax.get("amount") if isinstance(tax, Mapping) else None
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise EventRejected(f"Invoice payload {invoice_id}: a tax amount is not a count.")
        total += amount
    return total


@dataclass(frozen=True)
class InvoiceSnapshot:
    """What we read from one view of a Stripe invoice (amounts in minor units, as Stripe sends)."""

    id: str
    status: StripeInvoiceStatus
    currency: str
    livemode: bool
    amount_due: int
    amount_paid: int
    amount_remaining: int
    # None: this view does not say. Stripe sends it only when asked for
    # (``expand=["amount_paid_off_stripe"]``), never in event payloads.
    amount_paid_off_stripe: int | None = None
    # The customer's balance the invoice started from (negative: a credit) and what was left of it
    # once finalized (None before).
    starting_balance: int = 0
    ending_balance: int | None = None
    # Paid beyond the amount due: Stripe credits it to the customer's credit balance.
    amount_overpaid: int = 0
    number: str = ""
    created: int = 0
    hosted_invoice_url: str = ""
    invoice_pdf: str = ""
    # ``total`` (lines, minus discounts, plus tax) and the tax in it (``total_taxes``); None when
    # the view carries no total (a deleted draft).
    total: int | None = None
    total_tax: int = 0
    # Unix time; set at finalization for ``send_invoice`` invoices, absent or null before.
    due_date: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def deleted(cls, invoice_id: str, *, currency: str = "", livemode: bool) -> InvoiceSnapshot:
        """A draft that no longer exists at Stripe: it ends the invoice, and carries no money."""
        return cls(
            id=invoice_id,
            status=StripeInvoiceStatus.DELETED,
            currency=currency,
            livemode=livemode,
            amount_due=0,
            amount_paid=0,
            amount_remaining=0,
        )

    @classmethod
    def from_payload(cls, data: Mapping[str, object]) -> InvoiceSnapshot:
        """Parse an invoice as Stripe serializes it (webhook ``data.object``, ``to_dict()``)."""
        if data.get("object") not in (None, "invoice"):
            raise EventRejected(f"Expected an invoice, got a {data.get('object')!r}.")
        invoice_id = _require_str(data, "id")
        if data.get("deleted") is True:
            return cls.deleted(invoice_id, livemode=bool(data.get("livemode", False)))
        livemode = data.get("livemode")
        if not isinstance(livemode, bool):
            raise EventRejected("Invoice payload: 'livemode' is missing.")
        raw_metadata = data.get("metadata")
        metadata = (
            {str(k): str(v) for k, v in raw_metadata.items()}
            if isinstance(raw_metadata, Mapping)
            else {}
        )
        status = _require_str(data, "status")
        if status not in STRIPE_REPORTED_STATUSES:
            raise EventRejected(f"Invoice payload: {status!r} is not an invoice status.")
        amount_due = _require_int(data, "amount_due")
        amount_paid = _require_int(data, "amount_paid")
        amount_remaining = _require_int(data, "amount_remaining")
        overpaid = _optional_int(data, "amount_overpaid")
        if overpaid < 0 or overpaid > amount_paid:
            raise EventRejected(
                f"Invoice payload {invoice_id}: amount_overpaid {overpaid} does not fit "
                f"amount_paid {amount_paid}."
            )
        # No invoice history produces these; stale, reordered, voided (remaining 0 with a partial
        # payment), uncollectible-then-paid and re-issued invoices all pass.
        if min(amount_due, amount_paid, amount_remaining) < 0:
            raise EventRejected(f"Invoice payload {invoice_id}: a negative amount.")
        if amount_paid > amount_due + max(overpaid, 0) or amount_remaining > amount_due:
            raise EventRejected(
                f"Invoice payload {invoice_id}: amount_paid {amount_paid} / amount_remaining "
                f"{amount_remaining} do not fit amount_due {amount_due}."
            )
        off_stripe = _included_int(data, "amount_paid_off_stripe")
        if off_stripe is not None and not 0 <= off_stripe <= amount_paid:
            raise EventRejected(
                f"Invoice payload {invoice_id}: amount_paid_off_stripe {off_stripe} does not fit "
                f"amount_paid {amount_paid}."
            )
        return cls(
            id=invoice_id,
            status=StripeInvoiceStatus(status),
            currency=_require_str(data, "currency").lower(),
            livemode=livemode,
            amount_due=amount_due,
            amount_paid=amount_paid,
            amount_remaining=amount_remaining,
            amount_paid_off_stripe=off_stripe,
            starting_balance=_optional_int(data, "starting_balance"),
            ending_balance=_included_int(data, "ending_balance"),
            amount_overpaid=overpaid,
            number=_optional_str(data, "number"),
            created=_optional_int(data, "created"),
            hosted_invoice_url=_optional_str(data, "hosted_invoice_url"),
            invoice_pdf=_optional_str(data, "invoice_pdf"),
            total=_require_int(data, "total") if "total" in data else None,
            total_tax=_total_tax(data, invoice_id),
            due_date=_optional_int(data, "due_date") or None,
            metadata=metadata,
        )

    @classmethod
    def from_invoice(cls, invoice: stripe.Invoice) -> InvoiceSnapshot:
        """Parse an invoice stripe-python returned."""
        return cls.from_payload(invoice.to_dict())

    @property
    def paid_on_stripe(self) -> int | None:
        """What Stripe itself collected (minor units); None when the view does not say."""
        if self.amount_paid_off_stripe is None:
            return None
        return self.amount_paid - self.amount_paid_off_stripe

    @property
    def credit_balance_applied(self) -> int:
        """The customer's credit balance finalization applied to this invoice (minor units).

        Stripe fixes ``starting_balance`` at finalization and leaves what the invoice did not use
        in ``ending_balance``; a positive balance is a debt the invoice adds, not a credit.
        """
        if self.ending_balance is None or self.starting_balance >= 0:
            return 0
        return min(self.ending_balance, 0) - self.starting_balance

    @property
    def rank(self) -> tuple[int, int]:
        return (_STATUS_RANK.get(self.status, 0), self.amount_paid)


InvoiceLike = InvoiceSnapshot | stripe.Invoice | Mapping[str, object]


def as_snapshot(invoice: InvoiceLike) -> InvoiceSnapshot:
    """Any view of an invoice the services are handed, parsed (a snapshot passes through)."""
    if isinstance(invoice, InvoiceSnapshot):
        return invoice
    if isinstance(invoice, stripe.StripeObject):
        return InvoiceSnapshot.from_payload(invoice.to_dict())
    return InvoiceSnapshot.from_payload(invoice)


def mirrored_rank(
    *, stripe_invoice_status: str, stripe_amount_paid: Decimal | None, currency: str
) -> tuple[int, int]:
    """The rank of what a PO mirrors of its current invoice, comparable with ``snapshot.rank``.

    A snapshot whose rank is not above it can change nothing: the mirror never moves backwards
    and the ledger already holds that ``amount_paid`` (both are written under one row lock).
    Reconciliation uses it to skip unchanged invoices without locking their POs.
    """
    paid = (
        money.to_minor_units(stripe_amount_paid, currency) if stripe_amount_paid is not None else -1
    )
    return (_STATUS_RANK.get(stripe_invoice_status, -1), paid)
