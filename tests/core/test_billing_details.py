"""The pure checks behind the PO's billing details (no database, no Stripe)."""

from __future__ import annotations

import pytest

from invoicing import billing_details as bd


def test_tax_id_types_are_stripes_list_for_the_pinned_api() -> None:
    assert {"eu_vat", "gb_vat", "us_ein", "ch_vat", "au_abn"} <= bd.TAX_ID_TYPES
    assert "vat" not in bd.TAX_ID_TYPES
    assert len(bd.TAX_ID_TYPES) > 100


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ({"line1": "1 Rue X", "city": "Paris", "country": "FR"}, None),
        ({}, None),
        ({"line1": "1 Rue X", "city": "Paris", "country": "fr"}, "not a country code"),
        ({"line1": "1 Rue X", "city": "Paris", "country": "FRA"}, "not a country code"),
        ({"line1": "1 Rue X", "country": "FR"}, "needs city"),
        ({"line1": "1 Main St", "city": "Austin", "country": "US"}, "ZIP code"),
        ({"line1": "1 Main St", "city": "Austin", "country": "US", "postal_code": "78701"}, None),
        ({"line1": "x", "city": "y", "country": "DE", "street": "z"}, "unknown fields street"),
        ({"line1": 5, "city": "y", "country": "DE"}, "line1 must be text"),
        ({"line1": "x" * 201, "city": "y", "country": "DE"}, "longer than 200"),
        ("Berlin", "must be a set of fields"),
    ],
)
def test_address_problems(address: object, problem: str | None) -> None:
    problems = bd.address_problems(address)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in text for text in problems), problems


@pytest.mark.parametrize(
    ("tax_ids", "problem"),
    [
        ([{"type": "eu_vat", "value": "DE123456789"}], None),
        ([{"type": "eu_vat", "value": "ATU12345678"}], None),
        ([{"type": "gb_vat", "value": "GB123456789"}], None),
        ([{"type": "eu_vat", "value": "US123456789"}], "not a valid eu_vat number"),
        ([{"type": "eu_vat", "value": "DE12"}], "not a valid eu_vat number"),
        ([{"type": "vat", "value": "DE123456789"}], "not a Stripe tax ID type"),
        ([{"type": "eu_vat"}], "exactly a type and a value"),
        (
            [
                {"type": "eu_vat", "value": "DE123456789"},
                {"type": "eu_vat", "value": "DE123456789"},
            ],
            "listed twice",
        ),
        ([{"type": "us_ein", "value": "12-3456789"}] * 26, "at most 25"),
        ("eu_vat DE123456789", "must be a list"),
    ],
)
def test_tax_id_problems(tax_ids: object, problem: str | None) -> None:
    problems = bd.tax_id_problems(tax_ids)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in text for text in problems), problems


def test_the_admins_tax_id_text_round_trips() -> None:
    parsed = bd.parse_tax_ids("eu_vat DE123456789\n\n  GB_VAT   GB123456789 \n")
    assert parsed == [
        {"type": "eu_vat", "value": "DE123456789"},
        {"type": "gb_vat", "value": "GB123456789"},
    ]
    assert bd.parse_tax_ids(bd.format_tax_ids(parsed)) == parsed


def test_custom_fields_follow_stripes_limits() -> None:
    ok = [{"name": "PO number", "value": "x" * 140}]
    assert bd.custom_field_problems(ok) == []
    assert bd.custom_field_problems([{"name": "PO number", "value": "x" * 141}])
    assert bd.custom_field_problems([{"name": "n" * 41, "value": "v"}])
    assert bd.custom_field_problems([{"name": "a", "value": "b"}] * 5)


def test_one_organization_key_per_company_whatever_the_spelling() -> None:
    assert bd.organization_key("ACME  Corp.") == bd.organization_key("acme corp")
    assert bd.organization_key("Ａｃｍｅ Corp") == bd.organization_key("Acme Corp")  # noqa: RUF001
    assert bd.organization_key("Globex GmbH") != bd.organization_key("Acme Corp")


def test_the_details_digest_is_stable_and_sensitive() -> None:
    details = {"name": "Globex", "address": {"city": "Berlin", "country": "DE"}}
    same = {"address": {"country": "DE", "city": "Berlin"}, "name": "Globex"}
    assert bd.details_digest(details) == bd.details_digest(same)
    assert bd.details_digest(details) != bd.details_digest({**details, "name": "Globex AG"})
