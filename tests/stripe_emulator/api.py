"""The emulated Stripe API: one function per endpoint, all run under the store's lock.

Handlers receive parameters already validated against the installed stripe-python's TypedDicts
(see :mod:`.schema`), so they only implement the rules the TypedDicts cannot express: which
combinations are allowed, the invoice lifecycle, money arithmetic, and the events each change
emits. Every rule raises :class:`~.errors.StripeError` *before* mutating anything, so a rejected
request changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from . import currencies
from .errors import (
    StripeError,
    invalid_request,
    invoice_not_editable,
    no_such,
    parameter_missing,
    parameters_exclusive,
)
from .ids import new_id, new_invoice_prefix, random_token
from .models import (
    AUTO_FINALIZE_DELAY,
    JSON,
    Account,
    CustomerRec,
    EventRec,
    InvoiceItemRec,
    InvoicePaymentRec,
    InvoiceRec,
    WebhookEndpointRec,
    amount_due,
    amount_remaining,
)
from .render import (
    render_customer,
    render_event,
    render_invoice,
    render_invoice_item,
    render_invoice_payment,
    render_line,
    render_webhook_endpoint,
)
from .schema import UNSET
from .webhooks import Delivery, encode_payload

if TYPE_CHECKING:
    from .store import Store

EVENT_RETENTION_SECONDS = 30 * 24 * 3600
MAX_WEBHOOK_ENDPOINTS = 16


@dataclass
class Ctx:
    store: Store
    account: Account
    now: int
    request_id: str | None
    idempotency_key: str | None
    deliveries: list[Delivery] = field(default_factory=list)


Params = dict[str, Any]
Handler = Callable[..., JSON]


# --- shared helpers ---------------------------------------------------------------------------


def _expand(params: Params, allowed: Iterable[str], *, prefix: str = "") -> set[str]:
    requested: list[str] = params.get("expand") or []
    wanted: set[str] = set()
    for index, path in enumerate(requested):
        bare = path[len(prefix) :] if prefix and path.startswith(prefix) else path
        if (prefix and not path.startswith(prefix)) or bare not in allowed:
            raise invalid_request(
                f"This property cannot be expanded ({path}).", param=f"expand[{index}]"
            )
        wanted.add(bare)
    return wanted


def _metadata(value: Any, current: dict[str, str] | None = None, *, param: str) -> dict[str, str]:
    """Stripe's metadata semantics: ``metadata=`` clears, ``metadata[k]=`` removes one key."""
    result = dict(current or {})
    if value is UNSET:
        return {}
    for key, item in value.items():
        if item is UNSET:
            result.pop(key, None)
        else:
            if len(key) > 40:
                raise invalid_request(
                    f"Metadata keys can have up to 40 characters, but you passed in a key "
                    f"with {len(key)} characters.",
                    param=f"{param}[{key}]",
                )
            if len(item) > 500:
                raise invalid_request(
                    f"Metadata values can have up to 500 characters, but you passed in a "
                    f"value with {len(item)} characters.",
                    param=f"{param}[{key}]",
                )
            result[key] = item
    if len(result) > 50:
        raise invalid_request(
            f"You can have up to 50 metadata keys, but you passed in {len(result)} keys.",
            param=param,
        )
    return result


def _currency(value: str, *, param: str) -> str:
    if value != value.lower() or value not in currencies.SUPPORTED:
        raise invalid_request(
            f"Invalid currency: {value}. Stripe currently supports these currencies: "
            + ", ".join(sorted(currencies.SUPPORTED)),
            param=param,
        )
    return value


def _created_filter(value: Any, created: int) -> bool:
    if value is None:
        return True
    if isinstance(value, int):
        return created == value
    checks = {
        "gt": lambda bound: created > bound,
        "gte": lambda bound: created >= bound,
        "lt": lambda bound: created < bound,
        "lte": lambda bound: created <= bound,
    }
    return all(checks[op](bound) for op, bound in value.items())


T = TypeVar("T")


def paginate(
    items: Sequence[T],
    params: Params,
    *,
    url: str,
    render: Callable[[T], JSON],
    id_of: Callable[[T], str],
    kind: str,
) -> JSON:
    """Stripe's cursor pagination over ``items`` (already in list order, newest first)."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid_request(
            f"Invalid limit: must be between 1 and 100 (you passed {limit})", param="limit"
        )
    starting_after = params.get("starting_after")
    ending_before = params.get("ending_before")
    if starting_after is not None and ending_before is not None:
        raise parameters_exclusive("ending_before", "starting_after")
    ids = [id_of(item) for item in items]
    if starting_after is not None:
        if starting_after not in ids:
            raise no_such(kind, starting_after, param="starting_after", status=400)
        start = ids.index(starting_after) + 1
        page = items[start : start + limit]
        has_more = start + limit < len(items)
    elif ending_before is not None:
        if ending_before not in ids:
            raise no_such(kind, ending_before, param="ending_before", status=400)
        end = ids.index(ending_before)
        start = max(end - limit, 0)
        page = items[start:end]
        has_more = start > 0
    else:
        page = items[:limit]
        has_more = len(items) > limit
    return {
        "object": "list",
        "data": [render(item) for item in page],
        "has_more": has_more,
        "url": url,
    }


def _newest_first(records: Iterable[T]) -> list[T]:
    return sorted(records, key=lambda record: getattr(record, "seq", 0), reverse=True)


def _diff(before: JSON, after: JSON) -> JSON:
    return {
        key: before[key]
        for key in before
        if key not in ("lines", "payments") and before.get(key) != after.get(key)
    }


def emit(ctx: Ctx, event_type: str, obj: JSON, previous: JSON | None = None) -> EventRec:
    """Record an event and schedule its webhooks to every endpoint subscribed to it."""
    account = ctx.account
    data: JSON = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    endpoints = [
        endpoint
        for endpoint in account.webhook_endpoints.values()
        if not endpoint.deleted and endpoint.wants(event_type)
    ]
    event = EventRec(
        id=new_id("evt"),
        type=event_type,
        created=ctx.now,
        livemode=account.livemode,
        data=data,
        request_id=ctx.request_id,
        idempotency_key=ctx.idempotency_key,
        pending_webhooks=len(endpoints),
        seq=account.next_seq(),
    )
    account.events[event.id] = event
    if endpoints:
        payload = encode_payload(render_event(event))
        for endpoint in endpoints:
            ctx.deliveries.append(
                Delivery(account, event, endpoint.id, endpoint.url, endpoint.secret, payload)
            )
    return event


def _reject_unsupported(params: Params, names: Iterable[str]) -> None:
    for name in names:
        if name in params and params[name] is not UNSET:
            raise invalid_request(
                f"The Stripe emulator does not support the `{name}` parameter.", param=name
            )


# --- customers --------------------------------------------------------------------------------


def _customer(ctx: Ctx, customer_id: str, *, param: str = "id", status: int = 404) -> CustomerRec:
    customer = ctx.account.customers.get(customer_id)
    if customer is None or customer.deleted:
        raise no_such("customer", customer_id, param=param, status=status)
    return customer


def create_customer(ctx: Ctx, params: Params) -> JSON:
    _reject_unsupported(params, ("cash_balance", "payment_method", "source", "tax_id_data"))
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
        description=params.get("description"),
        phone=params.get("phone"),
        metadata=_metadata(params.get("metadata", {}), param="metadata"),
        address=_address(params.get("address")),
        invoice_prefix=prefix or new_invoice_prefix(),
        next_invoice_sequence=params.get("next_invoice_sequence", 1),
        preferred_locales=params.get("preferred_locales", []),
        tax_exempt=params.get("tax_exempt", "none") or "none",
        seq=ctx.account.next_seq(),
    )
    ctx.account.customers[customer.id] = customer
    rendered = render_customer(customer)
    emit(ctx, "customer.created", rendered)
    return rendered


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
    customer = _customer(ctx, customer_id)
    _reject_unsupported(params, ("cash_balance", "source", "default_source"))
    metadata = (
        _metadata(params["metadata"], customer.metadata, param="metadata")
        if "metadata" in params
        else customer.metadata
    )
    before = render_customer(customer)
    for name in ("email", "name", "description", "phone"):
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
    previous = _diff(before, after)
    if previous:
        emit(ctx, "customer.updated", after, previous)
        _refresh_draft_customer_fields(ctx, customer)
    return after


def _refresh_draft_customer_fields(ctx: Ctx, customer: CustomerRec) -> None:
    """``customer_email`` & co. follow the customer until the invoice is finalized."""
    for invoice in ctx.account.invoices.values():
        if invoice.customer == customer.id and invoice.status == "draft" and not invoice.deleted:
            _copy_customer_fields(invoice, customer)


def _copy_customer_fields(invoice: InvoiceRec, customer: CustomerRec) -> None:
    invoice.customer_email = customer.email
    invoice.customer_name = customer.name
    invoice.customer_phone = customer.phone
    invoice.customer_address = dict(customer.address) if customer.address else None


def delete_customer(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = _customer(ctx, customer_id)
    before = render_customer(customer)
    customer.deleted = True
    emit(ctx, "customer.deleted", before)
    return render_customer(customer)


def list_customers(ctx: Ctx, params: Params) -> JSON:
    email = params.get("email")
    created = params.get("created")
    records = [
        customer
        for customer in _newest_first(ctx.account.customers.values())
        if not customer.deleted
        and (email is None or customer.email == email)
        and _created_filter(created, customer.created)
    ]
    return paginate(
        records,
        params,
        url="/v1/customers",
        render=render_customer,
        id_of=lambda record: record.id,
        kind="customer",
    )


# --- invoice items and lines -------------------------------------------------------------------


@dataclass
class _Priced:
    amount: int
    quantity: int
    quantity_decimal: Decimal
    unit_amount_decimal: Decimal | None
    currency: str | None
    price: str | None
    product: str | None


Namer = Callable[[str], str]


def _namer(prefix: str) -> Namer:
    """Stripe's name for a nested parameter: ``lines[0]`` + ``amount`` -> ``lines[0][amount]``."""
    if not prefix:
        return lambda name: name
    return lambda name: f"{prefix}[{name}]"


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _quantity(params: Params, name: Namer) -> tuple[int, Decimal, bool]:
    if "quantity" in params and "quantity_decimal" in params:
        raise parameters_exclusive(name("quantity"), name("quantity_decimal"))
    if "quantity_decimal" in params:
        decimal_quantity: Decimal = params["quantity_decimal"]
        if decimal_quantity < 0:
            raise invalid_request(
                "Quantity must be a non-negative number.", param=name("quantity_decimal")
            )
        return _round(decimal_quantity), decimal_quantity, True
    if "quantity" in params:
        quantity: int = params["quantity"]
        if quantity < 0:
            raise invalid_request(
                "Quantity must be a non-negative integer.", param=name("quantity")
            )
        return quantity, Decimal(quantity), True
    return 1, Decimal(1), False


def _price(params: Params, name: Namer, *, allow_unit_amount_decimal: bool) -> _Priced:
    """A line's amount from ``amount``, ``unit_amount_decimal``, ``price_data`` or ``pricing``."""
    modes = [name for name in ("amount", "price_data", "pricing") if name in params]
    if allow_unit_amount_decimal and "unit_amount_decimal" in params:
        modes.append("unit_amount_decimal")
    if len(modes) > 1:
        raise parameters_exclusive(*(name(mode) for mode in modes))
    quantity, quantity_decimal, quantity_given = _quantity(params, name)
    if not modes:
        names = "`amount`, `price_data`, `pricing`" + (
            " or `unit_amount_decimal`" if allow_unit_amount_decimal else ""
        )
        raise StripeError(
            400,
            f"You must specify one of {names}.",
            code="parameter_missing",
            param=name("amount"),
        )
    mode = modes[0]
    if mode == "amount":
        if quantity_given and quantity_decimal != 1:
            raise invalid_request(
                f"`{name('amount')}` is the total of the line, so `{name('quantity')}` can only "
                f"be 1 with it. Use `{name('price_data')}` with a quantity instead.",
                param=name("quantity"),
            )
        amount: int = params["amount"]
        return _Priced(amount, 1, Decimal(1), Decimal(amount), None, None, None)
    if mode == "unit_amount_decimal":
        unit: Decimal = params["unit_amount_decimal"]
        return _Priced(
            _round(unit * quantity_decimal), quantity, quantity_decimal, unit, None, None, None
        )
    if mode == "pricing":
        price_id = params["pricing"].get("price")
        if price_id is None:
            raise parameter_missing(name("pricing") + "[price]")
        raise no_such("price", price_id, param=name("pricing") + "[price]", status=400)
    price_data: Params = params["price_data"]
    pd_prefix = name("price_data")
    if "unit_amount" in price_data and "unit_amount_decimal" in price_data:
        raise parameters_exclusive(f"{pd_prefix}[unit_amount]", f"{pd_prefix}[unit_amount_decimal]")
    if "unit_amount" in price_data:
        unit = Decimal(price_data["unit_amount"])
        if unit < 0:
            raise invalid_request(
                "This value must be greater than or equal to 0.", param=f"{pd_prefix}[unit_amount]"
            )
    elif "unit_amount_decimal" in price_data:
        unit = price_data["unit_amount_decimal"]
    else:
        raise parameter_missing(f"{pd_prefix}[unit_amount]")
    if "product" in price_data and "product_data" in price_data:
        raise parameters_exclusive(f"{pd_prefix}[product]", f"{pd_prefix}[product_data]")
    if "product" in price_data:
        product = price_data["product"]
    elif "product_data" in price_data:
        product = new_id("prod", 14)
    else:
        raise parameter_missing(f"{pd_prefix}[product]")
    currency = _currency(price_data["currency"], param=f"{pd_prefix}[currency]")
    return _Priced(
        _round(unit * quantity_decimal),
        quantity,
        quantity_decimal,
        unit,
        currency,
        new_id("price"),
        product,
    )


def check_amount_for_currency(amount: int, currency: str, *, param: str) -> None:
    if currency in currencies.THREE_DECIMAL and amount % 10 != 0:
        raise invalid_request(
            f"Invalid amount {amount} for currency {currency}: three-decimal currencies are "
            "charged in steps of 10 minor units, so the amount must end in 0.",
            param=param,
        )
    if abs(amount) > 99_999_999_999:
        raise StripeError(
            400,
            "Amount must be no more than 999,999,999.99",
            code="amount_too_large",
            param=param,
        )


def _period(params: Params, name: Namer, now: int) -> tuple[int, int]:
    period = params.get("period")
    if period is None:
        return now, now
    if period["end"] < period["start"]:
        raise invalid_request(
            "The period end must be greater than or equal to the period start.",
            param=name("period") + "[end]",
        )
    return period["start"], period["end"]


@dataclass
class _ItemFields:
    """An item's validated metadata and period, computed before anything is changed."""

    metadata: dict[str, str]
    period: tuple[int, int]


def _item_fields(params: Params, name: Namer, now: int) -> _ItemFields:
    return _ItemFields(
        metadata=_metadata(params.get("metadata", {}), param=name("metadata")),
        period=_period(params, name, now),
    )


def _new_item(
    ctx: Ctx,
    params: Params,
    *,
    fields: _ItemFields,
    customer: str,
    currency: str,
    priced: _Priced,
    invoice: str | None,
) -> InvoiceItemRec:
    start, end = fields.period
    discountable = params.get("discountable", priced.amount >= 0)
    item = InvoiceItemRec(
        id=new_id("ii"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        customer=customer,
        currency=currency,
        amount=priced.amount,
        quantity=priced.quantity,
        quantity_decimal=priced.quantity_decimal,
        unit_amount_decimal=priced.unit_amount_decimal,
        description=params.get("description"),
        metadata=fields.metadata,
        period_start=start,
        period_end=end,
        discountable=discountable,
        price=priced.price,
        product=priced.product,
        invoice=invoice,
        line_id=new_id("il"),
        seq=ctx.account.next_seq(),
    )
    return item


_ITEM_UNSUPPORTED = ("discounts", "tax_rates", "tax_code", "subscription", "customer_account")


def create_invoice_item(ctx: Ctx, params: Params) -> JSON:
    _reject_unsupported(params, _ITEM_UNSUPPORTED)
    invoice: InvoiceRec | None = None
    if "invoice" in params:
        invoice = _invoice(ctx, params["invoice"], param="invoice", status=400)
        if invoice.status != "draft":
            raise invoice_not_editable(
                f"Invoice {invoice.id} is no longer editable: you can only add invoice items "
                "to draft invoices.",
                param="invoice",
            )
    customer_id = params.get("customer") or (invoice.customer if invoice else None)
    if customer_id is None:
        raise parameter_missing("customer")
    customer = _customer(ctx, customer_id, param="customer", status=400)
    if invoice is not None and invoice.customer != customer.id:
        raise invalid_request(
            f"The invoice {invoice.id} belongs to customer {invoice.customer}, not {customer.id}.",
            param="customer",
        )
    priced = _price(params, _namer(""), allow_unit_amount_decimal=True)
    currency = params.get("currency")
    if currency is not None:
        currency = _currency(currency, param="currency")
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
    fields = _item_fields(params, _namer(""), ctx.now)
    if invoice is not None:
        before = render_invoice(ctx.account, invoice)
    item = _new_item(
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
        emit(ctx, "invoice.updated", after, _diff(before, after))
    return rendered


def _invoice_item(ctx: Ctx, item_id: str) -> InvoiceItemRec:
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
    item = _invoice_item(ctx, item_id)
    _reject_unsupported(params, ("discounts", "tax_rates", "tax_code", "invoicing_rules"))
    invoice = _item_editable(ctx, item)
    pricing_given = any(
        name in params
        for name in ("amount", "price_data", "pricing", "unit_amount_decimal", "quantity")
    ) or ("quantity_decimal" in params)
    priced: _Priced | None = None
    if pricing_given:
        merged = dict(params)
        if not any(n in params for n in ("amount", "price_data", "pricing", "unit_amount_decimal")):
            merged["unit_amount_decimal"] = item.unit_amount_decimal or Decimal(item.amount)
        priced = _price(merged, _namer(""), allow_unit_amount_decimal=True)
        if priced.currency is not None and priced.currency != item.currency:
            raise invalid_request(
                "The currency of `price_data` must match the invoice item's currency.",
                param="price_data[currency]",
            )
        check_amount_for_currency(priced.amount, item.currency, param="amount")
    metadata = (
        _metadata(params["metadata"], item.metadata, param="metadata")
        if "metadata" in params
        else item.metadata
    )
    period = (
        _period(params, _namer(""), ctx.now)
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
    if _diff(before, after):
        emit(ctx, "invoiceitem.updated", after, _diff(before, after))
    if invoice is not None and before_invoice is not None:
        after_invoice = render_invoice(ctx.account, invoice)
        if _diff(before_invoice, after_invoice):
            emit(ctx, "invoice.updated", after_invoice, _diff(before_invoice, after_invoice))
    return after


def delete_invoice_item(ctx: Ctx, params: Params, item_id: str) -> JSON:
    item = _invoice_item(ctx, item_id)
    invoice = _item_editable(ctx, item)
    before_invoice = render_invoice(ctx.account, invoice) if invoice else None
    rendered = render_invoice_item(item)
    item.deleted = True
    if invoice is not None and before_invoice is not None:
        invoice.item_ids.remove(item.id)
        after_invoice = render_invoice(ctx.account, invoice)
        emit(ctx, "invoice.updated", after_invoice, _diff(before_invoice, after_invoice))
    emit(ctx, "invoiceitem.deleted", rendered)
    return render_invoice_item(item)


def list_invoice_items(ctx: Ctx, params: Params) -> JSON:
    customer = params.get("customer")
    invoice = params.get("invoice")
    pending = params.get("pending")
    created = params.get("created")
    records = [
        item
        for item in _newest_first(ctx.account.invoice_items.values())
        if not item.deleted
        and (customer is None or item.customer == customer)
        and (invoice is None or item.invoice == invoice)
        and (pending is None or (item.invoice is None) == pending)
        and _created_filter(created, item.created)
    ]
    return paginate(
        records,
        params,
        url="/v1/invoiceitems",
        render=render_invoice_item,
        id_of=lambda record: record.id,
        kind="invoiceitem",
    )


# --- invoices ---------------------------------------------------------------------------------


def _invoice(ctx: Ctx, invoice_id: str, *, param: str = "id", status: int = 404) -> InvoiceRec:
    invoice = ctx.account.invoices.get(invoice_id)
    if invoice is None or invoice.deleted:
        raise no_such("invoice", invoice_id, param=param, status=status)
    return invoice


_INVOICE_UNSUPPORTED = (
    "account_tax_ids",
    "application_fee_amount",
    "custom_fields",
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


def _payment_method_types(value: Any) -> list[str] | None:
    if value is None or value is UNSET:
        return None
    return list(value)


_INVOICE_EXPANDABLE = ("customer", "payments")


def create_invoice(ctx: Ctx, params: Params) -> JSON:
    _reject_unsupported(params, _INVOICE_UNSUPPORTED)
    expand = _expand(params, _INVOICE_EXPANDABLE)
    automatic_tax = params.get("automatic_tax")
    if automatic_tax and automatic_tax.get("enabled"):
        raise invalid_request(
            "The Stripe emulator does not support `automatic_tax[enabled]=true`.",
            param="automatic_tax[enabled]",
        )
    if "customer" not in params:
        raise parameter_missing("customer")
    customer = _customer(ctx, params["customer"], param="customer", status=400)
    collection_method = params.get("collection_method", "charge_automatically")
    days_until_due = params.get("days_until_due")
    due_date = params.get("due_date")
    _check_due(collection_method, days_until_due, due_date, ctx.now, creating=True)
    currency = _currency(params["currency"], param="currency") if "currency" in params else None
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
        metadata=_metadata(params.get("metadata", {}), param="metadata"),
        payment_method_types=_payment_method_types(payment_settings.get("payment_method_types")),
        effective_at=params.get("effective_at"),
        number=params.get("number"),
        seq=ctx.account.next_seq(),
    )
    _copy_customer_fields(invoice, customer)
    if behavior == "include":
        pending = [
            item
            for item in _newest_first(ctx.account.invoice_items.values())
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
    return render_invoice(ctx.account, invoice, expand=_expand(params, _INVOICE_EXPANDABLE))


_DRAFT_ONLY_FIELDS = (
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
    invoice = _invoice(ctx, invoice_id)
    _reject_unsupported(params, _INVOICE_UNSUPPORTED)
    expand = _expand(params, _INVOICE_EXPANDABLE)
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
        _currency(params["currency"], param="currency")
    _check_due(collection_method, days_until_due, due_date, ctx.now, creating=False)
    metadata = (
        _metadata(params["metadata"], invoice.metadata, param="metadata")
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
    if "auto_advance" in params:
        invoice.auto_advance = params["auto_advance"]
    invoice.metadata = metadata
    if "effective_at" in params:
        invoice.effective_at = params["effective_at"]
    if "number" in params:
        invoice.number = params["number"]
    after = render_invoice(ctx.account, invoice)
    previous = _diff(before, after)
    if previous:
        emit(ctx, "invoice.updated", after, previous)
    return render_invoice(ctx.account, invoice, expand=expand)


def delete_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
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
    _reject_unsupported(params, ("subscription", "customer_account"))
    expand = _expand(params, _INVOICE_EXPANDABLE, prefix="data.")
    records = [
        invoice
        for invoice in _newest_first(ctx.account.invoices.values())
        if not invoice.deleted
        and (status is None or invoice.status == status)
        and (customer is None or invoice.customer == customer)
        and (collection_method is None or invoice.collection_method == collection_method)
        and _created_filter(created, invoice.created)
        and (
            due_date is None
            or (invoice.due_date is not None and _created_filter(due_date, invoice.due_date))
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


def list_invoice_lines(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
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
    invoice = _invoice(ctx, invoice_id)
    expand = _expand(params, _INVOICE_EXPANDABLE)
    if invoice.status != "draft":
        raise invoice_not_editable(
            f"You can only add lines to draft invoices; this invoice is {invoice.status}."
        )
    lines: list[Params] = params["lines"]
    if not lines:
        raise parameter_missing("lines")
    planned: list[tuple[Params, _ItemFields, _Priced | None, InvoiceItemRec | None]] = []
    for index, line in enumerate(lines):
        name = _namer(f"lines[{index}]")
        _reject_unsupported(
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
            existing_fields = _ItemFields(
                metadata=_metadata(line.get("metadata", {}), item.metadata, param=name("metadata")),
                period=(item.period_start, item.period_end),
            )
            planned.append((line, existing_fields, None, item))
            continue
        priced = _price(line, name, allow_unit_amount_decimal=False)
        if priced.currency is not None and priced.currency != invoice.currency:
            raise invalid_request(
                f"The currency of this line ({priced.currency}) must match the currency of "
                f"the invoice ({invoice.currency}).",
                param=name("price_data") + "[currency]",
            )
        check_amount_for_currency(priced.amount, invoice.currency, param=name("amount"))
        planned.append((line, _item_fields(line, name, ctx.now), priced, None))
    new_metadata = (
        _metadata(params["invoice_metadata"], invoice.metadata, param="invoice_metadata")
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
        item = _new_item(
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
    emit(ctx, "invoice.updated", after, _diff(before, after))
    return render_invoice(ctx.account, invoice, expand=expand)


def _finalize(ctx: Ctx, invoice: InvoiceRec, auto_advance: bool | None) -> None:
    customer = ctx.account.customers[invoice.customer]
    if auto_advance is not None:
        invoice.auto_advance = auto_advance
    invoice.status = "open"
    invoice.finalized_at = ctx.now
    if invoice.effective_at is None:
        invoice.effective_at = ctx.now
    if invoice.number is None:
        invoice.number = f"{customer.invoice_prefix}-{customer.next_invoice_sequence:04d}"
        customer.next_invoice_sequence += 1
    base = ctx.store.public_url
    invoice.hosted_invoice_url = f"{base}/i/{invoice.id}"
    invoice.invoice_pdf = f"{base}/i/{invoice.id}/pdf"
    invoice.webhooks_delivered_at = ctx.now
    _copy_customer_fields(invoice, customer)
    if invoice.collection_method == "send_invoice" and invoice.due_date is None:
        invoice.due_date = ctx.now + (invoice.days_until_due or 0) * 86400
    emit(ctx, "invoice.finalized", render_invoice(ctx.account, invoice))
    if amount_due(ctx.account, invoice) == 0:
        # Stripe marks an invoice with nothing to collect paid as it is finalized.
        invoice.status = "paid"
        invoice.paid_at = ctx.now
        emit(ctx, "invoice.paid", render_invoice(ctx.account, invoice))


def advance_automatic_invoices(ctx: Ctx) -> None:
    """What Stripe's scheduler would have done by now: finalize ``auto_advance`` drafts an hour
    after creation and, for ``send_invoice``, send them. Runs before every API request, so the
    effect shows up as soon as a test advances the clock.
    """
    due = [
        invoice
        for invoice in ctx.account.invoices.values()
        if invoice.status == "draft"
        and invoice.auto_advance
        and not invoice.deleted
        and invoice.created + AUTO_FINALIZE_DELAY <= ctx.now
    ]
    for invoice in sorted(due, key=lambda record: record.seq):
        _finalize(ctx, invoice, None)
        if invoice.collection_method == "send_invoice" and invoice.status == "open":
            emit(ctx, "invoice.sent", render_invoice(ctx.account, invoice))


def finalize_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
    if invoice.status != "draft":
        raise invoice_not_editable(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    expand = _expand(params, _INVOICE_EXPANDABLE)
    _finalize(ctx, invoice, params.get("auto_advance"))
    return render_invoice(ctx.account, invoice, expand=expand)


def send_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
    if invoice.collection_method != "send_invoice":
        raise invalid_request(
            "You can only manually send an invoice if its collection method is 'send_invoice'."
        )
    if invoice.status == "void":
        raise invalid_request("You can't send a void invoice.")
    expand = _expand(params, _INVOICE_EXPANDABLE)
    if invoice.status == "draft":
        _finalize(ctx, invoice, None)
    emit(ctx, "invoice.sent", render_invoice(ctx.account, invoice))
    return render_invoice(ctx.account, invoice, expand=expand)


def void_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
    if invoice.status not in ("open", "uncollectible"):
        if invoice.status == "draft":
            message = "You can only void finalized invoices; delete a draft invoice instead."
        else:
            message = (
                f"You can only void an open or uncollectible invoice; this invoice is "
                f"{invoice.status}."
            )
        raise invalid_request(message)
    expand = _expand(params, _INVOICE_EXPANDABLE)
    before = render_invoice(ctx.account, invoice)
    invoice.status = "void"
    invoice.voided_at = ctx.now
    for payment_id in invoice.payment_ids:
        payment = ctx.account.invoice_payments[payment_id]
        if payment.status == "open":
            payment.status, payment.canceled_at = "canceled", ctx.now
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.voided", after)
    emit(ctx, "invoice.updated", after, _diff(before, after))
    return render_invoice(ctx.account, invoice, expand=expand)


def mark_uncollectible(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
    if invoice.status != "open":
        raise invalid_request(
            f"You can only mark an open invoice as uncollectible; this invoice is {invoice.status}."
        )
    expand = _expand(params, _INVOICE_EXPANDABLE)
    before = render_invoice(ctx.account, invoice)
    invoice.status = "uncollectible"
    invoice.marked_uncollectible_at = ctx.now
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.marked_uncollectible", after)
    emit(ctx, "invoice.updated", after, _diff(before, after))
    return render_invoice(ctx.account, invoice, expand=expand)


# Stripe's test payment methods that the emulator understands in ``pay``.
TEST_PAYMENT_METHODS = {
    "pm_card_visa": ("card", None),
    "pm_card_mastercard": ("card", None),
    "pm_card_chargeDeclined": ("card", "card_declined"),
    "pm_card_visa_chargeDeclined": ("card", "card_declined"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card", "insufficient_funds"),
    "pm_usBankAccount": ("us_bank_account", None),
}


def pay_invoice(ctx: Ctx, params: Params, invoice_id: str) -> JSON:
    invoice = _invoice(ctx, invoice_id)
    _reject_unsupported(params, ("source", "mandate"))
    expand = _expand(params, _INVOICE_EXPANDABLE)
    if invoice.status == "paid":
        raise invalid_request("Invoice is already paid")
    if invoice.status == "void":
        raise invalid_request("This invoice is void and can no longer be paid.")
    out_of_band = params.get("paid_out_of_band", False)
    method = params.get("payment_method")
    if out_of_band and method is not None:
        raise parameters_exclusive("paid_out_of_band", "payment_method")
    if not out_of_band:
        if method is None:
            raise invalid_request(
                "This customer has no attached payment source or default payment method. "
                "Please consider adding a default payment method. For more information, visit "
                "https://docs.stripe.com/billing/subscriptions/payment-methods-setting#payment-method-priority.",
            )
        if method not in TEST_PAYMENT_METHODS:
            raise no_such("PaymentMethod", method, param="payment_method", status=400)
    if invoice.status == "draft":
        _finalize(ctx, invoice, None)
        if invoice.status == "paid":
            return render_invoice(ctx.account, invoice, expand=expand)
    if out_of_band:
        before = render_invoice(ctx.account, invoice)
        remaining = amount_remaining(ctx.account, invoice)
        invoice.amount_paid_off_stripe += remaining
        invoice.amount_paid += remaining
        invoice.paid_out_of_band = True
        invoice.status = "paid"
        invoice.paid_at = ctx.now
        after = render_invoice(ctx.account, invoice)
        emit(ctx, "invoice.paid", after)
        emit(ctx, "invoice.updated", after, _diff(before, after))
        return render_invoice(ctx.account, invoice, expand=expand)
    assert method is not None
    method_type, failure = TEST_PAYMENT_METHODS[method]
    payment = apply_payment(
        ctx,
        invoice,
        amount=amount_remaining(ctx.account, invoice),
        method_type=method_type,
        failure_code=failure,
        pending=False,
    )
    if payment.status == "canceled":
        raise StripeError(
            402,
            "Your card was declined.",
            error_type="card_error",
            code=failure or "card_declined",
            extra={"decline_code": failure or "generic_decline"},
        )
    return render_invoice(ctx.account, invoice, expand=expand)


def apply_payment(
    ctx: Ctx,
    invoice: InvoiceRec,
    *,
    amount: int,
    method_type: str,
    failure_code: str | None = None,
    pending: bool = False,
) -> InvoicePaymentRec:
    """Create an invoice payment; settle it now unless it is a pending ACH debit.

    Callers have checked that the invoice is open or uncollectible and the amount is positive
    and at most the amount remaining.
    """
    is_default = not invoice.payment_ids and amount == amount_due(ctx.account, invoice)
    payment = InvoicePaymentRec(
        id=new_id("inpay"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        invoice=invoice.id,
        currency=invoice.currency,
        amount_requested=amount,
        payment_method_type=method_type,
        payment_intent=new_id("pi"),
        is_default=is_default,
        seq=ctx.account.next_seq(),
    )
    ctx.account.invoice_payments[payment.id] = payment
    ctx.store.index_payment(payment.id, ctx.account)
    invoice.payment_ids.append(payment.id)
    if pending:
        return payment
    if failure_code is not None:
        fail_payment(ctx, payment, failure_code)
    else:
        settle_payment(ctx, payment)
    return payment


def settle_payment(ctx: Ctx, payment: InvoicePaymentRec) -> None:
    invoice = ctx.account.invoices[payment.invoice]
    if payment.status != "open":
        raise invalid_request(f"The payment {payment.id} is already {payment.status}.")
    if invoice.status not in ("open", "uncollectible"):
        raise invalid_request(
            f"The invoice {invoice.id} is {invoice.status} and can no longer take payments."
        )
    amount = min(payment.amount_requested, amount_remaining(ctx.account, invoice))
    before = render_invoice(ctx.account, invoice)
    payment.status = "paid"
    payment.amount_paid = amount
    payment.paid_at = ctx.now
    invoice.amount_paid += amount
    invoice.attempted = True
    invoice.attempt_count = max(invoice.attempt_count, 1)
    fully_paid = amount_remaining(ctx.account, invoice) == 0
    if fully_paid:
        invoice.status = "paid"
        invoice.paid_at = ctx.now
    emit(ctx, "invoice_payment.paid", render_invoice_payment(payment))
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.updated", after, _diff(before, after))
    if fully_paid:
        emit(ctx, "invoice.paid", after)
        emit(ctx, "invoice.payment_succeeded", after)


def fail_payment(ctx: Ctx, payment: InvoicePaymentRec, failure_code: str) -> None:
    invoice = ctx.account.invoices[payment.invoice]
    if payment.status != "open":
        raise invalid_request(f"The payment {payment.id} is already {payment.status}.")
    before = render_invoice(ctx.account, invoice)
    payment.status = "canceled"
    payment.canceled_at = ctx.now
    payment.failure_code = failure_code
    invoice.attempted = True
    invoice.attempt_count += 1
    after = render_invoice(ctx.account, invoice)
    emit(ctx, "invoice.payment_failed", after)
    previous = _diff(before, after)
    if previous:
        emit(ctx, "invoice.updated", after, previous)


# --- invoice payments -------------------------------------------------------------------------


def retrieve_invoice_payment(ctx: Ctx, params: Params, payment_id: str) -> JSON:
    payment = ctx.account.invoice_payments.get(payment_id)
    if payment is None:
        raise no_such("invoice_payment", payment_id)
    return render_invoice_payment(payment)


def list_invoice_payments(ctx: Ctx, params: Params) -> JSON:
    invoice = params.get("invoice")
    status = params.get("status")
    created = params.get("created")
    payment_filter = params.get("payment")
    records = [
        payment
        for payment in _newest_first(ctx.account.invoice_payments.values())
        if (invoice is None or payment.invoice == invoice)
        and (status is None or payment.status == status)
        and _created_filter(created, payment.created)
        and (
            payment_filter is None
            or payment_filter.get("payment_intent") in (None, payment.payment_intent)
        )
    ]
    return paginate(
        records,
        params,
        url="/v1/invoice_payments",
        render=render_invoice_payment,
        id_of=lambda record: record.id,
        kind="invoice_payment",
    )


# --- events -----------------------------------------------------------------------------------


def _visible_event(ctx: Ctx, event: EventRec) -> bool:
    return event.created >= ctx.now - EVENT_RETENTION_SECONDS


def retrieve_event(ctx: Ctx, params: Params, event_id: str) -> JSON:
    event = ctx.account.events.get(event_id)
    if event is None or not _visible_event(ctx, event):
        raise no_such("event", event_id)
    return render_event(event)


def _type_matcher(pattern: str) -> Callable[[str], bool]:
    if "*" not in pattern:
        return lambda event_type: event_type == pattern
    regex = re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$")
    return lambda event_type: regex.match(event_type) is not None


def list_events(ctx: Ctx, params: Params) -> JSON:
    if "type" in params and "types" in params:
        raise parameters_exclusive("type", "types")
    matchers: list[Callable[[str], bool]] = []
    if "type" in params:
        matchers = [_type_matcher(params["type"])]
    elif "types" in params:
        if len(params["types"]) > 20:
            raise invalid_request("You may pass up to 20 event types.", param="types")
        matchers = [_type_matcher(pattern) for pattern in params["types"]]
    created = params.get("created")
    delivery_success = params.get("delivery_success")
    records = [
        event
        for event in _newest_first(ctx.account.events.values())
        if _visible_event(ctx, event)
        and (not matchers or any(match(event.type) for match in matchers))
        and _created_filter(created, event.created)
        and (delivery_success is None or (event.pending_webhooks == 0) == delivery_success)
    ]
    return paginate(
        records,
        params,
        url="/v1/events",
        render=render_event,
        id_of=lambda record: record.id,
        kind="event",
    )


# --- webhook endpoints ------------------------------------------------------------------------


def _check_url(url: str, *, param: str = "url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_request(f"Invalid URL: {url}", param=param, code="url_invalid")
    return url


def create_webhook_endpoint(ctx: Ctx, params: Params) -> JSON:
    _reject_unsupported(params, ("connect",))
    live_endpoints = [e for e in ctx.account.webhook_endpoints.values() if not e.deleted]
    if len(live_endpoints) >= MAX_WEBHOOK_ENDPOINTS:
        raise invalid_request(
            f"You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} test webhook endpoints.",
            param="url",
        )
    if not params["enabled_events"]:
        raise parameter_missing("enabled_events")
    description = params.get("description")
    endpoint = WebhookEndpointRec(
        id=new_id("we"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        url=_check_url(params["url"]),
        enabled_events=list(params["enabled_events"]),
        secret="whsec_" + random_token(32),
        description=None if description is UNSET else description,
        metadata=_metadata(params.get("metadata", {}), param="metadata"),
        api_version=params.get("api_version"),
        seq=ctx.account.next_seq(),
    )
    ctx.account.webhook_endpoints[endpoint.id] = endpoint
    return render_webhook_endpoint(endpoint, with_secret=True)


def _webhook_endpoint(ctx: Ctx, endpoint_id: str) -> WebhookEndpointRec:
    endpoint = ctx.account.webhook_endpoints.get(endpoint_id)
    if endpoint is None or endpoint.deleted:
        raise no_such("webhook_endpoint", endpoint_id)
    return endpoint


def retrieve_webhook_endpoint(ctx: Ctx, params: Params, endpoint_id: str) -> JSON:
    return render_webhook_endpoint(_webhook_endpoint(ctx, endpoint_id))


def update_webhook_endpoint(ctx: Ctx, params: Params, endpoint_id: str) -> JSON:
    endpoint = _webhook_endpoint(ctx, endpoint_id)
    url = _check_url(params["url"]) if "url" in params else None
    if "enabled_events" in params and not params["enabled_events"]:
        raise parameter_missing("enabled_events")
    metadata = (
        _metadata(params["metadata"], endpoint.metadata, param="metadata")
        if "metadata" in params
        else endpoint.metadata
    )
    if url is not None:
        endpoint.url = url
    if "enabled_events" in params:
        endpoint.enabled_events = list(params["enabled_events"])
    if "description" in params:
        value = params["description"]
        endpoint.description = None if value is UNSET else value
    endpoint.metadata = metadata
    if "disabled" in params:
        endpoint.status = "disabled" if params["disabled"] else "enabled"
    return render_webhook_endpoint(endpoint)


def delete_webhook_endpoint(ctx: Ctx, params: Params, endpoint_id: str) -> JSON:
    endpoint = _webhook_endpoint(ctx, endpoint_id)
    endpoint.deleted = True
    return render_webhook_endpoint(endpoint)


def list_webhook_endpoints(ctx: Ctx, params: Params) -> JSON:
    records = [
        endpoint
        for endpoint in _newest_first(ctx.account.webhook_endpoints.values())
        if not endpoint.deleted
    ]
    return paginate(
        records,
        params,
        url="/v1/webhook_endpoints",
        render=render_webhook_endpoint,
        id_of=lambda record: record.id,
        kind="webhook_endpoint",
    )


# --- routing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    params_class: str


def _route(method: str, path: str, handler: Handler, params_class: str) -> Route:
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
    return Route(method, re.compile(regex), handler, params_class)


ROUTES: list[Route] = [
    _route("POST", "/v1/customers", create_customer, "CustomerCreateParams"),
    _route("GET", "/v1/customers", list_customers, "CustomerListParams"),
    _route("GET", "/v1/customers/{customer_id}", retrieve_customer, "CustomerRetrieveParams"),
    _route("POST", "/v1/customers/{customer_id}", update_customer, "CustomerUpdateParams"),
    _route("DELETE", "/v1/customers/{customer_id}", delete_customer, "CustomerDeleteParams"),
    _route("POST", "/v1/invoiceitems", create_invoice_item, "InvoiceItemCreateParams"),
    _route("GET", "/v1/invoiceitems", list_invoice_items, "InvoiceItemListParams"),
    _route("GET", "/v1/invoiceitems/{item_id}", retrieve_invoice_item, "InvoiceItemRetrieveParams"),
    _route("POST", "/v1/invoiceitems/{item_id}", update_invoice_item, "InvoiceItemUpdateParams"),
    _route("DELETE", "/v1/invoiceitems/{item_id}", delete_invoice_item, "InvoiceItemDeleteParams"),
    _route("POST", "/v1/invoices", create_invoice, "InvoiceCreateParams"),
    _route("GET", "/v1/invoices", list_invoices, "InvoiceListParams"),
    _route("GET", "/v1/invoices/{invoice_id}", retrieve_invoice, "InvoiceRetrieveParams"),
    _route("POST", "/v1/invoices/{invoice_id}", update_invoice, "InvoiceUpdateParams"),
    _route("DELETE", "/v1/invoices/{invoice_id}", delete_invoice, "InvoiceDeleteParams"),
    _route(
        "GET", "/v1/invoices/{invoice_id}/lines", list_invoice_lines, "InvoiceLineItemListParams"
    ),
    _route("POST", "/v1/invoices/{invoice_id}/add_lines", add_lines, "InvoiceAddLinesParams"),
    _route(
        "POST",
        "/v1/invoices/{invoice_id}/finalize",
        finalize_invoice,
        "InvoiceFinalizeInvoiceParams",
    ),
    _route("POST", "/v1/invoices/{invoice_id}/send", send_invoice, "InvoiceSendInvoiceParams"),
    _route("POST", "/v1/invoices/{invoice_id}/void", void_invoice, "InvoiceVoidInvoiceParams"),
    _route(
        "POST",
        "/v1/invoices/{invoice_id}/mark_uncollectible",
        mark_uncollectible,
        "InvoiceMarkUncollectibleParams",
    ),
    _route("POST", "/v1/invoices/{invoice_id}/pay", pay_invoice, "InvoicePayParams"),
    _route("GET", "/v1/invoice_payments", list_invoice_payments, "InvoicePaymentListParams"),
    _route(
        "GET",
        "/v1/invoice_payments/{payment_id}",
        retrieve_invoice_payment,
        "InvoicePaymentRetrieveParams",
    ),
    _route("GET", "/v1/events", list_events, "EventListParams"),
    _route("GET", "/v1/events/{event_id}", retrieve_event, "EventRetrieveParams"),
    _route("POST", "/v1/webhook_endpoints", create_webhook_endpoint, "WebhookEndpointCreateParams"),
    _route("GET", "/v1/webhook_endpoints", list_webhook_endpoints, "WebhookEndpointListParams"),
    _route(
        "GET",
        "/v1/webhook_endpoints/{endpoint_id}",
        retrieve_webhook_endpoint,
        "WebhookEndpointRetrieveParams",
    ),
    _route(
        "POST",
        "/v1/webhook_endpoints/{endpoint_id}",
        update_webhook_endpoint,
        "WebhookEndpointUpdateParams",
    ),
    _route(
        "DELETE",
        "/v1/webhook_endpoints/{endpoint_id}",
        delete_webhook_endpoint,
        "WebhookEndpointDeleteParams",
    ),
]


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | str | None:
    """The route for ``method path``; the string ``"method"`` if only the method is wrong."""
    path_matched = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        path_matched = True
        if route.method == method:
            return route, found.groupdict()
    return "method" if path_matched else None
