"""A private PostgreSQL server on a free port, for tests that restart or crash the database.

Never the machine's shared cluster (5432): the test gets its own ``initdb`` data directory in a
temporary directory, its own postmaster on a free TCP port (no Unix socket, so nothing is shared
with the system's ``/var/run/postgresql``), and stops it by its data directory (``pg_ctl -D``, i.e.
the postmaster whose pid is in that directory's ``postmaster.pid``) when it is done.

PostgreSQL refuses to run as root: when the tests run as root, ``initdb``/``pg_ctl`` run as the
``postgres`` OS user (``subprocess``'s ``user=``) and the directory is handed to that user.
Authentication is ``trust`` on 127.0.0.1 for the ``postgres`` role, as on a CI machine's cluster.

The server is described by :meth:`PostgresServer.to_env` / :meth:`PostgresServer.from_env`, so a
pytest subprocess whose test database lives on it (``DATABASE_URL``) can restart it too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.redis_server import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
ENV_VAR = "PRIVATE_POSTGRES"
# Restarts must be fast and the data is thrown away: no fsync (a PostgreSQL crash, unlike an OS
# crash, loses nothing that reached the kernel), a small shared memory footprint. Never
# synchronous_commit=off: an immediate stop would then lose transactions whose commit had
# returned, which no production server does (it made "processed" events come back "pending").
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off "
    "-c full_page_writes=off -c max_connections=100 "
    "-c shared_buffers=32MB"
)


def available() -> str | None:
    """Why a private server cannot run here, or None when it can."""
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (set PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run PostgreSQL as"
    return None


def _run_as() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


@dataclass
class PostgresServer:
    """A postmaster this test started; ``url(name)`` addresses one of its databases."""

    directory: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def to_env(self) -> str:
        return f"{self.port}:{self.directory}"

    @classmethod
    def from_env(cls, value: str | None = None) -> PostgresServer:
        raw = value if value is not None else os.environ[ENV_VAR]
        port, _, directory = raw.partition(":")
        return cls(directory=Path(directory), port=int(port))

    # --- processes ------------------------------------------------------------------------------

    def _pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG_BIN / args[0]), *args[1:]],
            user=_run_as(),
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def init(self) -> None:
        """``initdb`` a fresh cluster (trust auth, role ``postgres``)."""
        self._pg(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale", "C",
        )  # fmt: skip

    def start(self) -> None:
        """Start the postmaster (after :meth:`init`, or again after a stop) and wait for it."""
        result = self._pg(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60",
            "-o", f"-p {self.port} {_SERVER_OPTIONS}", "start",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(
                f"private PostgreSQL did not start: {result.stdout}{result.stderr}\n"
                f"{self.log_text()[-3000:]}"
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (clients are disconnected, a clean shutdown) or ``immediate``.

        ``immediate`` is a crash as far as the data is concerned: no checkpoint, crash recovery on
        the next start. If pg_ctl cannot stop it, the postmaster of our data directory is killed.
        """
        if not self.running:
            return
        result = self._pg(
            "pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop", check=False
        )
        if result.returncode != 0 and self.postmaster_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.postmaster_pid, signal.SIGKILL)

    def restart(self, *, mode: str = "fast", down_for: float = 0.0) -> None:
        """Stop (``mode``), stay down ``down_for`` seconds, start again and wait for it."""
        self.stop(mode)
        if down_for:
            time.sleep(down_for)
        self.start()

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def running(self) -> bool:
        pid = self.postmaster_pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def private_postgres_server() -> Iterator[PostgresServer]:
    """Run a private PostgreSQL for the duration of the block, then stop it and delete its data.

    The directory is a fresh ``/tmp`` directory rather than pytest's ``tmp_path``: when running
    as root, the ``postgres`` user must be able to reach it, and pytest's base directory is
    private to the user running the tests.
    """
    reason = available()
    if reason is not None:
        raise RuntimeError(reason)
    directory = Path(tempfile.mkdtemp(prefix="private-postgres-"))
    if _run_as() is not None:
        shutil.chown(directory, user="postgres", group="postgres")
    server = PostgresServer(directory=directory, port=free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            shutil.rmtree(directory, ignore_errors=True)
