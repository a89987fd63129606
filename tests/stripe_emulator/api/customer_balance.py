"""Invoices moving a customer's balance; ``GET /v1/customers/:id/balance_transactions``.

Finalizing applies the balance (``applied_to_invoice``); voiding returns what the invoice applied
(``unapplied_from_invoice``): Stripe API changelog 2019-12-03 "Customer balances are now returned
when voiding invoices": "Customer balances applied to all invoices are now debited or credited
back to the customer when voided." Transaction types are stripe-python's
``CustomerBalanceTransaction.type`` literals for the pinned API version.
"""

from __future__ import annotations

from ..balance_records import CustomerBalanceTxnRec
from ..errors import no_such
from ..ids import new_id
from ..models import JSON, CustomerRec, InvoiceRec
from ..render import render_customer
from .context import Ctx, Params
from .events import emit, previous_attributes
from .lists import paginate
from .params import reject_unsupported


def move_balance(ctx: Ctx, invoice: InvoiceRec, *, amount: int, type_: str) -> None:
    """Change the invoice's customer's balance by ``amount`` with the transaction Stripe records.

    Stripe: ``customer.updated`` "occurs whenever any property of a customer changes"; the
    balance is one.
    """
    customer = ctx.account.customers[invoice.customer]
    if amount == 0 or customer.currency != invoice.currency:
        return
    before = render_customer(customer)
    customer.balance += amount
    customer.balance_transactions.append(
        CustomerBalanceTxnRec(
            id=new_id("cbtxn"),
            created=ctx.now,
            livemode=ctx.account.livemode,
            customer=customer.id,
            currency=invoice.currency,
            amount=amount,
            ending_balance=customer.balance,
            type=type_,
            invoice=invoice.id,
        )
    )
    after = render_customer(customer)
    emit(ctx, "customer.updated", after, previous_attributes(before, after))


def return_applied_balance(ctx: Ctx, invoice: InvoiceRec) -> None:
    """Voiding gives back the part of ``starting_balance`` the invoice consumed (credit or debit).

    ``starting_balance`` and ``ending_balance`` stay as they were at finalization.
    """
    if invoice.starting_balance is None or invoice.ending_balance is None:
        return
    consumed = invoice.starting_balance - invoice.ending_balance
    move_balance(ctx, invoice, amount=consumed, type_="unapplied_from_invoice")


def render_balance_transaction(record: CustomerBalanceTxnRec) -> JSON:
    return {
        "id": record.id,
        "object": "customer_balance_transaction",
        "amount": record.amount,
        "checkout_session": None,
        "created": record.created,
        "credit_note": None,
        "currency": record.currency,
        "customer": record.customer,
        "customer_account": None,
        "description": None,
        "ending_balance": record.ending_balance,
        "invoice": record.invoice,
        "livemode": record.livemode,
        "metadata": {},
        "type": record.type,
    }


def _customer(ctx: Ctx, customer_id: str) -> CustomerRec:
    customer = ctx.account.customers.get(customer_id)
    if customer is None or customer.deleted:
        raise no_such("customer", customer_id)
    return customer


def list_balance_transactions(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = _customer(ctx, customer_id)
    reject_unsupported(params, ("created",))
    records = [
        record
        for record in reversed(customer.balance_transactions)
        if params.get("invoice") in (None, record.invoice)
    ]
    return paginate(
        records,
        params,
        url=f"/v1/customers/{customer_id}/balance_transactions",
        render=render_balance_transaction,
        id_of=lambda record: record.id,
        kind="customer_balance_transaction",
    )
