"""Test-only Celery tasks that leave visible traces, for proving real worker round trips.

Loaded into worker subprocesses with ``celery -A config worker -I tests.support.tasks``; the test
process registers them by importing this module. Each run of :func:`record_marker` inserts rows
into :data:`MARKER_TABLE` (created by the ``marker_table`` fixture), through the worker's own
database connection, so a test sees which process ran it, how often, and whether it finished.
"""

from __future__ import annotations

import logging
import os
import time

from celery import shared_task
from django.db import connection, transaction

MARKER_TABLE = "platform_test_marker"

CREATE_MARKER_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (
    id bigserial PRIMARY KEY,
    marker text NOT NULL,
    phase text NOT NULL,
    pid integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def _insert(marker: str, phase: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MARKER_TABLE} (marker, phase, pid) VALUES (%s, %s, %s)",  # noqa: S608
            [marker, phase, os.getpid()],
        )


@shared_task(name="tests.support.tasks.record_marker")
def record_marker(marker: str, sleep_seconds: float = 0.0) -> None:
    """Record ``started``, sleep, record ``finished``: a kill in between leaves only ``started``.

    Only the first run of a marker sleeps, so a redelivered run finishes at once.
    """
    first_run = not marker_rows(marker)
    _insert(marker, "started")
    if sleep_seconds and first_run:
        time.sleep(sleep_seconds)
    _insert(marker, "finished")


def marker_rows(marker: str) -> list[tuple[str, int]]:
    """``(phase, pid)`` of every row recorded for ``marker``, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT phase, pid FROM {MARKER_TABLE} WHERE marker = %s ORDER BY id",  # noqa: S608
            [marker],
        )
        return [(str(phase), int(pid)) for phase, pid in cursor.fetchall()]


@shared_task(name="tests.support.tasks.log_message")
def log_message(message: str) -> None:
    """Log ``message`` (as an argument) at WARNING from inside the worker."""
    logging.getLogger("tests.support.tasks").warning("task says: %s", message)
