"""Benchmark: the webhook view against a trivial view, 50 concurrent connections, real gunicorn.

Run explicitly (benchmarks are not part of the suite)::

    DATABASE_URL=... CELERY_BROKER_URL=... .venv/bin/pytest tests/benchmarks/webhook_view.py \\
        -s -p no:cacheprovider            # BENCH_WEBHOOK_REQUESTS=2000 per view by default

gunicorn runs as the Procfile's ``web`` line (2 workers x 4 threads by default) on the test
database and the broker; 50 client threads each POST signed events (a new event id each time,
so every request is one INSERT and one publish) to ``/stripe/webhooks/<slug>/``, then the same
number of requests to ``/trivial/`` (a CSRF-exempt view that does nothing). Prints throughput
and latency percentiles of both. Figures, not asserts on time.
"""

from __future__ import annotations

import os
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from invoicing.models import Conference, StripeEvent
from tests.pipeline.conftest import service_processes, signed_event, wait_for_http
from tests.support.celery_workers import celery_app, purge_worker_queues
from tests.support.redis_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = int(os.environ.get("BENCH_WEBHOOK_REQUESTS", "2000"))
CONCURRENCY = 50
SECRET = "whsec_benchmark_secret_0123456789"

__all__ = ["service_processes"]  # the pipeline's fixture, used here


def _post(url: str, body: bytes, signature: str | None) -> tuple[int, float]:
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["Stripe-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.status, time.perf_counter() - started


def _run(url: str, payloads: list[tuple[bytes, str | None]]) -> tuple[float, list[float], set[int]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        results = list(pool.map(lambda item: _post(url, *item), payloads))
    elapsed = time.perf_counter() - started
    return elapsed, [latency for _, latency in results], {status for status, _ in results}


def _report(name: str, elapsed: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(f"{name:8s} {len(ordered) / elapsed:7.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")


def test_webhook_view_against_a_trivial_view(service_processes: Any) -> None:
    conference = Conference.objects.create(
        slug="bench-webhooks", name="Bench", stripe_secret_key="sk_test_bench",
        stripe_webhook_secret=SECRET,
    )  # fmt: skip
    port = free_port()
    web = service_processes(
        "web",
        env={"PORT": str(port), "DJANGO_SETTINGS_MODULE": "tests.benchmarks.webhook_settings"},
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health/", service=web)
    try:
        for round_ in ("warm-up", "measured"):
            count = REQUESTS if round_ == "measured" else 200
            events = [signed_event(SECRET) for _ in range(count)]
            webhook = _run(f"{base}/stripe/webhooks/{conference.slug}/", list(events))
            trivial = _run(f"{base}/trivial/", [(body, None) for body, _ in events])
            assert webhook[2] == {200}
            assert trivial[2] == {200}
        print(f"\n{REQUESTS} requests per view, {CONCURRENCY} concurrent connections:")
        _report("webhook", webhook[0], webhook[1])
        _report("trivial", trivial[0], trivial[1])
        print(f"the webhook view takes {webhook[0] / trivial[0]:.1f}x the trivial view's time")
        assert StripeEvent.objects.filter(conference=conference).count() == REQUESTS + 200
    finally:
        purge_worker_queues(celery_app())
