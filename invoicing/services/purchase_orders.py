"""Purchase orders: create, approve, cancel, start a re-issue, and show invoice errors.

One function owns each transition, under the PO's row lock when it changes a PO that webhooks and
workers may change too. No function here talks to Stripe: the Stripe halves of cancelling and
re-issuing are :mod:`invoicing.services.invoice_lifecycle`, and every money write (payments and the
status derived from them) belongs to :mod:`invoicing.services.ledger`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from invoicing import access, billing_details, money
from invoicing.errors import InvalidPurchaseOrder, InvalidTransition
from invoicing.logging import log_state_change
from invoicing.models import (
    MONEY_LIMIT,
    ZERO,
    Conference,
    PurchaseOrder,
    PurchaseOrderActivity,
    PurchaseOrderLineItem,
)
from invoicing.selectors import cancel_refusal, ensure_allowed, reissue_refusal
from invoicing.services import notifications
from invoicing.services.activity import record_activity
from invoicing.services.ledger import (
    LockedPurchaseOrder,
    lock_purchase_order,
    update_po_status_locked,
)

# The public interface (DESIGN.md) names these here; the ledger owns them.
from invoicing.services.ledger import record_payment as record_payment
from invoicing.services.ledger import update_po_status as update_po_status
from invoicing.stripe_invoice_status import VOIDED_STATUSES, StripeInvoiceStatus

# A re-issued PO's old invoice can take no more money: void, or paid (a part-paid one is closed
# with a credit note for its unpaid rest, since Stripe never voids an invoice with payments).
CLOSED_STATUSES = VOIDED_STATUSES | {StripeInvoiceStatus.PAID}

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status


@dataclass(frozen=True)
class LineItemInput:
    """One line of a new purchase order."""

    description: str
    quantity: int
    unit_price: Decimal


def _line_problems(lines: Sequence[LineItemInput], currency: str) -> list[str]:
    problems: list[str] = []
    if not lines:
        return ["A purchase order needs at least one line."]
    total = ZERO
    for number, line in enumerate(lines, start=1):
        where = f"Line {number}"
        description = line.description.strip() if isinstance(line.description, str) else ""
        if not description:
            problems.append(f"{where}: the description is empty.")
        elif len(description) > 250:
            problems.append(f"{where}: the description is longer than 250 characters.")
        quantity_ok = isinstance(line.quantity, int) and not isinstance(line.quantity, bool)
        if not quantity_ok or line.quantity < 1:
            problems.append(f"{where}: the quantity must be a whole number of at least 1.")
        if not isinstance(line.unit_price, Decimal) or not line.unit_price.is_finite():
            problems.append(f"{where}: the unit price must be a Decimal amount.")
            continue
        if line.unit_price < 0:
            problems.append(f"{where}: the unit price is negative.")
            continue
        try:
            money.to_minor_units(line.unit_price, currency)
        except money.AmountNotRepresentable as exc:
            problems.append(f"{where}: {exc}")
            continue
        if quantity_ok and line.quantity >= 1:
            total += line.unit_price * line.quantity
    if not problems:
        if total <= 0:
            problems.append("The purchase order's total must be greater than zero.")
        elif total >= MONEY_LIMIT:
            problems.append(f"The total {money.format_amount(total, currency)} is too large.")
        elif limit := money.charge_limit_problem(total, currency):
            # Stripe would refuse the invoice (or its payment) later, on the PO's page.
            problems.append(limit)
    return problems


def billing_problems(
    *,
    buyer_po_number: str,
    legal_name: str,
    billing_address: object,
    tax_ids: object,
) -> list[str]:
    """What Stripe or an accounts-payable department would refuse in a PO's billing details."""
    problems = [
        *billing_details.address_problems(billing_address),
        *billing_details.tax_id_problems(tax_ids),
    ]
    if len(buyer_po_number) > billing_details.CUSTOM_FIELD_VALUE_MAX:
        problems.append(
            f"The buyer's PO number has {len(buyer_po_number)} characters; an invoice field "
            f"holds at most {billing_details.CUSTOM_FIELD_VALUE_MAX}."
        )
    if len(legal_name) > 200:
        problems.append("The legal name is longer than 200 characters.")
    return problems


def create_purchase_order(
    *,
    conference: Conference,
    reference: str,
    organization_name: str,
    contact_email: str,
    lines: Sequence[LineItemInput],
    contact_name: str = "",
    currency: str | None = None,
    notes: str = "",
    created_by: User | None = None,
    buyer_po_number: str = "",
    legal_name: str = "",
    billing_address: Mapping[str, str] | None = None,
    tax_ids: Sequence[Mapping[str, str]] = (),
) -> PurchaseOrder:
    """Create a draft PO with its lines, or raise :class:`InvalidPurchaseOrder` saving nothing.

    Every unit price must be exactly chargeable in the PO's currency (README: Money), so a PO that
    could never be invoiced is refused now rather than after approval; likewise the billing
    details Stripe would refuse (``invoicing.billing_details``).
    """
    problems: list[str] = []
    reference = reference.strip()
    organization_name = organization_name.strip()
    contact_email = contact_email.strip()
    if not conference.is_active:
        problems.append(f"Conference {conference.slug!r} is not active.")
    if not reference:
        problems.append("The reference is empty.")
    elif len(reference) > 64:
        problems.append("The reference is longer than 64 characters.")
    if not organization_name:
        problems.append("The organization name is empty.")
    try:
        validate_email(contact_email)
    except ValidationError:
        problems.append(f"{contact_email!r} is not a valid email address.")
    try:
        code = money.normalize_currency(currency if currency is not None else conference.currency)
    except ValueError as exc:
        raise InvalidPurchaseOrder(str(exc)) from None
    problems.extend(_line_problems(lines, code))
    buyer_po_number, legal_name = buyer_po_number.strip(), legal_name.strip()
    problems.extend(
        billing_problems(
            buyer_po_number=buyer_po_number,
            legal_name=legal_name,
            billing_address=billing_address,
            tax_ids=list(tax_ids),
        )
    )
    if problems:
        raise InvalidPurchaseOrder(" ".join(problems))

    try:
        with transaction.atomic():
            purchase_order = PurchaseOrder.objects.create(
                conference=conference,
                reference=reference,
                organization_name=organization_name,
                contact_name=contact_name.strip(),
                contact_email=contact_email,
                currency=code,
                notes=notes,
                created_by=created_by,
                last_edited_by=created_by,
                buyer_po_number=buyer_po_number,
                legal_name=legal_name,
                billing_address=billing_details.normalize_address(billing_address),
                tax_ids=billing_details.normalize_tax_ids(list(tax_ids)),
            )
            PurchaseOrderLineItem.objects.bulk_create(
                PurchaseOrderLineItem(
                    purchase_order=purchase_order,
                    position=position,
                    description=line.description.strip(),
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                )
                for position, line in enumerate(lines, start=1)
            )
    except IntegrityError:
        if PurchaseOrder.objects.filter(conference=conference, reference=reference).exists():
            raise InvalidPurchaseOrder(
                f"Conference {conference.slug!r} already has a purchase order {reference!r}."
            ) from None
        raise
    log_state_change(
        logger,
        event="po_created",
        po_reference=purchase_order.reference,
        status=Status.DRAFT.value,
        conference=conference.slug,
        total=money.format_amount(purchase_order.total, code),
    )
    return purchase_order


def approve_purchase_order(
    purchase_order: PurchaseOrder, *, approved_by: User | None = None
) -> PurchaseOrder:
    """Approve a draft PO: the step after which the invoice is created without further clicks.

    Refused when the conference has no Stripe key: the invoice could not be created, and the person
    approving is the one who can fix that. Refused too when the conference asks for a second
    person and ``approved_by`` wrote the PO (:func:`invoicing.access.second_approver_refusal`).
    """
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        if locked.status != Status.DRAFT:
            raise InvalidTransition(
                f"PO {locked.reference} is {locked.status}; only a draft can be approved."
            )
        if not locked.conference.has_stripe_key:
            raise InvalidTransition(
                f"Conference {locked.conference.slug!r} has no Stripe secret key; "
                f"add it before approving PO {locked.reference}."
            )
        second_approver = access.second_approver_refusal(locked, approved_by)
        if second_approver:
            raise InvalidTransition(f"PO {locked.reference}: {second_approver}")
        problems = _line_problems(
            [
                LineItemInput(line.description, line.quantity, line.unit_price)
                for line in locked.line_items.all()
            ],
            locked.currency,
        )
        problems += billing_problems(
            buyer_po_number=locked.buyer_po_number,
            legal_name=locked.legal_name,
            billing_address=locked.billing_address,
            tax_ids=locked.tax_ids,
        )
        if locked.conference.automatic_tax and not locked.billing_address:
            # Stripe refuses automatic tax for a customer without an address.
            problems.append(
                "The conference charges tax through Stripe Tax, which needs the company's "
                "billing address: add it before approving."
            )
        if problems:
            raise InvalidPurchaseOrder(" ".join(problems))
        locked.status = Status.APPROVED
        locked.approved_at = timezone.now()
        locked.approved_by = approved_by
        locked.save(update_fields=["status", "approved_at", "approved_by", "updated_at"])
        record_activity(
            purchase_order=locked, kind=PurchaseOrderActivity.Kind.APPROVED, actor=approved_by
        )
    log_state_change(
        logger,
        event="po_approved",
        po_reference=locked.reference,
        status=locked.status,
        approved_by=getattr(approved_by, "pk", None),
    )
    return locked


def cancellation_reason(purchase_order: PurchaseOrder, reason: str) -> str:
    """The reason, trimmed (whoever reads the PO later learns why); blank: InvalidTransition."""
    if not reason.strip():
        raise InvalidTransition(
            f"PO {purchase_order.reference}: not cancelled: give a reason (it is kept with the PO "
            "and shown in its history)."
        )
    return reason.strip()


def cancel_purchase_order(
    purchase_order: PurchaseOrder,
    *,
    cancelled_by: User | None = None,
    reason: str,
) -> PurchaseOrder:
    """Cancel a PO that has no payable Stripe invoice.

    A PO whose invoice may still be paid (draft, open or uncollectible at Stripe) must be cancelled
    through :func:`invoicing.services.invoice_lifecycle.cancel_invoiced_purchase_order`, which
    voids the invoice first: we never consider a PO cancelled while its invoice can take money.
    Cancelling twice is a no-op. Payments already recorded stay in the ledger.

    Raises:
        InvalidTransition: no reason given, or the PO's state refuses it; nothing changed.
    """
    reason = cancellation_reason(purchase_order, reason)
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        if locked.status == Status.CANCELLED:
            return locked
        if locked.stripe_invoice_id and locked.stripe_invoice_status not in VOIDED_STATUSES:
            raise InvalidTransition(
                f"PO {locked.reference} has Stripe invoice {locked.stripe_invoice_id} "
                f"({locked.stripe_invoice_status or 'status unknown'}); cancel it with "
                "invoice_lifecycle.cancel_invoiced_purchase_order, which voids the invoice first."
            )
        mark_cancelled(locked, cancelled_by=cancelled_by, reason=reason)
    return locked


def mark_cancelled(
    locked: LockedPurchaseOrder,
    *,
    cancelled_by: User | None = None,
    reason: str,
    remainder_credited: bool = False,
) -> None:
    """Set the cancelled state on a PO whose row lock the caller holds (internal).

    ``remainder_credited``: our ``cancel`` credit note closed the unpaid rest, so the PO may now
    show paid by that credit; that is the cancellation itself, not a reason to refuse it.
    """
    if not remainder_credited:
        ensure_allowed(cancel_refusal, locked, verb="cancelled")
    locked.status = Status.CANCELLED
    locked.cancelled_at = timezone.now()
    locked.cancelled_by = cancelled_by
    locked.cancellation_reason = reason
    locked.save(
        update_fields=[
            "status",
            "cancelled_at",
            "cancelled_by",
            "cancellation_reason",
            "updated_at",
        ]
    )
    record_activity(
        purchase_order=locked,
        kind=PurchaseOrderActivity.Kind.CANCELLED,
        actor=cancelled_by,
        detail=reason,
    )
    log_state_change(
        logger,
        event="po_cancelled",
        po_reference=locked.reference,
        invoice_id=locked.stripe_invoice_id or None,
        cancelled_by=getattr(cancelled_by, "pk", None),
        reason=reason,
    )


def prepare_reissue(
    purchase_order: PurchaseOrder, *, reissued_by: User | None = None
) -> PurchaseOrder:
    """Start a new invoice generation for a PO whose invoice can take no more money (internal).

    The old invoice's payments stay in the ledger under its id. The new invoice asks only for what
    is still owed: it carries the PO's lines plus one credit line for everything already received
    (net, all methods, all earlier invoices) and any credit note that lowered what is owed, frozen
    here in ``invoice_credit`` so the creation parameters stay deterministic under their
    idempotency keys. Call :func:`invoicing.services.invoice_lifecycle.reissue_stripe_invoice`,
    which closes the old invoice at Stripe first (void, or a credit note for a part-paid one's
    unpaid rest) and then creates the new one.
    """
    with transaction.atomic():
        locked = lock_purchase_order(purchase_order)
        ensure_allowed(reissue_refusal, locked, verb="re-issued")
        if locked.stripe_invoice_status not in CLOSED_STATUSES:
            # Never two payable invoices: the one being replaced must be void first, or paid
            # (a part-paid one is closed by a credit note for its unpaid rest).
            raise InvalidTransition(
                f"PO {locked.reference}: not re-issued: its invoice "
                f"{locked.stripe_invoice_id or '(none)'} is "
                f"{locked.stripe_invoice_status or 'of unknown status'}, neither void nor paid."
            )
        received = locked.amount_received + locked.amount_credited
        previous_invoice = locked.stripe_invoice_id
        # Before the invoice's fields are cleared: its number and link stay in the PO's story.
        record_activity(
            purchase_order=locked,
            kind=PurchaseOrderActivity.Kind.REISSUED,
            actor=reissued_by,
            detail=f"credit on the new invoice: {money.format_display(received, locked.currency)}",
        )
        locked.generation += 1
        locked.key_epoch = 0
        locked.invoice_credit = received
        locked.stripe_invoice_id = ""
        locked.stripe_invoice_url = ""
        locked.stripe_invoice_pdf = ""
        locked.stripe_invoice_total = None
        # stripe_invoice_tax stays: the tax already invoiced is still owed (see amount_owed).
        locked.stripe_invoice_number = ""
        locked.stripe_invoice_status = ""
        locked.stripe_amount_due = None
        locked.stripe_amount_paid = None
        locked.stripe_amount_remaining = None
        locked.invoice_create_started_at = None
        locked.invoice_created_at = None
        locked.invoice_lines_added_at = None
        locked.invoice_finalized_at = None
        locked.invoice_sent_at = None
        locked.status = Status.APPROVED
        locked.save()
        log_state_change(
            logger,
            event="reissue_started",
            po_reference=locked.reference,
            invoice_id=previous_invoice or None,
            generation=locked.generation,
            credit=money.format_amount(received, locked.currency),
            reissued_by=getattr(reissued_by, "pk", None),
        )
        update_po_status_locked(locked)
    return locked


def record_invoice_error(
    purchase_order: PurchaseOrder, *, message: str, blocks_creation: bool = False
) -> None:
    """Show the organizer why a background invoice action failed.

    ``blocks_creation``: the invoice cannot be created without someone acting (the resume task
    skips the PO until then). A plain UPDATE of these columns: it never races the ledger or the
    status, which other transactions own under the row lock.
    """
    now = timezone.now()
    with transaction.atomic():
        PurchaseOrder.objects.filter(pk=purchase_order.pk).update(
            invoice_error=message,
            invoice_error_at=now,
            invoice_creation_blocked=blocks_creation,
            updated_at=now,
        )
        if blocks_creation:
            notifications.creation_blocked(purchase_order, message=message)
    purchase_order.invoice_error = message
    purchase_order.invoice_error_at = now
    purchase_order.invoice_creation_blocked = blocks_creation
    record_activity(
        purchase_order=purchase_order, kind=PurchaseOrderActivity.Kind.ERROR, detail=message
    )
    log_state_change(
        logger,
        event="invoice_error_recorded",
        po_reference=purchase_order.reference,
        invoice_id=purchase_order.stripe_invoice_id or None,
        blocks_creation=blocks_creation,
        error=message,
        level=logging.ERROR if blocks_creation else logging.WARNING,
    )


def clear_invoice_error(purchase_order: PurchaseOrder, *, action: str | None = None) -> bool:
    """Forget the last invoice error after an action succeeded; True when there was one.

    With ``action``, only an error that action recorded (its message starts with the action's
    name): a successful sync says nothing about a failed creation.
    """
    pending = PurchaseOrder.objects.filter(pk=purchase_order.pk).exclude(invoice_error="")
    if action is not None:
        pending = pending.filter(invoice_error__startswith=action)
    cleared = pending.update(
        invoice_error="", invoice_error_at=None, invoice_creation_blocked=False
    )
    if cleared:
        purchase_order.invoice_error = ""
        purchase_order.invoice_error_at = None
        purchase_order.invoice_creation_blocked = False
        log_state_change(
            logger,
            event="invoice_error_cleared",
            po_reference=purchase_order.reference,
            invoice_id=purchase_order.stripe_invoice_id or None,
        )
    return bool(cleared)
