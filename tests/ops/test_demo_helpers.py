"""The parts of ``rundemo`` that start nothing: addresses, the web command, the dev secret key."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management.base import CommandError

from invoicing.management import demo


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
