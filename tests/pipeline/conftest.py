"""Fixtures of the pipeline tests: a live server the emulator delivers signed webhooks to, the real
embedded Celery worker, a record of every task published, and the broker's queue lengths."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from config.celery import app as celery_app
from invoicing.models import Conference, PurchaseOrder, StripeEvent
from invoicing.services import stripe_events
from invoicing.services.stripe_client import clear_stripe_clients
from tests.core.conftest import (  # the core's factories, shared with this directory
    MakeConference,
    MakePurchaseOrder,
    make_conference,
    make_purchase_order,
    stripe_conference,
)
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import WORKER_QUEUES, wait_until, worker_environment
from tests.support.processes import LoggedProcess, procfile_command
from tests.support.redis_server import free_port

__all__ = ["MakePurchaseOrder", "make_conference", "make_purchase_order", "stripe_conference"]

Status = PurchaseOrder.Status


@pytest.fixture(autouse=True)
def _fast_retries(settings: SettingsWrapper) -> None:
    """Retries in milliseconds, so retry paths run through the real worker quickly."""
    settings.TASK_RETRY_BACKOFF_BASE_SECONDS = 0.05
    settings.TASK_RETRY_BACKOFF_MAX_SECONDS = 0.2
    settings.STRIPE_MAX_NETWORK_RETRIES = 0  # our own retries are under test, not stripe-python's


@pytest.fixture(autouse=True)
def _fresh_stripe_clients() -> Iterator[None]:
    yield
    clear_stripe_clients()


@dataclass(frozen=True)
class Published:
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class PublishLog:
    """Every task message published in this process (the test, the live server, the worker)."""

    def __init__(self) -> None:
        self.messages: list[Published] = []

    def __call__(self, sender: str | None = None, body: Any = None, **_: Any) -> None:
        args, kwargs = (
            (tuple(body[0]), dict(body[1])) if isinstance(body, tuple | list) else ((), {})
        )
        self.messages.append(Published(task=str(sender), args=args, kwargs=kwargs))

    def of(self, task: str, *args: Any) -> list[Published]:
        settle_publishes()
        name = task if "." in task else f"workers.tasks.{task}"
        return [m for m in self.messages if m.task == name and (not args or m.args == args)]


@pytest.fixture
def published() -> Iterator[PublishLog]:
    log = PublishLog()
    before_task_publish.connect(log, weak=False)
    try:
        yield log
    finally:
        before_task_publish.disconnect(log)


@pytest.fixture
def unreachable_broker() -> Iterator[str]:
    """The app publishes to a port nobody listens on (as when Redis is down)."""
    from workers.enqueue import close_pools

    dead = f"redis://127.0.0.1:{free_port()}/7"
    celery_app.conf.update(broker_write_url=dead)
    try:
        yield dead
    finally:
        celery_app.conf.update(broker_write_url=None)
        close_pools()


def settle_publishes() -> None:
    """Wait for this process's webhook publisher thread to publish what the view recorded."""
    from workers.webhook_publisher import wait_for_published

    assert wait_for_published(timeout=30), "the webhook publisher thread did not finish"


def queue_lengths() -> dict[str, int]:
    """Messages waiting in the worker queues of our broker database (kombu's Redis lists)."""
    settle_publishes()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return {queue: int(client.llen(queue)) for queue in WORKER_QUEUES}
    finally:
        client.close()


@pytest.fixture
def webhook_conference(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    settings: SettingsWrapper,
    make_conference: MakeConference,
    live_server: LiveServer,
) -> Conference:
    """A conference on a fresh emulator account whose webhooks reach the live test server."""
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    conference = make_conference(secret_key=stripe_secret_key, stripe_webhook_secret="")
    stripe_events.register_webhook_endpoint(
        conference=conference, url=webhook_url(live_server.url, conference)
    )
    conference.refresh_from_db()
    assert conference.stripe_webhook_secret.startswith("whsec_")
    return conference


def webhook_url(base: str, conference: Conference) -> str:
    return f"{base}/stripe/webhooks/{conference.slug}/"


def wait_for(condition: Callable[[], bool], *, timeout: float = 30, message: str = "") -> None:
    wait_until(condition, timeout=timeout, interval=0.05, message=message)


def wait_for_status(po: PurchaseOrder, status: str, *, timeout: float = 30) -> PurchaseOrder:
    def reached() -> bool:
        po.refresh_from_db()
        return po.status == status

    wait_for(reached, timeout=timeout, message=f"PO {po.reference} never became {status}")
    return po


def wait_for_events_settled(conference: Conference, *, timeout: float = 30) -> list[StripeEvent]:
    """Until every recorded event of the conference is processed, ignored or failed."""

    def settled() -> bool:
        return not StripeEvent.objects.filter(
            conference=conference,
            status__in=[StripeEvent.Status.PENDING, StripeEvent.Status.PROCESSING],
        ).exists()

    wait_for(settled, timeout=timeout, message="events still pending")
    return list(StripeEvent.objects.filter(conference=conference))


def webhook_path(conference: Conference | str) -> str:
    """The webhook URL of a conference (or of a slug), as Stripe is told to post to it."""
    slug = conference if isinstance(conference, str) else conference.slug
    return f"/stripe/webhooks/{slug}/"


def post_webhook(
    client: Client, target: Conference | str, body: bytes, signature: str | None
) -> Any:
    """Post ``body`` to the webhook view as Stripe does (no ``Stripe-Signature`` when None)."""
    headers: dict[str, Any] = {"HTTP_STRIPE_SIGNATURE": signature} if signature else {}
    return client.post(webhook_path(target), data=body, content_type="application/json", **headers)


def signed_event(
    secret: str,
    *,
    event_id: str | None = None,
    event_type: str = "customer.created",
    livemode: bool = False,
    timestamp: int | None = None,
    obj: dict[str, Any] | None = None,
    body: bytes | None = None,
) -> tuple[bytes, str]:
    """A Stripe-shaped event body and its ``Stripe-Signature`` header, signed like Stripe does."""
    from tests.stripe_emulator.webhooks import signature_header

    if body is None:
        event = {
            "id": event_id or f"evt_test_{uuid.uuid4().hex[:16]}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "type": event_type,
            "livemode": livemode,
            "pending_webhooks": 1,
            "data": {"object": obj or {"id": "cus_test", "object": "customer"}},
        }
        body = json.dumps(event, indent=2).encode()
    return body, signature_header(body, secret, timestamp or int(time.time()))


# --- Subprocesses: beat and the web server, as the Procfile runs them ---------------------------


@pytest.fixture
def service_processes(
    django_db_setup: None, tmp_path: Path
) -> Iterator[Callable[..., LoggedProcess]]:
    """Factory: ``start(kind, env={...})`` runs a Procfile process (web, beat) on the test DB."""
    started: list[LoggedProcess] = []

    def start(kind: str, *, env: dict[str, str] | None = None) -> LoggedProcess:
        environment = worker_environment(env)
        # Like honcho/foreman: the Procfile line through a shell, with this venv's executables.
        environment["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ["PATH"]]
        )
        command = procfile_command(kind)
        if kind == "beat":
            schedule = shlex.quote(str(tmp_path / "beat-schedule"))
            command += f" --schedule {schedule} --max-interval 1"
        service = LoggedProcess(
            name=kind,
            argv=["/bin/sh", "-c", f"exec {command}"],
            env=environment,
            log_path=tmp_path / f"{kind}.log",
        )
        service.start()
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in reversed(started):
            service.stop()


def wait_for_http(url: str, *, service: LoggedProcess, timeout: float = 30) -> None:
    """Until ``url`` answers (any status), or fail with the service's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.running:
            pytest.fail(service.exit_report())
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{service.name} did not answer {url} in {timeout} s:\n{service.log_tail()}")
