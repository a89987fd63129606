"""The admin's words and figures: money shown as money, states and labels as people read them."""

from __future__ import annotations

import pytest

from invoicing.admin.purchase_order_money import MoneyRequestForm
from invoicing.models import StripeWriteRequest

Kind = StripeWriteRequest.Kind


@pytest.mark.parametrize(
    ("currency", "step"), [("usd", "0.01"), ("jpy", "1"), ("kwd", "0.010"), ("isk", "1.00")]
)
@pytest.mark.parametrize("kind", [Kind.REFUND, Kind.REDUCE])
def test_the_amount_field_steps_by_what_the_currency_can_charge(
    kind: str, currency: str, step: str
) -> None:
    form = MoneyRequestForm(kind=kind, check=lambda *_: "", currency=currency)
    assert form.fields["amount"].widget.attrs["step"] == step
    assert f'step="{step}"' in str(form["amount"])


def test_each_money_form_says_where_its_reason_goes() -> None:
    refund = MoneyRequestForm(kind=Kind.REFUND, check=lambda *_: "", currency="usd")
    reduce = MoneyRequestForm(kind=Kind.REDUCE, check=lambda *_: "", currency="usd")
    assert "memo" not in refund.fields["reason"].help_text.replace("no credit note or memo", "")
    assert "metadata" in refund.fields["reason"].help_text
    assert "credit note's memo" in reduce.fields["reason"].help_text
