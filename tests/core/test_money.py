"""money.py: exact conversion to Stripe's minor units, per currency exponent and special case."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing import money
from invoicing.models import owed_after_refunds
from invoicing.money import AmountNotRepresentable

ALL_SPECIAL = sorted(money.ZERO_DECIMAL_CURRENCIES | money.THREE_DECIMAL_CURRENCIES | {"isk"})
CURRENCIES = [*ALL_SPECIAL, "usd", "eur", "huf", "twd", "gbp"]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("10.00"), "usd", 1000),
        (Decimal("10"), "usd", 1000),
        (Decimal("0.01"), "eur", 1),
        (Decimal("500"), "jpy", 500),
        (Decimal("500.000"), "jpy", 500),
        (Decimal("1234567"), "krw", 1234567),
        (Decimal("5.120"), "kwd", 5120),
        (Decimal("5.12"), "kwd", 5120),
        (Decimal("0.010"), "bhd", 10),
        (Decimal("5"), "isk", 500),
        (Decimal("10.05"), "huf", 1005),
        (Decimal("10.05"), "twd", 1005),
        (Decimal("-3.50"), "usd", -350),
        (7, "usd", 700),
    ],
)
def test_to_minor_units_exact(amount: Decimal, currency: str, minor: int) -> None:
    assert money.to_minor_units(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (
            Decimal("10.005"),
            "usd",
            "10.005 USD cannot be charged at Stripe: USD amounts have at most 2",
        ),
        (Decimal("1.5"), "jpy", "1.5 JPY cannot be charged at Stripe: JPY amounts have at most 0"),
        (
            Decimal("5.124"),
            "kwd",
            "5.124 KWD cannot be charged at Stripe: KWD amounts must be multiples of 0.010",
        ),
        (Decimal("0.0001"), "kwd", "at most 3 decimal"),
        (Decimal("5.50"), "isk", "ISK amounts must be multiples of 1.00"),
    ],
)
def test_unrepresentable_amounts_name_amount_and_currency(
    amount: Decimal, currency: str, message: str
) -> None:
    with pytest.raises(AmountNotRepresentable, match=message.replace(".", r"\.")):
        money.to_minor_units(amount, currency)
    assert not money.is_representable(amount, currency)


def test_amount_not_representable_is_a_value_error() -> None:
    assert issubclass(AmountNotRepresentable, ValueError)


@pytest.mark.parametrize("bad", [10.0, "10.00", True, None])
def test_non_decimal_amounts_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        money.to_minor_units(bad, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity")])
def test_non_finite_amounts_are_refused(bad: Decimal) -> None:
    with pytest.raises(AmountNotRepresentable, match="finite"):
        money.to_minor_units(bad, "usd")


@pytest.mark.parametrize("bad", ["us", "usdd", "u$d", "", "12a"])
def test_currency_codes_are_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        money.normalize_currency(bad)


def test_currency_is_normalized_to_lowercase() -> None:
    assert money.normalize_currency(" JPY ") == "jpy"
    assert money.to_minor_units(Decimal("3"), "JPY") == 3


def test_exponents_and_steps() -> None:
    assert money.currency_exponent("jpy") == 0
    assert money.currency_exponent("ugx") == 0
    assert money.currency_exponent("kwd") == 3
    assert money.currency_exponent("usd") == 2
    assert money.currency_exponent("isk") == 2
    assert money.minor_unit_step("kwd") == 10
    assert money.minor_unit_step("isk") == 100
    assert money.minor_unit_step("usd") == 1
    assert money.smallest_amount("kwd") == Decimal("0.010")
    assert money.smallest_amount("jpy") == Decimal("1")


def test_from_minor_units() -> None:
    assert money.from_minor_units(1000, "usd") == Decimal("10.00")
    assert str(money.from_minor_units(1000, "usd")) == "10.00"
    assert money.from_minor_units(500, "jpy") == Decimal("500")
    assert str(money.from_minor_units(5120, "kwd")) == "5.120"
    with pytest.raises(TypeError):
        money.from_minor_units(10.0, "usd")  # type: ignore[arg-type]


@given(
    minor=st.integers(min_value=-(10**12), max_value=10**12), currency=st.sampled_from(CURRENCIES)
)
def test_round_trip_from_any_chargeable_minor_amount(minor: int, currency: str) -> None:
    chargeable = minor - minor % money.minor_unit_step(currency)
    amount = money.from_minor_units(chargeable, currency)
    assert money.to_minor_units(amount, currency) == chargeable


@given(
    amount=st.decimals(
        min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4, allow_nan=False
    ),
    currency=st.sampled_from(CURRENCIES),
)
def test_conversion_is_exact_or_refused(amount: Decimal, currency: str) -> None:
    """Never rounds: either the minor amount converts back to the same value, or it is refused."""
    exponent = money.currency_exponent(currency)
    scaled = amount.scaleb(exponent)
    exact = (
        scaled == scaled.to_integral_value() and int(scaled) % money.minor_unit_step(currency) == 0
    )
    if exact:
        minor = money.to_minor_units(amount, currency)
        assert money.from_minor_units(minor, currency) == amount
        assert minor % money.minor_unit_step(currency) == 0
    else:
        with pytest.raises(AmountNotRepresentable) as raised:
            money.to_minor_units(amount, currency)
        assert currency.upper() in str(raised.value)
        assert money.format_amount(amount, currency) in str(raised.value)


@given(
    amounts=st.lists(
        st.decimals(min_value=0, max_value=Decimal("99999.99"), places=2), min_size=1, max_size=20
    )
)
def test_sum_of_minor_units_equals_minor_units_of_sum(amounts: list[Decimal]) -> None:
    total = sum(amounts, Decimal(0))
    assert sum(money.to_minor_units(a, "usd") for a in amounts) == money.to_minor_units(
        total, "usd"
    )


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("6350.000"), "usd", "6350.00 USD"),
        (Decimal("10.005"), "usd", "10.005 USD"),
        (Decimal("1.500"), "jpy", "1.5 JPY"),
        (Decimal("1500.000"), "jpy", "1500 JPY"),
        (Decimal("1E+3"), "jpy", "1000 JPY"),
        (Decimal("5.1"), "kwd", "5.100 KWD"),
    ],
)
def test_format_amount(amount: Decimal, currency: str, text: str) -> None:
    assert money.format_amount(amount, currency) == text


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("5000.000"), "usd", "5,000.00 USD"),
        (Decimal("5000.000"), "jpy", "5,000 JPY"),
        (Decimal("5.000"), "kwd", "5.000 KWD"),
        (Decimal("5.1"), "kwd", "5.100 KWD"),
        (Decimal("1234567.5"), "eur", "1,234,567.50 EUR"),
        (Decimal("-2000"), "usd", "-2,000.00 USD"),
        (Decimal("0"), "jpy", "0 JPY"),
        (Decimal("1E+3"), "jpy", "1,000 JPY"),
        (Decimal("10.005"), "usd", "10.005 USD"),
        (Decimal("1500.500"), "jpy", "1,500.5 JPY"),
    ],
)
def test_format_display_uses_the_currency_decimals_and_groups_thousands(
    amount: Decimal, currency: str, text: str
) -> None:
    assert money.format_display(amount, currency) == text


@pytest.mark.parametrize(
    ("currency", "smallest", "largest"),
    [
        ("usd", Decimal("0.50"), Decimal("999999.99")),
        ("gbp", Decimal("0.30"), Decimal("999999.99")),
        ("jpy", Decimal("50"), Decimal("99999999")),
        ("kwd", Decimal("0.010"), Decimal("99999.999")),  # no minimum in Stripe's table
    ],
)
def test_charge_limits(currency: str, smallest: Decimal, largest: Decimal) -> None:
    assert money.charge_limits(currency) == (smallest, largest)
    assert money.charge_limit_problem(smallest, currency) == ""
    assert money.charge_limit_problem(largest, currency) == ""
    step = money.smallest_amount(currency)
    assert "more than Stripe can charge" in money.charge_limit_problem(largest + step, currency)
    if smallest > step:
        assert "less than the smallest" in money.charge_limit_problem(smallest - step, currency)


def test_absurd_total_is_explained_in_the_organizers_words() -> None:
    problem = money.charge_limit_problem(Decimal("99999999999.99"), "usd")
    assert problem == (
        "The total, 99,999,999,999.99 USD, is more than Stripe can charge on one invoice "
        "(999,999.99 USD at most). Split it into several purchase orders."
    )


@pytest.mark.parametrize(
    ("owed", "received", "refunded", "expected", "why"),
    [
        ("4500", "4500", "0", "4500", "no refund: the credited total"),
        ("4500", "3500", "1000", "3500", "paid, then 1,000 given back: owed no more"),
        ("4500", "1000", "1000", "3500", "2,000 paid, 1,000 given back: Stripe asks 2,500"),
        ("2350", "0", "2350", "0", "all given back"),
        ("4500", "4500", "500", "4500", "5,000 paid, the overpaid 500 given back"),
        ("4500", "4200", "800", "4200", "5,000 paid, 800 given back: 500 overpaid, 300 forgiven"),
        ("4500", "0", "0", "4500", "a lost dispute took it all: still owed"),
    ],
)
def test_a_refund_lowers_what_is_owed_once_it_gives_back_more_than_the_overpayment(
    owed: str, received: str, refunded: str, expected: str, why: str
) -> None:
    assert owed_after_refunds(
        owed=Decimal(owed), received=Decimal(received), refunded=Decimal(refunded)
    ) == Decimal(expected), why


@pytest.mark.parametrize(
    ("entered", "currency", "problem"),
    [
        (Decimal("10.00"), "usd", ""),
        (Decimal("500"), "jpy", ""),
        (None, "usd", "enter an amount."),
        (Decimal("NaN"), "usd", "enter an amount."),
        ("10", "usd", "enter an amount."),
        (Decimal("0"), "usd", "the amount must be greater than zero."),
        (Decimal("-1"), "usd", "the amount must be greater than zero."),
    ],
)
def test_an_entered_amount_is_a_positive_decimal_of_the_currency(
    entered: object, currency: str, problem: str
) -> None:
    assert money.entered_amount_problem(entered, currency) == problem


def test_an_entered_amount_with_more_decimals_than_the_currency_says_so() -> None:
    assert "JPY" in money.entered_amount_problem(Decimal("500.5"), "jpy")
