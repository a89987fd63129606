"""A customer's invoice balance ledger as Stripe keeps it (its balance transactions).

Stripe (docs "Customer invoice balance"): "the invoice balance is computed from a ledger — an
immutable list of debit and credit transactions", each a Customer Balance Transaction. The
emulator records the invoice moves: ``applied_to_invoice`` when finalization applies the balance,
``unapplied_from_invoice`` when voiding returns it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CustomerBalanceTxnRec:
    id: str
    created: int
    livemode: bool
    customer: str
    currency: str
    amount: int  # negative: a credit for the customer; positive: a debit
    ending_balance: int
    type: str
    invoice: str | None = None
