"""What a company's accounts payable needs on an invoice, checked before anything reaches Stripe.

Pure functions over plain values (no database, no Stripe calls), shared by the PO model's field
validators, ``create_purchase_order`` and the admin form, so every way in refuses the same input
with the same words. Stripe's own rules are the floor: its tax ID types (stripe-python's literal
list for the pinned API version), its address keys, its limits on invoice custom fields.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Final

from stripe.params import CustomerCreateParamsTaxIdDatum

ADDRESS_KEYS: Final = ("line1", "line2", "city", "state", "postal_code", "country")
REQUIRED_ADDRESS_KEYS: Final = ("line1", "city", "country")
ADDRESS_FIELD_MAX: Final = 200

# ISO 3166-1 alpha-2 (the tz database's iso3166.tab), plus XK (Kosovo), which Stripe accepts.
_COUNTRY_TABLE = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA
    ZM ZW
"""
COUNTRY_CODES: Final = frozenset(_COUNTRY_TABLE.split())

# Stripe's tax ID types for customers, as the installed stripe-python declares them.
TAX_ID_TYPES: Final = frozenset(
    typing.get_args(
        typing.get_args(typing.get_type_hints(CustomerCreateParamsTaxIdDatum)["type"])[0]
    )
)
TAX_IDS_MAX: Final = 25  # Stripe: a customer has at most 25 tax IDs
_EU_VAT = re.compile(
    r"(?:AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI)"
    r"[0-9A-Z]{8,12}"
)
_TAX_ID_VALUE = re.compile(r"[0-9A-Za-z][0-9A-Za-z .\-/]{2,30}")

# Stripe's limits on an invoice's custom fields: at most 4, name up to 40, value up to 140.
CUSTOM_FIELDS_MAX: Final = 4
CUSTOM_FIELD_NAME_MAX: Final = 40
CUSTOM_FIELD_VALUE_MAX: Final = 140
BUYER_PO_NUMBER_LABEL: Final = "PO number"
OUR_REFERENCE_LABEL: Final = "Our reference"

TaxId = dict[str, str]
Address = dict[str, str]


def address_problems(value: object) -> list[str]:
    """Why ``value`` is not a billing address Stripe and an AP department accept (empty: fine).

    An empty mapping means "no address". Otherwise Stripe's keys only, ``line1``, ``city`` and an
    ISO 3166-1 alpha-2 ``country`` are required, and a US address needs a ZIP code (Stripe Tax
    needs it to place the customer).
    """
    if value in (None, {}):
        return []
    if not isinstance(value, Mapping):
        return ["The billing address must be a set of fields (line1, city, country...)."]
    problems: list[str] = []
    unknown = sorted(str(key) for key in value if key not in ADDRESS_KEYS)
    if unknown:
        problems.append(
            f"The billing address has unknown fields {', '.join(unknown)}; "
            f"use {', '.join(ADDRESS_KEYS)}."
        )
    for key in ADDRESS_KEYS:
        item = value.get(key, "")
        if not isinstance(item, str):
            problems.append(f"The billing address's {key} must be text.")
        elif len(item) > ADDRESS_FIELD_MAX:
            problems.append(
                f"The billing address's {key} is longer than {ADDRESS_FIELD_MAX} characters."
            )
    if problems:
        return problems
    missing = [key for key in REQUIRED_ADDRESS_KEYS if not str(value.get(key, "")).strip()]
    if missing:
        problems.append(f"The billing address needs {', '.join(missing)}.")
    country = str(value.get("country", "")).strip()
    if country and country not in COUNTRY_CODES:
        problems.append(
            f"{country!r} is not a country code: use the two capital letters of ISO 3166-1 "
            "(DE, FR, US...)."
        )
    postal_code = str(value.get("postal_code", "")).strip()
    if country == "US" and not re.fullmatch(r"\d{5}(?:-\d{4})?", postal_code):
        problems.append("A US billing address needs a ZIP code (12345 or 12345-6789).")
    return problems


def normalize_address(value: Mapping[str, str] | None) -> Address:
    """Trimmed values, empty fields left out; ``{}`` for no address."""
    if not value:
        return {}
    return {key: value[key].strip() for key in ADDRESS_KEYS if str(value.get(key, "")).strip()}


def tax_id_problems(value: object) -> list[str]:
    """Why ``value`` is not a list of Stripe tax IDs (``{"type": "eu_vat", "value": ...}``)."""
    if value in (None, []):
        return []
    if not isinstance(value, list | tuple):
        return ["Tax IDs must be a list of {type, value} pairs."]
    if len(value) > TAX_IDS_MAX:
        return [f"A customer can have at most {TAX_IDS_MAX} tax IDs."]
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for number, item in enumerate(value, start=1):
        where = f"Tax ID {number}"
        if not isinstance(item, Mapping) or set(item) != {"type", "value"}:
            problems.append(f"{where}: give exactly a type and a value.")
            continue
        kind, text = item["type"], item["value"]
        if not isinstance(kind, str) or kind not in TAX_ID_TYPES:
            problems.append(
                f"{where}: {kind!r} is not a Stripe tax ID type (e.g. eu_vat, gb_vat, us_ein)."
            )
            continue
        if not isinstance(text, str) or not _valid_value(kind, text.strip()):
            problems.append(f"{where}: {text!r} is not a valid {kind} number.")
            continue
        if (kind, text.strip()) in seen:
            problems.append(f"{where}: {kind} {text.strip()} is listed twice.")
        seen.add((kind, text.strip()))
    return problems


def _valid_value(kind: str, text: str) -> bool:
    if kind == "eu_vat":
        return bool(_EU_VAT.fullmatch(text))
    return bool(_TAX_ID_VALUE.fullmatch(text))


def normalize_tax_ids(value: Sequence[Mapping[str, str]] | None) -> list[TaxId]:
    return [{"type": item["type"], "value": item["value"].strip()} for item in value or []]


def parse_tax_ids(text: str) -> list[TaxId]:
    """The admin's text form: one ``type value`` pair per line (``eu_vat DE123456789``)."""
    parsed: list[TaxId] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        kind, _, rest = line.strip().partition(" ")
        parsed.append({"type": kind.strip().lower(), "value": rest.strip()})
    return parsed


def format_tax_ids(value: Sequence[Mapping[str, str]] | None) -> str:
    return "\n".join(f"{item['type']} {item['value']}" for item in value or [])


def tax_id_type_name(kind: str) -> str:
    """A Stripe tax ID type as people write it: ``eu_vat`` is EU VAT, ``us_ein`` US EIN (Stripe's
    types are a country or region and acronyms)."""
    return kind.replace("_", " ").upper()


def tax_id_lines(value: Sequence[Mapping[str, str]] | None) -> list[str]:
    """One line per tax ID, for reading: ``EU VAT: DE123456789``."""
    return [f"{tax_id_type_name(item['type'])}: {item['value']}" for item in value or []]


def address_lines(value: Mapping[str, str] | None) -> list[str]:
    """The address as it is written on an envelope: streets, then city line, then country.

    The US and Canada write "City, ST 12345"; elsewhere the postal code comes first
    ("10117 Berlin"), with a state or region after the city.
    """
    address = normalize_address(value)
    country = address.get("country", "")
    postal_code, city, state = (address.get(key, "") for key in ("postal_code", "city", "state"))
    if country in {"US", "CA"}:
        city_line = " ".join(
            part for part in (", ".join(filter(None, (city, state))), postal_code) if part
        )
    else:
        city_line = ", ".join(filter(None, (" ".join(filter(None, (postal_code, city))), state)))
    return [
        line
        for line in (address.get("line1", ""), address.get("line2", ""), city_line, country)
        if line
    ]


def custom_field_problems(fields: Sequence[Mapping[str, Any]]) -> list[str]:
    """Stripe's limits on an invoice's custom fields, in an organizer's words."""
    problems: list[str] = []
    if len(fields) > CUSTOM_FIELDS_MAX:
        problems.append(f"An invoice has at most {CUSTOM_FIELDS_MAX} custom fields.")
    for item in fields:
        if len(item["name"]) > CUSTOM_FIELD_NAME_MAX:
            problems.append(
                f"The invoice field name {item['name']!r} is longer than "
                f"{CUSTOM_FIELD_NAME_MAX} characters."
            )
        if len(item["value"]) > CUSTOM_FIELD_VALUE_MAX:
            problems.append(
                f"{item['name']}: {len(item['value'])} characters, but an invoice field holds "
                f"at most {CUSTOM_FIELD_VALUE_MAX}."
            )
    return problems


def organization_key(name: str) -> str:
    """The name that identifies an organization within a conference: one Stripe customer each.

    Unicode-normalized, case-folded, whitespace collapsed, surrounding punctuation dropped:
    "ACME Corp." and "Acme  Corp" are one company; "Globex GmbH" is another even when it shares
    Acme's accounts-payable mailbox.
    """
    text = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    return text.strip(" .,;:-")


def details_digest(details: Mapping[str, object]) -> str:
    """A short, stable fingerprint of what a Stripe customer should say."""
    encoded = json.dumps(details, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:24]
