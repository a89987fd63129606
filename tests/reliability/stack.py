"""Whole-stack helpers for the reliability cases that kill things (workers, the broker).

Everything runs as in production, on the test database: ``celery worker`` subprocesses, gunicorn
as the Procfile starts it, a "beat" that enqueues the beat's own tasks, and a Redis of the test's
own (broker in database 0, the Stripe rate limiter in database 1), so killing it touches nobody
else. Timings are shortened through the same environment variables an operator would set, so
redelivery, retries and the beat's recovery happen in seconds instead of minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.pipeline.conftest import wait_for_http
from tests.support.celery_workers import app_for_broker, celery_app, worker_environment
from tests.support.processes import LoggedProcess, procfile_command
from tests.support.redis_server import RedisServer, free_port

# Seconds; each one is an environment variable of config/settings.py (see the README).
VISIBILITY_TIMEOUT = 6
TASK_TIME_LIMIT = 4
TASK_SOFT_TIME_LIMIT = 3
RETRY_BACKOFF_MAX = 1


def stack_environment(redis_server: RedisServer, **overrides: str) -> dict[str, str]:
    """Environment of the stack's processes: the private Redis, short timeouts, fast recovery.

    The settings module refuses a visibility timeout that does not exceed the longest retry
    countdown plus the hard time limit, so these stay consistent: 6 > 1 + 4.
    """
    env = {
        "CELERY_BROKER_URL": redis_server.url(0),
        "STRIPE_RATE_LIMIT_REDIS_URL": redis_server.url(1),
        # A message whose worker died is handed out again after this long.
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "CELERY_TASK_TIME_LIMIT": str(TASK_TIME_LIMIT),
        "CELERY_TASK_SOFT_TIME_LIMIT": str(TASK_SOFT_TIME_LIMIT),
        "TASK_RETRY_BACKOFF_BASE_SECONDS": "0.2",
        "TASK_RETRY_BACKOFF_MAX_SECONDS": str(RETRY_BACKOFF_MAX),
        # The emulator enforces the sandbox's 25 requests/s, so the workers keep the account's
        # default rate (through the private Redis); a slot more than 1 s away is a retry.
        "STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS": "1",
        # The beat's recovery: approved POs idle this long are resumed, recorded events re-queued.
        # Shorter than the time a backlog takes to drain, each tick would queue every waiting PO
        # or event once more (harmless, the runs are idempotent, but it slows the drain down).
        "INVOICE_CREATION_GRACE_SECONDS": "10",
        "STRIPE_EVENT_REENQUEUE_AFTER_SECONDS": "10",
        # An event whose task died (or was cancelled when the broker vanished) is taken over then.
        "STRIPE_EVENT_CLAIM_SECONDS": str(TASK_TIME_LIMIT + 2),
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@contextlib.contextmanager
def publishing_to(broker_url: str) -> Iterator[None]:
    """Make this process's own enqueues (approval signals, webhook inbox) use ``broker_url``.

    ``workers.enqueue`` publishes to ``broker_write_url`` when set; its pools are per URL, so
    the ones made for the private broker are closed afterwards.
    """
    from workers.enqueue import close_pools

    app = celery_app()
    previous = app.conf.broker_write_url
    app.conf["broker_write_url"] = broker_url
    try:
        yield
    finally:
        app.conf["broker_write_url"] = previous
        close_pools()


class BeatTicker:
    """Enqueues beat tasks every ``interval`` seconds, as ``celery beat`` would, in a thread.

    A real beat process adds nothing these tests look at (the schedule rows are tested in the
    pipeline suite) and its one-second tick would slow recovery down. Publishing fails while the
    broker is down, as beat's would; those ticks are counted and skipped.
    """

    def __init__(self, broker_url: str, tasks: Sequence[str], *, interval: float) -> None:
        self.broker_url = broker_url
        self.tasks = list(tasks)
        self.interval = interval
        self.sent: Counter[str] = Counter()
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beat-ticker", daemon=True)

    def _run(self) -> None:
        with app_for_broker(self.broker_url) as app:
            while not self._stop.wait(self.interval):
                for name in self.tasks:
                    try:
                        app.send_task(name, queue="default", retry=False)
                    except Exception:  # the broker is down: beat's tick would fail too
                        self.failed += 1
                    else:
                        self.sent[name] += 1

    def tick_now(self) -> None:
        """Publish every task once, now (a tick the test needs without waiting)."""
        with app_for_broker(self.broker_url) as app:
            for name in self.tasks:
                app.send_task(name, queue="default")
                self.sent[name] += 1

    def __enter__(self) -> BeatTicker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class WebServer:
    """gunicorn serving the project (the Procfile's ``web`` line) on a free port."""

    service: LoggedProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def webhook_url(self, slug: str) -> str:
        return f"{self.base_url}/stripe/webhooks/{slug}/"


@contextlib.contextmanager
def web_server(
    log_dir: Path, env: Mapping[str, str], *, workers: int = 2, threads: int = 4
) -> Iterator[WebServer]:
    """Run the Procfile's web process on the test database; stopped (by pid) afterwards."""
    port = free_port()
    environment = worker_environment(
        {
            **env,
            "PORT": str(port),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
        }
    )
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    command = procfile_command("web").replace("--access-logfile -", "")
    service = LoggedProcess(
        name="web",
        argv=["/bin/sh", "-c", f"exec {command}"],
        env=environment,
        log_path=log_dir / "web.log",
    )
    service.start()
    try:
        server = WebServer(service=service, port=port)
        wait_for_http(f"{server.base_url}/health/", service=service)
        yield server
    finally:
        service.stop()


def broker_backlog(broker_url: str, queues: Sequence[str] = ("default", "stripe")) -> int:
    """Messages waiting in ``queues`` plus those delivered and not yet acknowledged."""
    client = redis.Redis.from_url(broker_url, socket_timeout=2)
    try:
        waiting = sum(int(client.llen(queue)) for queue in queues)
        return waiting + int(client.hlen("unacked"))
    finally:
        client.close()


# --- Reading the workers' logs -------------------------------------------------------------------

_RECEIVED = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]+)\] received")
_RETRY = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]+)\] retry:")
_LOST = re.compile(r"WorkerLostError|exited with 'signal 9")


@dataclass
class TaskLogFigures:
    """What the workers' logs say about one task name: deliveries, retries, redeliveries."""

    received: int = 0
    distinct: int = 0
    retries: int = 0
    lost_children: int = 0
    per_id: Counter[str] = field(default_factory=Counter)

    @property
    def redelivered(self) -> int:
        """Deliveries beyond the first of each message and of each retry it scheduled."""
        return max(0, self.received - self.distinct - self.retries)


def task_log_figures(logs: Sequence[str], task_name: str) -> TaskLogFigures:
    """Count deliveries of ``task_name`` across the worker logs (a retry keeps the task id)."""
    figures = TaskLogFigures()
    for text in logs:
        for match in _RECEIVED.finditer(text):
            if match["name"] == task_name:
                figures.received += 1
                figures.per_id[match["id"]] += 1
        figures.retries += sum(1 for m in _RETRY.finditer(text) if m["name"] == task_name)
        figures.lost_children += len(_LOST.findall(text))
    figures.distinct = len(figures.per_id)
    return figures


def stripe_call_figures(requests: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The emulator's request log summed up: calls, writes, replays, errors."""
    return {
        "stripe_calls": len(requests),
        "stripe_writes": sum(1 for r in requests if r["method"] == "POST"),
        "idempotent_replays": sum(1 for r in requests if r.get("idempotent_replayed")),
        "stripe_errors": sum(1 for r in requests if int(r.get("status") or 0) >= 400),
        "injected_faults": sum(1 for r in requests if r.get("fault")),
        "key_in_use_409": sum(1 for r in requests if int(r.get("status") or 0) == 409),
    }
