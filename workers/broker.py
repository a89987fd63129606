"""Kombu's Redis transport, with one fix: a channel whose connection is gone reports it as such.

When Redis goes away, Celery's consumer collects the connection (whose last step lets go of the
transport's ``client``) and then closes it. If the channel's close did not finish during the
collect (the lost connection cut it short), closing it now restores its unacknowledged messages
with a client built from that let-go ``client``: kombu 5.7 raises ``AttributeError`` there, which
Celery does not expect while it reconnects ("Unrecoverable error": the worker exits). Reliability
case 2 saw it in about half its runs, often in every worker at once (cf. celery/celery#9250).
Raising the transport's own connection error instead lets Celery ignore it and reconnect as for
any lost broker; the messages it could not restore are gone with Redis, or are handed out again
after the visibility timeout (every task is idempotent, and the inbox and the beat recover what a
lost message would have done).

:func:`install` makes it the transport of ``redis://`` and ``rediss://`` broker URLs (kombu's
registry of transport aliases), so kombu's checks for the scheme, TLS included, still apply.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

TRANSPORT = "workers.broker:Transport"


class Channel(kombu_redis.Channel):
    """A Redis channel that fails like a lost connection once its connection is let go."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError(
                "this broker channel's connection was closed (the broker went away)"
            )
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        return params


class Transport(kombu_redis.Transport):
    """Kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Use :class:`Transport` for the ``redis://`` and ``rediss://`` broker URLs of this process."""
    TRANSPORT_ALIASES["redis"] = TRANSPORT
    TRANSPORT_ALIASES["rediss"] = TRANSPORT
