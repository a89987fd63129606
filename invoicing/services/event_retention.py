"""The inbox forgets what it no longer needs: payloads of settled events, after the retention.

A Stripe event's payload carries the customer's name, email and address. Once an event is
processed or ignored, its effect is in the ledger and Stripe keeps the invoice, so after
``STRIPE_EVENT_RETENTION_DAYS`` the beat empties the payload and stamps ``payload_purged_at``;
the row keeps its id, type, status and times (the inbox still refuses a redelivery of it). Failed
events keep their payload until they are replayed and settle.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from invoicing.models import StripeEvent

logger = logging.getLogger(__name__)

EventStatus = StripeEvent.Status

_SETTLED = (EventStatus.PROCESSED, EventStatus.IGNORED)


def purge_event_payloads(*, now: datetime.datetime | None = None, batch_size: int = 1000) -> int:
    """Empty the payloads of events settled more than the retention ago; returns how many."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=settings.STRIPE_EVENT_RETENTION_DAYS)
    due = StripeEvent.objects.filter(
        Q(processed_at__lt=cutoff) | Q(processed_at__isnull=True, received_at__lt=cutoff),
        status__in=_SETTLED,
        payload_purged_at__isnull=True,
    )
    purged = 0
    while True:
        batch = list(due.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not batch:
            break
        # The status again in the UPDATE: an event replayed meanwhile keeps its payload.
        purged += due.filter(pk__in=batch).update(payload={}, payload_purged_at=now)
        if len(batch) < batch_size:
            break
    if purged:
        logger.info(
            "stripe events: %s payload(s) purged (settled over %s days ago)",
            purged,
            settings.STRIPE_EVENT_RETENTION_DAYS,
        )
    return purged
