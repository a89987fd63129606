"""Logs never carry a Stripe secret, in either format, whatever part of the record holds it.

Records go through the handler, filter and formatters configured in ``settings.LOGGING``, with
only the stream swapped for a buffer.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import logging.config
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, cast

import pytest
from django.conf import settings

from invoicing.logging import log_state_change, scrub_secrets

LIVE_KEY = "sk_live_51HxQkLAbCdEfGhIjKlMnOpQrStUvWxYz0123"
TEST_KEY = "sk_test_51HxQkLZyXwVuTsRqPoNmLkJiHgFeDcBa9876"
RESTRICTED_KEY = "rk_live_51HxQkLRestrictedKey000000000000042"
WEBHOOK_SECRET = "whsec_Vt9ZjN3m0kQpX2yLwR8sA1bC4dE5fG6h"
SECRETS = [LIVE_KEY, TEST_KEY, RESTRICTED_KEY, WEBHOOK_SECRET]

Emit = Callable[[Callable[[logging.Logger], None]], str]


@contextlib.contextmanager
def _configured(log_format: str) -> Iterator[Emit]:
    """Configure LOGGING as the settings do (given format); ``run(log)`` returns the output."""
    buffer = io.StringIO()
    config = cast("dict[str, Any]", copy.deepcopy(settings.LOGGING))
    config["handlers"]["console"]["formatter"] = log_format
    config["handlers"]["console"]["stream"] = buffer
    config["root"]["level"] = "DEBUG"
    logging.config.dictConfig(config)

    def run(log: Callable[[logging.Logger], None]) -> str:
        log(logging.getLogger("invoicing.tests.platform"))
        return buffer.getvalue()

    try:
        yield run
    finally:
        logging.config.dictConfig(settings.LOGGING)


@pytest.fixture(params=["text", "json"])
def log_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emit(log_format: str) -> Iterator[Emit]:
    with _configured(log_format) as run:
        yield run


@pytest.fixture
def emit_text() -> Iterator[Emit]:
    with _configured("text") as run:
        yield run


@pytest.fixture
def emit_json() -> Iterator[Emit]:
    with _configured("json") as run:
        yield run


def _assert_no_secret(output: str) -> None:
    assert output.strip(), "nothing was logged"
    for secret in SECRETS:
        assert secret not in output
        # Not even a long fragment of it.
        assert secret[8:28] not in output


def test_secrets_in_arguments_are_masked(emit: Emit) -> None:
    output = emit(lambda log: log.info("keys %s and %r", LIVE_KEY, {"secret": WEBHOOK_SECRET}))
    _assert_no_secret(output)
    assert "sk_live_\u2026" + LIVE_KEY[-4:] in output
    assert "whsec_\u2026" + WEBHOOK_SECRET[-4:] in output


def test_secrets_in_the_message_itself_are_masked(emit: Emit) -> None:
    # Pre-rendered on purpose: code that formats its own message must be caught too.
    output = emit(lambda log: log.warning(f"Authorization: Bearer {TEST_KEY}"))  # noqa: G004
    _assert_no_secret(output)
    assert "Bearer sk_test_\u2026" + TEST_KEY[-4:] in output


def test_secrets_in_extras_are_masked(emit: Emit, log_format: str) -> None:
    output = emit(
        lambda log: log.info(
            "conference saved",
            extra={"api_key": RESTRICTED_KEY, "nested": {"keys": [TEST_KEY]}},
        )
    )
    _assert_no_secret(output)
    if log_format == "json":
        line = json.loads(output)
        assert line["api_key"] == "rk_live_\u2026" + RESTRICTED_KEY[-4:]
        assert line["nested"] == {"keys": ["sk_test_\u2026" + TEST_KEY[-4:]]}


class _ClientWithKey:
    """Not a string: only its ``str()`` shows the key, which the JSON encoder calls late."""

    def __str__(self) -> str:
        return f"StripeClient(api_key={LIVE_KEY})"


def test_secrets_in_objects_rendered_by_the_json_encoder_are_masked(emit_json: Emit) -> None:
    output = emit_json(lambda log: log.info("client built", extra={"client": _ClientWithKey()}))
    _assert_no_secret(output)
    assert (
        json.loads(output)["client"] == "StripeClient(api_key=sk_live_\u2026" + LIVE_KEY[-4:] + ")"
    )


def test_secrets_in_exception_tracebacks_are_masked(emit: Emit, log_format: str) -> None:
    def fail_and_log(log: logging.Logger) -> None:
        api_key = LIVE_KEY  # a local in the failing frame, and in the exception's message
        try:
            raise ValueError(f"Invalid API Key provided: {api_key}")
        except ValueError:
            log.exception("Stripe call failed")

    output = emit(fail_and_log)
    _assert_no_secret(output)
    assert "Traceback" in output
    assert "ValueError: Invalid API Key provided: sk_live_\u2026" in output.replace('\\"', '"')
    if log_format == "json":
        assert "ValueError" in json.loads(output)["exc_info"]


def test_secrets_in_stack_info_are_masked(emit: Emit) -> None:
    def log_with_stack(log: logging.Logger) -> None:
        secret_in_source = WEBHOOK_SECRET  # the source line shows in the stack
        log.info("checkpoint %s", secret_in_source[:3], stack_info=True)

    output = emit(log_with_stack)
    _assert_no_secret(output)
    assert "Stack (most recent call last)" in output


def test_state_changes_render_as_text(emit_text: Emit) -> None:
    output = emit_text(
        lambda log: log_state_change(
            log,
            event="po.invoiced",
            po_reference="PO-2026-001",
            invoice_id="in_1Abc",
            amount_due=Decimal("1250.50"),
            note="sent to billing@example.com",
        )
    )
    assert (
        'po.invoiced po=PO-2026-001 invoice=in_1Abc amount_due=1250.50 note="sent to '
        'billing@example.com"'
    ) in output
    assert output.count("\n") == 1


def test_state_changes_give_json_their_fields_as_keys(emit_json: Emit) -> None:
    output = emit_json(
        lambda log: log_state_change(
            log,
            event="payment.recorded",
            po_reference="PO-7",
            invoice_id="in_9",
            stripe_event_id="evt_1",
            amount=Decimal("10.000"),
            attempts=2,
            secret_seen=TEST_KEY,
        )
    )
    _assert_no_secret(output.replace(TEST_KEY[:8], ""))  # the prefix alone may stay
    line = json.loads(output)
    assert line["event"] == "payment.recorded"
    assert line["po_reference"] == "PO-7"
    assert line["invoice_id"] == "in_9"
    assert line["stripe_event_id"] == "evt_1"
    assert line["amount"] == "10.000"
    assert line["attempts"] == 2
    assert line["secret_seen"] == "sk_test_\u2026" + TEST_KEY[-4:]
    assert line["levelname"] == "INFO"


def test_state_change_refuses_field_names_logging_owns() -> None:
    with pytest.raises(ValueError, match="message"):
        log_state_change(logging.getLogger(__name__), event="x", po_reference="PO-1", message="m")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key={TEST_KEY}&x=1", f"key=sk_test_\u2026{TEST_KEY[-4:]}&x=1"),
        ("short sk_test_abc end", "short sk_test_\u2026 end"),  # too short to show a last4
        (f"_{LIVE_KEY}", f"_sk_live_\u2026{LIVE_KEY[-4:]}"),
        ("mask_live_abcdefghijklmnopqrstuvwxyz", "mask_live_abcdefghijklmnopqrstuvwxyz"),
        (
            "publishable pk_live_51HxQkLAbCdEf is public",
            "publishable pk_live_51HxQkLAbCdEf is public",
        ),
        ("prefix alone: sk_live_ is fine", "prefix alone: sk_live_ is fine"),
    ],
)
def test_scrub_secrets(text: str, expected: str) -> None:
    assert scrub_secrets(text) == expected


def test_scrubbing_twice_changes_nothing_more() -> None:
    once = scrub_secrets(f"{LIVE_KEY} {WEBHOOK_SECRET}")
    assert scrub_secrets(once) == once
