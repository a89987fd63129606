"""``GET /health/``: is this process able to reach its database and its broker?

For load balancers and process supervisors. Each check runs with a short timeout, and the answer
names what failed, never how to reach it: no URLs, hosts or credentials, in the body or the log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, cast

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from kombu import Connection

logger = logging.getLogger(__name__)

# Seconds a health probe may wait on the broker; probes are usually given a few seconds in all.
BROKER_CHECK_TIMEOUT_SECONDS = 2


def check_database() -> bool:
    """Run a trivial query on the default database."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        logger.warning("Health check: database unreachable (%s).", type(error).__name__)
        return False
    return True


# One broker connection per process, kept between probes (a probe every few seconds from every
# load balancer would otherwise open and close a connection each time). Rebuilt when the broker
# URL changes or a probe failed.
_broker_lock = threading.Lock()
_broker: tuple[str, Connection] | None = None


def _broker_connection() -> Connection:
    global _broker
    url: str = settings.CELERY_BROKER_URL
    if _broker is not None and _broker[0] == url:
        return _broker[1]
    _forget_broker()
    timeout = BROKER_CHECK_TIMEOUT_SECONDS
    transport_options = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 0,
    }
    connection = Connection(url, connect_timeout=timeout, transport_options=transport_options)
    _broker = (url, connection)
    return connection


def _forget_broker() -> None:
    global _broker
    if _broker is not None:
        with contextlib.suppress(Exception):  # closing a dead connection may fail too
            _broker[1].release()
        _broker = None


def _round_trip(connection: Connection) -> None:
    """One request the broker must answer: an open socket alone says nothing about the broker."""
    channel = connection.default_channel
    redis_client = getattr(channel, "client", None)
    if redis_client is not None:  # kombu's Redis transport
        redis_client.ping()
    else:  # AMQP: Basic.Qos waits for the broker's Qos-Ok
        cast(Any, channel).basic_qos(0, 1, False)


def check_broker() -> bool:
    """Ask the Celery broker for an answer on this process's kept connection, without retrying."""
    timeout = BROKER_CHECK_TIMEOUT_SECONDS
    with _broker_lock:
        try:
            connection = _broker_connection()
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            _round_trip(connection)
        except Exception as error:
            _forget_broker()
            logger.warning("Health check: broker unreachable (%s).", type(error).__name__)
            return False
    return True


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker answer, else 503 naming which did not."""
    checks = {
        "database": "ok" if check_database() else "unavailable",
        "broker": "ok" if check_broker() else "unavailable",
    }
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )
