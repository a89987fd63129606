"""``GET /health/`` against the real database and broker, and against unreachable ones."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from django.db import connections
from django.test import Client, override_settings

from tests.support.redis_server import RedisServer, free_port

# WhiteNoise warns (an error under filterwarnings=error) when STATIC_ROOT was never collected.


def _get(client: Client) -> tuple[int, dict[str, str], str]:
    response = client.get("/health/")
    body = response.content.decode()
    return response.status_code, json.loads(body), body


@pytest.mark.django_db
def test_healthy_when_database_and_broker_answer(client: Client) -> None:
    status, payload, _ = _get(client)
    assert status == 200
    assert payload == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_the_answer_is_never_cached(client: Client) -> None:
    response = client.get("/health/")
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_a_closed_broker_port_is_a_503_that_names_the_broker_and_nothing_more(
    client: Client,
) -> None:
    port = free_port()
    with override_settings(CELERY_BROKER_URL=f"redis://:hunter2@127.0.0.1:{port}/5"):
        status, payload, body = _get(client)
    assert status == 503
    assert payload == {"status": "unavailable", "database": "ok", "broker": "unavailable"}
    for leak in ("hunter2", str(port), "127.0.0.1", "redis"):
        assert leak not in body


@pytest.mark.django_db
def test_a_broker_that_dies_turns_the_answer_to_503(
    client: Client, private_redis: RedisServer
) -> None:
    with override_settings(CELERY_BROKER_URL=private_redis.url(0)):
        assert _get(client)[0] == 200
        private_redis.kill()
        assert _get(client)[0] == 503


@pytest.fixture
def unreachable_database() -> Iterator[None]:
    """Point the default connection at a closed port, then restore it."""
    connection = connections["default"]
    original_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original_port


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_is_a_503_naming_the_database(
    client: Client, unreachable_database: None
) -> None:
    status, payload, body = _get(client)
    assert status == 503
    assert payload == {"status": "unavailable", "database": "unavailable", "broker": "ok"}
    assert "postgres" not in body


def test_only_safe_methods_are_allowed(client: Client) -> None:
    assert client.post("/health/").status_code == 405


@pytest.mark.django_db
def test_probes_reuse_one_broker_connection(client: Client, private_redis: RedisServer) -> None:
    """A probe every few seconds from every load balancer must not open a connection each time."""
    with override_settings(CELERY_BROKER_URL=private_redis.url(0)):
        assert _get(client)[0] == 200
        first = _connections_received(private_redis)
        for _ in range(5):
            assert _get(client)[0] == 200
        # The only new connection is this test's own second INFO.
        assert _connections_received(private_redis) - first == 1


def _connections_received(server: RedisServer) -> int:
    connection = redis.Redis.from_url(server.url(0))
    try:
        return int(connection.info("stats")["total_connections_received"])
    finally:
        connection.close()
