"""The parts of ``manage.py rundemo`` that start nothing: addresses, ports, keys, readiness."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import redis
from django.core.management.base import CommandError

SECRET_KEY_FILE_NAME = "dev-secret-key"  # noqa: S105 (a file name)
# The Stripe emulator lives with the tests: a checkout has it, an installed package does not.
EMULATOR_MODULE = "tests.stripe_emulator"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WholeLines:
    """A text stream that reaches ``stream`` in whole lines, one ``write`` per batch of lines.

    Several writers share the demo's terminal: honcho's printer (``print`` writes a line and its
    newline in two calls), the seeder thread and, through the same file, anything it starts. A
    line written in parts could be split by another writer's line; here each thread's text waits
    until its newline and is then written whole, under a lock.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pending = threading.local()

    def write(self, text: str) -> int:
        pending = getattr(self._pending, "text", "") + text
        complete, newline, rest = pending.rpartition("\n")
        self._pending.text = rest
        if newline:
            with self._lock:
                self._stream.write(complete + newline)
                self._stream.flush()
        return len(text)

    def flush(self) -> None:
        """Whole lines are flushed as they are written; a part line waits for its newline."""

    def isatty(self) -> bool:
        return self._stream.isatty()


def emulator_checkout() -> Path:
    """The checkout holding the Stripe emulator the demo runs, or a CommandError saying why not."""
    try:
        spec = importlib.util.find_spec(EMULATOR_MODULE)
    except ModuleNotFoundError:  # not even a ``tests`` package
        spec = None
    if spec is None or spec.origin is None:
        raise CommandError(
            "The demo needs a checkout of the repository: its Stripe emulator "
            f"({EMULATOR_MODULE.replace('.', '/')}/) cannot be imported here, and an installed "
            "package does not include it. Run `make run` in a checkout."
        )
    # <checkout>/tests/stripe_emulator/__init__.py
    return Path(spec.origin).resolve().parents[EMULATOR_MODULE.count(".") + 1]


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise CommandError(f"{name}={raw!r} is not a TCP port (1-65535).")
    return int(raw)


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def url_host(host: str) -> str:
    """How a browser addresses ``host`` (a wildcard bind is reached on the loopback)."""
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 (formatting a URL, not binding)
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def demo_web_command(command: str, host: str) -> str:
    """The Procfile's web entry, bound to ``host`` instead of every interface.

    In production the web binds all interfaces behind the platform's router; the demo prints an
    admin password, so it listens on ``DEMO_HOST`` (the loopback unless you say otherwise).
    """
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return re.sub(r"((?:--bind|-b)[= ]+)(?:0\.0\.0\.0|\[::\]):", rf"\g<1>{bind_host}:", command)


def dev_secret_key(var_dir: Path) -> str:
    """``DJANGO_SECRET_KEY`` if set, else the key kept in ``var/dev-secret-key`` (made once)."""
    explicit = os.environ.get("DJANGO_SECRET_KEY", "").strip()
    if explicit:
        return explicit
    path = var_dir / SECRET_KEY_FILE_NAME
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{db}").geturl()


def http_ok(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def wait_for(urls: list[str], timeout: float, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and not stopping.is_set():
        pending = [url for url in pending if not http_ok(url)]
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        stopping.wait(0.3)
    return not pending


@dataclass
class DemoAddresses:
    host: str
    web_port: int
    emulator_port: int

    @property
    def web(self) -> str:
        return f"http://{url_host(self.host)}:{self.web_port}"

    @property
    def emulator(self) -> str:
        return f"http://{url_host(self.host)}:{self.emulator_port}"
