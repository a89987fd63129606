"""Real Celery workers on the real Redis broker: the embedded one and worker subprocesses.

Also proves what the Celery settings promise when workers die: a killed prefork child's task is
requeued at once (late acks + reject on worker lost), and a task whose whole worker was SIGKILLed
stays in Redis's unacked set until the visibility timeout passes, then runs on a new worker.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings

from config.celery import app
from tests.support.celery_workers import StartWorkers, app_for_broker, wait_until
from tests.support.redis_server import RedisServer
from tests.support.tasks import marker_rows, record_marker

pytestmark = pytest.mark.django_db(transaction=True)


def _marker() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def _finished(marker: str) -> bool:
    return "finished" in {phase for phase, _ in marker_rows(marker)}


def test_the_app_never_runs_tasks_eagerly() -> None:
    assert app.conf.task_always_eager is False


def test_embedded_worker_runs_a_task_sent_through_redis(
    celery_worker: Any, marker_table: str
) -> None:
    marker = _marker()
    record_marker.delay(marker)

    wait_until(lambda: _finished(marker), timeout=20, message="the embedded worker never ran it")
    # The embedded worker is a thread of this process, on its own database connection.
    assert marker_rows(marker) == [("started", os.getpid()), ("finished", os.getpid())]


def test_embedded_worker_consumes_the_stripe_queue(celery_worker: Any, marker_table: str) -> None:
    marker = _marker()
    record_marker.apply_async(args=(marker,), queue="stripe")

    wait_until(lambda: _finished(marker), timeout=20, message="nothing consumed the stripe queue")


def test_worker_subprocesses_run_tasks_on_the_test_database(
    marker_table: str, celery_worker_processes: StartWorkers
) -> None:
    workers = celery_worker_processes(2, pool="solo")
    markers = [_marker() for _ in range(6)]
    for index, marker in enumerate(markers):
        record_marker.apply_async(args=(marker,), queue=("default", "stripe")[index % 2])

    wait_until(lambda: all(_finished(m) for m in markers), timeout=30, message="tasks not run")
    pids = {pid for marker in markers for _, pid in marker_rows(marker)}
    assert pids <= {worker.pid for worker in workers}
    assert os.getpid() not in pids


def test_a_killed_prefork_child_has_its_task_requeued_at_once(
    marker_table: str, celery_worker_processes: StartWorkers
) -> None:
    (worker,) = celery_worker_processes(pool="prefork", concurrency=1)
    marker = _marker()
    record_marker.delay(marker, sleep_seconds=60)
    wait_until(lambda: bool(marker_rows(marker)), timeout=30, message="the task never started")
    ((phase, child_pid),) = marker_rows(marker)
    assert phase == "started"
    assert child_pid in worker.child_pids()

    os.kill(child_pid, signal.SIGKILL)

    # Late ack + reject_on_worker_lost: the parent requeues the message, a new child runs it (the
    # second run does not sleep). Far sooner than the 60 s sleep or the 1 h visibility timeout.
    wait_until(lambda: _finished(marker), timeout=30, message="the task was not redelivered")
    rows = marker_rows(marker)
    assert [phase for phase, _ in rows] == ["started", "started", "finished"]
    assert rows[1][1] != child_pid
    assert worker.running


def test_a_sigkilled_worker_leaves_its_task_unacked_until_the_visibility_timeout(
    marker_table: str, celery_worker_processes: StartWorkers
) -> None:
    visibility_timeout = 6
    (worker,) = celery_worker_processes(
        pool="solo",
        env={
            "CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
            "CELERY_TASK_SOFT_TIME_LIMIT": "2",
            "CELERY_TASK_TIME_LIMIT": "3",
            "TASK_RETRY_BACKOFF_MAX_SECONDS": "1",
        },
    )
    marker = _marker()
    record_marker.delay(marker, sleep_seconds=60)
    wait_until(lambda: bool(marker_rows(marker)), timeout=30, message="the task never started")
    delivered_at = time.monotonic()

    worker.kill_group(signal.SIGKILL)  # the whole machine is gone: no warm shutdown, no requeue

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        # Not lost, not back in the queue: parked in kombu's unacked hash.
        assert broker.hlen("unacked") == 1
        assert broker.llen("default") == 0
    finally:
        broker.close()

    # A worker restarted after the visibility timeout restores it on its first sweep and runs it.
    time.sleep(max(0.0, delivered_at + visibility_timeout + 1 - time.monotonic()))
    worker.restart()
    wait_until(lambda: _finished(marker), timeout=30, message="the unacked task never came back")
    assert [phase for phase, _ in marker_rows(marker)] == ["started", "started", "finished"]


@pytest.mark.slow
def test_a_broker_restart_cancels_the_running_task_and_its_message_is_gone(
    marker_table: str, celery_worker_processes: StartWorkers, private_redis: RedisServer
) -> None:
    """What a Redis restart (nothing on disk) does to in-flight work: it is lost, not redone.

    With worker_cancel_long_running_tasks_on_connection_loss the worker terminates the late-ack
    task it can no longer acknowledge; the unacked message died with Redis's memory. So the
    pipeline must recover such work from the database (inbox, beat re-enqueue), never the broker.
    """
    broker_url = private_redis.url(0)
    (worker,) = celery_worker_processes(pool="prefork", env={"CELERY_BROKER_URL": broker_url})
    marker = _marker()
    sleep_seconds = 8.0
    with app_for_broker(broker_url) as private_app:
        private_app.send_task(
            record_marker.name, args=(marker,), kwargs={"sleep_seconds": sleep_seconds}
        )
    wait_until(lambda: bool(marker_rows(marker)), timeout=30, message="the task never started")
    started = time.monotonic()

    private_redis.kill()
    private_redis.start()  # same port, empty memory

    wait_until(
        lambda: "cannot be acknowledged after a connection loss" in worker.log_text(),
        timeout=60,
        message="the worker did not cancel its running task after reconnecting",
    )
    # Had the task gone on, it would have finished by now; it never does, nor runs again.
    time.sleep(max(0.0, started + sleep_seconds + 3 - time.monotonic()))
    assert [phase for phase, _ in marker_rows(marker)] == ["started"]
    client = redis.Redis.from_url(broker_url)
    try:
        assert client.hlen("unacked") == 0
        assert client.llen("default") == 0
    finally:
        client.close()
    assert worker.running  # the worker itself reconnected and carries on


def test_a_busy_worker_reserves_nothing_more_so_another_worker_can_take_it(
    marker_table: str, celery_worker_processes: StartWorkers
) -> None:
    """Prefetch 1 with late acks: the running task is the reservation; the next stays queued.

    Prefork, because a solo worker blocks its consumer while a task runs and so never
    prefetches, whatever the setting.
    """
    workers = celery_worker_processes(2, pool="prefork", concurrency=1)
    long_markers = [_marker(), _marker()]
    for marker in long_markers:
        record_marker.delay(marker, sleep_seconds=6)
    wait_until(
        lambda: all(marker_rows(m) for m in long_markers), timeout=30, message="not both busy"
    )
    waiting = _marker()
    record_marker.delay(waiting)

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        # Both workers are busy; with a larger prefetch one of them would hold the new message
        # unacked behind its running task. Give them a second to (not) take it.
        time.sleep(1.0)
        assert broker.llen("default") == 1
        assert broker.hlen("unacked") == 2
    finally:
        broker.close()
    wait_until(lambda: _finished(waiting), timeout=30, message="the waiting task never ran")
    children = {pid for worker in workers for pid in worker.child_pids()}
    assert {pid for _, pid in marker_rows(waiting)} <= children
