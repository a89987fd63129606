"""The locks the ledger and the invoice creation rest on, each proven without timing luck.

Each test holds a lock from a connection of its own (``contention.hold``), sees the path under
test wait for exactly that lock at the locking read (``pg_stat_activity``, ``pg_blocking_pids``),
then releases it and checks what the path did. Removing the guard fails the test on every run:
the path then finishes without waiting, or waits later, at a write, after it has read stale rows
(``tests/support/locks.py``; the mutants in ``tests/mutants/catalog.py`` remove each guard).

The holder takes the PO's row lock itself (``select_for_update``), or the customer's advisory lock
(a creation run's, :func:`tests.core.test_customer_lock.hold_customer`), before running the service
code it stands for, so it keeps holding the lock when a mutant removes the guard from that code too.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal

import pytest
import stripe

from invoicing.errors import InvalidPayment
from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderActivity,
    PurchaseOrderPayment,
)
from invoicing.services import (
    invoice_creation,
    invoice_sync,
    ledger,
    purchase_orders,
    stripe_customers,
    stripe_invoicing,
)
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_customer_lock import hold_customer
from tests.core.test_ledger import event, invoice_payload
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.locks import Contention

pytestmark = pytest.mark.django_db(transaction=True)

Status = PurchaseOrder.Status


def take_row_lock(purchase_order: PurchaseOrder) -> None:
    """What every ledger writer does first: the PO's row lock, held until its transaction ends."""
    PurchaseOrder.objects.select_for_update().get(pk=purchase_order.pk)


def by_webhook(po: PurchaseOrder, *, amount_paid: int) -> None:
    """An ``invoice.updated`` webhook showing the invoice with ``amount_paid`` (minor units)."""
    invoice_sync.handle_invoice_event(
        conference=po.conference,
        event=event(invoice_payload(po, amount_paid=amount_paid), "invoice.updated"),
    )


def by_reconciliation(po: PurchaseOrder, *, amount_paid: int) -> None:
    """The same invoice on a page of open invoices, as reconciliation applies it."""
    ledger.apply_invoice_snapshot(
        purchase_order=po, invoice=invoice_payload(po, amount_paid=amount_paid), source="reconcile"
    )


@pytest.mark.parametrize("stale_path", [by_webhook, by_reconciliation], ids=lambda f: f.__name__)
def test_a_snapshot_waits_for_the_po_row_lock_before_reading_ledger_and_mirror(
    contention: Contention,
    make_purchase_order: MakePurchaseOrder,
    stale_path: Callable[..., None],
) -> None:
    """A webhook showing 500.00 paid is being applied; a stale view (300.00) arrives meanwhile.

    Waiting for the lock, the stale one reads the ledger and the mirror after the first commits:
    it records nothing and leaves the mirror at 500.00. Read without the lock, it would find an
    empty mirror and move it back to 300.00 (and, on another invoice, record a payment twice).
    """
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id=f"in_lock_{po.pk}", stripe_invoice_status="open"
    )
    po.refresh_from_db()

    with contention.hold(lambda: take_row_lock(po)) as webhook:
        webhook.run(lambda: by_webhook(po, amount_paid=50000))
        stale = contention.start(lambda: stale_path(po, amount_paid=30000))
        stale.wait_until_blocked(webhook, at="SELECT")
    stale.outcome()

    po.refresh_from_db()
    payments = PurchaseOrderPayment.objects.filter(purchase_order=po)
    assert [(row.amount, row.stripe_amount_paid_after) for row in payments] == [
        (Decimal("500.00"), 50000)
    ]
    assert (po.stripe_amount_paid, po.status) == (Decimal("500.00"), Status.PARTIALLY_PAID)


def test_a_sync_waits_for_the_po_row_lock_before_reading_ledger_and_mirror(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """The company paid 2000.00; its webhook is being applied when a sync fetches the invoice.
    The sync waits, then finds the payment recorded: one ledger row, not two."""
    po = make_purchase_order(conference=stripe_conference)
    stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    paid = stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=200000)["invoice"]

    with contention.hold(lambda: take_row_lock(po)) as webhook:
        webhook.run(
            lambda: ledger.apply_invoice_snapshot(
                purchase_order=po, invoice=paid, source="invoice.updated"
            )
        )
        sync = contention.start(lambda: stripe_invoicing.sync_stripe_invoice_status(po))
        sync.wait_until_blocked(webhook, at="SELECT")
    sync.outcome()

    po.refresh_from_db()
    assert list(PurchaseOrderPayment.objects.filter(purchase_order=po).values_list("amount")) == [
        (Decimal("2000.00"),)
    ]
    assert (po.stripe_amount_paid, po.status) == (Decimal("2000.00"), Status.PARTIALLY_PAID)


def test_a_wire_payment_waits_for_the_po_row_lock_before_checking_the_po(
    contention: Contention, make_purchase_order: MakePurchaseOrder
) -> None:
    """Staff record a wire while the PO is being cancelled: the wire waits, then is refused.

    Read without the lock, the PO would still look approved and the wire would land on a
    cancelled PO, which takes no payments.
    """
    po = make_purchase_order()

    with contention.hold(lambda: take_row_lock(po)) as cancelling:
        cancelling.run(lambda: purchase_orders.cancel_purchase_order(po, reason="duplicate"))
        wire = contention.start(
            lambda: purchase_orders.record_payment(
                po,
                amount=Decimal("6350.00"),
                method=PurchaseOrderPayment.Method.WIRE,
                reference="WIRE-1",
                payment_date=datetime.date(2026, 12, 1),
            )
        )
        wire.wait_until_blocked(cancelling, at="SELECT")

    with pytest.raises(InvalidPayment, match="cancelled"):
        wire.outcome()
    po.refresh_from_db()
    assert po.status == Status.CANCELLED
    assert not PurchaseOrderPayment.objects.filter(purchase_order=po).exists()


def _creation_died_at_the_invoice_step(
    emulator: EmulatorHandle, secret_key: str, po: PurchaseOrder
) -> None:
    """An earlier run died at the invoice step: our customer exists, the step is stamped started."""
    emulator.configure(
        secret_key,
        fail_next=[{"error": "connection_reset", "method": "POST", "path": "^/v1/invoices$"}],
    )
    with pytest.raises(stripe.APIConnectionError):
        stripe_invoicing.create_stripe_invoice(po)
    po.refresh_from_db()
    assert (po.stripe_invoice_id, po.invoice_create_started_at is not None) == ("", True)


def _answered(emulator: EmulatorHandle, secret_key: str) -> list[tuple[str, str, bool]]:
    return [
        (entry["method"], entry["path"], entry["idempotent_replayed"])
        for entry in emulator.requests(secret_key)
        if entry["status"] == 200
    ]


def test_a_creation_run_stores_its_new_invoice_under_the_po_row_lock(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """A webhook's snapshot is being applied to the PO when Stripe answers the run's invoice
    create: the run waits for the row lock to store the id, then reads the PO as it is now."""
    po = make_purchase_order(conference=stripe_conference)
    _creation_died_at_the_invoice_step(stripe_emulator, stripe_secret_key, po)

    with contention.hold(lambda: take_row_lock(po)) as webhook:
        run = contention.start(lambda: stripe_invoicing.create_stripe_invoice(po))
        run.wait_until_blocked(webhook, at="SELECT")  # its invoice created at Stripe
    url = run.outcome()

    po.refresh_from_db()
    assert (po.stripe_invoice_url, po.status, po.invoice_error) == (url, Status.INVOICED, "")
    invoice = f"/v1/invoices/{po.stripe_invoice_id}"
    assert _answered(stripe_emulator, stripe_secret_key) == [
        ("POST", "/v1/customers", False),
        ("POST", "/v1/invoices", False),
        ("POST", f"{invoice}/add_lines", False),
        ("POST", f"{invoice}/finalize", False),
        ("POST", f"{invoice}/send", False),
    ]


def test_two_runs_sending_one_invoice_tell_its_story_once(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """An earlier run's send reached Stripe but its answer was lost: the invoice is open and not
    marked sent. Two runs resume (a redelivery and the resume task) and both read it so; one
    sends and marks it sent, then the other sends under the same key (Stripe's replay) with the
    PO it read before. Marking it finds it marked: the story says "Invoice created and sent"
    once."""
    po = make_purchase_order(conference=stripe_conference)
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": "/send$"}],
    )
    with pytest.raises(stripe.APIConnectionError):
        stripe_invoicing.create_stripe_invoice(po)
    read_by_the_second_run = PurchaseOrder.objects.get(pk=po.pk)
    assert read_by_the_second_run.invoice_sent_at is None

    stripe_invoicing.create_stripe_invoice(po)  # the first run: sends, marks, tells
    client = stripe_emulator.client(stripe_secret_key)
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    invoice_creation.send_invoice(client, read_by_the_second_run, invoice)

    po.refresh_from_db()
    assert (po.status, po.invoice_sent_at is not None) == (Status.INVOICED, True)
    sent = PurchaseOrderActivity.objects.filter(
        purchase_order=po, kind=PurchaseOrderActivity.Kind.INVOICE_SENT
    )
    assert sent.count() == 1
    sends = [a for a in _answered(stripe_emulator, stripe_secret_key) if a[1].endswith("/send")]
    assert [replayed for _, _, replayed in sends][-2:] == [True, True]  # one send at Stripe


def test_a_creation_run_that_finds_the_invoice_stored_by_another_run_resumes_from_stripe(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """Two creation runs of one PO (a redelivery and the resume task): the other run holds the
    customer (stripe_customers.customer_held) and creates, finalizes and sends the invoice; the
    resuming one, which read the PO before it waited, then gets the same invoice from Stripe (one
    key, a replay of a draft without lines). It must see that the id is stored and resume from
    Stripe: going on from its own answer would refuse the sent invoice as "edited at Stripe" (a
    permanent error that blocks the PO)."""
    po = make_purchase_order(conference=stripe_conference)
    _creation_died_at_the_invoice_step(stripe_emulator, stripe_secret_key, po)
    customer = stripe_customers.claim_customer(po)

    with contention.hold(lambda: hold_customer(customer)) as other_run:
        resumed = contention.start(lambda: stripe_invoicing.create_stripe_invoice(po))
        resumed.wait_until_blocked(other_run, at="SELECT pg_advisory_lock")
        sent_url = other_run.run(lambda: stripe_invoicing.create_stripe_invoice(po))

    assert resumed.outcome() == sent_url
    po.refresh_from_db()
    assert (po.stripe_invoice_url, po.status, po.invoice_error) == (sent_url, Status.INVOICED, "")
    invoice = f"/v1/invoices/{po.stripe_invoice_id}"
    assert _answered(stripe_emulator, stripe_secret_key) == [
        ("POST", "/v1/customers", False),
        ("POST", "/v1/invoices", False),  # the other run's create
        ("POST", f"{invoice}/add_lines", False),
        ("POST", f"{invoice}/finalize", False),
        ("POST", f"{invoice}/send", False),
        ("POST", "/v1/invoices", True),  # the resuming run's: the same key, the replay
        ("GET", invoice, False),  # the resuming run reads where Stripe is, and writes nothing
    ]
