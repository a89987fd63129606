"""Creating a PO's Stripe invoice: five resumable steps, each written to Stripe exactly once.

Each step is a Stripe write with an idempotency key ``po-<uid>-g<generation>-<step>``, and each
result is stored in its own short transaction as soon as Stripe returns it::

    customer (ours first, then Stripe's) -> invoice created -> lines added -> finalized -> sent

A rerun resumes from what is stored. Within 24 h the keys make every repeated write return the
first result; after a crash that left no invoice id on the PO for longer than that, the invoice is
found again by listing the customer's invoices and matching our metadata (PO uid + generation),
and lines are only added after a retrieve shows the invoice has none. Stripe also stores a 5xx
under its key and replays it for 24 h: after one, the step is checked at Stripe and, if it did not
happen, the PO's ``key_epoch`` moves so the next run uses a fresh key (:mod:`.keyed_writes`).
The fresh path costs five calls (customer, invoice, one ``add_lines`` with every line, finalize,
send); a known customer saves one (or, when the PO's billing details changed, updates it first:
:mod:`.stripe_customers`). Every snapshot Stripe returns goes through the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import stripe
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from invoicing import billing_details, money
from invoicing.errors import InvoiceAlreadyAttached, InvoiceMismatch, PurchaseOrderNotInvoiceable
from invoicing.logging import log_state_change
from invoicing.models import (
    PurchaseOrder,
    PurchaseOrderActivity,
    validate_payment_method_types,
)
from invoicing.selectors import reload_purchase_order
from invoicing.services.activity import record_activity
from invoicing.services.invoice_snapshots import WITH_OFF_STRIPE, InvoiceSnapshot
from invoicing.services.keyed_writes import IDEMPOTENCY_KEY_SAFE_AGE, keyed_write, retrieve_if
from invoicing.services.ledger import (
    apply_invoice_snapshot,
    apply_invoice_snapshot_locked,
    lock_purchase_order,
)
from invoicing.services.off_stripe_reports import request_waiting_reports
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.stripe_customers import customer_held, ensure_stripe_customer
from invoicing.stripe_invoice_status import VOIDED_STATUSES, StripeInvoiceStatus

if TYPE_CHECKING:
    from stripe.params import (
        InvoiceAddLinesParamsLine,
        InvoiceCreateParams,
        InvoiceCreateParamsCustomField,
    )

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status


def _invoice_metadata(po: PurchaseOrder) -> dict[str, str]:
    return {
        "po_id": str(po.pk),
        "po_uid": str(po.uid),
        "po_reference": po.reference,
        "conference": po.conference.slug,
        "generation": str(po.generation),
    }


def build_invoice_lines(po: PurchaseOrder) -> tuple[list[InvoiceAddLinesParamsLine], int]:
    """The ``add_lines`` lines for the PO and the subtotal they add up to (minor units).

    Each PO line becomes ``quantity`` x ``price_data.unit_amount`` so the hosted page shows the
    quantity and the unit price. A re-issued invoice ends with one negative line for the money
    already received. Raises ``AmountNotRepresentable`` before any Stripe call.
    """
    lines: list[InvoiceAddLinesParamsLine] = []
    subtotal = 0
    for item in po.line_items.all():
        unit_amount = money.to_minor_units(item.unit_price, po.currency)
        subtotal += unit_amount * item.quantity
        lines.append(
            {
                "price_data": {
                    "currency": po.currency,
                    "product_data": {"name": item.description},
                    "unit_amount": unit_amount,
                },
                "quantity": item.quantity,
                "description": item.description,
                "metadata": {"po_uid": str(po.uid), "po_line": str(item.position)},
            }
        )
    if po.invoice_credit > 0:
        credit = money.to_minor_units(po.invoice_credit, po.currency)
        subtotal -= credit
        lines.append(
            {
                "amount": -credit,
                "description": f"Payments already received for purchase order {po.reference}",
                "metadata": {"po_uid": str(po.uid), "po_line": "credit"},
            }
        )
    if not lines:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference} has no lines.")
    if subtotal <= 0:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference} has nothing left to invoice.")
    return lines, subtotal


def invoice_custom_fields(po: PurchaseOrder) -> list[InvoiceCreateParamsCustomField]:
    """The fields printed on the invoice for accounts payable: their PO number, and ours if the
    conference asks. Raises ``PurchaseOrderNotInvoiceable`` beyond Stripe's limits (before any
    Stripe call; the PO's own validation keeps it from happening)."""
    fields: list[InvoiceCreateParamsCustomField] = []
    if po.buyer_po_number:
        fields.append({"name": billing_details.BUYER_PO_NUMBER_LABEL, "value": po.buyer_po_number})
    if po.conference.invoice_shows_our_reference:
        fields.append({"name": billing_details.OUR_REFERENCE_LABEL, "value": po.reference})
    problems = billing_details.custom_field_problems(fields)
    if problems:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference}: {' '.join(problems)}")
    return fields


def _invoice_create_params(po: PurchaseOrder, customer_id: str) -> InvoiceCreateParams:
    conference = po.conference
    params: InvoiceCreateParams = {
        "customer": customer_id,
        "collection_method": "send_invoice",
        "days_until_due": conference.invoice_days_until_due,
        "currency": po.currency,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "payment_settings": {"payment_method_types": list(conference.payment_method_types)},
        "metadata": _invoice_metadata(po),
    }
    custom_fields = invoice_custom_fields(po)
    if custom_fields:
        params["custom_fields"] = custom_fields
    if conference.automatic_tax:
        params["automatic_tax"] = {"enabled": True}
    if conference.invoice_memo:
        params["description"] = conference.invoice_memo
    if conference.invoice_footer:
        params["footer"] = conference.invoice_footer
    return params


def _check_invoiceable(po: PurchaseOrder) -> None:
    if po.status == Status.CANCELLED:
        raise PurchaseOrderNotInvoiceable(f"PO {po.reference} is cancelled.")
    try:
        validate_payment_method_types(po.conference.payment_method_types)
    except ValidationError as exc:
        raise PurchaseOrderNotInvoiceable(
            f"Conference {po.conference.slug!r}: {' '.join(exc.messages)}"
        ) from None
    if po.has_complete_invoice:
        raise InvoiceAlreadyAttached(
            f"PO {po.reference} already has Stripe invoice {po.stripe_invoice_id}."
        )
    # PARTIALLY_PAID: a wire recorded while the invoice was still being created.
    if po.status not in {Status.APPROVED, Status.PARTIALLY_PAID}:
        raise PurchaseOrderNotInvoiceable(
            f"PO {po.reference} is {po.status}; only an approved PO is invoiced."
        )


def _find_invoice_by_metadata(
    client: stripe.StripeClient, po: PurchaseOrder, customer_id: str
) -> stripe.Invoice | None:
    """Find this generation's invoice among the customer's (recovery when keys cannot help)."""
    uid, generation = str(po.uid), str(po.generation)
    found: list[stripe.Invoice] = []
    page = client.v1.invoices.list({"customer": customer_id, "limit": 100})
    for invoice in page.auto_paging_iter():
        metadata = invoice.metadata.to_dict() if invoice.metadata is not None else {}
        if metadata.get("po_uid") == uid and metadata.get("generation") == generation:
            found.append(invoice)
    usable = [invoice for invoice in found if invoice.status not in VOIDED_STATUSES]
    if len(usable) > 1:
        raise InvoiceMismatch(
            f"PO {po.reference}: {len(usable)} invoices at Stripe carry generation {generation}: "
            f"{[invoice.id for invoice in usable]}; resolve by hand."
        )
    return usable[0] if usable else None


def _create_or_recover_invoice(
    client: stripe.StripeClient, po: PurchaseOrder, customer_id: str
) -> stripe.Invoice:
    def recover() -> stripe.Invoice | None:
        recovered = _find_invoice_by_metadata(client, po, customer_id)
        if recovered is not None:
            logger.info("po %s: recovered invoice %s by metadata", po.reference, recovered.id)
        return recovered

    started = po.invoice_create_started_at
    if started is not None and timezone.now() - started > IDEMPOTENCY_KEY_SAFE_AGE:
        # An earlier attempt may have created the invoice, and its key may have expired.
        recovered = recover()
        if recovered is not None:
            return recovered
    if started is None:
        PurchaseOrder.objects.filter(pk=po.pk, invoice_create_started_at__isnull=True).update(
            invoice_create_started_at=timezone.now()
        )
    params = _invoice_create_params(po, customer_id)
    try:
        return keyed_write(
            po,
            "invoice",
            lambda key: client.v1.invoices.create(params, options={"idempotency_key": key}),
            verify=recover,
        )
    except stripe.IdempotencyError:
        # Same key, other parameters (e.g. the conference's memo changed since the first try).
        recovered = recover()
        if recovered is None:
            raise
        return recovered


def _persist_invoice_created(
    po: PurchaseOrder, invoice: stripe.Invoice
) -> tuple[PurchaseOrder, bool]:
    """Store the new invoice's id; False when another run had already stored it."""
    with transaction.atomic():
        locked = lock_purchase_order(po)
        if locked.stripe_invoice_id and locked.stripe_invoice_id != invoice.id:
            raise InvoiceMismatch(
                f"PO {locked.reference} already records invoice {locked.stripe_invoice_id}, "
                f"Stripe returned {invoice.id}."
            )
        if not locked.stripe_invoice_id:
            locked.stripe_invoice_id = invoice.id
            locked.invoice_created_at = timezone.now()
            apply_invoice_snapshot_locked(
                locked,
                InvoiceSnapshot.from_invoice(invoice),
                source="create",
                extra_fields=("stripe_invoice_id", "invoice_created_at"),
            )
            log_state_change(
                logger,
                event="invoice_created",
                po_reference=locked.reference,
                invoice_id=invoice.id,
            )
            return locked, True
    return locked, False


def _persist_step(
    po: PurchaseOrder,
    invoice: stripe.Invoice,
    *,
    stamp: str,
    always: bool = False,
    first_time: Callable[[PurchaseOrder], None] | None = None,
) -> PurchaseOrder:
    """Store one step's result in its own transaction: its timestamp, then the snapshot.

    ``first_time`` runs in that transaction only if this run is the one stamping the step: two
    runs of one PO may both reach it, and what happens once (the PO's story) must not twice.
    """
    with transaction.atomic():
        locked = lock_purchase_order(po)
        extra: tuple[str, ...] = ()
        if always or getattr(locked, stamp) is None:
            setattr(locked, stamp, timezone.now())
            extra = (stamp,)
        apply_invoice_snapshot_locked(
            locked, InvoiceSnapshot.from_invoice(invoice), source=stamp, extra_fields=extra
        )
        if extra and first_time is not None:
            first_time(locked)
    return locked


def send_invoice(
    client: stripe.StripeClient, po: PurchaseOrder, invoice: stripe.Invoice
) -> PurchaseOrder:
    """Send the finalized invoice (internal; one key per PO and generation, so a second run's
    send is Stripe's replay) and mark the PO sent; the run that marks it tells the story."""

    def sent(locked: PurchaseOrder) -> None:
        record_activity(
            purchase_order=locked,
            kind=PurchaseOrderActivity.Kind.INVOICE_SENT,
            detail=money.format_display(
                money.from_minor_units(invoice.amount_due, locked.currency), locked.currency
            ),
        )
        log_state_change(
            logger, event="invoice_sent", po_reference=locked.reference, invoice_id=invoice.id
        )

    invoice = keyed_write(
        po,
        "send",
        lambda key: client.v1.invoices.send_invoice(invoice.id, options={"idempotency_key": key}),
    )
    return _persist_step(po, invoice, stamp="invoice_sent_at", first_time=sent)


def _check_lines(po: PurchaseOrder, invoice: stripe.Invoice, expected_subtotal: int) -> None:
    if invoice.subtotal != expected_subtotal:
        raise InvoiceMismatch(
            f"PO {po.reference}: invoice {invoice.id} at Stripe has subtotal {invoice.subtotal}, "
            f"the PO expects {expected_subtotal} (minor units); was the draft edited at Stripe?"
        )


def _stop_if_cancelled(client: stripe.StripeClient, po: PurchaseOrder) -> None:
    """A PO cancelled while its invoice was being created: delete the draft, then refuse."""
    if po.status != Status.CANCELLED:
        return
    if po.stripe_invoice_id and po.stripe_invoice_status == StripeInvoiceStatus.DRAFT:
        deleted = client.v1.invoices.delete(po.stripe_invoice_id)
        apply_invoice_snapshot(purchase_order=po, invoice=deleted, source="cancel")
        log_state_change(
            logger,
            event="invoice_draft_deleted",
            po_reference=po.reference,
            invoice_id=deleted.id,
            why="the PO was cancelled during invoicing",
        )
    raise PurchaseOrderNotInvoiceable(f"PO {po.reference} was cancelled during invoicing.")


def _retrieve_for_resume(client: stripe.StripeClient, po: PurchaseOrder) -> stripe.Invoice:
    try:
        return client.v1.invoices.retrieve(po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE})
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise
    # The draft was deleted at Stripe (dashboard): the organizer re-issues or cancels.
    apply_invoice_snapshot(
        purchase_order=po,
        invoice=InvoiceSnapshot.deleted(
            po.stripe_invoice_id,
            currency=po.currency,
            livemode=bool(po.conference.stripe_livemode),
        ),
        source="resume",
    )
    raise InvoiceMismatch(
        f"PO {po.reference}: draft invoice {po.stripe_invoice_id} was deleted at Stripe; "
        "re-issue or cancel the PO."
    )


def _create_or_resume(
    client: stripe.StripeClient, po: PurchaseOrder, customer_id: str
) -> tuple[PurchaseOrder, stripe.Invoice]:
    """The PO's invoice at Stripe: created now, or as a resumed (or concurrent) run left it."""
    if not po.stripe_invoice_id:
        invoice = _create_or_recover_invoice(client, po, customer_id)
        po, stored_here = _persist_invoice_created(po, invoice)
        if stored_here:
            return po, invoice
        # A concurrent run stored it first and may be steps ahead: our answer can be the
        # idempotent replay of the first one (a draft without lines). Go on from Stripe.
    # Resuming: learn where Stripe really is before writing anything.
    invoice = _retrieve_for_resume(client, po)
    return _persist_step(po, invoice, stamp="last_synced_at", always=True), invoice


def _add_lines_and_finalize(
    client: stripe.StripeClient,
    po: PurchaseOrder,
    invoice: stripe.Invoice,
    lines: list[InvoiceAddLinesParamsLine],
    expected_subtotal: int,
) -> tuple[PurchaseOrder, stripe.Invoice]:
    invoice_id = invoice.id
    if po.invoice_lines_added_at is None and not invoice.lines.data:
        invoice = keyed_write(
            po,
            "lines",
            lambda key: client.v1.invoices.add_lines(
                invoice_id, {"lines": lines}, options={"idempotency_key": key}
            ),
            verify=retrieve_if(client, invoice_id, lambda found: bool(found.lines.data)),
        )
    _check_lines(po, invoice, expected_subtotal)
    po = _persist_step(po, invoice, stamp="invoice_lines_added_at")
    log_state_change(
        logger, event="invoice_lines_added", po_reference=po.reference, invoice_id=invoice_id
    )
    _stop_if_cancelled(client, po)
    invoice = keyed_write(
        po,
        "finalize",
        lambda key: client.v1.invoices.finalize_invoice(
            invoice_id, {"auto_advance": False}, options={"idempotency_key": key}
        ),
        verify=retrieve_if(
            client, invoice_id, lambda found: found.status != StripeInvoiceStatus.DRAFT
        ),
    )
    po = _persist_step(po, invoice, stamp="invoice_finalized_at")
    log_state_change(
        logger,
        event="invoice_finalized",
        po_reference=po.reference,
        invoice_id=invoice_id,
        number=invoice.number,
    )
    return po, invoice


def create_stripe_invoice(purchase_order: PurchaseOrder) -> str:
    """Create, finalize and send the PO's invoice in its conference's Stripe account.

    Resumes an interrupted creation from the stored steps; see the module docstring.

    Returns:
        The hosted invoice URL (also stored on the PO with the invoice id).

    Raises:
        ValueError: the conference has no Stripe key (:class:`StripeKeyMissing`), the PO already
            has a complete invoice (:class:`InvoiceAlreadyAttached`), the PO is not approved,
            or an amount is not representable in its currency (before any Stripe call).
        stripe.StripeError: Stripe refused or failed; rerun to resume.
    """
    po = reload_purchase_order(purchase_order)
    _check_invoiceable(po)
    client = build_stripe_client(po.conference)
    lines, expected_subtotal = build_invoice_lines(po)
    invoice_custom_fields(po)  # refuses, before any Stripe call, what Stripe would refuse

    # The invoice copies the customer's name, address and tax IDs when it is finalized: until
    # then, no other PO of this customer may change them (stripe_customers.customer_held).
    with customer_held(po):
        customer_id = ensure_stripe_customer(client, po)
        po, invoice = _create_or_resume(client, po, customer_id)
        _stop_if_cancelled(client, po)
        if invoice.status == StripeInvoiceStatus.DRAFT:
            po, invoice = _add_lines_and_finalize(client, po, invoice, lines, expected_subtotal)
        elif po.invoice_lines_added_at is None:
            _check_lines(po, invoice, expected_subtotal)
            po = _persist_step(po, invoice, stamp="invoice_lines_added_at")
    invoice_id = invoice.id

    if invoice.status == StripeInvoiceStatus.OPEN and po.invoice_sent_at is None:
        po = send_invoice(client, po, invoice)
    elif po.invoice_sent_at is None:
        logger.warning(
            "po %s: invoice %s is %s at Stripe; not sending it",
            po.reference,
            invoice_id,
            invoice.status,
        )
    if po.invoice_sent_at is not None:
        request_waiting_reports(po)  # payments recorded while the invoice was being created
    purchase_order.refresh_from_db()
    return po.stripe_invoice_url
