"""``/v1/customers/:id/tax_ids`` and ``tax_id_data`` on customer create.

Stripe checks a tax ID's type against its list and its value against the type's format, and
answers ``tax_id_invalid`` otherwise (docs "Error codes": "The tax ID number provided is invalid
(for example, missing digits)"). The formats below are the ones Stripe's "Customer tax IDs" page
gives examples for (``eu_vat`` ``DE123456789``, ``gb_vat`` ``GB123456789``, ``us_ein``
``12-3456789``); other types only need a plausible identifier. Tax IDs are verified
asynchronously at Stripe; here verification stays ``pending`` (never friendlier: nothing is
marked verified).
"""

from __future__ import annotations

import re
import typing
from typing import Any

from stripe.params import CustomerCreateParamsTaxIdDatum

from ..errors import StripeError, invalid_request, no_such
from ..ids import new_id
from ..models import JSON, CustomerRec
from ..tax_records import TaxIdRec
from .context import Ctx, Params
from .lists import paginate

# stripe-python's literal list for the pinned API version (the param type also admits ``str``
# for forward compatibility; Stripe itself refuses unknown types).
TAX_ID_TYPES: frozenset[str] = frozenset(
    typing.get_args(
        typing.get_args(typing.get_type_hints(CustomerCreateParamsTaxIdDatum)["type"])[0]
    )
)

_EU_VAT_PREFIXES = (
    "AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI"
)
_FORMATS: dict[str, re.Pattern[str]] = {
    "eu_vat": re.compile(f"(?:{_EU_VAT_PREFIXES})[0-9A-Z]{{8,12}}"),
    "gb_vat": re.compile(r"GB(?:\d{9}|\d{12}|GD\d{3}|HA\d{3})"),
    "us_ein": re.compile(r"\d{2}-?\d{7}"),
    "ch_vat": re.compile(r"CHE-?\d{3}\.?\d{3}\.?\d{3} ?(?:MWST|TVA|IVA)"),
    "au_abn": re.compile(r"\d{11}"),
}
_GENERIC = re.compile(r"[0-9A-Za-z][0-9A-Za-z .\-/]{2,30}")
# A German VAT number is DE + 9 digits (the docs' example DE123456789).
_EU_VAT_BY_COUNTRY = {"DE": re.compile(r"DE\d{9}"), "AT": re.compile(r"ATU\d{8}")}


def check_tax_id(type_: Any, value: Any, *, param: str) -> tuple[str, str, str | None]:
    """(type, value, country) or Stripe's 400; ``param`` is the prefix (``tax_id_data[0]``)."""
    type_param = f"{param}[type]" if param else "type"
    value_param = f"{param}[value]" if param else "value"
    if type_ not in TAX_ID_TYPES:
        raise invalid_request(
            f"Invalid {type_param}: must be one of {', '.join(sorted(TAX_ID_TYPES))}",
            param=type_param,
        )
    pattern = _FORMATS.get(type_, _GENERIC)
    country = _country(type_, value)
    specific = _EU_VAT_BY_COUNTRY.get(country or "") if type_ == "eu_vat" else None
    if not pattern.fullmatch(value) or (specific is not None and not specific.fullmatch(value)):
        raise StripeError(
            400, f"Invalid value for {type_}.", code="tax_id_invalid", param=value_param
        )
    return type_, value, country


def _country(type_: str, value: str) -> str | None:
    if type_ in ("eu_vat", "eu_oss_vat"):
        prefix = value[:2]
        return "GR" if prefix == "EL" else "GB" if prefix == "XI" else prefix or None
    return type_.split("_", 1)[0].upper()


def add_tax_id(
    ctx: Ctx, customer: CustomerRec, type_: str, value: str, country: str | None
) -> TaxIdRec:
    record = TaxIdRec(
        id=new_id("txi", 14),
        created=ctx.now,
        livemode=ctx.account.livemode,
        customer=customer.id,
        type=type_,
        value=value,
        country=country,
    )
    customer.tax_ids.append(record)
    return record


def render_tax_id(record: TaxIdRec) -> JSON:
    if record.deleted:
        return {"id": record.id, "object": "tax_id", "deleted": True}
    return {
        "id": record.id,
        "object": "tax_id",
        "country": record.country,
        "created": record.created,
        "customer": record.customer,
        "customer_account": None,
        "livemode": record.livemode,
        "owner": {"customer": record.customer, "type": "customer"},
        "type": record.type,
        "value": record.value,
        "verification": {"status": "pending", "verified_address": None, "verified_name": None},
    }


def invoice_tax_ids(customer: CustomerRec) -> list[JSON]:
    """What an invoice shows (``customer_tax_ids``): type and value of each live tax ID."""
    return [
        {"type": record.type, "value": record.value}
        for record in customer.tax_ids
        if not record.deleted
    ]


def _customer(ctx: Ctx, customer_id: str) -> CustomerRec:
    customer = ctx.account.customers.get(customer_id)
    if customer is None or customer.deleted:
        raise no_such("customer", customer_id)
    return customer


def create_tax_id(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = _customer(ctx, customer_id)
    type_, value, country = check_tax_id(params.get("type"), params.get("value"), param="")
    return render_tax_id(add_tax_id(ctx, customer, type_, value, country))


def _tax_id(customer: CustomerRec, tax_id: str) -> TaxIdRec:
    for record in customer.tax_ids:
        if record.id == tax_id and not record.deleted:
            return record
    raise no_such("tax_id", tax_id)


def retrieve_tax_id(ctx: Ctx, params: Params, customer_id: str, tax_id: str) -> JSON:
    return render_tax_id(_tax_id(_customer(ctx, customer_id), tax_id))


def delete_tax_id(ctx: Ctx, params: Params, customer_id: str, tax_id: str) -> JSON:
    record = _tax_id(_customer(ctx, customer_id), tax_id)
    record.deleted = True
    return render_tax_id(record)


def list_tax_ids(ctx: Ctx, params: Params, customer_id: str) -> JSON:
    customer = _customer(ctx, customer_id)
    records = [record for record in reversed(customer.tax_ids) if not record.deleted]
    return paginate(
        records,
        params,
        url=f"/v1/customers/{customer_id}/tax_ids",
        render=render_tax_id,
        id_of=lambda record: record.id,
        kind="tax_id",
    )
