"""``GET /health/``: is this process able to reach its database and its broker?

For load balancers and process supervisors. Each check runs with a short timeout, and the answer
names what failed, never how to reach it: no URLs, hosts or credentials, in the body or the log.
"""

from __future__ import annotations

import logging

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


def check_broker() -> bool:
    """Open (and close) a connection to the Celery broker, without retrying."""
    timeout = BROKER_CHECK_TIMEOUT_SECONDS
    transport_options = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 0,
    }
    try:
        with Connection(
            settings.CELERY_BROKER_URL, connect_timeout=timeout, transport_options=transport_options
        ) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as error:
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
