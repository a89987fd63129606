"""What every handler receives besides its parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import Account
    from ..store import Store
    from ..webhooks import Delivery


@dataclass
class Ctx:
    """One request's view of the emulator.

    ``now`` is read once, so every timestamp a request writes agrees. ``request_id`` and
    ``idempotency_key`` are None for what Stripe does on its own (automatic finalization, the
    customer paying); they become the events' ``request``. Webhooks wait in ``deliveries``
    until the store's lock is released.
    """

    store: Store
    account: Account
    now: int
    request_id: str | None
    idempotency_key: str | None
    deliveries: list[Delivery] = field(default_factory=list)

    @classmethod
    def unrequested(
        cls,
        store: Store,
        account: Account,
        *,
        now: int | None = None,
        deliveries: list[Delivery] | None = None,
    ) -> Ctx:
        """For what happens without an API request: Stripe's scheduler, a bank, the customer."""
        return cls(
            store=store,
            account=account,
            now=int(account.now(store.clock)) if now is None else now,
            request_id=None,
            idempotency_key=None,
            deliveries=[] if deliveries is None else deliveries,
        )


Params = dict[str, Any]
