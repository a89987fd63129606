"""Refunding a PO's Stripe payments, as an organizer asked (a :class:`StripeWriteRequest`).

Three steps, each resumable, so the task may run twice or crash anywhere without refunding twice:

1. **Plan** (once, stored on the row before any refund is made): which charges give back how much.
   The PO's invoice payments are listed at Stripe, newest first, and each charge gives at most what
   it has left to refund (a charge whose dispute is open or lost is skipped: Stripe refuses it;
   one whose dispute was won is refunded like any other). If Stripe can give
   back less than was asked, the request fails and nothing is refunded.
2. **Refund** each planned charge, under a key derived from the row (``refund-<uid>-<charge>``)
   with ``metadata[refund_request]``; before sending, the charge's refunds are listed, so a refund
   made by an earlier run is found even after Stripe forgot the key. Each refund id is stored as
   soon as Stripe returns it.
3. **Ledger**: a refund Stripe reports succeeded is applied to the PO's ledger; an ACH refund stays
   pending until the bank answers, and the ``refund.updated`` webhook (or the reconciliation)
   records it then. The request follows its refunds the same way (pending at the bank, done, or
   failed with Stripe's reason).
"""

from __future__ import annotations

from typing import Any

import stripe
from django.db import transaction

from invoicing import money
from invoicing.access import may_refund
from invoicing.models import PurchaseOrder, PurchaseOrderPayment, StripeWriteRequest
from invoicing.services.keyed_writes import find_by_metadata, poisons_key
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.stripe_write_requests import apply_refund_view, lock_request, refuse

State = StripeWriteRequest.State


def _invoice_ids(po: PurchaseOrder) -> list[str]:
    """Every Stripe invoice of the PO that took money: the current one and earlier generations."""
    ids = list(
        PurchaseOrderPayment.objects.filter(
            purchase_order=po,
            method=PurchaseOrderPayment.Method.STRIPE,
            kind=PurchaseOrderPayment.Kind.PAYMENT,
        )
        .order_by()
        .values_list("stripe_invoice_id", flat=True)
        .distinct()
    )
    if po.stripe_invoice_id and po.stripe_invoice_id not in ids:
        ids.append(po.stripe_invoice_id)
    return ids


def _refundable_charges(client: stripe.StripeClient, po: PurchaseOrder) -> list[dict[str, Any]]:
    """The PO's paid charges with what each has left to refund, newest first."""
    charges: list[dict[str, Any]] = []
    for invoice_id in _invoice_ids(po):
        payments = client.v1.invoice_payments.list(
            {"invoice": invoice_id, "status": "paid", "limit": 100}
        )
        for payment in payments.auto_paging_iter():
            if payment.payment.type != "payment_intent" or not payment.payment.payment_intent:
                continue  # paid outside Stripe (a payment record): nothing to refund here
            intent_id = payment.payment.payment_intent
            intent = client.v1.payment_intents.retrieve(
                intent_id if isinstance(intent_id, str) else intent_id.id,
                {"expand": ["latest_charge"]},
            )
            charge = intent.latest_charge
            if not isinstance(charge, stripe.Charge) or charge.status != "succeeded":
                continue
            left = charge.amount - charge.amount_refunded
            if left > 0 and not (charge.disputed and _held_by_a_dispute(client, charge.id)):
                charges.append(
                    {
                        "charge": charge.id,
                        "payment_intent": intent.id,
                        "invoice": invoice_id,
                        "left": left,
                        "created": charge.created,
                    }
                )
    charges.sort(key=lambda item: (item["created"], item["charge"]), reverse=True)
    return charges


def _held_by_a_dispute(client: stripe.StripeClient, charge_id: str) -> bool:
    """Whether a dispute keeps Stripe from refunding the charge.

    ``Charge.disputed`` stays true once a dispute is won, when the charge can be refunded again;
    while a chargeback is open or lost Stripe refuses with ``charge_disputed``, unless the dispute
    says ``is_charge_refundable`` (an inquiry: "it's still possible to refund the disputed
    payment", Stripe's Dispute object).
    """
    disputes = client.v1.disputes.list({"charge": charge_id, "limit": 100})
    return any(
        dispute.status != "won" and not dispute.is_charge_refundable
        for dispute in disputes.auto_paging_iter()
    )


def _plan(client: stripe.StripeClient, row: StripeWriteRequest) -> list[dict[str, Any]]:
    """The stored plan, or a new one stored now (before any refund is sent)."""
    if row.plan:
        return list(row.plan)
    po = row.purchase_order
    wanted = money.to_minor_units(row.amount, po.currency)
    plan: list[dict[str, Any]] = []
    available = 0
    for charge in _refundable_charges(client, po):
        available += charge["left"]
        if wanted > 0:
            take = min(wanted, charge["left"])
            wanted -= take
            plan.append(
                {
                    "charge": charge["charge"],
                    "payment_intent": charge["payment_intent"],
                    "invoice": charge["invoice"],
                    "amount": take,
                    "refund": "",
                }
            )
    if wanted > 0:
        most = money.format_amount(money.from_minor_units(available, po.currency), po.currency)
        refuse(
            row,
            f"Stripe can give back at most {most} of this PO's card and bank payments; "
            f"nothing was refunded.",
        )
    with transaction.atomic():
        locked = lock_request(row)
        if not locked.plan:  # a concurrent run of the same request may have stored its plan
            locked.plan = plan
            locked.save(update_fields=["plan", "updated_at"])
    row.refresh_from_db()
    return list(row.plan)


def _store_refund_id(row: StripeWriteRequest, charge_id: str, refund_id: str) -> None:
    with transaction.atomic():
        locked = lock_request(row)
        plan = list(locked.plan)
        for item in plan:
            if item["charge"] == charge_id:
                item["refund"] = refund_id
        locked.plan = plan
        locked.save(update_fields=["plan", "updated_at"])
    row.refresh_from_db()


def _earlier_refund(
    client: stripe.StripeClient, row: StripeWriteRequest, charge_id: str
) -> stripe.Refund | None:
    """A refund this request already made on the charge (a run that crashed before storing it)."""
    refunds = client.v1.refunds.list({"charge": charge_id, "limit": 100})
    return find_by_metadata(refunds.auto_paging_iter(), "refund_request", str(row.pk))


def _send_refund(
    client: stripe.StripeClient, row: StripeWriteRequest, item: dict[str, Any]
) -> stripe.Refund:
    """The refund of one planned charge: found if an earlier run made it, else created."""
    earlier = _earlier_refund(client, row, item["charge"])
    if earlier is not None:
        return earlier
    try:
        return client.v1.refunds.create(
            {
                "charge": item["charge"],
                "amount": int(item["amount"]),
                "reason": "requested_by_customer",
                "metadata": row.stripe_metadata(reason=row.reason[:500]),
            },
            options={"idempotency_key": row.idempotency_key(item["charge"])},
        )
    except stripe.StripeError as error:
        if poisons_key(error):
            # Stripe replays a 5xx for a day under this key; the listing above finds the refund
            # if it happened anyway, so the next run may safely use a fresh key.
            StripeWriteRequest.objects.filter(pk=row.pk, key_epoch=row.key_epoch).update(
                key_epoch=row.key_epoch + 1
            )
        raise


def process_refund_request(*, write_request: StripeWriteRequest) -> None:
    """Carry out a queued refund request; a repeated run finds its work done.

    Raises:
        InvalidTransition: the request is refused (the person's role, nothing left to refund at
            Stripe); it is marked failed with the reason.
        stripe.StripeError: Stripe failed; the row keeps what was done, the next run resumes.
    """
    row = StripeWriteRequest.objects.select_related(
        "purchase_order__conference", "requested_by"
    ).get(pk=write_request.pk)
    if row.state != State.QUEUED:
        return
    po = row.purchase_order
    if not row.plan and (
        row.requested_by is None or not may_refund(row.requested_by, po.conference_id)
    ):
        # Asked again when it runs (a role may have been revoked meanwhile), but only before
        # anything is planned: once a refund may exist at Stripe, the request is finished.
        refuse(row, f"not refunded: only a finance admin of {po.conference} refunds payments.")
    client = build_stripe_client(po.conference)
    refunds: list[stripe.Refund] = []
    for item in _plan(client, row):
        if item["refund"]:
            refund = client.v1.refunds.retrieve(item["refund"])
        else:
            refund = _send_refund(client, row, item)
            _store_refund_id(row, item["charge"], refund.id)
        refunds.append(refund)
    invoice_of = {item["refund"]: item["invoice"] for item in row.plan}
    for refund in refunds:
        # Succeeded: the ledger's negative entry now; pending: nothing until the bank answers.
        # Either way the request's state follows what Stripe says of each of its refunds.
        apply_refund_view(
            purchase_order=po,
            refund=refund,
            source="refund_request",
            stripe_invoice_id=invoice_of.get(refund.id, ""),
        )
    write_request.refresh_from_db()
