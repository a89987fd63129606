"""``/v1/invoices``: create, retrieve, update, delete, list.

An invoice's lines are in :mod:`.invoice_lines`; its status changes (finalize, send, pay, void,
mark uncollectible) in :mod:`.invoice_lifecycle`.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import (
    StripeError,
    invalid_request,
    invoice_not_editable,
    no_such,
    parameter_missing,
    parameters_exclusive,
)
from ..ids import new_id
from ..models import JSON, CustomerRec, InvoiceRec
from ..render import render_invoice
from ..schema import UNSET
from .context import Ctx, Params
from .customers import copy_customer_fields, require_customer
from .events import emit, previous_attributes
from .lists import matches_range, newest_first, paginate
from .params import expansions, merge_metadata, reject_unsupported, supported_currency


def require_invoice(
    ctx: Ctx, invoice_id: str, *, param: str = "id", status: int = 404
) -> InvoiceRec:
    invoice = ctx.account.invoices.get(invoice_id)
    if invoice is None or invoice.deleted:
        raise no_such("invoice", invoice_id, param=param, status=status)
    return invoice


_INVOICE_UNSUPPORTED = (
    "account_tax_ids",
    "application_fee_amount",
    "customer_account",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "discounts",
    "from_invoice",
    "on_behalf_of",
    "shipping_cost",
    "shipping_details",
    "subscription",
    "transfer_data",
)


def _check_due(
    collection_method: str, days_until_due: Any, due_date: Any, now: int, *, creating: bool
) -> None:
    if days_until_due is not None and due_date is not None:
        raise parameters_exclusive("days_until_due", "due_date")
    if collection_method == "charge_automatically":
        for name, value in (("days_until_due", days_until_due), ("due_date", due_date)):
            if value is not None:
                raise invalid_request(
                    f"Invoices with `collection_method=charge_automatically` cannot have "
                    f"`{name}` set: `{name}` is only valid for `collection_method=send_invoice`.",
                    param=name,
                )
        return
    if creating and days_until_due is None and due_date is None:
        raise invalid_request(
            "Invoices with `collection_method=send_invoice` must have either `days_until_due` "
            "or `due_date` set.",
            param="days_until_due",
        )
    if days_until_due is not None and not 0 <= days_until_due <= 3650:
        raise invalid_request(
            "`days_until_due` must be between 0 and 3650.", param="days_until_due"
        )
    if due_date is not None and due_date < now:
        raise invalid_request("The `due_date` must be in the future.", param="due_date")


# Stripe's limits (API reference, invoice ``custom_fields``): "A list of up to 4 custom fields",
# "name ... may be up to 40 characters", "value ... may be up to 140 characters".
CUSTOM_FIELDS_MAX, CUSTOM_FIELD_NAME_MAX, CUSTOM_FIELD_VALUE_MAX = 4, 40, 140


def _custom_fields(value: Any) -> list[JSON] | None:
    """``custom_fields=""`` clears them; a list replaces them, each checked as Stripe does."""
    if value is None or value is UNSET:
        return None
    if len(value) > CUSTOM_FIELDS_MAX:
        raise invalid_request(
            f"Invalid array: custom_fields must have at most {CUSTOM_FIELDS_MAX} items "
            f"(you passed {len(value)}).",
            param="custom_fields",
        )
    fields: list[JSON] = []
    for index, item in enumerate(value):
        for key, limit in (("name", CUSTOM_FIELD_NAME_MAX), ("value", CUSTOM_FIELD_VALUE_MAX)):
            text = item.get(key)
            param = f"custom_fields[{index}][{key}]"
            if text is None:
                raise parameter_missing(param)
            if len(text) > limit:
                raise invalid_request(
                    f"Invalid string: {text[:limit]}...; must be at most {limit} characters",
                    param=param,
                )
        fields.append({"name": item["name"], "value": item["value"]})
    return fields


def _automatic_tax(value: Any, customer: CustomerRec) -> bool:
    """Stripe Tax needs the customer's location (docs "Automatically collect tax on invoices":
    outside the US at least a country, in the US a 5-digit postal code, in Canada a province or
    postal code); without it Stripe refuses with ``customer_tax_location_invalid``."""
    if not value or value is UNSET or not value.get("enabled"):
        return False
    if value.get("liability") not in (None, UNSET):
        reject_unsupported({"automatic_tax[liability]": True}, ["automatic_tax[liability]"])
    check_tax_location(customer)
    return True


def check_tax_location(customer: CustomerRec) -> None:
    address = customer.address or {}
    country = address.get("country")
    postal_code = address.get("postal_code") or ""
    located = bool(country) and (
        (country == "US" and re.fullmatch(r"\d{5}(-\d{4})?", postal_code) is not None)
        or (country == "CA" and bool(postal_code or address.get("state")))
        or country not in ("US", "CA")
    )
    if not located:
        raise StripeError(
            400,
            "The customer's location isn't recognized. Automatic tax calculation requires a "
            "valid address on the customer (at least a country; a postal code in the US).",
            code="customer_tax_location_invalid",
            param="automatic_tax[enabled]",
        )


def _payment_method_types(value: Any) -> list[str] | None:
    if value is None or value is UNSET:
        return None
    return list(value)


# ``amount_paid_off_stripe`` is an includable property: "You can include this property in API
# requests" with expand[]=amount_paid_off_stripe (changelog 2026-05-27.dahlia).
INVOICE_EXPANDABLE = ("customer", "payments", "amount_paid_off_stripe")


def create_invoice(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, _INVOICE_UNSUPPORTED)
    expand = expansions(params, INVOICE_EXPANDABLE)
    if "customer" not in params:
        raise parameter_missing("customer")
    customer = require_customer(ctx, params["customer"], param="customer", status=400)
    automatic_tax = _automatic_tax(params.get("automatic_tax"), customer)
    collection_method = params.get("collection_method", "charge_automatically")
    days_until_due = params.get("days_until_due")
    due_date = params.get("due_date")
    _check_due(collection_method, days_until_due, due_date, ctx.now, creating=True)
    currency = (
        supported_currency(params["currency"], param="currency") if "currency" in params else None
    )
    currency = currency or customer.currency or "usd"
    payment_settings = params.get("payment_settings") or {}
    if payment_settings.get("payment_method_options") not in (None, UNSET):
        raise invalid_request(
            "The Stripe emulator does not support `payment_settings[payment_method_options]`.",
            param="payment_settings[payment_method_options]",
        )
    behavior = params.get("pending_invoice_items_behavior", "exclude")
    invoice = InvoiceRec(
        id=new_id("in"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        customer=customer.id,
        currency=currency,
        collection_method=collection_method,
        auto_advance=params.get("auto_advance", False),
        days_until_due=days_until_due,
        due_date=due_date
        if due_date is not None
        else (ctx.now + days_until_due * 86400 if days_until_due is not None else None),
        description=params.get("description"),
        footer=params.get("footer"),
        statement_descriptor=params.get("statement_descriptor"),
        metadata=merge_metadata(params.get("metadata", {}), param="metadata"),
        payment_method_types=_payment_method_types(payment_settings.get("payment_method_types")),
        effective_at=params.get("effective_at"),
        number=params.get("number"),
        custom_fields=_custom_fields(params.get("custom_fields")),
        automatic_tax=automatic_tax,
        seq=ctx.account.next_seq(),
    )
    copy_customer_fields(invoice, customer)
    if behavior == "include":
        pending = [
            item
            for item in newest_first(ctx.account.invoice_items.values())
            if not item.deleted
            and item.invoice is None
            and item.customer == customer.id
            and item.currency == currency
        ]
        for item in pending:
            item.invoice = invoice.id
            invoice.item_ids.append(item.id)
    if customer.currency is None:
        customer.currency = currency
    ctx.account.invoices[invoice.id] = invoice
    ctx.store.index_invoice(invoice.id, ctx.account)
    rendered = render_invoice(ctx.account, invoice, expand=expand)
    emit(ctx, "invoice.created", render_invoice(ctx.account, invoice))
    return rendered


def retrieve_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = ctx.account.invoices.get(invoice_id)
    if invoice is None:
        raise no_such("invoice", invoice_id)
    if invoice.deleted:
        raise no_such("invoice", invoice_id)
    return render_invoice(ctx.account, invoice, expand=expansions(params, INVOICE_EXPANDABLE))


_DRAFT_ONLY_FIELDS = (
    "automatic_tax",
    "collection_method",
    "currency",
    "days_until_due",
    "due_date",
    "payment_settings",
    "statement_descriptor",
    "effective_at",
    "number",
)


def update_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    reject_unsupported(params, _INVOICE_UNSUPPORTED)
    expand = expansions(params, INVOICE_EXPANDABLE)
    if invoice.status != "draft":
        for name in _DRAFT_ONLY_FIELDS:
            if name in params:
                raise invoice_not_editable(
                    f"Finalized invoices can't be updated in this way: `{name}` can only be "
                    f"changed while the invoice is a draft (this invoice is {invoice.status}).",
                    param=name,
                )
        if invoice.status in ("paid", "void") and set(params) - {"metadata", "expand"}:
            raise invoice_not_editable(
                f"This invoice is {invoice.status}; only its metadata can be updated."
            )
    collection_method = params.get("collection_method", invoice.collection_method)
    days_until_due = params.get(
        "days_until_due", None if "due_date" in params else invoice.days_until_due
    )
    due_date = params.get("due_date")
    if collection_method == "charge_automatically" and "collection_method" in params:
        days_until_due = params.get("days_until_due")
    if "currency" in params:
        if invoice.item_ids:
            raise invalid_request(
                "You can't change the currency of an invoice that has line items.",
                param="currency",
            )
        supported_currency(params["currency"], param="currency")
    _check_due(collection_method, days_until_due, due_date, ctx.now, creating=False)
    custom_fields = _custom_fields(params["custom_fields"]) if "custom_fields" in params else None
    automatic_tax = (
        _automatic_tax(params["automatic_tax"], ctx.account.customers[invoice.customer])
        if "automatic_tax" in params
        else invoice.automatic_tax
    )
    metadata = (
        merge_metadata(params["metadata"], invoice.metadata, param="metadata")
        if "metadata" in params
        else invoice.metadata
    )
    before = render_invoice(ctx.account, invoice)
    if "collection_method" in params:
        invoice.collection_method = collection_method
        if collection_method == "charge_automatically":
            invoice.days_until_due = None
            invoice.due_date = None
    if "days_until_due" in params:
        days: int = params["days_until_due"]
        invoice.days_until_due = days
        invoice.due_date = invoice.created + days * 86400
    if "due_date" in params:
        invoice.due_date = due_date
        invoice.days_until_due = None
    if "currency" in params:
        invoice.currency = params["currency"]
    if "payment_settings" in params:
        settings = params["payment_settings"]
        if "payment_method_types" in settings:
            invoice.payment_method_types = _payment_method_types(settings["payment_method_types"])
    for name in ("description", "footer", "statement_descriptor"):
        if name in params:
            value = params[name]
            setattr(invoice, name, None if value is UNSET else value)
    if "custom_fields" in params:
        invoice.custom_fields = custom_fields
    if "automatic_tax" in params:
        invoice.automatic_tax = automatic_tax
    if "auto_advance" in params:
        invoice.auto_advance = params["auto_advance"]
    invoice.metadata = metadata
    if "effective_at" in params:
        invoice.effective_at = params["effective_at"]
    if "number" in params:
        invoice.number = params["number"]
    after = render_invoice(ctx.account, invoice)
    previous = previous_attributes(before, after)
    if previous:
        emit(ctx, "invoice.updated", after, previous)
    return render_invoice(ctx.account, invoice, expand=expand)


def delete_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    if invoice.status != "draft":
        raise invalid_request("You can only delete draft invoices.")
    rendered = render_invoice(ctx.account, invoice)
    invoice.deleted = True
    for item_id in invoice.item_ids:
        ctx.account.invoice_items[item_id].deleted = True
    emit(ctx, "invoice.deleted", rendered)
    return {"id": invoice.id, "object": "invoice", "deleted": True}


def list_invoices(ctx: Ctx, params: Params) -> JSON:
    status = params.get("status")
    customer = params.get("customer")
    collection_method = params.get("collection_method")
    created = params.get("created")
    due_date = params.get("due_date")
    reject_unsupported(params, ("subscription", "customer_account"))
    expand = expansions(params, INVOICE_EXPANDABLE, prefix="data.")
    records = [
        invoice
        for invoice in newest_first(ctx.account.invoices.values())
        if not invoice.deleted
        and (status is None or invoice.status == status)
        and (customer is None or invoice.customer == customer)
        and (collection_method is None or invoice.collection_method == collection_method)
        and matches_range(created, invoice.created)
        and (
            due_date is None
            or (invoice.due_date is not None and matches_range(due_date, invoice.due_date))
        )
    ]
    return paginate(
        records,
        params,
        url="/v1/invoices",
        render=lambda record: render_invoice(ctx.account, record, expand=expand),
        id_of=lambda record: record.id,
        kind="invoice",
    )
