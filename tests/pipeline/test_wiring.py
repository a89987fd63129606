"""How the pipeline is wired: routes, the beat schedule from the environment, the backoff, the
Procfile."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from config.celery import app
from invoicing.retry import backoff_seconds, is_transient
from tests.support.processes import REPO_ROOT, procfile_command

STRIPE_TASKS = [
    "create_invoice_for_purchase_order",
    "process_stripe_event",
    "sync_purchase_order",
    "sync_conference_invoices",
    "void_purchase_order_invoice",
    "reissue_purchase_order_invoice",
    "cancel_purchase_order_task",
    "report_off_stripe_payment",
]
BOOKKEEPING_TASKS = [
    "sync_open_invoices",
    "reenqueue_pending_stripe_events",
    "resume_stalled_invoice_creation",
    "send_notification",
    "notify_overdue_invoices",
    "resend_pending_notifications",
    "report_pending_off_stripe_payments",
]


@pytest.mark.parametrize("name", STRIPE_TASKS + BOOKKEEPING_TASKS)
def test_tasks_are_registered_and_routed(name: str) -> None:
    import workers.tasks  # noqa: F401 - registers the tasks, as the worker's autodiscovery does

    task_name = f"workers.tasks.{name}"
    assert task_name in app.tasks
    route = app.amqp.router.route({}, task_name)
    assert route["queue"].name == ("stripe" if name in STRIPE_TASKS else "default")


def _schedule(**env: str) -> dict[str, dict[str, object]]:
    code = (
        "import json, config.settings as s; "
        "print(json.dumps({k: {'task': v['task'], 'schedule': v['schedule'], "
        "'options': v['options']} for k, v in s.CELERY_BEAT_SCHEDULE.items()}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    schedule: dict[str, dict[str, object]] = json.loads(result.stdout)
    return schedule


def test_the_beat_schedule_defaults_and_environment() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RECONCILE_", "STRIPE_EVENT_REENQUEUE", "INVOICE_RESUME"))
    }
    defaults = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.RECONCILE_INTERVAL_SECONDS)"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert defaults.stdout.strip() == "900"  # 15 minutes
    schedule = _schedule()
    assert {name: entry["task"] for name, entry in schedule.items()} == {
        "sync-open-invoices": "workers.tasks.sync_open_invoices",
        "reenqueue-pending-stripe-events": "workers.tasks.reenqueue_pending_stripe_events",
        "resume-stalled-invoice-creation": "workers.tasks.resume_stalled_invoice_creation",
        "purge-stripe-event-payloads": "workers.tasks.purge_stripe_event_payloads",
        "notify-overdue-invoices": "workers.tasks.notify_overdue_invoices",
        "resend-pending-notifications": "workers.tasks.resend_pending_notifications",
        "report-pending-off-stripe-payments": "workers.tasks.report_pending_off_stripe_payments",
    }
    assert _schedule(RECONCILE_INTERVAL_SECONDS="120")["sync-open-invoices"]["schedule"] == 120
    minutes = _schedule(RECONCILE_INTERVAL_MINUTES="5")["sync-open-invoices"]
    assert minutes["schedule"] == 300
    assert minutes["options"] == {"expire_seconds": 300}


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        delay = backoff_seconds(attempt, base=5, cap=600, rng=rng)
        step = min(600, 5 * 2 ** (attempt - 1))
        assert step / 2 <= delay <= step
    delays = {backoff_seconds(3, base=5, cap=600, rng=rng) for _ in range(20)}
    assert len(delays) > 1  # jittered
    with pytest.raises(ValueError, match="count from 1"):
        backoff_seconds(0)


def test_the_retry_rule() -> None:
    import stripe
    from django.db import OperationalError

    from invoicing.errors import EventRejected, InvoiceAlreadyAttached

    assert is_transient(stripe.APIConnectionError("down"))  # type: ignore[no-untyped-call]
    assert is_transient(stripe.APIError("500", http_status=500))
    assert is_transient(stripe.RateLimitError("429", http_status=429))
    assert is_transient(OperationalError("server closed the connection"))
    assert not is_transient(stripe.InvalidRequestError("bad", "x", http_status=400))  # type: ignore[no-untyped-call]
    assert not is_transient(stripe.AuthenticationError("key", http_status=401))
    assert not is_transient(stripe.IdempotencyError("reused", http_status=400))
    assert not is_transient(EventRejected("other conference"))
    assert not is_transient(InvoiceAlreadyAttached("done"))


def test_the_procfile_runs_web_worker_beat_and_release() -> None:
    assert procfile_command("web").startswith("gunicorn config.wsgi ")
    assert "$PORT" in procfile_command("web")
    worker = procfile_command("worker")
    assert worker.startswith("celery -A config worker")
    assert "default,stripe" in worker
    beat = procfile_command("beat")
    assert beat.startswith("celery -A config beat")
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat
    assert procfile_command("release") == "python manage.py migrate --noinput"
    assert (REPO_ROOT / "Procfile").read_text().count("\n") == 4
