"""pytest plugin: real Celery workers for tests, against the real Redis in ``CELERY_BROKER_URL``.

Enable it in the root ``tests/conftest.py``: ``pytest_plugins = ["tests.support.celery_workers"]``.

Fixtures
--------
``celery_worker`` (session)
    One embedded worker (a thread in the test process, solo pool) consuming ``default`` and
    ``stripe``. Started once per session: a worker started inside a test can close that test's
    database connection, and two embedded workers in one process stop each other. Tests that use
    it must be ``@pytest.mark.django_db(transaction=True)``: the worker thread has its own database
    connection and only sees committed rows. At start it purges its queues (and Redis's record of
    unacknowledged messages) in the broker's own Redis database, and nothing else.

``celery_worker_processes`` (function, factory)
    ``start(count=1, *, pool="prefork", concurrency=1, env=None, ...)`` starts real
    ``celery -A config worker`` subprocesses on the test database and the same broker, waits until
    each answers a ping, and returns :class:`WorkerProcess` handles (``pid``, ``kill(sig)``,
    ``kill_group(sig)``, ``restart()``, ``stop()``, ``log_path``, ``log_text()``). Every worker is
    stopped when the test ends, well before pytest-django drops the database. While subprocess
    workers run, the embedded worker (if the session has one) stops consuming, so a task published
    in the test runs in a subprocess. Tests that use it must be ``django_db(transaction=True)``.
    ``env={"CELERY_BROKER_URL": private_redis.url()}`` points workers at another broker (readiness
    pings follow it; publish there with ``app_for_broker(url).send_task(name, ...)``).

``embedded_worker_paused`` (function)
    The embedded worker (if running) stops consuming for the test, and the worker queues are
    purged after it: nothing the test queues runs behind its back, and queue lengths can be read.

``marker_table`` (function)
    Creates the table that ``tests.support.tasks.record_marker`` writes to, and drops it after.

``private_redis`` (function)
    A redis-server of the test's own on a free port (:mod:`tests.support.redis_server`), for tests
    that kill Redis. Killed by pid at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.db import connection, connections

from tests.support.processes import REPO_ROOT, LoggedProcess, child_pids
from tests.support.redis_server import RedisServer, private_redis_server
from tests.support.tasks import CREATE_MARKER_TABLE, MARKER_TABLE

WORKER_QUEUES = ("default", "stripe")
# Tasks the workers must know besides the app's own.
TEST_TASK_MODULES = ("tests.support.tasks",)
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0

# The session's embedded worker, so subprocess workers can pause it (one per process at most).
_embedded_worker_hostname: str | None = None


def celery_app() -> Celery:
    from config.celery import app

    return app


def purge_worker_queues(app: Celery, queues: Sequence[str] = WORKER_QUEUES) -> int:
    """Drop waiting and unacknowledged messages of ``queues`` in the broker's own Redis DB.

    Only the queues named (and kombu's ``unacked`` bookkeeping, which lives in the same database
    index) are touched: never FLUSHDB, never another database.
    """
    purged = 0
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        for queue in queues:
            purged += int(channel.queue_purge(queue) or 0)
    broker_url: str = settings.CELERY_BROKER_URL
    if urlsplit(broker_url).scheme in {"redis", "rediss"}:
        client = redis.Redis.from_url(broker_url)
        try:
            client.delete("unacked", "unacked_index", "unacked_mutex")
        finally:
            client.close()
    return purged


def _close_thread_connections(**_: Any) -> None:
    # The embedded worker's thread owns its database connections; close them after each task so
    # none is left open when pytest-django drops the test database.
    connections.close_all()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any
) -> Iterator[Any]:  # celery.apps.worker.Worker
    """The session's embedded worker on ``default`` and ``stripe`` (see the module doc)."""
    global _embedded_worker_hostname
    app = celery_app()
    for module in TEST_TASK_MODULES:
        __import__(module)
    hostname = f"pytest-embedded-{uuid.uuid4().hex[:8]}@localhost"
    with django_db_blocker.unblock():
        purge_worker_queues(app)
    task_postrun.connect(_close_thread_connections, weak=False)
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            queues=list(WORKER_QUEUES),
            hostname=hostname,
            shutdown_timeout=STOP_TIMEOUT_SECONDS,
        ) as worker:
            _embedded_worker_hostname = hostname
            try:
                yield worker
            finally:
                _embedded_worker_hostname = None
    finally:
        task_postrun.disconnect(_close_thread_connections)


def _set_embedded_consuming(app: Celery, *, consuming: bool) -> None:
    hostname = _embedded_worker_hostname
    if hostname is None:
        return
    for queue in WORKER_QUEUES:
        if consuming:
            replies = app.control.add_consumer(queue, destination=[hostname], reply=True, timeout=5)
        else:
            replies = app.control.cancel_consumer(
                queue, destination=[hostname], reply=True, timeout=5
            )
        if not replies:
            raise RuntimeError(f"The embedded worker {hostname} did not answer for {queue}.")


def test_database_url() -> str:
    """``DATABASE_URL`` of the database this test session uses (pytest-django's ``test_<NAME>``)."""
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("Worker subprocesses need a PostgreSQL test database (DATABASE_URL).")
    credentials = quote(str(db.get("USER") or ""), safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(str(db["PASSWORD"]), safe="")
    host = str(db.get("HOST") or "127.0.0.1")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}@{host}{port}/{quote(str(db['NAME']), safe='')}"


@contextlib.contextmanager
def app_for_broker(broker_url: str, app: Celery | None = None) -> Iterator[Celery]:
    """A Celery app publishing to ``broker_url``: ``app`` itself when that is its broker.

    Celery publishes control commands (ping) through the app's own producer pool, whatever
    connection is passed in, so reaching a worker on another broker takes another app. And the
    ``CELERY_BROKER_URL`` environment variable beats an app's ``broker_url`` setting, so the
    probe app is given read and write URLs, which are looked up first.
    """
    app = app or celery_app()
    if broker_url == app.conf.broker_url:
        yield app
        return
    other = Celery("broker-probe", set_as_current=False)
    other.conf.update(
        broker_read_url=broker_url,
        broker_write_url=broker_url,
        task_default_queue=app.conf.task_default_queue,
    )
    try:
        yield other
    finally:
        other.close()


@dataclass(kw_only=True)
class WorkerProcess(LoggedProcess):
    """A ``celery -A config worker`` subprocess started by :func:`celery_worker_processes`."""

    hostname: str

    @property
    def broker_url(self) -> str:
        """The broker this worker consumes from (``env={"CELERY_BROKER_URL": ...}`` may differ)."""
        assert self.env is not None, "a worker is given its environment"
        return self.env["CELERY_BROKER_URL"]

    def child_pids(self) -> list[int]:
        """Pids of the pool's child processes (prefork), newest state from /proc."""
        return child_pids(self.pid) if self.running else []

    def wait_ready(self, app: Celery, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait until this worker answers a ping addressed to its hostname."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"Worker {self.exit_report()}")
            with app_for_broker(self.broker_url, app) as control_app:
                replies = control_app.control.ping(destination=[self.hostname], timeout=0.5)
            if any(self.hostname in reply for reply in replies or []):
                return
        raise TimeoutError(f"Worker {self.hostname} not ready in {timeout} s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker's main process only."""
        self.send_signal(sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process and its pool children (a lost machine)."""
        self.send_signal_to_group(sig)
        self.reap()

    def restart(self, app: Celery | None = None) -> None:
        """Stop (if running) and start again with the same settings, hostname and log file."""
        self.stop()
        self.start()
        self.wait_ready(app or celery_app())


class StartWorkers(Protocol):
    def __call__(
        self,
        count: int = 1,
        *,
        pool: str = "prefork",
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
        queues: Sequence[str] = WORKER_QUEUES,
        loglevel: str = "INFO",
    ) -> list[WorkerProcess]: ...


def worker_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker subprocess gets: this process's, pointed at the test database."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "STRIPE_API_BASE": settings.STRIPE_API_BASE,
            "STRIPE_RATE_LIMIT_REDIS_URL": settings.STRIPE_RATE_LIMIT_REDIS_URL,
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@pytest.fixture
def celery_worker_processes(
    django_db_setup: None, django_db_blocker: Any, tmp_path: Path
) -> Iterator[StartWorkers]:
    """Factory: start real worker subprocesses for this test (see the module doc)."""
    app = celery_app()
    started: list[WorkerProcess] = []
    paused_embedded = False

    def start(
        count: int = 1,
        *,
        pool: str = "prefork",
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
        queues: Sequence[str] = WORKER_QUEUES,
        loglevel: str = "INFO",
    ) -> list[WorkerProcess]:
        nonlocal paused_embedded
        if not paused_embedded:
            _set_embedded_consuming(app, consuming=False)
            paused_embedded = True
        worker_env = worker_environment(env)
        workers = []
        for _ in range(count):
            name = f"pytest-{uuid.uuid4().hex[:8]}"
            hostname = f"{name}@localhost"
            argv = [
                sys.executable, "-m", "celery", "-A", "config", "worker",
                "--hostname", hostname,
                "--pool", pool,
                "--concurrency", str(concurrency),
                "--queues", ",".join(queues),
                "--include", ",".join(TEST_TASK_MODULES),
                "--loglevel", loglevel,
                "--without-gossip", "--without-mingle",
            ]  # fmt: skip
            worker = WorkerProcess(
                name=hostname,
                hostname=hostname,
                argv=argv,
                env=worker_env,
                log_path=tmp_path / f"{name}.log",
            )
            worker.start()
            started.append(worker)
            workers.append(worker)
        for worker in workers:
            worker.wait_ready(app)
        return workers

    with django_db_blocker.unblock():
        purge_worker_queues(app)
    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        if paused_embedded:
            with django_db_blocker.unblock():
                purge_worker_queues(app)
            _set_embedded_consuming(app, consuming=True)


@pytest.fixture
def embedded_worker_paused(django_db_blocker: Any) -> Iterator[None]:
    """No worker consumes during the test; what the test queued is purged after it.

    For transactional tests that drive the services themselves while their approvals queue real
    creation tasks (``invoicing/signals.py``): without it, the session's embedded worker (if one
    runs) would race the test's own calls. Also for tests that count what was queued.
    """
    app = celery_app()
    paused = _embedded_worker_hostname is not None
    if paused:
        _set_embedded_consuming(app, consuming=False)
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            purge_worker_queues(app)
        if paused:
            _set_embedded_consuming(app, consuming=True)


@pytest.fixture
def marker_table(django_db_blocker: Any) -> Iterator[str]:
    """The table ``record_marker`` writes to, created for this test and dropped after it."""
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(CREATE_MARKER_TABLE)
        yield MARKER_TABLE
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {MARKER_TABLE}")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free port; killed by pid at the end."""
    with private_redis_server(tmp_path / "redis") as server:
        yield server


def wait_until(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, message: str = ""
) -> None:
    """Poll ``condition`` until true; fail the test with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message or f"condition not met within {timeout} s")
        time.sleep(interval)
