"""The Celery settings a Stripe worker relies on, and the constraint that guards them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from config.celery import app
from tests.support.celery_workers import StartWorkers, wait_until
from tests.support.tasks import log_message

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_late_acks_requeue_on_worker_loss_and_prefetch_one() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_ignore_result is True
    assert conf.task_track_started is False
    assert conf.task_always_eager is False
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_hijack_root_logger is False


def test_visibility_timeout_outlasts_the_longest_countdown_plus_the_hard_limit() -> None:
    conf = app.conf
    assert conf.task_soft_time_limit < conf.task_time_limit
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > settings.TASK_RETRY_BACKOFF_MAX_SECONDS + conf.task_time_limit


def test_default_and_stripe_queues_exist_and_default_is_the_default() -> None:
    queues = app.amqp.queues
    assert {"default", "stripe"} <= set(queues)
    assert queues["stripe"].routing_key == "stripe"
    assert app.conf.task_default_queue == "default"
    assert isinstance(app.conf.beat_schedule, dict)


def _import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_visibility_timeout_shorter_than_a_retry_countdown_is_refused() -> None:
    result = _import_settings(CELERY_VISIBILITY_TIMEOUT="600", TASK_RETRY_BACKOFF_MAX_SECONDS="600")
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT=600 must exceed" in result.stderr


def test_a_soft_limit_not_below_the_hard_limit_is_refused() -> None:
    result = _import_settings(CELERY_TASK_SOFT_TIME_LIMIT="300", CELERY_TASK_TIME_LIMIT="300")
    assert result.returncode != 0
    assert "CELERY_TASK_SOFT_TIME_LIMIT=300 must be below" in result.stderr


def test_an_event_claim_not_outlasting_the_hard_limit_is_refused() -> None:
    result = _import_settings(CELERY_TASK_TIME_LIMIT="300", STRIPE_EVENT_CLAIM_SECONDS="300")
    assert result.returncode != 0
    assert "STRIPE_EVENT_CLAIM_SECONDS=300 must exceed CELERY_TASK_TIME_LIMIT=300" in result.stderr


def test_the_event_claim_defaults_to_the_hard_limit_plus_a_minute() -> None:
    claim: int = settings.STRIPE_EVENT_CLAIM_SECONDS
    assert claim == app.conf.task_time_limit + 60


def test_sane_overrides_are_accepted() -> None:
    result = _import_settings(
        CELERY_VISIBILITY_TIMEOUT="20", TASK_RETRY_BACKOFF_MAX_SECONDS="5",
        CELERY_TASK_SOFT_TIME_LIMIT="5", CELERY_TASK_TIME_LIMIT="10",
        STRIPE_EVENT_CLAIM_SECONDS="12",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db(transaction=True)
def test_worker_logs_go_through_the_secret_scrubbing_handler(
    celery_worker_processes: StartWorkers,
) -> None:
    (worker,) = celery_worker_processes(pool="prefork")
    secret = f"sk_live_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    log_message.delay(f"conference key {secret}")

    wait_until(
        lambda: "task says: conference key" in worker.log_text(),
        timeout=30,
        message="the task's log line never reached the worker's output",
    )
    output = worker.log_text()
    assert secret not in output
    assert f"conference key sk_live_\u2026{secret[-4:]}" in output
