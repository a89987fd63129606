"""``/v1/invoiceitems``: pending items of a customer, or lines of a draft invoice."""

from __future__ import annotations

from decimal import Decimal

from ..errors import invalid_request, invoice_not_editable, no_such, parameter_missing
from ..models import JSON, InvoiceItemRec, InvoiceRec
from ..render import render_invoice, render_invoice_item
from .context import Ctx, Params
from .customers import require_customer
from .events import emit, previous_attributes
from .invoices import require_invoice
from .lists import matches_range, newest_first, paginate
from .params import merge_metadata, reject_unsupported, supported_currency
from .pricing import (
    Priced,
    check_amount_for_currency,
    item_fields,
    item_period,
    namer,
    new_item,
    price_line,
)

_ITEM_UNSUPPORTED = ("discounts", "tax_rates", "tax_code", "subscription", "customer_account")


def create_invoice_item(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, _ITEM_UNSUPPORTED)
    invoice: InvoiceRec | None = None
    if "invoice" in params:
        invoice = require_invoice(ctx, params["invoice"], param="invoice", status=400)
        if invoice.status != "draft":
            raise invoice_not_editable(
                f"Invoice {invoice.id} is no longer editable: you can only add invoice items "
                "to draft invoices.",
                param="invoice",
            )
    customer_id = params.get("customer") or (invoice.customer if invoice else None)
    if customer_id is None:
        raise parameter_missing("customer")
    customer = require_customer(ctx, customer_id, param="customer", status=400)
    if invoice is not None and invoice.customer != customer.id:
        raise invalid_request(
            f"The invoice {invoice.id} belongs to customer {invoice.customer}, not {customer.id}.",
            param="customer",
        )
    priced = price_line(params, namer(""), allow_unit_amount_decimal=True)
    currency = params.get("currency")
    if currency is not None:
        currency = supported_currency(currency, param="currency")
    if priced.currency is not None:
        if currency is not None and currency != priced.currency:
            raise invalid_request(
                f"The currency of `price_data` ({priced.currency}) must match `currency` "
                f"({currency}).",
                param="price_data[currency]",
            )
        currency = priced.currency
    if invoice is not None:
        if currency is not None and currency != invoice.currency:
            raise invalid_request(
                f"The currency of the invoice item ({currency}) must match the currency of "
                f"invoice {invoice.id} ({invoice.currency}).",
                param="currency",
            )
        currency = invoice.currency
    if currency is None:
        currency = customer.currency or "usd"
    check_amount_for_currency(priced.amount, currency, param="amount")
    fields = item_fields(params, namer(""), ctx.now)
    if invoice is not None:
        before = render_invoice(ctx.account, invoice)
    item = new_item(
        ctx,
        params,
        fields=fields,
        customer=customer.id,
        currency=currency,
        priced=priced,
        invoice=invoice.id if invoice else None,
    )
    ctx.account.invoice_items[item.id] = item
    rendered = render_invoice_item(item)
    emit(ctx, "invoiceitem.created", rendered)
    if invoice is not None:
        invoice.item_ids.append(item.id)
        after = render_invoice(ctx.account, invoice)
        emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    return rendered


def _require_invoice_item(ctx: Ctx, item_id: str) -> InvoiceItemRec:
    item = ctx.account.invoice_items.get(item_id)
    if item is None or item.deleted:
        raise no_such("invoiceitem", item_id)
    return item


def retrieve_invoice_item(ctx: Ctx, params: Params, item_id: str) -> JSON:
    item = ctx.account.invoice_items.get(item_id)
    if item is None:
        raise no_such("invoiceitem", item_id)
    return render_invoice_item(item)


def _item_editable(ctx: Ctx, item: InvoiceItemRec) -> InvoiceRec | None:
    if item.invoice is None:
        return None
    invoice = ctx.account.invoices[item.invoice]
    if invoice.status != "draft":
        raise invoice_not_editable(
            f"The invoice item {item.id} belongs to invoice {invoice.id}, which is no longer "
            "editable."
        )
    return invoice


def update_invoice_item(ctx: Ctx, params: Params, item_id: str) -> JSON:
    item = _require_invoice_item(ctx, item_id)
    reject_unsupported(params, ("discounts", "tax_rates", "tax_code", "invoicing_rules"))
    invoice = _item_editable(ctx, item)
    pricing_given = any(
        name in params
        for name in ("amount", "price_data", "pricing", "unit_amount_decimal", "quantity")
    ) or ("quantity_decimal" in params)
    priced: Priced | None = None
    if pricing_given:
        merged = dict(params)
        if not any(n in params for n in ("amount", "price_data", "pricing", "unit_amount_decimal")):
            merged["unit_amount_decimal"] = item.unit_amount_decimal or Decimal(item.amount)
        priced = price_line(merged, namer(""), allow_unit_amount_decimal=True)
        if priced.currency is not None and priced.currency != item.currency:
            raise invalid_request(
                "The currency of `price_data` must match the invoice item's currency.",
                param="price_data[currency]",
            )
        check_amount_for_currency(priced.amount, item.currency, param="amount")
    metadata = (
        merge_metadata(params["metadata"], item.metadata, param="metadata")
        if "metadata" in params
        else item.metadata
    )
    period = (
        item_period(params, namer(""), ctx.now)
        if "period" in params
        else (item.period_start, item.period_end)
    )
    before_invoice = render_invoice(ctx.account, invoice) if invoice else None
    before = render_invoice_item(item)
    if priced is not None:
        item.amount = priced.amount
        item.quantity = priced.quantity
        item.quantity_decimal = priced.quantity_decimal
        item.unit_amount_decimal = priced.unit_amount_decimal
        if priced.price is not None:
            item.price, item.product = priced.price, priced.product
    if "description" in params:
        item.description = params["description"]
    if "discountable" in params:
        item.discountable = params["discountable"]
    item.metadata = metadata
    item.period_start, item.period_end = period
    after = render_invoice_item(item)
    if previous_attributes(before, after):
        emit(ctx, "invoiceitem.updated", after, previous_attributes(before, after))
    if invoice is not None and before_invoice is not None:
        after_invoice = render_invoice(ctx.account, invoice)
        if previous_attributes(before_invoice, after_invoice):
            emit(
                ctx,
                "invoice.updated",
                after_invoice,
                previous_attributes(before_invoice, after_invoice),
            )
    return after


def delete_invoice_item(ctx: Ctx, params: Params, item_id: str) -> JSON:
    item = _require_invoice_item(ctx, item_id)
    invoice = _item_editable(ctx, item)
    before_invoice = render_invoice(ctx.account, invoice) if invoice else None
    rendered = render_invoice_item(item)
    item.deleted = True
    if invoice is not None and before_invoice is not None:
        invoice.item_ids.remove(item.id)
        after_invoice = render_invoice(ctx.account, invoice)
        emit(
            ctx,
            "invoice.updated",
            after_invoice,
            previous_attributes(before_invoice, after_invoice),
        )
    emit(ctx, "invoiceitem.deleted", rendered)
    return render_invoice_item(item)


def list_invoice_items(ctx: Ctx, params: Params) -> JSON:
    customer = params.get("customer")
    invoice = params.get("invoice")
    pending = params.get("pending")
    created = params.get("created")
    records = [
        item
        for item in newest_first(ctx.account.invoice_items.values())
        if not item.deleted
        and (customer is None or item.customer == customer)
        and (invoice is None or item.invoice == invoice)
        and (pending is None or (item.invoice is None) == pending)
        and matches_range(created, item.created)
    ]
    return paginate(
        records,
        params,
        url="/v1/invoiceitems",
        render=render_invoice_item,
        id_of=lambda record: record.id,
        kind="invoiceitem",
    )
