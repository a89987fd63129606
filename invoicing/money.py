"""Exact conversion between our ``Decimal`` amounts and Stripe's integer minor units.

Pure functions, no Django: the one place that knows each currency's exponent at Stripe.

Stripe's rules (https://docs.stripe.com/currencies), as they apply to invoices:

- Amounts are integers in the currency's minor unit; most currencies have two decimals.
- Zero-decimal currencies (JPY, KRW, ...) are sent as whole units: 500 JPY is ``500``.
- Three-decimal currencies (BHD, JOD, KWD, OMR, TND) are sent in thousandths, but the last digit
  must be ``0`` for compatibility with Stripe's payment partners: 5.120 KWD is ``5120``; 5.124 KWD
  cannot be charged.
- Special cases: ISK became a zero-decimal currency but keeps two decimals in the API for
  backwards compatibility, so amounts must be divisible by 100 (5 ISK is ``500``). HUF and TWD
  are zero-decimal for *payouts* only; charges and invoices take two decimals (default rule).

An amount that does not land exactly on an allowed minor-unit value raises
:class:`AmountNotRepresentable`. We never round: the organizer's figure is what the customer pays.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from invoicing.errors import InvoicingError

ZERO_DECIMAL_CURRENCIES: Final = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
THREE_DECIMAL_CURRENCIES: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Minor-unit amounts must be a multiple of this step (Stripe's "special cases").
_MINOR_UNIT_STEP: Final[dict[str, int]] = {
    **dict.fromkeys(THREE_DECIMAL_CURRENCIES, 10),
    "isk": 100,
}
_CURRENCY_CODE = re.compile(r"[a-z]{3}")

# Stripe's limits on one charge, which is what paying an invoice makes. The maximum: "The amount
# value supports up to eight digits (e.g., a value of 99999999 for a USD charge of $999,999.99)"
# (API reference, PaymentIntent ``amount``; https://docs.stripe.com/currencies
# #minimum-and-maximum-charge-amounts). The minimums per currency are that page's table; for other
# currencies Stripe asks for "$0.50 US or equivalent", which we cannot convert offline, so only the
# maximum is checked for them.
MAX_CHARGE_MINOR_UNITS: Final = 99_999_999
MIN_CHARGE_MINOR_UNITS: Final[dict[str, int]] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}


class AmountNotRepresentable(InvoicingError):
    """The amount cannot be charged exactly in this currency at Stripe."""


def normalize_currency(currency: str) -> str:
    """Return the lowercase ISO 4217 code Stripe expects, or raise ``ValueError``."""
    code = currency.strip().lower() if isinstance(currency, str) else ""
    if not _CURRENCY_CODE.fullmatch(code):
        raise ValueError(f"{currency!r} is not a three-letter ISO 4217 currency code.")
    return code


def currency_exponent(currency: str) -> int:
    """Number of decimals Stripe's API uses for ``currency`` (0, 2 or 3)."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def minor_unit_step(currency: str) -> int:
    """The smallest chargeable increment, in minor units (10 for KWD, 100 for ISK, else 1)."""
    return _MINOR_UNIT_STEP.get(normalize_currency(currency), 1)


def smallest_amount(currency: str) -> Decimal:
    """The smallest chargeable increment as a ``Decimal`` (0.01 USD, 1 JPY, 0.010 KWD)."""
    return from_minor_units(minor_unit_step(currency), currency)


def format_amount(amount: Decimal, currency: str) -> str:
    """Render an amount for messages and logs: ``10.00 USD`` (stored as 10.000), ``10.005 USD``."""
    code = currency.strip().upper()
    try:
        exponent = currency_exponent(currency)
    except ValueError:
        return f"{amount} {code}"
    if not amount.is_finite():
        return f"{amount} {code}"
    step = Decimal(1).scaleb(-exponent)
    if amount == amount.quantize(step):
        return f"{amount.quantize(step)} {code}"
    # More decimals than the currency has: show them all, without trailing zeros (1.500 -> 1.5).
    return f"{format(amount.normalize(), 'f')} {code}"


def plain_amount(amount: Decimal, currency: str) -> str:
    """An amount as a bare number in the currency's own decimals, for files an accountant reads.

    ``5000.000`` USD is ``5000.00``, JPY ``5000``, KWD ``5.120``; never rounded: an amount with more
    decimals than the currency has keeps them all, so the figure always parses back exactly.
    """
    return format(_in_own_decimals(amount, currency_exponent(currency)), "f")


def _in_own_decimals(amount: Decimal, exponent: int) -> Decimal:
    """``amount`` with exactly ``exponent`` decimals, or all of its own when it has more."""
    step = Decimal(1).scaleb(-exponent)
    return amount.quantize(step) if amount == amount.quantize(step) else amount.normalize()


def format_display(amount: Decimal, currency: str) -> str:
    """Render an amount for people: the currency's decimals, thousands grouped (``5,000.00 USD``,
    ``5,000 JPY``, ``5.000 KWD``); an amount with more decimals than the currency shows them all."""
    code = currency.strip().upper()
    try:
        exponent = currency_exponent(currency)
    except ValueError:
        return f"{amount} {code}"
    if not amount.is_finite():
        return f"{amount} {code}"
    shown = _in_own_decimals(amount, exponent)
    if shown.as_tuple().exponent > 0:  # type: ignore[operator]  # 1E+3 -> 1000
        shown = shown.quantize(Decimal(1))
    return f"{shown:,f} {code}"


def charge_limits(currency: str) -> tuple[Decimal, Decimal]:
    """The smallest and largest amount Stripe charges in ``currency`` (see the table above)."""
    code = normalize_currency(currency)
    smallest = MIN_CHARGE_MINOR_UNITS.get(code, minor_unit_step(code))
    return from_minor_units(smallest, code), from_minor_units(MAX_CHARGE_MINOR_UNITS, code)


def charge_limit_problem(total: Decimal, currency: str) -> str:
    """Why Stripe would refuse an invoice for ``total``, in an organizer's words ("" if not)."""
    smallest, largest = charge_limits(currency)
    if total > largest:
        return (
            f"The total, {format_display(total, currency)}, is more than Stripe can charge on one "
            f"invoice ({format_display(largest, currency)} at most). Split it into several "
            "purchase orders."
        )
    if total < smallest:
        return (
            f"The total, {format_display(total, currency)}, is less than the smallest amount "
            f"Stripe charges in {currency.upper()} ({format_display(smallest, currency)})."
        )
    return ""


def entered_amount_problem(amount: object, currency: str) -> str:
    """Why what an organizer entered is not an amount to move in ``currency``, in their words
    ("" when it is: a finite Decimal above zero with no more decimals than the currency has)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        return "enter an amount."
    if amount <= 0:
        return "the amount must be greater than zero."
    try:
        to_minor_units(amount, currency)
    except AmountNotRepresentable as error:
        return str(error)
    return ""


def _require_decimal(amount: object) -> Decimal:
    # bool is an int subclass; neither floats nor bools are amounts.
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(
            f"Amounts must be Decimal (or int), not {type(amount).__name__}: {amount!r}."
        )
    value = Decimal(amount)
    if not value.is_finite():
        raise AmountNotRepresentable(f"{value} is not a finite amount.")
    return value


def to_minor_units(amount: Decimal | int, currency: str) -> int:
    """Convert ``amount`` (major units) to Stripe's integer minor units, exactly.

    Raises:
        AmountNotRepresentable: the amount has more decimals than the currency allows, or breaks
            the currency's step (three-decimal currencies, ISK).
        ValueError: ``currency`` is not an ISO code.
        TypeError: ``amount`` is a float or another non-decimal type.
    """
    code = normalize_currency(currency)
    value = _require_decimal(amount)
    exponent = currency_exponent(code)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise AmountNotRepresentable(
            f"{format_amount(value, code)} cannot be charged at Stripe: "
            f"{code.upper()} amounts have at most {exponent} decimal place(s)."
        )
    minor = int(scaled)
    step = minor_unit_step(code)
    if minor % step:
        raise AmountNotRepresentable(
            f"{format_amount(value, code)} cannot be charged at Stripe: "
            f"{code.upper()} amounts must be multiples of {smallest_amount(code)}."
        )
    return minor


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Convert Stripe's integer minor units back to a ``Decimal`` in major units."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"Minor units must be an int, not {type(minor).__name__}: {minor!r}.")
    exponent = currency_exponent(currency)
    return Decimal(minor).scaleb(-exponent)


def is_representable(amount: Decimal | int, currency: str) -> bool:
    """Whether ``amount`` converts exactly (see :func:`to_minor_units`)."""
    try:
        to_minor_units(amount, currency)
    except AmountNotRepresentable:
        return False
    return True
