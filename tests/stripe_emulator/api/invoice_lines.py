"""An invoice's lines: ``GET /v1/invoices/{id}/lines`` and ``add_lines`` on a draft."""

from __future__ import annotations

from ..errors import (
    invalid_request,
    invoice_not_editable,
    no_such,
    parameter_missing,
    parameters_exclusive,
)
from ..models import JSON, InvoiceItemRec
from ..render import render_invoice, render_line
from .context import Ctx, Params
from .events import emit, previous_attributes
from .invoices import INVOICE_EXPANDABLE, require_invoice
from .lists import paginate
from .params import expansions, merge_metadata, reject_unsupported
from .pricing import (
    ItemFields,
    Priced,
    check_amount_for_currency,
    item_fields,
    namer,
    new_item,
    price_line,
)


def list_invoice_lines(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    items = [ctx.account.invoice_items[item_id] for item_id in invoice.item_ids]
    return paginate(
        items,
        params,
        url=f"/v1/invoices/{invoice.id}/lines",
        render=render_line,
        id_of=lambda item: item.line_id,
        kind="line_item",
    )


def add_lines(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = require_invoice(ctx, invoice_id)
    expand = expansions(params, INVOICE_EXPANDABLE)
    if invoice.status != "draft":
        raise invoice_not_editable(
            f"You can only add lines to draft invoices; this invoice is {invoice.status}."
        )
    lines: list[Params] = params["lines"]
    if not lines:
        raise parameter_missing("lines")
    planned: list[tuple[Params, ItemFields, Priced | None, InvoiceItemRec | None]] = []
    for index, line in enumerate(lines):
        name = namer(f"lines[{index}]")
        reject_unsupported(
            {name(key): value for key, value in line.items()},
            (name("discounts"), name("tax_amounts"), name("tax_rates")),
        )
        if "invoice_item" in line:
            others = [
                n
                for n in ("amount", "price_data", "pricing", "quantity", "quantity_decimal")
                if n in line
            ]
            if others:
                raise parameters_exclusive(name("invoice_item"), name(others[0]))
            item = ctx.account.invoice_items.get(line["invoice_item"])
            if item is None or item.deleted:
                raise no_such(
                    "invoiceitem", line["invoice_item"], param=name("invoice_item"), status=400
                )
            if item.invoice is not None or item.customer != invoice.customer:
                raise invalid_request(
                    f"The invoice item {item.id} is not a pending item of customer "
                    f"{invoice.customer}.",
                    param=name("invoice_item"),
                )
            if item.currency != invoice.currency:
                raise invalid_request(
                    f"The currency of the invoice item ({item.currency}) must match the "
                    f"currency of the invoice ({invoice.currency}).",
                    param=name("invoice_item"),
                )
            existing_fields = ItemFields(
                metadata=merge_metadata(
                    line.get("metadata", {}), item.metadata, param=name("metadata")
                ),
                period=(item.period_start, item.period_end),
            )
            planned.append((line, existing_fields, None, item))
            continue
        priced = price_line(line, name, allow_unit_amount_decimal=False)
        if priced.currency is not None and priced.currency != invoice.currency:
            raise invalid_request(
                f"The currency of this line ({priced.currency}) must match the currency of "
                f"the invoice ({invoice.currency}).",
                param=name("price_data") + "[currency]",
            )
        check_amount_for_currency(priced.amount, invoice.currency, param=name("amount"))
        if invoice.automatic_tax and priced.amount < 0:
            # API reference, invoice automatic_tax[enabled]: "invoice items with ... negative
            # amounts ... cannot be added to automatic tax invoices".
            raise invalid_request(
                "Invoice items with negative amounts cannot be added to invoices with "
                "automatic tax enabled.",
                param=name("amount"),
            )
        planned.append((line, item_fields(line, name, ctx.now), priced, None))
    new_metadata = (
        merge_metadata(params["invoice_metadata"], invoice.metadata, param="invoice_metadata")
        if "invoice_metadata" in params
        else None
    )
    before = render_invoice(ctx.account, invoice)
    for line, fields, line_price, existing in planned:
        if existing is not None:
            existing.invoice = invoice.id
            existing.metadata = fields.metadata
            invoice.item_ids.append(existing.id)
            continue
        assert line_price is not None
        item = new_item(
            ctx,
            line,
            fields=fields,
            customer=invoice.customer,
            currency=invoice.currency,
            priced=line_price,
            invoice=invoice.id,
        )
        ctx.account.invoice_items[item.id] = item
        invoice.item_ids.append(item.id)
    if new_metadata is not None:
        invoice.metadata = new_metadata
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.updated", after, previous_attributes(before, after))
    return render_invoice(ctx.account, invoice, expand=expand)
