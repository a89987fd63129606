"""A full reconciliation (``sync_stripe_invoices --full``) adds the entries an earlier version of
this code never made: the money Stripe moved to the customer's credit balance from an overpaid
invoice and from a credit note on a paid invoice, recorded before the ledger had those kinds.

The earlier version is simulated by deleting those entries after the real worker made them (and
putting back the status it derived: *overpaid*): the regular run restores what it lists (a credit
note) but not an invoice whose status and amount paid are level with the PO's mirror; the full run
reads every invoice and restores the rest, once.
"""

from __future__ import annotations

import datetime
import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment
from invoicing.services import purchase_orders
from invoicing.services.reconciliation import reconcile_conference
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import wait_for, wait_for_events_settled, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.consistency import compare_with_stripe

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
Kind = PurchaseOrderPayment.Kind


def invoiced(
    make_purchase_order: MakePurchaseOrder, conference: Conference, **fields: str
) -> PurchaseOrder:
    """A 6,350.00 USD PO whose invoice the worker created and sent."""
    po = make_purchase_order(conference=conference, **fields)

    def sent() -> bool:
        po.refresh_from_db()
        return po.invoice_sent_at is not None

    wait_for(sent, message=f"PO {po.reference} was never invoiced")
    return po


def moved(po: PurchaseOrder) -> list[tuple[str, Decimal]]:
    rows = po.payments.filter(kind=Kind.TO_CREDIT_BALANCE).order_by("stripe_invoice_id", "pk")
    return [(row.stripe_object_id or row.stripe_invoice_id, row.amount) for row in rows]


def test_a_full_run_adds_the_credit_balance_moves_an_earlier_version_never_recorded(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    webhook_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    # The "Dashboard" is a raw client outside our limiter (see test_money_events).
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)
    dashboard = stripe_emulator.client(stripe_secret_key)

    # Paid by card, then 350.00 credited to the company's balance in the Dashboard.
    credited = invoiced(make_purchase_order, webhook_conference)
    stripe_emulator.pay_invoice(credited.stripe_invoice_id, payment_method_type="card")
    wait_for_status(credited, Status.PAID)
    note = dashboard.v1.credit_notes.create(
        params={"invoice": credited.stripe_invoice_id, "amount": 35000, "credit_amount": 35000}
    )
    # Paid 650.00 too much by wire, on purpose: Stripe credits the excess to the balance.
    overpaid = invoiced(
        make_purchase_order,
        webhook_conference,
        organization_name="Globex GmbH",  # not the first company: its credit stays its own
        contact_email="ap@globex.example",
    )
    purchase_orders.record_payment(
        overpaid,
        amount=Decimal("7000.00"),
        method=PurchaseOrderPayment.Method.WIRE,
        reference="WIRE-2026-311",
        payment_date=datetime.date(2026, 12, 1),
        overpayment_reason="Paid two invoices' worth by mistake",
    )
    wait_for(
        lambda: len(moved(credited)) == 1 and len(moved(overpaid)) == 1,
        message="the moves to the credit balance never reached the POs",
    )
    wait_for_events_settled(webhook_conference)
    expected = {
        credited.pk: [(note.id, Decimal("-350.00"))],
        overpaid.pk: [(overpaid.stripe_invoice_id, Decimal("-650.00"))],
    }
    assert {po.pk: moved(po) for po in (credited, overpaid)} == expected

    # What an earlier version left: no such entries, and both POs overpaid.
    PurchaseOrderPayment.objects.filter(kind=Kind.TO_CREDIT_BALANCE).delete()
    PurchaseOrder.objects.filter(pk__in=[credited.pk, overpaid.pk]).update(status=Status.OVERPAID)

    # The regular run lists the credit note and restores its entry; the overpaid invoice is level
    # with the PO's mirror (paid, same amount), so it is skipped without a lock.
    summary = reconcile_conference(conference=webhook_conference)
    assert (summary.errors, summary.full) == (0, False), summary.error_samples
    assert (moved(credited), moved(overpaid)) == (expected[credited.pk], [])
    credited.refresh_from_db()
    overpaid.refresh_from_db()
    assert (credited.status, overpaid.status) == (Status.PAID, Status.OVERPAID)

    out = io.StringIO()
    call_command(
        "sync_stripe_invoices", "--conference", webhook_conference.slug, "--full", stdout=out
    )
    assert "full run" in out.getvalue()
    assert "0 error(s)" in out.getvalue(), out.getvalue()
    assert {po.pk: moved(po) for po in (credited, overpaid)} == expected
    assert "reconcile" in overpaid.payments.get(kind=Kind.TO_CREDIT_BALANCE).note
    overpaid.refresh_from_db()
    assert overpaid.status == Status.PAID
    assert overpaid.amount_received == overpaid.total == Decimal("6350.00")
    compare_with_stripe(emulator=stripe_emulator, conference=webhook_conference).assert_consistent()

    # Every entry is keyed: a second full run finds nothing to add.
    entries = PurchaseOrderPayment.objects.count()
    again = reconcile_conference(conference=webhook_conference, full=True)
    assert (again.errors, again.full) == (0, True), again.error_samples
    assert PurchaseOrderPayment.objects.count() == entries
