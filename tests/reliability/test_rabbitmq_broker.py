"""Case 8: RabbitMQ as the broker.

1. :func:`test_pipeline_tests_pass_with_rabbitmq_as_the_broker` runs the pipeline modules that go
   through the broker (approval queues the creation on commit; task retries with countdowns;
   events published as the webhook view does, and the inbox's claim-resuming retry) in a pytest
   subprocess whose ``CELERY_BROKER_URL`` is ``amqp://guest:guest@127.0.0.1:5672//``
   (``RELIABILITY_AMQP_URL`` overrides it), on a test database of its own. Skipped, saying so,
   when nothing listens there. The queues are declared first (a worker would; the test support's
   purge fails on amqp for a queue that does not exist yet).
2. :func:`test_rabbitmq_keeps_queued_tasks_across_a_restart_where_redis_does_not` queues N tasks
   through the project's Celery app on a **private** ``rabbitmq-server`` (own node name, ports,
   Mnesia and log directories: the shared broker is never restarted) and on a private Redis
   without persistence (as the README's Redis), restarts both brokers, then starts a real worker
   on each: RabbitMQ still holds the N messages and the worker runs them all; Redis comes back
   empty and the worker runs none. This is why the inbox rows and the beat's re-enqueue exist:
   with Redis, the database is what remembers.

Settings compatibility with amqp (checked here or read in kombu/py-amqp, see the report):
``visibility_timeout`` and ``socket_timeout``/``socket_connect_timeout`` in
``CELERY_BROKER_TRANSPORT_OPTIONS`` are Redis transport options; py-amqp swallows them. On amqp an
unacknowledged message (``acks_late``) is redelivered as soon as the worker's channel closes, and a
worker holding a delivery longer than RabbitMQ's ``consumer_timeout`` loses its channel, so that
timeout must exceed the longest countdown plus the hard time limit, as the visibility timeout must
on Redis: the second test reads it from the private broker and checks it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.db import connection
from kombu import Connection

from tests.reliability.conftest import RecordFigures, size
from tests.support.celery_workers import StartWorkers, celery_app, wait_until
from tests.support.processes import REPO_ROOT, LoggedProcess
from tests.support.redis_server import RedisServer, free_port
from tests.support.tasks import MARKER_TABLE

AMQP_URL = os.environ.get("RELIABILITY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
# The pipeline modules whose tests go through the broker the most directly (the others drive
# services themselves or read Redis queue lengths): approval -> publish on commit -> worker;
# task retries with countdowns (ETA messages, held unacked under acks_late); events recorded by
# the view's own service -> workers/enqueue.py's fail-fast publish -> worker -> a retry with
# new kwargs. Kept to these so the case fits the CI budget.
PIPELINE_TESTS = [
    "tests/pipeline/test_approval.py",
    "tests/pipeline/test_tasks.py",
    "tests/pipeline/test_event_claim_resume.py",
]
MARKER_TASK = "tests.support.tasks.record_marker"


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 1):
            return True
    except OSError:
        return False


def declare_worker_queues(url: str) -> None:
    """Declare the app's queues (durable, as a worker would) on the broker at ``url``.

    A worker declares them when it starts; a publisher that comes first (or the test support's
    queue purge, which fails on amqp for a queue that does not exist yet) needs them already.
    """
    app = celery_app()
    with app.connection_for_write(url) as conn:
        channel = conn.default_channel
        for queue in app.amqp.queues.values():
            queue.bind(channel).declare()


# --- 1. The pipeline tests with RabbitMQ as the broker --------------------------------------------


@pytest.mark.timeout(600)
def test_pipeline_tests_pass_with_rabbitmq_as_the_broker(record_figures: RecordFigures) -> None:
    if not _listening(AMQP_URL):
        pytest.skip(f"no RabbitMQ listens at {urlsplit(AMQP_URL).netloc.split('@')[-1]}")
    declare_worker_queues(AMQP_URL)
    database = connection.settings_dict
    name = f"{database['NAME']}_amqp".removeprefix("test_")
    database_url = (
        f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{name}"
    )
    env = {
        **os.environ,
        "CELERY_BROKER_URL": AMQP_URL,
        "DATABASE_URL": database_url,  # its own test database, never this session's
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", *PIPELINE_TESTS,
            "-p", "no:cacheprovider", "-q", "--no-header", "--show-capture=no",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"pipeline tests failed on {AMQP_URL}:\n{output[-8000:]}"
    summary = re.search(r"(\d+) passed", output)
    assert summary is not None, output[-3000:]
    assert "skipped" not in output.splitlines()[-1], output[-3000:]
    record_figures(
        broker="amqp",
        tests_passed=int(summary.group(1)),
        modules=len(PIPELINE_TESTS),
        seconds=round(time.monotonic() - started, 1),
    )


# --- 2. A private RabbitMQ restarted with tasks queued ----------------------------------------


@dataclass
class RabbitMQServer:
    """A ``rabbitmq-server`` node this test started: own node name, ports, data and logs."""

    directory: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    node: str = field(default_factory=lambda: f"reliability-{uuid.uuid4().hex[:8]}@localhost")
    process: LoggedProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        base = self.directory
        return {
            **os.environ,
            # HOME holds the node's own Erlang cookie (rabbitmqctl reads the same one).
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def prepare(self) -> None:
        for sub in ("mnesia", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "enabled_plugins").write_text("[].\n")  # no management listener
        (self.directory / "rabbitmq-env.conf").write_text("")  # not the system's node name

    def start(self, timeout: float = 90.0) -> float:
        """Start the node and wait until it accepts an AMQP login; returns the seconds it took."""
        started = time.monotonic()
        self.process = LoggedProcess(
            name="rabbitmq-server",
            argv=[str(RABBITMQ_SERVER)],
            log_path=self.directory / "server.out",
            env=self.env(),
            cwd=self.directory,
        )
        self.process.start()
        deadline = started + timeout
        while True:
            if not self.process.running:
                raise RuntimeError(self.process.exit_report(chars=3000))
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=1)
                return time.monotonic() - started
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    @property
    def beam_pid(self) -> int | None:
        try:
            return int((self.directory / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM to the Erlang VM, as systemd does); SIGKILL the group after."""
        if self.process is None:
            return
        pid = self.beam_pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.process.reap(timeout)
        with contextlib.suppress(OSError):
            (self.directory / "rabbitmq.pid").unlink()

    def consumer_timeout_ms(self) -> int | None:
        """RabbitMQ's ``consumer_timeout`` on this node (None: no limit)."""
        result = subprocess.run(
            [str(RABBITMQCTL), "-n", self.node, "eval",
             "application:get_env(rabbit, consumer_timeout)."],
            env=self.env(), capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        found = re.search(r"\{ok,(\d+)\}", result.stdout)
        return int(found.group(1)) if found else None


@pytest.fixture
def private_rabbitmq() -> Iterator[RabbitMQServer]:
    if not RABBITMQ_SERVER.exists():
        pytest.skip(f"no {RABBITMQ_SERVER}: cannot start a private RabbitMQ")
    directory = Path(tempfile.mkdtemp(prefix="private-rabbitmq-"))
    server = RabbitMQServer(directory=directory)
    server.prepare()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _publish_markers(url: str, markers: list[str]) -> None:
    """Queue ``record_marker`` tasks through the project's app (its queues, persistent messages)."""
    app = celery_app()
    declare_worker_queues(url)
    with app.connection_for_write(url) as conn:
        for marker in markers:
            app.send_task(MARKER_TASK, args=(marker,), connection=conn, queue="default")


def _rabbit_queue_length(url: str) -> int:
    with Connection(url, connect_timeout=5) as conn:
        channel: Any = conn.default_channel
        _, count, _ = channel.queue_declare("default", passive=True)
        return int(count)


def _finished_markers(markers: list[str]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(DISTINCT marker) FROM {MARKER_TABLE} "  # noqa: S608
            "WHERE phase = 'finished' AND marker = ANY(%s)",
            [markers],
        )
        (count,) = cursor.fetchone() or (0,)
        return int(count)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_rabbitmq_keeps_queued_tasks_across_a_restart_where_redis_does_not(
    private_rabbitmq: RabbitMQServer,
    private_redis: RedisServer,
    marker_table: str,
    celery_worker_processes: StartWorkers,
    record_figures: RecordFigures,
) -> None:
    count = size(ci=20, full=500)
    rabbit_markers = [f"rabbit-{uuid.uuid4().hex[:8]}-{n}" for n in range(count)]
    redis_markers = [f"redis-{uuid.uuid4().hex[:8]}-{n}" for n in range(count)]
    redis_url = private_redis.url(0)

    _publish_markers(private_rabbitmq.url, rabbit_markers)
    _publish_markers(redis_url, redis_markers)
    queued = {"rabbitmq": _rabbit_queue_length(private_rabbitmq.url)}
    redis_client = redis.Redis.from_url(redis_url)
    queued["redis"] = int(redis_client.llen("default"))
    redis_client.close()
    assert queued == {"rabbitmq": count, "redis": count}

    private_rabbitmq.stop()
    restart_seconds = private_rabbitmq.start()
    private_redis.kill()
    private_redis.start()
    after = {"rabbitmq": _rabbit_queue_length(private_rabbitmq.url)}
    redis_client = redis.Redis.from_url(redis_url)
    after["redis"] = int(redis_client.llen("default"))
    redis_client.close()

    celery_worker_processes(env={"CELERY_BROKER_URL": private_rabbitmq.url}, queues=["default"])
    celery_worker_processes(env={"CELERY_BROKER_URL": redis_url}, queues=["default"])
    wait_until(
        lambda: _finished_markers(rabbit_markers) == count,
        timeout=60,
        message="the worker on RabbitMQ did not run every task queued before the restart",
    )
    time.sleep(2)  # the Redis worker is ready too: give it time to find anything left
    ran = {"rabbitmq": _finished_markers(rabbit_markers), "redis": _finished_markers(redis_markers)}

    consumer_timeout = private_rabbitmq.consumer_timeout_ms()
    longest_hold = settings.TASK_RETRY_BACKOFF_MAX_SECONDS + settings.CELERY_TASK_TIME_LIMIT
    record_figures(
        tasks_queued_per_broker=count,
        queued_after_restart=after,
        tasks_run_after_restart=ran,
        rabbitmq_restart_seconds=round(restart_seconds, 1),
        rabbitmq_consumer_timeout_s=None if consumer_timeout is None else consumer_timeout / 1000,
        longest_unacked_hold_s=longest_hold,
    )
    assert after == {"rabbitmq": count, "redis": 0}
    assert ran == {"rabbitmq": count, "redis": 0}
    # A countdown task is held unacknowledged until its time, then until it finishes (acks_late).
    assert consumer_timeout is None or consumer_timeout / 1000 > longest_hold
