"""A private ``redis-server`` on a free port, for tests that stop or kill Redis.

Never the machine's shared Redis: a test that kills its broker or its rate limiter's Redis gets its
own server here, killed by pid when the test ends.
"""

from __future__ import annotations

import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.processes import LoggedProcess

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process this test started; ``url(db)`` addresses one of its databases."""

    port: int
    directory: Path
    process: LoggedProcess | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, *, timeout: float = 10.0) -> None:
        """Start (again, on the same port) and wait until it answers PING."""
        if self.running:
            return
        self.process = LoggedProcess(
            name="redis-server",
            argv=[
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            log_path=self.directory / "redis.log",
        )  # fmt: skip
        self.process.start()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self.process.running:
                    raise RuntimeError(self.process.exit_report(chars=2000))
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server (SIGKILL by default) and reap it."""
        if self.process is not None:
            self.process.stop(timeout=10, sig=sig)


@contextmanager
def private_redis_server(directory: Path) -> Iterator[RedisServer]:
    """Run a redis-server on a free port for the duration of the block, then kill it."""
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(port=free_port(), directory=directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()
