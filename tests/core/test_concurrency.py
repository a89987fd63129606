"""Concurrent snapshots of one invoice on PostgreSQL: the PO row lock keeps the ledger exact."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.services import invoice_sync, ledger
from tests.core.conftest import MakePurchaseOrder
from tests.core.test_ledger import event, invoice_payload

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Start every target at once (barrier); each thread closes its own DB connection."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_racing_snapshots_record_each_payment_once(make_purchase_order: MakePurchaseOrder) -> None:
    po = make_purchase_order()
    PurchaseOrder.objects.filter(pk=po.pk).update(
        stripe_invoice_id=f"in_race_{po.pk}", stripe_invoice_status="open"
    )
    po.refresh_from_db()
    # Sixteen views of the invoice as it grows, each delivered by its own thread at once, then
    # everything again in random order. Without the row lock, threads would read the same
    # "already recorded" sum and each insert their delta (distinct keys: no constraint catches it).
    steps = [635000 * n // 16 for n in range(1, 17)]
    rng = random.Random(7)

    def worker(first: int) -> Callable[[], None]:
        def apply_all() -> None:
            for amount_paid in [first, *rng.sample(steps, len(steps))]:
                invoice_sync.handle_invoice_event(
                    conference=po.conference,
                    event=event(invoice_payload(po, amount_paid=amount_paid), "invoice.updated"),
                )

        return apply_all

    errors = run_in_threads([worker(amount) for amount in steps])
    assert errors == []
    po.refresh_from_db()
    stripe_total = ledger.stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id)
    assert stripe_total == Decimal("6350.00")
    assert po.stripe_amount_paid == Decimal("6350.00")
    assert po.status == PurchaseOrder.Status.PAID
    assert PurchaseOrderPayment.objects.filter(purchase_order=po).count() <= len(steps)
