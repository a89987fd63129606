"""The broker is unreachable when webhooks arrive: the web process (gunicorn, as the Procfile runs
it) answers 200 and records them; once the broker is back, the re-enqueue task queues them and the
worker processes them. Every process is real: gunicorn, a worker subprocess, a Redis of the test's
own that is killed and started again (empty, as Redis here keeps nothing on disk)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.utils import timezone

from invoicing.models import PurchaseOrder, StripeEvent
from invoicing.services import ledger, stripe_events, stripe_invoicing
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.pipeline.conftest import wait_for, wait_for_http, webhook_url
from tests.stripe_emulator.handle import EmulatorHandle
from tests.support.celery_workers import StartWorkers, app_for_broker
from tests.support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

Status = PurchaseOrder.Status


def test_webhooks_during_a_broker_outage_are_kept_and_processed_after_it(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    settings: Any,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    private_redis: RedisServer,
    celery_worker_processes: StartWorkers,
    service_processes: Any,
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    broker_url = private_redis.url(0)
    port = free_port()
    web = service_processes("web", env={"CELERY_BROKER_URL": broker_url, "PORT": str(port)})
    (worker,) = celery_worker_processes(pool="solo", env={"CELERY_BROKER_URL": broker_url})
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health/", service=web)

    conference = make_conference(secret_key=stripe_secret_key, stripe_webhook_secret="")
    stripe_events.register_webhook_endpoint(
        conference=conference, url=webhook_url(base, conference)
    )
    po = make_purchase_order(conference=conference)
    stripe_invoicing.create_stripe_invoice(po)  # the creation itself is tested elsewhere
    wait_for(
        lambda: not StripeEvent.objects.filter(conference=conference, status="pending").exists(),
        message="creation events not processed",
    )

    private_redis.kill()
    stripe_emulator.pay_invoice(po.stripe_invoice_id, amount=150000)
    deliveries = stripe_emulator.wait_for_deliveries(stripe_secret_key, timeout=30)
    payment_deliveries = [d for d in deliveries if d["event_type"] == "invoice_payment.paid"]
    assert payment_deliveries
    assert all(d["status"] == 200 and d["attempt"] == 1 for d in payment_deliveries)
    waiting = StripeEvent.objects.filter(conference=conference, status="pending")
    assert waiting.exists()
    po.refresh_from_db()
    assert po.status == Status.INVOICED  # recorded, not processed: no broker
    # The web answers before its publisher thread tries the broker; a row the broker refused is
    # made due at once. Every row due: every publish was tried (and failed) before Redis returns.
    wait_for(
        lambda: not waiting.filter(next_attempt_at__gt=timezone.now()).exists(),
        message=f"the web's publisher never tried the broker:\n{web.log_text()[-3000:]}",
    )

    private_redis.start()  # back, and empty: the messages never existed
    client = redis.Redis.from_url(broker_url)
    try:
        assert client.llen("stripe") == 0
    finally:
        client.close()
    with app_for_broker(broker_url) as app:
        app.send_task("workers.tasks.reenqueue_pending_stripe_events")

    def paid_in_part() -> bool:
        po.refresh_from_db()
        return po.status == Status.PARTIALLY_PAID

    wait_for(paid_in_part, timeout=60, message=f"never processed:\n{worker.log_text()[-3000:]}")
    wait_for(lambda: not waiting.exists(), message="events left pending")
    assert ledger.stripe_paid_total(po, stripe_invoice_id=po.stripe_invoice_id) == (
        Decimal("1500.00")
    )
    # A lone delivery is published as process_stripe_event, several at once as one
    # queue_stripe_events batch: which depends on how the deliveries met the publisher thread.
    refused = r"could not queue workers\.tasks\.(process_stripe_event|queue_stripe_events)"
    assert re.search(refused, web.log_text())
