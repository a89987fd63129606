"""Logging that never carries a Stripe secret, and one structured line per state change.

Two layers, both wired into ``LOGGING`` (config/settings.py) for the ``text`` and ``json`` formats:

- :class:`SecretScrubbingFilter` (on the handler) cleans the record itself: the rendered message,
  the ``extra`` fields and the exception/stack text, so every formatter and any handler added
  later sees masked values.
- :class:`ScrubbingTextFormatter` / :class:`ScrubbingJsonFormatter` scrub their finished output
  too, which also catches what the filter cannot see (an object whose ``str()`` carries a key, a
  traceback a formatter renders on its own).

A secret is masked to its prefix and, when long enough, its last four characters
(``sk_test_…WxYz``), which is what Stripe's dashboard shows and enough to tell keys apart.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "ScrubbingJsonFormatter",
    "ScrubbingTextFormatter",
    "SecretScrubbingFilter",
    "log_state_change",
    "mask_secret",
    "scrub_secrets",
]

# Secret and restricted API keys, live and test, and webhook signing secrets. The lookbehind keeps
# "mask_live_" from matching while still catching "key=sk_live_..." and "_sk_test_..."; the body
# cannot start with the mask, so scrubbing twice (filter, then formatter) changes nothing more.
_SECRET_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?P<prefix>(?:sk|rk)_(?:live|test)_|whsec_)(?P<body>[A-Za-z0-9_+/=-]+)"
)
_MASK = "\u2026"  # the horizontal ellipsis
# Below this many characters the last four would give away too much of the secret.
_MIN_BODY_FOR_LAST4 = 16

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _mask(match: re.Match[str]) -> str:
    body = match.group("body")
    last4 = body[-4:] if len(body) >= _MIN_BODY_FOR_LAST4 else ""
    return f"{match.group('prefix')}{_MASK}{last4}"


def scrub_secrets(text: str) -> str:
    """Mask everything in ``text`` shaped like a Stripe secret key or webhook secret."""
    if "_" not in text:  # cheap exit: every pattern contains an underscore
        return text
    return _SECRET_PATTERN.sub(_mask, text)


def mask_secret(value: str) -> str:
    """How a stored secret may be shown (the admin): its kind and last four characters at most.

    A value that does not look like a Stripe secret shows nothing of itself.
    """
    if not value:
        return ""
    match = _SECRET_PATTERN.fullmatch(value.strip())
    return _mask(match) if match is not None else _MASK


def _scrub_value(value: object) -> object:
    """Scrub strings, also inside containers; other values pass (the formatters catch their str)."""
    if isinstance(value, str):
        return scrub_secrets(value)
    if isinstance(value, bytes):
        return scrub_secrets(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {_scrub_value(key): _scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(item) for item in value]
    return value


class SecretScrubbingFilter(logging.Filter):
    """Mask Stripe secrets in a record's message, arguments, extras and exception text.

    The record is changed in place (it is shared by all handlers): the message is rendered with
    its arguments and scrubbed, the exception is rendered to scrubbed ``exc_text`` and its
    ``exc_info`` dropped, so no formatter can render the raw traceback again. Never drops records.
    """

    _exception_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = f"{record.msg!s} {record.args!r}"
        record.msg = scrub_secrets(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._exception_formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_secrets(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _RECORD_ATTRIBUTES:
                setattr(record, name, _scrub_value(value))
        return True


class ScrubbingTextFormatter(logging.Formatter):
    """``logging.Formatter`` whose finished line is scrubbed of Stripe secrets."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_secrets(super().format(record))


class ScrubbingJsonFormatter(JsonFormatter):
    """python-json-logger's formatter whose finished JSON line is scrubbed of Stripe secrets.

    Masking the serialised line keeps it valid JSON: secrets are runs of ``[A-Za-z0-9_+/=-]``,
    which JSON never escapes, and the mask is one more plain character.
    """

    def format(self, record: logging.LogRecord) -> str:
        return scrub_secrets(str(super().format(record)))


def _render_value(value: object) -> str:
    text = str(value)
    if text == "" or any(char.isspace() or char in "\"'=" for char in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def log_state_change(
    logger: logging.Logger,
    *,
    event: str,
    po_reference: str,
    invoice_id: str | None = None,
    stripe_event_id: str | None = None,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one line for one state change, readable as text and as JSON keys.

    The text format shows ``event po=... invoice=... key=value``; the JSON format gets the same
    values as top-level keys (``event``, ``po_reference``, ``invoice_id``, ``stripe_event_id`` and
    every extra field). Field names that a LogRecord already uses (``name``, ``message``...) are
    refused, since ``logging`` would fail on them at run time.
    """
    clashing = sorted(set(fields) & _RECORD_ATTRIBUTES)
    if clashing:
        raise ValueError(f"log_state_change: field names clash with LogRecord: {clashing}")
    extra: dict[str, Any] = {"event": event, "po_reference": po_reference}
    parts = [event, f"po={_render_value(po_reference)}"]
    if invoice_id is not None:
        extra["invoice_id"] = invoice_id
        parts.append(f"invoice={_render_value(invoice_id)}")
    if stripe_event_id is not None:
        extra["stripe_event_id"] = stripe_event_id
        parts.append(f"stripe_event={_render_value(stripe_event_id)}")
    for key, value in fields.items():
        extra[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        parts.append(f"{key}={_render_value(value)}")
    # "%s" keeps the message a constant format: values never act as format directives.
    logger.log(level, "%s", " ".join(parts), extra=extra)
