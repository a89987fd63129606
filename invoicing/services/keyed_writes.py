"""One Stripe write under an idempotency key derived from our row, and what to do when it fails.

Stripe replays the first response stored under a key for 24 h, server errors included: a retry of
a write that got a 5xx would get the same 5xx all day. :func:`keyed_write` asks Stripe whether the
write happened anyway and, if not, moves the PO's ``key_epoch`` so the next attempt writes under a
fresh key. Creation's steps and the void use it; any later write tied to a PO can.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from typing import Final, Protocol, TypeVar

import stripe

from invoicing.models import PurchaseOrder
from invoicing.services.invoice_snapshots import WITH_OFF_STRIPE

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class _WithMetadata(Protocol):
    @property
    def metadata(self) -> stripe.StripeObject | None: ...


_M = TypeVar("_M", bound=_WithMetadata)

# Stripe keeps idempotency keys for at least 24 h; past this age we stop relying on them.
IDEMPOTENCY_KEY_SAFE_AGE: Final = datetime.timedelta(hours=23)


def find_by_metadata(objects: Iterable[_M], key: str, value: str) -> _M | None:
    """The first Stripe object whose ``metadata[key]`` is ``value``: what an earlier run wrote
    when its answer was lost, or once Stripe no longer remembers the key."""
    for obj in objects:
        metadata = obj.metadata.to_dict() if obj.metadata is not None else {}
        if metadata.get(key) == value:
            return obj
    return None


def poisons_key(exc: stripe.StripeError) -> bool:
    """Stripe stores a 5xx under the idempotency key and replays it for 24 h."""
    return isinstance(exc, stripe.APIError) and (exc.http_status or 0) >= 500


def keyed_write(
    po: PurchaseOrder,
    step: str,
    call: Callable[[str], _T],
    *,
    verify: Callable[[], _T | None] | None = None,
) -> _T:
    """Run one Stripe write under the PO's key for ``step``; recover from a cached 5xx.

    After a server error the key is poisoned: every retry would get the same cached error for a
    day. ``verify`` asks Stripe whether the write happened anyway (it returns the object, and we
    carry on with it). If it did not, the PO's key epoch moves on so the next run writes under a
    fresh key, and the error still surfaces (the caller retries later).
    """
    try:
        return call(po.idempotency_key(step))
    except stripe.StripeError as exc:
        if not poisons_key(exc):
            raise
        done = verify() if verify is not None else None
        if done is not None:
            logger.info("po %s: %s happened despite a server error", po.reference, step)
            return done
        updated = PurchaseOrder.objects.filter(pk=po.pk, key_epoch=po.key_epoch).update(
            key_epoch=po.key_epoch + 1
        )
        logger.warning(
            "po %s: %s failed at Stripe (%s); %s under a fresh idempotency key",
            po.reference,
            step,
            exc.http_status,
            "next attempt runs" if updated else "another worker already moved",
        )
        raise


def retrieve_if(
    client: stripe.StripeClient, invoice_id: str, done: Callable[[stripe.Invoice], bool]
) -> Callable[[], stripe.Invoice | None]:
    """A ``verify`` for :func:`keyed_write`: the invoice, if Stripe shows the step happened."""

    def verify() -> stripe.Invoice | None:
        # With the off-Stripe split: what is returned may be applied to the ledger.
        invoice = client.v1.invoices.retrieve(invoice_id, params={"expand": WITH_OFF_STRIPE})
        return invoice if done(invoice) else None

    return verify
