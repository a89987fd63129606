"""The PO's Stripe customer: one per (conference, organization), saying what the PO says.

Accounts payable pays an invoice that carries its legal name, billing address and tax IDs, and
Stripe prints those from the *customer* (an invoice copies them when it is finalized). So before
an invoice is created, the organization's customer is created, or brought up to date, from the
PO's frozen details. Every write is keyed by our ``StripeCustomer`` row:

- create: ``customer-<uid>``, with the details stored on the row when it was claimed, so a rerun
  sends the same parameters;
- update to other details: ``customer-<uid>-u<n>``, where ``n`` (``details_version``) moves once
  per new set of details, recorded before the call (``pending_digest``); tax IDs, which Stripe
  keeps as their own objects, are then deleted or added (``...-u<n>-tax-<type>-<value>``) until
  the customer's list is the PO's.

The organization, not the e-mail, is the key (``billing_details.organization_key``): companies
that share an accounts-payable mailbox are different customers, and the organization name is
the one detail every PO has (the legal name is optional and is itself a detail that may change).

Two POs of one organization with different details share the customer, and an invoice prints
what the customer says when it is finalized: :func:`customer_held` keeps one invoice at a time
between "customer brought up to date" and "invoice finalized". It is a PostgreSQL session-level
advisory lock on the customer row, not that row's lock: the steps in between are Stripe calls,
each stored in its own short transaction as soon as Stripe answers (a row lock would need one
transaction around them all, holding back what resumes a crashed run), and a worker that dies
releases it with its connection. Other customers never wait for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import stripe
from django.db import connection, transaction

from invoicing import billing_details
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder, StripeCustomer
from invoicing.services.keyed_writes import poisons_key

if TYPE_CHECKING:
    from stripe.params import CustomerCreateParams, CustomerUpdateParams

logger = logging.getLogger(__name__)

# Advisory lock keys of Stripe customers: this prefix, then the StripeCustomer pk (below 2**40).
_LOCK_NAMESPACE: Final = 0x5C << 40


def customer_details(po: PurchaseOrder) -> dict[str, Any]:
    """What the PO's Stripe customer must say (comparable across POs: normalized)."""
    return {
        "name": po.invoice_name,
        "email": StripeCustomer.normalize_email(po.contact_email),
        "address": billing_details.normalize_address(po.billing_address),
        "tax_ids": billing_details.normalize_tax_ids(po.tax_ids),
    }


def _row_details(customer: StripeCustomer) -> dict[str, Any]:
    return {
        "name": customer.name,
        "email": customer.email,
        "address": customer.address,
        "tax_ids": customer.tax_ids,
    }


def claim_customer(po: PurchaseOrder) -> StripeCustomer:
    """The organization's customer row, created (ours, before Stripe) and linked to the PO once."""
    return _claim(po, customer_details(po))


def lock_key(customer: StripeCustomer) -> int:
    """The customer's PostgreSQL advisory lock key (one bigint, unique per row)."""
    return _LOCK_NAMESPACE + customer.pk


@contextmanager
def customer_held(po: PurchaseOrder) -> Iterator[StripeCustomer]:
    """Hold the PO's customer: no other invoice changes or copies its details meanwhile.

    Waits for another PO of the same customer to get from its customer update to its
    finalization, then reads the customer row again: what the PO holds was read before the wait,
    and the other run may have changed the customer meanwhile. Outside PostgreSQL (the SQLite
    demo, one worker) there is nothing to hold.
    """
    customer = claim_customer(po)
    if connection.vendor != "postgresql":
        yield customer
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key(customer)])
    try:
        customer.refresh_from_db()
        po.stripe_customer = customer  # what ensure_stripe_customer reads
        yield customer
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(customer)])


def _claim(po: PurchaseOrder, details: dict[str, Any]) -> StripeCustomer:
    """The organization's row (ours first, before Stripe), linked to the PO once."""
    if po.stripe_customer is not None:
        return po.stripe_customer
    customer, _ = StripeCustomer.objects.get_or_create(
        conference=po.conference,
        organization_key=billing_details.organization_key(po.organization_name),
        defaults=details,
    )
    PurchaseOrder.objects.filter(pk=po.pk, stripe_customer__isnull=True).update(
        stripe_customer=customer
    )
    po.refresh_from_db(fields=["stripe_customer"])
    linked: StripeCustomer = po.stripe_customer or customer
    return linked


def _bump_epoch_if_poisoned(customer: StripeCustomer, exc: stripe.StripeError) -> None:
    if poisons_key(exc):
        StripeCustomer.objects.filter(pk=customer.pk, key_epoch=customer.key_epoch).update(
            key_epoch=customer.key_epoch + 1
        )


def _create(client: stripe.StripeClient, po: PurchaseOrder, customer: StripeCustomer) -> None:
    params: CustomerCreateParams = {
        "email": customer.email,
        "name": customer.name or customer.email,
        "metadata": {
            "conference": po.conference.slug,
            "customer_uid": str(customer.uid),
            "organization": customer.organization_key[:500],
        },
    }
    if customer.address:
        params["address"] = dict(customer.address)  # type: ignore[typeddict-item]
    if customer.tax_ids:
        params["tax_id_data"] = [dict(item) for item in customer.tax_ids]  # type: ignore[misc]
    try:
        created = client.v1.customers.create(
            params, options={"idempotency_key": customer.idempotency_key}
        )
    except stripe.StripeError as exc:
        _bump_epoch_if_poisoned(customer, exc)
        raise
    StripeCustomer.objects.filter(pk=customer.pk, stripe_customer_id="").update(
        stripe_customer_id=created.id,
        details_digest=billing_details.details_digest(_row_details(customer)),
    )
    customer.refresh_from_db()
    log_state_change(
        logger,
        event="stripe_customer_created",
        po_reference=po.reference,
        customer_id=customer.stripe_customer_id,
        conference=po.conference.slug,
    )


def _reserve_update(customer: StripeCustomer, digest: str) -> StripeCustomer:
    """Record the details about to be sent, and the version that keys them (once per change)."""
    with transaction.atomic():
        locked = StripeCustomer.objects.select_for_update().get(pk=customer.pk)
        if locked.pending_digest != digest:
            locked.pending_digest = digest
            locked.details_version += 1
            locked.save(update_fields=["pending_digest", "details_version"])
    return locked


def _update(
    client: stripe.StripeClient,
    po: PurchaseOrder,
    customer: StripeCustomer,
    details: dict[str, Any],
) -> None:
    digest = billing_details.details_digest(details)
    customer = _reserve_update(customer, digest)
    key = f"{customer.idempotency_key}-u{customer.details_version}"
    params: CustomerUpdateParams = {
        "name": details["name"],
        "email": details["email"],
        "address": details["address"] or "",  # "" clears it at Stripe
    }
    try:
        client.v1.customers.update(
            customer.stripe_customer_id, params, options={"idempotency_key": key}
        )
        _sync_tax_ids(client, customer, details["tax_ids"], key=key)
    except stripe.StripeError as exc:
        _bump_epoch_if_poisoned(customer, exc)
        raise
    # Only if no other PO reserved newer details meanwhile: theirs are what Stripe has now.
    StripeCustomer.objects.filter(pk=customer.pk, pending_digest=digest).update(
        details_digest=digest, **details
    )
    log_state_change(
        logger,
        event="stripe_customer_updated",
        po_reference=po.reference,
        customer_id=customer.stripe_customer_id,
        conference=po.conference.slug,
    )


def _sync_tax_ids(
    client: stripe.StripeClient, customer: StripeCustomer, wanted: list[dict[str, str]], *, key: str
) -> None:
    wanted_pairs = [(item["type"], item["value"]) for item in wanted]
    existing = client.v1.customers.tax_ids.list(customer.stripe_customer_id, {"limit": 100})
    present: set[tuple[str, str]] = set()
    for tax_id in existing.auto_paging_iter():
        pair = (str(tax_id.type), tax_id.value)
        if pair in wanted_pairs and pair not in present:
            present.add(pair)
            continue
        try:
            client.v1.customers.tax_ids.delete(customer.stripe_customer_id, tax_id.id)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":  # deleted by a concurrent run: done
                raise
    for kind, value in wanted_pairs:
        if (kind, value) not in present:
            client.v1.customers.tax_ids.create(
                customer.stripe_customer_id,
                {"type": kind, "value": value},
                options={"idempotency_key": f"{key}-tax-{kind}-{value}"},
            )


def ensure_stripe_customer(client: stripe.StripeClient, po: PurchaseOrder) -> str:
    """The Stripe customer id for the PO's organization, saying the PO's details; idempotent.

    Costs one call for a new organization, none for a known one whose details did not change,
    and an update (plus the tax ID list) when they did.
    """
    details = customer_details(po)
    customer = _claim(po, details)
    if not customer.stripe_customer_id:
        _create(client, po, customer)
    if customer.details_digest != billing_details.details_digest(details):
        _update(client, po, customer, details)
    return customer.stripe_customer_id
