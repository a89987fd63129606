"""An invoice item from its parameters: amount, quantity, period, then the record.

``POST /v1/invoiceitems``, its update and ``add_lines`` build lines by the same rules, so they
share them here; the control API's payments use :func:`check_amount_for_currency` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .. import currencies
from ..errors import (
    StripeError,
    invalid_request,
    no_such,
    parameter_missing,
    parameters_exclusive,
)
from ..ids import new_id
from ..models import InvoiceItemRec
from .context import Ctx, Params
from .params import merge_metadata, supported_currency


@dataclass
class Priced:
    """What a line costs, computed before anything is changed."""

    amount: int
    quantity: int
    quantity_decimal: Decimal
    unit_amount_decimal: Decimal | None
    currency: str | None
    price: str | None
    product: str | None


Namer = Callable[[str], str]


def namer(prefix: str) -> Namer:
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


def price_line(params: Params, name: Namer, *, allow_unit_amount_decimal: bool) -> Priced:
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
        return Priced(amount, 1, Decimal(1), Decimal(amount), None, None, None)
    if mode == "unit_amount_decimal":
        unit: Decimal = params["unit_amount_decimal"]
        return Priced(
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
    currency = supported_currency(price_data["currency"], param=f"{pd_prefix}[currency]")
    return Priced(
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


def item_period(params: Params, name: Namer, now: int) -> tuple[int, int]:
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
class ItemFields:
    """An item's validated metadata and period, computed before anything is changed."""

    metadata: dict[str, str]
    period: tuple[int, int]


def item_fields(params: Params, name: Namer, now: int) -> ItemFields:
    return ItemFields(
        metadata=merge_metadata(params.get("metadata", {}), param=name("metadata")),
        period=item_period(params, name, now),
    )


def new_item(
    ctx: Ctx,
    params: Params,
    *,
    fields: ItemFields,
    customer: str,
    currency: str,
    priced: Priced,
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
