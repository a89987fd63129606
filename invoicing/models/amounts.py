"""How the money columns store amounts: one precision for every currency we accept."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import DecimalField

MONEY_MAX_DIGITS = 14
MONEY_DECIMAL_PLACES = 3  # README, Money: every currency's exponent fits
# Amounts the money columns hold are below this (10**11 major units).
MONEY_LIMIT = Decimal(10) ** (MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES)
ZERO = Decimal("0")

# The output field of money expressions (sums, differences, a coalesced zero): the columns'
# decimals, with room for a sum over every PO of a deployment.
MONEY_OUTPUT: DecimalField[Decimal, Decimal] = DecimalField(
    max_digits=MONEY_MAX_DIGITS + 6, decimal_places=MONEY_DECIMAL_PLACES
)


def owed_after_refunds(*, owed: Decimal, received: Decimal, refunded: Decimal) -> Decimal:
    """What a PO owes once its refunds count: money given back is not asked for again.

    ``owed``: the total (plus tax) less the credits that count; ``received``: net, refunds and
    disputes deducted; ``refunded``: the refunds that succeeded (>= 0). A refund first gives back
    what the PO held beyond ``owed`` (an overpayment, which leaves it paid); the rest lowers what
    is owed, as Stripe's invoice never asks refunded money again. A dispute lowers nothing: money
    taken back by the customer's bank is still owed.
    """
    held_beyond_owed = max(ZERO, received + refunded - owed)
    return owed - max(ZERO, refunded - held_beyond_owed)
