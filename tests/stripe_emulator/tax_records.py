"""A customer's tax ID as Stripe stores it (``/v1/customers/:id/tax_ids``), and the emulator's
deterministic automatic tax."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Account, CustomerRec, InvoiceRec


@dataclass
class TaxIdRec:
    id: str
    created: int
    livemode: bool
    customer: str
    type: str
    value: str
    country: str | None
    deleted: bool = False


def tax_country(invoice: InvoiceRec, customer: CustomerRec | None) -> str | None:
    """Where Stripe Tax places the customer: the invoice's copy of the address once finalized,
    the customer's own address on a draft."""
    address = invoice.customer_address if invoice.status != "draft" else None
    if address is None and customer is not None:
        address = customer.address
    country = (address or {}).get("country")
    return country or None


def line_taxes(amounts: list[int], rate_percent: Decimal) -> list[int]:
    """Tax per line, exclusive of the line's amount, rounded half up to the minor unit.

    The emulator's deterministic stand-in for Stripe Tax: one configured rate per country
    (``tax_rates`` in ``POST /_emulator/config``); a country without a rate is taxed 0, as
    Stripe does where the account is not registered to collect.
    """
    return [
        int((Decimal(amount) * rate_percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        for amount in amounts
    ]


def invoice_taxes(account: Account, invoice: InvoiceRec) -> tuple[str | None, list[int]]:
    """The tax country and each line's tax (all 0 without ``automatic_tax``)."""
    amounts = [account.invoice_items[item_id].amount for item_id in invoice.item_ids]
    if not invoice.automatic_tax:
        return None, [0] * len(amounts)
    country = tax_country(invoice, account.customers.get(invoice.customer))
    rate = account.config.tax_rates.get(country or "", Decimal(0))
    return country, line_taxes(amounts, rate)
