"""Reporting a wire, check or other payment to Stripe, so its invoice asks only for the balance.

Two Stripe writes, each under an idempotency key derived from the payment row's ``uid``
(``pay-<uid>-report``, ``pay-<uid>-attach``; ``-e<n>`` once a 5xx poisoned a key, see below), each
stored on the row as soon as Stripe answers:
``POST /v1/payment_records/report_payment`` (outcome ``guaranteed``: the money is in the bank),
then ``POST /v1/invoices/:id/attach_payment`` with the record. The row was saved, and counted
against the invoice, before anything was asked of Stripe; so a retried task, a second request or
a crash after Stripe answered resumes from what is stored and never reports twice. An attach that
Stripe refuses because the invoice no longer takes payments (paid by card meanwhile, voided)
leaves the payment in the ledger, no longer counted against that invoice, with the reason shown.

Stripe stores a 5xx under its key and replays it for a day, and a 5xx does not say whether the
write happened. So after one, Stripe is asked first (our record among the account's payment
records, by the payment's uid in its metadata; the record among the invoice's payments); only if
it is not there does the payment's ``key_epoch`` move, so the next run writes under a fresh key
and the payment is still reported once. The same search replaces the key once it may have
expired (a row older than Stripe keeps keys, with no record stored).
"""

from __future__ import annotations

import datetime
import logging
from functools import partial

import stripe
from django.db import transaction
from django.utils import timezone

from invoicing import background, money
from invoicing.background import Job
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.services import ledger_off_stripe
from invoicing.services.invoice_snapshots import WITH_OFF_STRIPE, InvoiceSnapshot
from invoicing.services.keyed_writes import (
    IDEMPOTENCY_KEY_SAFE_AGE,
    find_by_metadata,
    poisons_key,
)
from invoicing.services.ledger import apply_invoice_snapshot_locked, lock_purchase_order
from invoicing.services.stripe_client import build_stripe_client

logger = logging.getLogger(__name__)

# How far Stripe's clock may be behind ours when we look for a record by its creation time.
_CLOCK_SKEW = datetime.timedelta(hours=1)


def _midnight_utc(day: datetime.date) -> int:
    """The payment date as Stripe timestamps it: deterministic, so a replayed key matches."""
    return int(datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC).timestamp())


def _report(client: stripe.StripeClient, payment: PurchaseOrderPayment) -> str:
    po = payment.purchase_order
    when = _midnight_utc(payment.payment_date)
    params: stripe.params.PaymentRecordReportPaymentParams = {
        "amount_requested": {
            "currency": po.currency,
            "value": money.to_minor_units(payment.amount, po.currency),
        },
        "initiated_at": when,
        "outcome": "guaranteed",
        "guaranteed": {"guaranteed_at": when},
        "payment_method_details": {
            "type": "custom",
            "custom": {"display_name": payment.get_method_display()},
        },
        "description": f"{payment.get_method_display()} for PO {po.reference}",
        "metadata": {
            "conference": po.conference.slug,
            "po_uid": str(po.uid),
            "payment_uid": str(payment.uid),
        },
    }
    if po.stripe_customer is not None and po.stripe_customer.stripe_customer_id:
        params["customer_details"] = {"customer": po.stripe_customer.stripe_customer_id}
    if payment.reference:
        params["processor_details"] = {
            "type": "custom",
            "custom": {"payment_reference": payment.reference[:255]},
        }
    record_id = None
    if timezone.now() - payment.recorded_at > IDEMPOTENCY_KEY_SAFE_AGE:
        record_id = _find_reported(client, payment)  # the key may be gone: do not rely on it
    if record_id is None:
        try:
            record_id = client.v1.payment_records.report_payment(
                params=params, options={"idempotency_key": payment.idempotency_key("report")}
            ).id
        except stripe.StripeError as exc:
            if not poisons_key(exc):
                raise
            record_id = _find_reported(client, payment)
            if record_id is None:
                _move_key(payment, "report", exc)
                raise
    ledger_off_stripe.mark_reported(payment, payment_record_id=record_id)
    return record_id


def _find_reported(client: stripe.StripeClient, payment: PurchaseOrderPayment) -> str | None:
    """The record an earlier run reported for this payment, found by the uid in its metadata."""
    since = int((payment.recorded_at - _CLOCK_SKEW).timestamp())
    records = client.v1.payment_records.list(params={"created_after": since, "limit": 100})
    record = find_by_metadata(records.auto_paging_iter(), "payment_uid", str(payment.uid))
    return record.id if record is not None else None


def _move_key(payment: PurchaseOrderPayment, step: str, exc: stripe.StripeError) -> None:
    moved = ledger_off_stripe.move_report_key(payment)
    logger.warning(
        "po %s: %s of payment %s failed at Stripe (%s) and did not happen; %s",
        payment.purchase_order.reference,
        step,
        payment.uid,
        exc.http_status,
        "the next attempt uses a fresh key" if moved else "another run already moved the key",
    )


def _is_attached(client: stripe.StripeClient, invoice_id: str, record_id: str) -> bool:
    found = client.v1.invoice_payments.list(
        params={
            "invoice": invoice_id,
            "payment": {"type": "payment_record", "payment_record": record_id},
            "limit": 1,
        }
    )
    return bool(found.data)


def _attach(
    client: stripe.StripeClient, payment: PurchaseOrderPayment, record_id: str
) -> tuple[stripe.Invoice, bool]:
    """Attach the record; the invoice as Stripe now has it, and whether the record is on it."""
    invoice_id = payment.applied_invoice_id
    try:
        invoice = client.v1.invoices.attach_payment(
            invoice_id,
            params={"payment_record": record_id, "expand": WITH_OFF_STRIPE},
            options={"idempotency_key": payment.idempotency_key("attach")},
        )
        return invoice, True
    except stripe.APIError as exc:
        if not poisons_key(exc):
            raise
        if not _is_attached(client, invoice_id, record_id):
            _move_key(payment, "attach", exc)
            raise
        return client.v1.invoices.retrieve(invoice_id, params={"expand": WITH_OFF_STRIPE}), True
    except stripe.InvalidRequestError:
        # Attached by an earlier run whose key Stripe no longer remembers, or the invoice closed.
        invoice = client.v1.invoices.retrieve(invoice_id, params={"expand": WITH_OFF_STRIPE})
        if _is_attached(client, invoice_id, record_id):
            return invoice, True
        if invoice.status in ledger_off_stripe.ATTACHABLE_INVOICE_STATUSES:
            raise
        return invoice, False


def request_waiting_reports(purchase_order: PurchaseOrder) -> int:
    """Queue the reports of payments recorded while the PO's invoice was being created."""
    waiting = list(
        PurchaseOrderPayment.objects.filter(
            purchase_order=purchase_order,
            report_to_stripe=True,
            applied_invoice_id="",
            stripe_attached_at=None,
            stripe_report_error="",
        ).values_list("pk", flat=True)
    )
    for pk in waiting:  # after commit: the worker must see what this transaction wrote
        transaction.on_commit(
            partial(background.request, Job.REPORT_OFF_STRIPE_PAYMENT, pk), robust=True
        )
    return len(waiting)


def report_off_stripe_payment(payment: PurchaseOrderPayment) -> bool:
    """Report the payment to Stripe and attach it to its invoice; True when it is attached.

    Idempotent: a payment already attached, or not counted against an invoice, is left alone.

    Raises:
        stripe.StripeError: Stripe failed (the task retries; what was stored stays).
        ValueError: the conference has no Stripe key.
    """
    payment = PurchaseOrderPayment.objects.select_related(
        "purchase_order__conference", "purchase_order__stripe_customer"
    ).get(pk=payment.pk)
    if not ledger_off_stripe.awaits_report(payment):
        return payment.stripe_attached_at is not None
    po = payment.purchase_order
    if not payment.applied_invoice_id:
        with transaction.atomic():
            locked = lock_purchase_order(po)
            if not ledger_off_stripe.choose_target(locked, payment):
                if (
                    locked.has_complete_invoice
                ):  # sent, and already paid or void: nothing to attach to
                    ledger_off_stripe.mark_not_attachable(
                        locked,
                        payment,
                        f"Not reported to Stripe: invoice {locked.stripe_invoice_id} is "
                        f"{locked.stripe_invoice_status} and takes no more payments.",
                    )
                return False  # else: the invoice's creation queues this report once it is sent
    client = build_stripe_client(po.conference)
    record_id = payment.stripe_payment_record_id or _report(client, payment)
    invoice, attached = _attach(client, payment, record_id)
    with transaction.atomic():
        locked = lock_purchase_order(po)
        if attached:
            ledger_off_stripe.mark_attached(payment)
        else:
            ledger_off_stripe.settle_unattached(
                locked, payment, InvoiceSnapshot.from_invoice(invoice), record_id=record_id
            )
        apply_invoice_snapshot_locked(
            locked, InvoiceSnapshot.from_invoice(invoice), source="attach_payment"
        )
    log_state_change(
        logger,
        event="off_stripe_payment_attached" if attached else "off_stripe_payment_not_attached",
        po_reference=po.reference,
        invoice_id=invoice.id,
        level=logging.INFO if attached else logging.WARNING,
        payment_record=record_id,
        amount=money.format_amount(payment.amount, po.currency),
    )
    return attached
