"""Two POs of one organization invoiced at once: each invoice prints its own PO's details.

The organization has one Stripe customer, and an invoice copies the customer's name, address
and tax IDs when it is finalized. So an invoice run holds the customer (a PostgreSQL advisory
lock) from bringing it up to date until its invoice is finalized; another PO of the same
customer waits for it, a PO of another customer does not. Proven as in ``test_locks.py``: the
holder takes the customer's lock from a connection of its own, and the run under test is seen
waiting for that backend (``pg_blocking_pids``), or finishing while it holds the lock.
"""

from __future__ import annotations

import pytest
import stripe
from django.db import connection

from invoicing.models import Conference, PurchaseOrder, StripeCustomer
from invoicing.services import stripe_customers, stripe_invoicing
from tests.core.conftest import MakePurchaseOrder
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.locks import Contention

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = {"line1": "Friedrichstr. 10", "city": "Berlin", "postal_code": "10117", "country": "DE"}
PARIS = {"line1": "1 Rue de Rivoli", "city": "Paris", "postal_code": "75001", "country": "FR"}


def hold_customer(customer: StripeCustomer) -> None:
    """What an invoice run holds from its customer update to its finalization."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [stripe_customers.lock_key(customer)])


def printed_city(client: stripe.StripeClient, po: PurchaseOrder) -> str | None:
    po.refresh_from_db()
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    assert invoice.status == "open"
    return invoice.customer_address.city if invoice.customer_address else None


def test_an_invoice_of_the_same_customer_waits_until_the_other_is_finalized(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """PO B's run has just brought the shared customer to Paris and is not finalized yet; PO A
    (Berlin) starts. Without waiting, A would move the customer to Berlin before B's invoice
    copies it, and B's accounts payable would get an invoice addressed to A's office."""
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    po_a = make_purchase_order(
        conference=stripe_conference, organization_name="Initech", billing_address=BERLIN
    )
    po_b = make_purchase_order(
        conference=stripe_conference, organization_name="Initech", billing_address=PARIS
    )

    customer = stripe_customers.claim_customer(po_b)  # the organization's row, committed
    with contention.hold(lambda: hold_customer(customer)) as run_b:
        stripe_customers.ensure_stripe_customer(client, po_b)  # B's customer step: Paris
        run_a = contention.start(lambda: stripe_invoicing.create_stripe_invoice(po_a))
        run_a.wait_until_blocked(run_b, at="SELECT pg_advisory_lock")
        run_b.run(lambda: stripe_invoicing.create_stripe_invoice(po_b))  # lines, finalize, send
    run_a.outcome()

    assert (printed_city(client, po_a), printed_city(client, po_b)) == ("Berlin", "Paris")
    po_a.refresh_from_db()
    assert po_a.stripe_customer_id == po_b.stripe_customer_id  # one customer, two addresses
    with connection.cursor() as cursor:  # every run let go of its customer
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert cursor.fetchone() == (0,)


def test_a_run_that_waited_reads_the_customer_as_the_other_run_left_it(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    """The customer says Berlin (A's office) when PO A's run reads it and starts waiting; PO B's
    run then moves it to Paris and finalizes. A must update it back before finalizing: deciding
    on what it read before the wait, A would see "already Berlin" and print Paris."""
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    po_a = make_purchase_order(
        conference=stripe_conference, organization_name="Initech", billing_address=BERLIN
    )
    po_b = make_purchase_order(
        conference=stripe_conference, organization_name="Initech", billing_address=PARIS
    )
    stripe_customers.ensure_stripe_customer(client, po_a)  # an earlier invoice of A's: Berlin

    customer = stripe_customers.claim_customer(po_b)
    with contention.hold(lambda: hold_customer(customer)) as run_b:
        run_a = contention.start(lambda: stripe_invoicing.create_stripe_invoice(po_a))
        run_a.wait_until_blocked(run_b, at="SELECT pg_advisory_lock")
        stripe_customers.ensure_stripe_customer(client, po_b)  # B's customer step: Paris
        run_b.run(lambda: stripe_invoicing.create_stripe_invoice(po_b))
    run_a.outcome()

    assert (printed_city(client, po_a), printed_city(client, po_b)) == ("Berlin", "Paris")


def test_an_invoice_of_another_customer_does_not_wait(
    contention: Contention,
    stripe_emulator: EmulatorHandle,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    busy = make_purchase_order(
        conference=stripe_conference, organization_name="Initech", billing_address=PARIS
    )
    other = make_purchase_order(
        conference=stripe_conference, organization_name="Globex", billing_address=BERLIN
    )

    customer = stripe_customers.claim_customer(busy)
    with contention.hold(lambda: hold_customer(customer)):
        run = contention.start(lambda: stripe_invoicing.create_stripe_invoice(other))
        run.finishes_while_held()
    run.outcome()
    assert printed_city(client, other) == "Berlin"
