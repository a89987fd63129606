"""Session-wide guard: no log line of the suite carries a known Stripe secret (issue 6, case 7).

Registered as a pytest plugin in ``tests/conftest.py``. It learns every secret the suite handles:

- each emulator account key (``EmulatorHandle.new_secret_key``, which ``stripe_secret_key`` and
  the tests call), and
- each conference's ``stripe_secret_key`` and ``stripe_webhook_secret`` when a ``Conference`` is
  saved (the plaintext values, which include the ``whsec_`` secrets the emulator hands out when an
  endpoint is registered),

and looks for them in

- every log record of this process, *as handed to logging* (before the project's scrubbing filter
  masks it: the filter is a safety net, and code that passes a secret to a logger is a bug even
  when the net catches it): message, arguments, ``extra`` fields, exception and stack text;
- at the end of the session, every ``*.log`` file under pytest's base temporary directory, where
  the fixtures keep the output of worker, beat, gunicorn and emulator subprocesses.

A leak fails the session (exit status 1) and the terminal summary names the test, the logger or
file and the secret, masked. ``register_secret`` lets a test add a value of its own.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# What Stripe secrets look like; a known secret is found as the start of such a token.
_SHAPE = re.compile(r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9_]+|whsec_[A-Za-z0-9_+/=-]+")
# Values shorter than this are too common to be told apart from ordinary text.
_MIN_SECRET_LENGTH = 12
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def mask(secret: str) -> str:
    """How a leak is reported: its kind and last four characters, never the secret."""
    match = re.match(r"(?:sk|rk)_(?:live|test)_|whsec_", secret)
    return f"{match.group(0) if match else ''}\u2026{secret[-4:]}"


class SecretRegistry:
    """The known secrets, and a scan of text for any of them."""

    def __init__(self) -> None:
        self._shaped: set[str] = set()
        self._lengths: set[int] = set()
        self._other: set[str] = set()  # secrets not shaped like Stripe's: plain substring search

    def __len__(self) -> int:
        return len(self._shaped) + len(self._other)

    def add(self, value: object) -> None:
        if not isinstance(value, str) or len(value) < _MIN_SECRET_LENGTH:
            return
        if _SHAPE.fullmatch(value):
            self._shaped.add(value)
            self._lengths.add(len(value))
        else:
            self._other.add(value)

    def find(self, text: str) -> list[str]:
        """The known secrets that occur in ``text``."""
        found = [secret for secret in self._other if secret in text]
        if self._shaped and "_" in text:
            for match in _SHAPE.finditer(text):
                token = match.group(0)
                found.extend(
                    token[:length]
                    for length in self._lengths
                    if length <= len(token) and token[:length] in self._shaped
                )
        return found


@dataclass(frozen=True)
class Leak:
    """A known secret seen where it must never be."""

    test: str
    source: str
    secret: str

    def describe(self) -> str:
        return f"{self.test}: {self.source} carries {mask(self.secret)}"


@dataclass
class SecretGuard:
    """The session's registry, what was scanned, and the leaks found."""

    registry: SecretRegistry = field(default_factory=SecretRegistry)
    leaks: list[Leak] = field(default_factory=list)
    current_test: str = "(session)"
    records_scanned: int = 0
    files_scanned: int = 0

    def scan(self, text: str, *, source: str, test: str | None = None) -> list[Leak]:
        found = [
            Leak(test=test or self.current_test, source=source, secret=secret)
            for secret in dict.fromkeys(self.registry.find(text))
        ]
        self.leaks.extend(found)
        return found

    def scan_files(self, paths: Iterable[Path]) -> None:
        """Subprocess logs, read at the end (the test that wrote one is not known then)."""
        for path in paths:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            self.files_scanned += 1
            self.scan(text, source=f"file {path}", test="(subprocess log)")


def record_text(record: logging.LogRecord) -> str:
    """Everything of a record a formatter could print, before any filter touched it."""
    parts = [str(record.msg)]
    try:
        parts.append(record.getMessage())
    except Exception:  # a bad format string: logging reports it itself
        parts.append(repr(record.args))
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    for text in (record.exc_text, record.stack_info):
        if text:
            parts.append(text)
    parts.extend(
        repr(value) for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES
    )
    return "\n".join(parts)


class GuardHandler(logging.Handler):
    """First handler on the root logger: sees each record before the scrubbing filter does."""

    def __init__(self, guard: SecretGuard) -> None:
        super().__init__(level=logging.NOTSET)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.guard.records_scanned += 1
            self.guard.scan(record_text(record), source=f"log record of {record.name!r}")
        except Exception:  # the guard never breaks logging
            self.handleError(record)


GUARD = SecretGuard()
_HANDLER = GuardHandler(GUARD)


def register_secret(value: str) -> None:
    """Add a secret the guard must never see in a log line."""
    GUARD.registry.add(value)


def _attach_handler() -> None:
    root = logging.getLogger()
    if _HANDLER not in root.handlers:  # dictConfig (Django's LOGGING) removes root's handlers
        root.handlers.insert(0, _HANDLER)


def _learn_emulator_keys() -> None:
    try:
        from tests.stripe_emulator.handle import EmulatorHandle
    except ImportError:  # pragma: no cover - the guard also runs without the emulator
        return
    original = EmulatorHandle.new_secret_key
    if getattr(original, "_secret_guard", False):
        return

    def new_secret_key(self: EmulatorHandle, *args: Any, **kwargs: Any) -> str:
        key = original(self, *args, **kwargs)
        register_secret(key)
        return key

    new_secret_key._secret_guard = True  # type: ignore[attr-defined]
    EmulatorHandle.new_secret_key = new_secret_key  # type: ignore[method-assign]


def _learn_conference_secrets() -> None:
    try:
        from django.apps import apps
        from django.db.models.signals import post_save

        if not apps.ready:
            return
        conference = apps.get_model("invoicing", "Conference")
    except Exception:  # no Django here (a pytester session): emulator keys only
        return

    def remember(sender: Any, instance: Any, **_: Any) -> None:
        register_secret(getattr(instance, "stripe_secret_key", ""))
        register_secret(getattr(instance, "stripe_webhook_secret", ""))

    post_save.connect(remember, sender=conference, weak=False, dispatch_uid="secret_guard")


def pytest_configure(config: pytest.Config) -> None:
    _learn_emulator_keys()
    _attach_handler()


def pytest_sessionstart(session: pytest.Session) -> None:
    _learn_conference_secrets()
    _attach_handler()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    GUARD.current_test = item.nodeid
    _attach_handler()
    try:
        return (yield)
    finally:
        GUARD.current_test = "(session)"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        try:
            base = factory.getbasetemp()
        except Exception:
            base = None
        if base is not None and base.exists():
            GUARD.scan_files(sorted(base.rglob("*.log")))
    if GUARD.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    guard = GUARD
    if guard.leaks:
        terminalreporter.section("secret guard: SECRETS IN LOGS", red=True, bold=True)
        for leak in dict.fromkeys(guard.leaks):
            terminalreporter.write_line(leak.describe())
    else:
        terminalreporter.write_line(
            f"secret guard: {len(guard.registry)} known secrets, "
            f"{guard.records_scanned} log records and {guard.files_scanned} log files scanned, "
            "no secret in any of them"
        )


@pytest.fixture
def secret_guard() -> SecretGuard:
    """The session's guard (its registry, what it scanned, the leaks so far)."""
    return GUARD
