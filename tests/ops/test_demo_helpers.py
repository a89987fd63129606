"""The parts of ``rundemo`` that start nothing: addresses, the web command, the dev secret key."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.management import demo
from invoicing.management.commands import rundemo
from tests.support.processes import REPO_ROOT


@pytest.mark.parametrize(
    ("command", "host", "expected"),
    [
        (
            "gunicorn config.wsgi --bind 0.0.0.0:$PORT --workers 2",
            "127.0.0.1",
            "gunicorn config.wsgi --bind 127.0.0.1:$PORT --workers 2",
        ),
        (
            "gunicorn config.wsgi -b 0.0.0.0:$PORT",
            "127.0.0.1",
            "gunicorn config.wsgi -b 127.0.0.1:$PORT",
        ),
        (
            "gunicorn config.wsgi --bind=[::]:$PORT",
            "::1",
            "gunicorn config.wsgi --bind=[::1]:$PORT",
        ),
        (
            "gunicorn config.wsgi --bind 10.0.0.5:$PORT",
            "127.0.0.1",
            "gunicorn config.wsgi --bind 10.0.0.5:$PORT",
        ),
    ],
)
def test_the_demo_web_binds_the_demo_host(command: str, host: str, expected: str) -> None:
    assert demo.demo_web_command(command, host) == expected


def test_addresses_and_urls() -> None:
    assert demo.url_host("0.0.0.0") == "127.0.0.1"  # noqa: S104 (a URL, not a bind)
    assert demo.url_host("::1") == "[::1]"
    assert demo.with_db("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"
    assert demo.with_db("redis://:pw@host:6380/5", 0) == "redis://:pw@host:6380/0"
    addresses = demo.DemoAddresses(host="127.0.0.1", web_port=8000, emulator_port=12111)
    assert addresses.web == "http://127.0.0.1:8000"
    assert addresses.emulator == "http://127.0.0.1:12111"


def test_ports_from_the_environment_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_WEB_PORT", "8123")
    assert demo.env_port("DEMO_WEB_PORT", 8000) == 8123
    monkeypatch.delenv("DEMO_WEB_PORT")
    assert demo.env_port("DEMO_WEB_PORT", 8000) == 8000
    for bad in ("http", "0", "70000"):
        monkeypatch.setenv("DEMO_WEB_PORT", bad)
        with pytest.raises(CommandError, match="DEMO_WEB_PORT"):
            demo.env_port("DEMO_WEB_PORT", 8000)


def test_the_dev_secret_key_is_made_once_and_kept_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    first = demo.dev_secret_key(tmp_path)
    assert len(first) >= 50
    assert demo.dev_secret_key(tmp_path) == first
    assert (tmp_path / "dev-secret-key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("DJANGO_SECRET_KEY", "from-the-environment")
    assert demo.dev_secret_key(tmp_path) == "from-the-environment"


def test_a_busy_port_is_detected() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not demo.port_is_free("127.0.0.1", port)
    assert demo.port_is_free("127.0.0.1", demo.free_port())


def test_the_demo_finds_the_emulator_in_this_checkout() -> None:
    assert demo.emulator_checkout() == REPO_ROOT


@pytest.mark.parametrize("missing", ["tests.no_such_emulator", "no_checkout_here.stripe_emulator"])
def test_without_the_emulator_the_demo_says_it_needs_a_checkout_and_starts_nothing(
    missing: str, monkeypatch: pytest.MonkeyPatch, settings: SettingsWrapper, tmp_path: Path
) -> None:
    monkeypatch.setattr(demo, "EMULATOR_MODULE", missing)
    settings.VAR_DIR = tmp_path / "var"

    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"rundemo started {args[0]!r}")

    monkeypatch.setattr(subprocess, "Popen", no_process)  # honcho subclassed it at import
    with pytest.raises(CommandError, match=r"needs a checkout of the repository.*`make run`"):
        call_command(rundemo.Command())
    assert not settings.VAR_DIR.exists()


def test_whole_lines_keep_a_line_written_in_parts_whole_when_another_thread_writes(
    tmp_path: Path,
) -> None:
    """honcho prints a line and its newline in two writes; another writer came between them once."""
    path = tmp_path / "terminal.log"
    with path.open("a", buffering=1, encoding="utf-8") as terminal:
        terminal.reconfigure(write_through=True)  # as under PYTHONUNBUFFERED=1
        out = demo.WholeLines(terminal)
        first_part_written, other_line_written = threading.Event(), threading.Event()

        def printer() -> None:
            out.write('worker | {"event": "received"}')
            first_part_written.set()
            other_line_written.wait(timeout=10)
            out.write("\n")

        thread = threading.Thread(target=printer)
        thread.start()
        assert first_part_written.wait(timeout=10)
        out.write('seed | {"event": "invoice_sent"}\nseed | done\n')
        other_line_written.set()
        thread.join(timeout=10)

    assert path.read_text(encoding="utf-8").splitlines() == [
        'seed | {"event": "invoice_sent"}',
        "seed | done",
        'worker | {"event": "received"}',
    ]
