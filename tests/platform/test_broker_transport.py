"""The Redis broker transport (``workers.broker``): a worker survives closing a lost connection.

Reliability case 2 (Redis SIGKILLed under load) made about half its worker runs exit with
"Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'". The
traceback: Celery's consumer lost the connection, collected it (``Connection.collect``, whose last
step lets go of the transport: ``Transport.client = None``), then closed it; the channel, whose
earlier close had been cut short by the lost connection, was still open with an unacknowledged
message, and restoring it built a Redis client from the let-go transport. These tests put a real
channel in that state (a message taken and not acked, the transport let go as ``collect`` does),
then close it as Celery does (``ignore_errors(connection, connection.close)``).
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu.common import ignore_errors
from kombu.transport import get_transport_cls
from kombu.transport.redis import Transport as KombuTransport

from config.celery import app
from tests.support.redis_server import RedisServer
from workers.broker import Transport

QUEUE = Queue("broker-transport-test", Exchange("broker-transport-test"), "broker-transport-test")


@pytest.fixture
def redis_url(private_redis: RedisServer) -> str:
    return private_redis.url(0)


def close_after_losing_the_transport(url: str, transport: type[Any]) -> list[Message]:
    """Take a message without acking it, let go of the transport, close as Celery does.

    Returns the messages received; raises what the close raised past ``ignore_errors``.
    """
    connection = Connection(url, transport=transport)
    received: list[Message] = []
    channel = connection.default_channel
    Producer(channel).publish(
        {"n": 1}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE]
    )
    Consumer(
        channel,
        queues=[QUEUE],
        callbacks=[lambda _body, message: received.append(message)],
        accept=["json"],
    ).consume()
    connection.drain_events(timeout=5)  # the message, not acked: closing must restore it
    connection._do_close_transport()  # what collect() ends with
    ignore_errors(connection, connection.close)  # Consumer.on_connection_error_after_connected
    return received


def test_kombus_own_transport_raises_attribute_error_there(redis_url: str) -> None:
    """The failure the transport exists for: if kombu fixes it, ``workers.broker`` can go."""
    with pytest.raises(AttributeError, match="hostname"):
        close_after_losing_the_transport(redis_url, KombuTransport)


def test_ours_raises_a_connection_error_that_celery_ignores(redis_url: str) -> None:
    received = close_after_losing_the_transport(redis_url, Transport)
    assert len(received) == 1  # the channel really held an unacknowledged message


def test_a_channel_with_its_connection_works_as_kombus(redis_url: str) -> None:
    with Connection(redis_url, transport=Transport) as connection:
        channel = connection.default_channel
        Producer(channel).publish(
            {"n": 2}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE]
        )
        message = QUEUE(channel).get(no_ack=False)
        assert message is not None
        assert message.payload == {"n": 2}
        message.ack()
        assert QUEUE(channel).get() is None


def test_every_redis_broker_url_uses_it_and_keeps_kombus_scheme_checks() -> None:
    for scheme in ("redis", "rediss"):
        resolved: object = get_transport_cls(scheme)  # typed as a name by kombu's stubs
        assert resolved is Transport
    with app.connection_for_write("redis://127.0.0.1:1/0") as connection:
        assert isinstance(connection.transport, Transport)
    with app.connection_for_write("amqp://guest@127.0.0.1:1//") as connection:
        assert not isinstance(connection.transport, Transport)
    # The alias keeps its name: kombu still turns TLS on for rediss://.
    with Connection("rediss://127.0.0.1:1/0") as connection:
        assert connection.transport_cls == "rediss"
        assert connection.ssl
