"""``/v1/customers``: whom an invoice is for; drafts copy their contact fields until finalized."""

from __future__ import annotations

import re
from typing import Any

from ..errors import invalid_request, no_such
from ..ids import new_id, new_invoice_prefix
from ..models import JSON, CustomerRec, InvoiceRec
from ..render import render_customer
from ..schema import UNSET
from .context import Ctx, Params
from .events import emit, previous_attributes
from .lists import matches_range, newest_first, paginate
from .params import merge_metadata, reject_unsupported
from .tax_ids import add_tax_id, check_tax_id, invoice_tax_ids


def require_customer(
    ctx: Ctx, customer_id: str, *, param: str = "id", status: int = 404
) -> CustomerRec:
    customer = ctx.account.customers.get(customer_id)
    if customer is None or customer.deleted:
        raise no_such("customer", customer_id, param=param, status=status)
    return customer


def create_customer(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, ("cash_balance", "payment_method", "source"))
    # Every tax ID is checked before anything is created: a bad one refuses the whole request.
    tax_ids = [
        check_tax_id(datum.get("type"), datum.get("value"), param=f"tax_id_data[{index}]")
        for index, datum in enumerate(params.get("tax_id_data") or [])
    ]
    prefix = params.get("invoice_prefix")
    if prefix is not None and not re.fullmatch(r"[A-Z0-9]{3,12}", prefix):
        raise invalid_request(
            "Invoice prefix must be 3-12 uppercase letters or numbers.", param="invoice_prefix"
        )
    customer = CustomerRec(
        id=new_id("cus", 14),
        created=ctx.now,
        livemode=ctx.account.livemode,
        email=params.get("email"),
        name=params.get("name"),
        business_name=_set(params.get("business_name")),
        individual_name=_set(params.get("individual_name")),
        description=params.get("description"),
        phone=params.get("phone"),
        metadata=merge_metadata(params.get("metadata", {}), param="metadata"),
        address=_address(params.get("address")),
        invoice_prefix=prefix or new_invoice_prefix(),
        next_invoice_sequence=params.get("next_invoice_sequence", 1),
        preferred_locales=params.get("preferred_locales", []),
        tax_exempt=params.get("tax_exempt", "none") or "none",
        seq=ctx.account.next_seq(),
    )
    ctx.account.customers[customer.id] = customer
    for type_, value, country in tax_ids:
        add_tax_id(ctx, customer, type_, value, country)
    rendered = render_customer(customer)
    emit(ctx, "customer.created", rendered)
    return rendered


def _set(value: Any) -> Any:
    """A create parameter sent as ``""`` sets nothing."""
    return None if value is UNSET else value


def _address(value: Any) -> JSON | None:
    if value is None or value is UNSET:
        return None
    keys = ("city", "country", "line1", "line2", "postal_code", "state")
    return {key: value.get(key) for key in keys}


def retrieve_customer(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = ctx.account.customers.get(customer_id)
    if customer is None:
        raise no_such("customer", customer_id)
    return render_customer(customer)


def update_customer(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = require_customer(ctx, customer_id)
    reject_unsupported(params, ("cash_balance", "source", "default_source"))
    metadata = (
        merge_metadata(params["metadata"], customer.metadata, param="metadata")
        if "metadata" in params
        else customer.metadata
    )
    before = render_customer(customer)
    for name in ("email", "name", "business_name", "individual_name", "description", "phone"):
        if name in params:
            value = params[name]
            setattr(customer, name, None if value is UNSET else value)
    customer.metadata = metadata
    if "address" in params:
        customer.address = _address(params["address"])
    if "invoice_prefix" in params:
        customer.invoice_prefix = params["invoice_prefix"]
    if "preferred_locales" in params:
        customer.preferred_locales = params["preferred_locales"]
    after = render_customer(customer)
    previous = previous_attributes(before, after)
    if previous:
        emit(ctx, "customer.updated", after, previous)
        _refresh_draft_customer_fields(ctx, customer)
    return after


def _refresh_draft_customer_fields(ctx: Ctx, customer: CustomerRec) -> None:
    """``customer_email`` & co. follow the customer until the invoice is finalized."""
    for invoice in ctx.account.invoices.values():
        if invoice.customer == customer.id and invoice.status == "draft" and not invoice.deleted:
            copy_customer_fields(invoice, customer)


def copy_customer_fields(invoice: InvoiceRec, customer: CustomerRec) -> None:
    invoice.customer_email = customer.email
    invoice.customer_name = customer.name
    invoice.customer_phone = customer.phone
    invoice.customer_address = dict(customer.address) if customer.address else None
    invoice.customer_tax_ids = invoice_tax_ids(customer)


def delete_customer(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = require_customer(ctx, customer_id)
    before = render_customer(customer)
    customer.deleted = True
    emit(ctx, "customer.deleted", before)
    return render_customer(customer)


def list_customers(ctx: Ctx, params: Params) -> JSON:
    email = params.get("email")
    created = params.get("created")
    records = [
        customer
        for customer in newest_first(ctx.account.customers.values())
        if not customer.deleted
        and (email is None or customer.email == email)
        and matches_range(created, customer.created)
    ]
    return paginate(
        records,
        params,
        url="/v1/customers",
        render=render_customer,
        id_of=lambda record: record.id,
        kind="customer",
    )
