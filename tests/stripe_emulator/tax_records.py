"""A customer's tax ID as Stripe stores it (``/v1/customers/:id/tax_ids``)."""

from __future__ import annotations

from dataclasses import dataclass


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
