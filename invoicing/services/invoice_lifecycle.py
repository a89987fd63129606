"""Ending an invoice's life: void it, replace it with a new one, or cancel the PO with it.

The rule throughout: a PO never stands without a way to pay what it owes, and never with two
invoices that can take money. An unpaid invoice is voided (a draft is deleted instead). Stripe
never voids an invoice with open or paid payments, so a part-paid one is closed the way Stripe
allows: a credit note for the unpaid remainder (``metadata[purpose]`` ``cancel`` or ``reissue``),
which leaves it ``paid``: no second collection is possible, and the money received stays in the
ledger (refunding it is a separate action). Each write runs under an idempotency key derived from
the PO, whoever asks; whatever Stripe returns is applied to the ledger before anything else
changes, so a payment that raced the write is recorded. Whether an action is allowed is asked of
:mod:`invoicing.selectors`, the same answer the admin shows; a repeated request whose outcome
already holds is a quiet no-op, because every worker task may run twice.

The replacement of a part-paid invoice asks only for what is still owed: the PO's lines plus one
negative line for everything already received (``invoice_credit``, see
:func:`~invoicing.services.purchase_orders.prepare_reissue`), rather than lines for the remainder:
the customer sees the order they placed and what they paid, and a line-for-remainder split would
have to apportion payments to lines, which nothing we know supports.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import stripe
from django.db import transaction

from invoicing.errors import InvalidTransition
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, PurchaseOrderActivity
from invoicing.selectors import (
    cancel_refusal,
    ensure_allowed,
    reissue_refusal,
    reload_purchase_order,
    void_refusal,
)
from invoicing.services.activity import record_activity
from invoicing.services.invoice_creation import create_stripe_invoice
from invoicing.services.invoice_snapshots import WITH_OFF_STRIPE, InvoiceSnapshot
from invoicing.services.keyed_writes import keyed_write, retrieve_if
from invoicing.services.ledger import (
    apply_credit_note,
    apply_invoice_snapshot,
    lock_purchase_order,
)
from invoicing.services.purchase_orders import (
    cancel_purchase_order,
    cancellation_reason,
    mark_cancelled,
    prepare_reissue,
)
from invoicing.services.stripe_client import build_stripe_client
from invoicing.stripe_invoice_status import PAYABLE_STATUSES, VOIDED_STATUSES, StripeInvoiceStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status

# metadata[purpose] of the credit notes that close a part-paid invoice (contract of issue 15).
CANCEL = "cancel"
REISSUE = "reissue"


def _void(client: stripe.StripeClient, po: PurchaseOrder, invoice_id: str) -> stripe.Invoice:
    invoice = keyed_write(
        po,
        "void",
        lambda key: client.v1.invoices.void_invoice(
            invoice_id, params={"expand": WITH_OFF_STRIPE}, options={"idempotency_key": key}
        ),
        verify=retrieve_if(
            client, invoice_id, lambda found: found.status == StripeInvoiceStatus.VOID
        ),
    )
    log_state_change(
        logger, event="invoice_voided", po_reference=po.reference, invoice_id=invoice_id
    )
    return invoice


def _credit_remainder(
    client: stripe.StripeClient, po: PurchaseOrder, invoice: stripe.Invoice, *, purpose: str
) -> stripe.Invoice:
    """Close a part-paid open invoice with a credit note for what remains; the invoice after.

    Stripe: a credit note "will first reduce the invoice's amount_remaining (and amount_due)", and
    one for the whole remainder leaves the invoice paid. The key names the amount, so a retry
    after a payment moved the remainder asks for the new one instead of replaying a stale note.
    """
    remaining = invoice.amount_remaining
    invoice_id = invoice.id

    def create(key: str) -> stripe.CreditNote:
        return client.v1.credit_notes.create(
            params={
                "invoice": invoice_id,
                "amount": remaining,
                "reason": "order_change",
                "memo": (
                    f"Purchase order {po.reference} cancelled: the unpaid rest is not owed."
                    if purpose == CANCEL
                    else f"Purchase order {po.reference}: the unpaid rest moves to a new invoice."
                ),
                "metadata": {"purchase_order": po.reference, "purpose": purpose},
            },
            options={"idempotency_key": key},
        )

    note = keyed_write(
        po,
        f"{purpose}-credit-{remaining}",
        create,
        verify=lambda: _our_credit_note(client, po, invoice_id, purpose=purpose),
    )
    # Recorded at once (the ledger equals Stripe without waiting for credit_note.created).
    apply_credit_note(purchase_order=po, credit_note=note, source=purpose)
    log_state_change(
        logger,
        event="invoice_remainder_credited",
        po_reference=po.reference,
        invoice_id=invoice_id,
        purpose=purpose,
        amount_minor=remaining,
    )
    return client.v1.invoices.retrieve(invoice_id, params={"expand": WITH_OFF_STRIPE})


def _our_credit_note(
    client: stripe.StripeClient, po: PurchaseOrder, invoice_id: str, *, purpose: str
) -> stripe.CreditNote | None:
    """The credit note of ours (this purpose, not void) on the invoice, if there is one."""
    notes = client.v1.credit_notes.list(params={"invoice": invoice_id, "limit": 100})
    ours = {"purchase_order": po.reference, "purpose": purpose}
    for note in notes.data:
        if (
            note.status == "issued"
            and note.metadata is not None
            and ours.items() <= note.metadata.to_dict().items()
        ):
            return note
    return None


def _end_invoice(
    client: stripe.StripeClient, po: PurchaseOrder, invoice: stripe.Invoice, *, purpose: str
) -> stripe.Invoice:
    """Make sure the invoice can take no more money: void it if unpaid, else credit the rest.

    Raises:
        InvalidTransition: Stripe refuses both (a payment still processing, or an uncollectible
            invoice with payments); nothing changed.
    """
    if invoice.status not in PAYABLE_STATUSES:
        return invoice
    if invoice.amount_paid == 0:
        try:
            return _void(client, po, invoice.id)
        except stripe.InvalidRequestError as exc:
            if exc.code != "invoice_not_editable":
                raise
            invoice = client.v1.invoices.retrieve(invoice.id, params={"expand": WITH_OFF_STRIPE})
            if invoice.amount_paid == 0:
                raise InvalidTransition(
                    f"PO {po.reference}: Stripe refuses to void invoice {invoice.id}: a payment "
                    "is still processing (a bank debit takes up to 4 business days). Try again "
                    "once it has settled or failed."
                ) from exc
    if invoice.status == StripeInvoiceStatus.UNCOLLECTIBLE:
        raise InvalidTransition(
            f"PO {po.reference}: invoice {invoice.id} is uncollectible and has payments: Stripe "
            "neither voids nor credits it. The customer can still pay the rest on it."
        )
    return _credit_remainder(client, po, invoice, purpose=purpose)


def cancel_invoiced_purchase_order(
    purchase_order: PurchaseOrder,
    *,
    cancelled_by: User | None = None,
    reason: str,
) -> None:
    """Cancel a PO and make sure its Stripe invoice can no longer take money.

    Flow: a draft invoice is deleted; an unpaid open or uncollectible one is voided (key
    ``po-<uid>-g<n>-void``); a part-paid one gets a credit note for the unpaid rest (purpose
    ``cancel``) and ends ``paid``. The resulting snapshot is applied (recording any payment that
    arrived meanwhile) and the PO is marked cancelled. An invoice the customer paid in full is
    refused while the PO is paid (refund it first), as is a cancellation without a reason (before
    anything is asked of Stripe). If Stripe fails, nothing changes on our side and the error
    surfaces.
    """
    reason = cancellation_reason(purchase_order, reason)
    po = reload_purchase_order(purchase_order)
    if po.status == Status.CANCELLED:
        return
    refusal = cancel_refusal(po)
    # A PO shown paid may be paid by our own cancel credit note (a run that stopped before
    # marking it cancelled): Stripe says which.
    if refusal and not (po.stripe_invoice_id and po.status in {Status.PAID, Status.OVERPAID}):
        ensure_allowed(cancel_refusal, po, verb="cancelled")
    if not po.stripe_invoice_id:
        cancel_purchase_order(po, cancelled_by=cancelled_by, reason=reason)
        purchase_order.refresh_from_db()
        return
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE})
    credited = (
        invoice.status == StripeInvoiceStatus.PAID
        and _our_credit_note(client, po, invoice.id, purpose=CANCEL) is not None
    )
    if refusal and not credited:
        ensure_allowed(cancel_refusal, po, verb="cancelled")
    paid_by_customer = invoice.status == StripeInvoiceStatus.PAID and not credited
    if invoice.status == StripeInvoiceStatus.DRAFT:
        invoice = client.v1.invoices.delete(invoice.id)
    else:
        try:
            payable = invoice.status in PAYABLE_STATUSES
            invoice = _end_invoice(client, po, invoice, purpose=CANCEL)
            credited = credited or (payable and invoice.status == StripeInvoiceStatus.PAID)
        except stripe.InvalidRequestError:
            # The remainder moved under us (paid in full meanwhile): record what Stripe shows.
            apply_invoice_snapshot(
                purchase_order=po,
                invoice=client.v1.invoices.retrieve(invoice.id, params={"expand": WITH_OFF_STRIPE}),
                source="cancel",
            )
            raise
    # Committed on its own: a payment that raced the cancellation stays in the ledger either way.
    apply_invoice_snapshot(
        purchase_order=po, invoice=InvoiceSnapshot.from_invoice(invoice), source="cancel"
    )
    with transaction.atomic():
        locked = lock_purchase_order(po)
        if locked.status != Status.CANCELLED:  # a concurrent cancellation may have finished
            if paid_by_customer:
                # Paid in full at Stripe: cancelled only once the money went back.
                ensure_allowed(cancel_refusal, locked, verb="cancelled")
            mark_cancelled(
                locked, cancelled_by=cancelled_by, reason=reason, remainder_credited=credited
            )
    purchase_order.refresh_from_db()


def void_stripe_invoice(purchase_order: PurchaseOrder, *, voided_by: User | None = None) -> None:
    """Void the PO's open or uncollectible invoice, keeping the PO: it becomes ``invoice_voided``.

    The organizer then re-issues (:func:`reissue_stripe_invoice`) or cancels it. The void carries
    the same idempotency key as the one :func:`cancel_invoiced_purchase_order` sends, and any
    payment that raced it is recorded from the voided invoice's snapshot. An invoice already void
    (here or at Stripe) is left as it is.

    Raises:
        InvalidTransition: :func:`~invoicing.selectors.void_refusal` refuses, or Stripe shows the
            invoice paid or still a draft.
        stripe.StripeError: Stripe failed; nothing changed on our side.
    """
    po = reload_purchase_order(purchase_order)
    if po.status != Status.CANCELLED and po.stripe_invoice_status in VOIDED_STATUSES:
        return  # voided already: a repeated request
    ensure_allowed(void_refusal, po, verb="voided")
    client = build_stripe_client(po.conference)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE})
    if invoice.status in PAYABLE_STATUSES and invoice.amount_paid == 0:
        try:
            invoice = _void(client, po, invoice.id)
        except stripe.InvalidRequestError as exc:
            if exc.code != "invoice_not_editable":
                raise
            invoice = client.v1.invoices.retrieve(  # a payment is under way
                invoice.id, params={"expand": WITH_OFF_STRIPE}
            )
    apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="void")
    if invoice.status in PAYABLE_STATUSES:
        # Stripe: "When an invoice has open or paid payments, you can't void or edit the invoice".
        raise InvalidTransition(
            f"PO {po.reference}: not voided: invoice {invoice.id} has payments (paid or still "
            "processing), and Stripe never voids such an invoice. Re-issue it or cancel the PO "
            "instead: either closes the unpaid rest with a credit note."
        )
    if invoice.status == StripeInvoiceStatus.PAID:
        raise InvalidTransition(
            f"PO {po.reference}: invoice {invoice.id} is paid; there is nothing to void."
        )
    if invoice.status == StripeInvoiceStatus.DRAFT:
        raise InvalidTransition(
            f"PO {po.reference}: invoice {invoice.id} is still being created; void it once sent."
        )
    record_activity(purchase_order=po, kind=PurchaseOrderActivity.Kind.VOIDED, actor=voided_by)
    log_state_change(
        logger,
        event="invoice_void_done",
        po_reference=po.reference,
        invoice_id=invoice.id,
        requested_by=getattr(voided_by, "pk", None),
    )
    purchase_order.refresh_from_db()


def _reissue_under_way(po: PurchaseOrder) -> bool:
    """A re-issue stopped after starting the new generation (Stripe failed, the worker died)."""
    return po.status == Status.APPROVED and po.generation > 1 and not po.has_complete_invoice


def reissue_stripe_invoice(
    purchase_order: PurchaseOrder, *, reissued_by: User | None = None
) -> str:
    """Replace the PO's invoice with a new one for what is still owed.

    The invoice being replaced is first made unable to take money: an uncollectible one is
    synced and voided; a part-paid open one gets a credit note for its unpaid rest (purpose
    ``reissue``: recorded, but it does not lower what the PO owes, because the new invoice asks
    for that rest). Then the generation is bumped (new idempotency keys), the money received so
    far becomes a credit line on the new invoice
    (:func:`~invoicing.services.purchase_orders.prepare_reissue`), and the new invoice is created
    and sent. A re-issue that stopped half-way is finished instead of refused.

    Returns:
        The new hosted invoice URL.
    """
    po = reload_purchase_order(purchase_order)
    if not _reissue_under_way(po):
        ensure_allowed(reissue_refusal, po, verb="re-issued")
        if po.stripe_invoice_status not in VOIDED_STATUSES:
            client = build_stripe_client(po.conference)
            invoice = client.v1.invoices.retrieve(
                po.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE}
            )
            apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reissue")
            if invoice.status in PAYABLE_STATUSES:
                invoice = _end_invoice(client, po, invoice, purpose=REISSUE)
                apply_invoice_snapshot(purchase_order=po, invoice=invoice, source="reissue")
            po = reload_purchase_order(po)
        prepare_reissue(po, reissued_by=reissued_by)
    url = create_stripe_invoice(po)
    purchase_order.refresh_from_db()
    return url
