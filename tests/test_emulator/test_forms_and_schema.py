"""Form decoding and TypedDict-derived validation, as pure functions (no server needed)."""

from __future__ import annotations

import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from stripe._encode import _api_encode

from tests.stripe_emulator.errors import StripeError
from tests.stripe_emulator.forms import decode, split_key
from tests.stripe_emulator.schema import UNSET, schema_for, validate


def _as_stripe_python_sends(params: dict[str, Any]) -> str:
    """The exact body stripe-python builds (see stripe/_api_requestor.py)."""
    encoded = urllib.parse.urlencode(list(_api_encode(params)))
    return encoded.replace("%5B", "[").replace("%5D", "]")


def test_round_trip_of_what_stripe_python_sends() -> None:
    params = {
        "lines": [
            {"amount": 100, "metadata": {"po": "PO-1"}},
            {
                "price_data": {
                    "currency": "usd",
                    "product_data": {"name": "Gold & Silver"},
                    "unit_amount_decimal": Decimal("12.5"),
                },
                "quantity": 2,
                "discountable": False,
            },
        ],
        "expand": ["lines", "customer"],
        "invoice_metadata": {"cleared": ""},
    }
    body = _as_stripe_python_sends(params)
    assert "lines[1][price_data][product_data][name]=Gold+%26+Silver" in body
    validated = validate("InvoiceAddLinesParams", decode(body))
    assert validated == {
        "lines": [
            {"amount": 100, "metadata": {"po": "PO-1"}},
            {
                "price_data": {
                    "currency": "usd",
                    "product_data": {"name": "Gold & Silver"},
                    "unit_amount_decimal": Decimal("12.5"),
                },
                "quantity": 2,
                "discountable": False,
            },
        ],
        "expand": ["lines", "customer"],
        "invoice_metadata": {"cleared": UNSET},
    }


def test_list_indexes_sort_numerically_and_brackets_work_both_ways() -> None:
    body = "&".join(f"lines[{n}][amount]={n}" for n in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9))
    lines = validate("InvoiceAddLinesParams", decode(body))["lines"]
    assert [line["amount"] for line in lines] == list(range(11))
    assert validate("InvoiceRetrieveParams", decode("expand[]=customer&expand[]=payments")) == {
        "expand": ["customer", "payments"]
    }


def test_split_key() -> None:
    assert split_key("a[b][0][c]") == ["a", "b", "0", "c"]
    assert split_key("expand[]") == ["expand", ""]
    assert split_key("plain") == ["plain"]
    assert split_key("bro]ken[") == ["bro]ken["]


def test_conflicting_shapes_are_refused() -> None:
    with pytest.raises(StripeError) as caught:
        decode("metadata=x&metadata[a]=b")
    assert caught.value.param == "metadata"


def test_unknown_and_removed_parameters_come_from_the_installed_library() -> None:
    item_fields = schema_for("InvoiceItemCreateParams").fields
    assert "unit_amount" not in item_fields  # removed in 2025-03-31.basil
    assert "unit_amount_decimal" in item_fields
    assert "api_key" not in item_fields  # request options are not parameters
    with pytest.raises(StripeError) as caught:
        validate("InvoiceItemCreateParams", decode("customer=cus_1&unit_amount=5"))
    assert (caught.value.code, caught.value.param) == ("parameter_unknown", "unit_amount")


def test_required_keys_come_from_the_typed_dicts() -> None:
    assert schema_for("WebhookEndpointCreateParams").required == {"url", "enabled_events"}
    assert schema_for("InvoiceAddLinesParams").required == {"lines"}
    with pytest.raises(StripeError) as caught:
        validate("WebhookEndpointCreateParams", decode("enabled_events[0]=*"))
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "url")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ("created[gte]=soon", "parameter_invalid_integer", "created[gte]"),
        ("limit=", "parameter_invalid_empty", "limit"),
        ("status=sent", None, "status"),
        ("created[between]=1", "parameter_unknown", "created[between]"),
        ("expand=lines", None, "expand"),
    ],
)
def test_type_errors(body: str, code: str | None, param: str) -> None:
    with pytest.raises(StripeError) as caught:
        validate("InvoiceListParams", decode(body))
    assert caught.value.status == 400
    assert caught.value.code == code
    assert caught.value.param == param


def test_unions_pick_by_shape() -> None:
    assert validate("InvoiceListParams", decode("created=5")) == {"created": 5}
    assert validate("InvoiceListParams", decode("created[lt]=5")) == {"created": {"lt": 5}}
    settings = validate(
        "InvoiceCreateParams", decode("customer=c&payment_settings[payment_method_types]=")
    )
    assert settings["payment_settings"] == {"payment_method_types": UNSET}


def test_decimals_keep_their_precision_and_limits() -> None:
    ok = validate("InvoiceItemCreateParams", decode("unit_amount_decimal=0.000000000001"))
    assert ok["unit_amount_decimal"] == Decimal("0.000000000001")
    with pytest.raises(StripeError):
        validate("InvoiceItemCreateParams", decode("unit_amount_decimal=0.0000000000001"))
    with pytest.raises(StripeError):
        validate("InvoiceItemCreateParams", decode("unit_amount_decimal=1e5"))


def test_the_emulator_imports_neither_django_nor_the_project() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tests.stripe_emulator.server, tests.stripe_emulator.handle, "
        "tests.stripe_emulator.pytest_plugin; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'invoicing', 'workers', 'config', 'celery')); "
        "print(','.join(bad))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=repo_root,
    )
    assert result.stdout.strip() == ""
