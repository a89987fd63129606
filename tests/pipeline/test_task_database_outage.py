"""The database refuses connections when a task starts: the task retries instead of failing.

Found by the reliability case "PostgreSQL restarted during processing" at full size: creation
tasks that started while the server was down failed on their very first query (loading the PO,
outside the failure policy), "raised unexpected", and were acked: 105 of 200 POs stayed
``approved`` until the beat's resume task (10 minutes of grace).

The outage is real: ``ALTER DATABASE ... ALLOW_CONNECTIONS false`` (binding superusers too) and
the worker's connection closed, so the task's first query cannot connect, exactly as during a
restart; the test's own connection, opened before, stays usable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from invoicing.models import Conference, PurchaseOrder
from invoicing.services import purchase_orders
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import PublishLog, wait_for, wait_for_status

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = "create_invoice_for_purchase_order"


@pytest.fixture
def refuse_connections() -> Iterator[Any]:
    """Call it to make the test database refuse new connections; allowed again at the end.

    PostgreSQL only lets another database's session change ``ALLOW_CONNECTIONS``: the switch is
    thrown from the ``postgres`` database, with this test's credentials.
    """
    db = connection.settings_dict
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own_pid,) = cursor.fetchone() or (None,)
    admin = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )

    def refuse(refused: bool = True) -> None:
        allow = "false" if refused else "true"
        admin.execute(f'ALTER DATABASE "{db["NAME"]}" ALLOW_CONNECTIONS {allow}')
        if refused:  # the worker thread's connection, so its next query must reconnect
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s",
                (db["NAME"], own_pid),
            )

    try:
        yield refuse
    finally:
        refuse(False)
        admin.close()


@pytest.mark.usefixtures("celery_worker")
def test_a_creation_task_started_during_a_database_outage_is_retried(
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
    refuse_connections: Any,
    settings: Any,
) -> None:
    settings.TASK_MAX_RETRIES = 50  # the outage lasts as long as the test wants
    po = make_purchase_order(conference=stripe_conference, approve=False)
    refuse_connections()
    purchase_orders.approve_purchase_order(po)  # queues the creation on commit

    wait_for(
        lambda: len(published.of(CREATE, po.pk)) >= 3,
        message="the task did not retry while the database refused connections",
    )
    refuse_connections(False)
    po = wait_for_status(po, PurchaseOrder.Status.INVOICED)
    assert po.stripe_invoice_id
