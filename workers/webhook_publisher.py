"""The webhook's publisher thread: recorded inbox rows are queued after the answer, in batches.

Publishing cost the view more CPU than verifying and recording together, and under load it capped
the webhook's throughput. So the view's on-commit hook (``Job.PUBLISH_RECORDED_EVENT``) only hands
the new row to this process's :class:`~workers.enqueue.Batcher` and returns: the answer to Stripe
never waits for the broker, and rows that arrive while the thread publishes share one message. A
row whose message is lost with the process is still recorded: the beat re-enqueues it.
"""

from __future__ import annotations

import atexit

from django.conf import settings

from invoicing.services import stripe_events
from workers import tasks
from workers.enqueue import Batcher, enqueue


def publish_recorded_event(stripe_event_pk: int) -> bool:
    """Hand a newly recorded row to the publisher thread; returns at once (always True)."""
    _recorded_events.submit(stripe_event_pk)
    return True


def wait_for_published(timeout: float) -> bool:
    """Wait until this process has published (or made due) every row it recorded so far."""
    return _recorded_events.drain(timeout)


def queue_recorded_events(stripe_event_pks: list[int]) -> None:
    """One row: its processing task, as before. Several: one message that the worker fans out."""
    if len(stripe_event_pks) == 1:
        stripe_events.enqueue_stripe_event(stripe_event_pks[0])
        return
    if not enqueue(tasks.queue_stripe_events, stripe_event_pks):
        stripe_events.mark_due(stripe_event_pks=stripe_event_pks)


_recorded_events: Batcher[int] = Batcher(
    queue_recorded_events,
    name="stripe-event-publisher",
    linger=settings.STRIPE_EVENT_PUBLISH_LINGER_SECONDS,
)
# A process that exits (gunicorn's graceful restart) first publishes what it recorded.
atexit.register(wait_for_published, 5.0)
