"""Money going back and amounts owed changing, as Stripe reports them: refunds, disputes, credits.

Finding the PO is the isolation boundary, as for invoices (:mod:`.invoice_sync`):

- A refund or a dispute names a PaymentIntent (and its charge). The invoice it paid is asked of
  Stripe with this conference's key (``GET /v1/invoice_payments?payment[type]=payment_intent&
  payment[payment_intent]=...``: one call), and the PO is the one that invoice belongs to
  (:func:`find_purchase_order_for_invoice`, which refuses another conference's invoice). Our
  metadata (``metadata[purchase_order]`` on refunds we make) is not trusted to find the PO, only
  checked by the ledger against the PO found: money is recorded on a PO only when it really
  moved through one of that PO's invoices, and the entry carries that invoice's id.
- A credit note names its invoice; the PO is found from it, or (an earlier generation's invoice
  without payments) from ``metadata[purchase_order]`` within this conference.

Nothing found: the object is not ours (another app on the same account) and the event is
``ignored``. What an object changes is the ledger's business (:mod:`.ledger_adjustments`); a
refund also tells the organizer's request that made it (:mod:`.stripe_write_requests`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from invoicing.errors import EventRejected
from invoicing.models import Conference, PurchaseOrder
from invoicing.services.event_types import (
    CHARGE_REFUNDED_EVENTS,
    CREDIT_NOTE_EVENTS,
    DISPUTE_EVENTS,
    MONEY_EVENTS,
    REFUND_EVENTS,
)
from invoicing.services.invoice_sync import (
    EventOutcome,
    checked_event_object,
    find_purchase_order_for_invoice,
)
from invoicing.services.ledger import apply_credit_note, apply_dispute
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.stripe_write_requests import apply_refund_view

logger = logging.getLogger(__name__)


def _id_of(value: object) -> str:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def invoice_paid_by(*, conference: Conference, payment_intent: str) -> str:
    """The invoice a PaymentIntent paid, asked of the conference's Stripe account ("" if none)."""
    client = build_stripe_client(conference)
    page = client.v1.invoice_payments.list(
        {"payment": {"type": "payment_intent", "payment_intent": payment_intent}, "limit": 1}
    )
    for payment in page.data:
        return _id_of(payment.invoice)
    return ""


def payment_intent_of(*, conference: Conference, obj: Mapping[str, object]) -> str:
    """The PaymentIntent a refund, dispute or charge belongs to (the charge's, if only that)."""
    intent = _id_of(obj.get("payment_intent"))
    if intent:
        return intent
    charge = _id_of(obj.get("charge")) if obj.get("object") != "charge" else _id_of(obj)
    if not charge:
        return ""
    return _id_of(build_stripe_client(conference).v1.charges.retrieve(charge).payment_intent)


def purchase_order_of_payment(
    *, conference: Conference, obj: Mapping[str, object]
) -> tuple[PurchaseOrder | None, str]:
    """The PO (and invoice id) whose invoice the payment behind ``obj`` paid; (None, "") if none.

    Raises:
        EventRejected: the invoice belongs to another conference's PO.
        stripe.StripeError: asking Stripe failed (retry later).
    """
    intent = payment_intent_of(conference=conference, obj=obj)
    invoice_id = invoice_paid_by(conference=conference, payment_intent=intent) if intent else ""
    if not invoice_id:
        return None, ""
    return find_purchase_order_for_invoice(conference=conference, invoice_id=invoice_id), invoice_id


def purchase_order_of_credit_note(
    *, conference: Conference, credit_note: Mapping[str, object]
) -> PurchaseOrder | None:
    """The PO whose invoice a credit note is on (our metadata names it for older invoices).

    Raises:
        EventRejected: the invoice belongs to another conference's PO.
    """
    invoice_id = _id_of(credit_note.get("invoice"))
    if not invoice_id:
        raise EventRejected(f"Credit note {_id_of(credit_note)}: it names no invoice.")
    po = find_purchase_order_for_invoice(conference=conference, invoice_id=invoice_id)
    if po is not None:
        return po
    metadata = credit_note.get("metadata")
    reference = metadata.get("purchase_order") if isinstance(metadata, Mapping) else None
    if not isinstance(reference, str) or not reference:
        return None
    return (
        PurchaseOrder.objects.select_related("conference")
        .filter(conference=conference, reference=reference)
        .first()
    )


def _ignored(conference: Conference, event_id: str, what: str) -> EventOutcome:
    logger.info(
        "conference %s: event %s for %s, no purchase order of ours; ignored",
        conference.slug,
        event_id,
        what,
    )
    return EventOutcome.IGNORED


def handle_money_event(*, conference: Conference, event: Mapping[str, object]) -> EventOutcome:
    """Apply one refund, dispute or credit note event that arrived at ``conference``'s endpoint.

    ``charge.refunded`` carries the charge, whose refunds are listed (one call) and each applied:
    it catches a refund whose own ``refund.*`` events were lost.

    Raises:
        EventRejected: wrong livemode or currency, another conference's or PO's object, malformed.
        StripeKeyMissing: the conference has no key.
        stripe.StripeError: asking Stripe failed (retry later).
    """
    event_type = event.get("type")
    if not isinstance(event_type, str) or event_type not in MONEY_EVENTS:
        return EventOutcome.IGNORED
    obj, event_id = checked_event_object(conference=conference, event=event)
    source = event_type
    if event_type in CREDIT_NOTE_EVENTS:
        po = purchase_order_of_credit_note(conference=conference, credit_note=obj)
        if po is None:
            return _ignored(conference, event_id, f"credit note {_id_of(obj)}")
        apply_credit_note(purchase_order=po, credit_note=obj, source=source, event_id=event_id)
        return EventOutcome.HANDLED

    po, invoice_id = purchase_order_of_payment(conference=conference, obj=obj)
    if po is None:
        return _ignored(conference, event_id, f"{obj.get('object')} {_id_of(obj)}")
    if event_type in REFUND_EVENTS:
        apply_refund_view(
            purchase_order=po,
            refund=obj,
            source=source,
            event_id=event_id,
            stripe_invoice_id=invoice_id,
        )
    elif event_type in DISPUTE_EVENTS:
        apply_dispute(
            purchase_order=po,
            dispute=obj,
            source=source,
            event_id=event_id,
            stripe_invoice_id=invoice_id,
        )
    else:
        assert event_type in CHARGE_REFUNDED_EVENTS
        refunds = build_stripe_client(conference).v1.refunds.list(
            {"charge": _id_of(obj), "limit": 100}
        )
        for refund in refunds.auto_paging_iter():
            apply_refund_view(
                purchase_order=po,
                refund=refund,
                source=source,
                event_id=event_id,
                stripe_invoice_id=invoice_id,
            )
    return EventOutcome.HANDLED
