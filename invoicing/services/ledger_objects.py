"""What the ledger reads from a Stripe refund, dispute or credit note (pure: no database, no calls).

Every view of one (a webhook's ``data.object``, a retrieve, a list page, a ``StripeObject``) is
parsed here first, so a payload no Stripe history produces is refused (:class:`EventRejected`)
before anything is written. Amounts stay in minor units, as Stripe sends them.

Views may arrive stale and out of order, so each object is reduced to facts that only ever grow:
a refund is pending, then succeeded, then possibly failed (Stripe: a refund "can fail after it
was reported as succeeded"); a dispute's funds are withdrawn, then possibly reinstated (its
``balance_transactions`` only grow); a credit note is issued, then possibly void.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import stripe

from invoicing.errors import EventRejected
from invoicing.models import CLOSED_DISPUTE_STATUSES, CreditPurpose

StripeLike = stripe.StripeObject | Mapping[str, object]

# How far a refund has come; a stale view never moves it back (Stripe: a refund "can fail after
# it was reported as succeeded", never the other way round).
REFUND_STAGE: Final[Mapping[str, int]] = {
    "pending": 0,
    "requires_action": 0,
    "succeeded": 1,
    "failed": 2,
    "canceled": 2,
}
REFUND_STATUSES: Final = frozenset(REFUND_STAGE)
# A refund in these states gave nothing back (any more): a failed refund's amount returns.
REFUND_UNDONE: Final = frozenset({"failed", "canceled"})

# How far a dispute has moved; a view never moves the stored one backwards. Appeals follow a loss.
_DISPUTE_STAGE: Final[Mapping[str, int]] = {
    "warning_needs_response": 1,
    "warning_under_review": 2,
    "needs_response": 3,
    "under_review": 4,
    "appeal_needs_response": 5,
    "appeal_under_review": 6,
    **dict.fromkeys(CLOSED_DISPUTE_STATUSES, 9),
}


def as_mapping(obj: StripeLike, *, kind: str) -> Mapping[str, object]:
    """The object as plain data; refuses another kind of Stripe object."""
    data = obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj
    if not isinstance(data, Mapping):
        raise EventRejected(f"Expected a Stripe {kind}, got {type(obj).__name__}.")
    if data.get("object") not in (None, kind):
        raise EventRejected(f"Expected a Stripe {kind}, got a {data.get('object')!r}.")
    return data


def _str(data: Mapping[str, object], key: str, *, kind: str, required: bool = True) -> str:
    value = data.get(key)
    if isinstance(value, Mapping):  # an expanded object: its id
        value = value.get("id")
    if isinstance(value, str) and value:
        return value
    if required:
        raise EventRejected(f"Stripe {kind}: {key!r} is missing or not a string.")
    return ""


def _amount(data: Mapping[str, object], key: str, *, kind: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EventRejected(f"Stripe {kind}: {key!r} must be a positive integer, not {value!r}.")
    return value


def _created(data: Mapping[str, object]) -> int | None:
    value = data.get("created")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metadata(data: Mapping[str, object]) -> dict[str, str]:
    raw = data.get("metadata")
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


@dataclass(frozen=True)
class RefundFacts:
    id: str
    amount: int
    currency: str
    status: str
    charge: str = ""
    payment_intent: str = ""
    reason: str = ""
    failure_reason: str = ""
    created: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, refund: StripeLike) -> RefundFacts:
        data = as_mapping(refund, kind="refund")
        status = _str(data, "status", kind="refund")
        if status not in REFUND_STATUSES:
            raise EventRejected(f"Stripe refund: {status!r} is not a refund status.")
        return cls(
            id=_str(data, "id", kind="refund"),
            amount=_amount(data, "amount", kind="refund"),
            currency=_str(data, "currency", kind="refund").lower(),
            status=status,
            charge=_str(data, "charge", kind="refund", required=False),
            payment_intent=_str(data, "payment_intent", kind="refund", required=False),
            reason=_str(data, "reason", kind="refund", required=False),
            failure_reason=_str(data, "failure_reason", kind="refund", required=False),
            created=_created(data),
            metadata=_metadata(data),
        )

    @property
    def gave_money_back(self) -> bool:
        """Succeeded at some point (a failed one may have: the ledger records both sides)."""
        return self.status == "succeeded" or self.undone

    @property
    def undone(self) -> bool:
        return self.status in REFUND_UNDONE


@dataclass(frozen=True)
class DisputeFacts:
    id: str
    amount: int
    currency: str
    status: str
    livemode: bool
    charge: str = ""
    payment_intent: str = ""
    reason: str = ""
    created: int | None = None
    withdrawn: bool = False
    reinstated: bool = False
    stage: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, dispute: StripeLike) -> DisputeFacts:
        """Funds count as withdrawn once a withdrawal shows in ``balance_transactions`` (or the
        dispute is lost), and as reinstated once a reinstatement shows (or it is won after a
        withdrawal: Stripe returns the funds of a won dispute)."""
        data = as_mapping(dispute, kind="dispute")
        status = _str(data, "status", kind="dispute")
        if status not in _DISPUTE_STAGE:
            raise EventRejected(f"Stripe dispute: {status!r} is not a dispute status.")
        livemode = data.get("livemode")
        if not isinstance(livemode, bool):
            raise EventRejected("Stripe dispute: 'livemode' is missing.")
        raw_movements = data.get("balance_transactions")
        movements = [
            txn.get("amount")
            for txn in (raw_movements if isinstance(raw_movements, list) else [])
            if isinstance(txn, Mapping)
        ]
        amounts = [a for a in movements if isinstance(a, int) and not isinstance(a, bool)]
        withdrawn = any(a < 0 for a in amounts) or status == "lost"
        reinstated = withdrawn and (any(a > 0 for a in amounts) or status == "won")
        return cls(
            id=_str(data, "id", kind="dispute"),
            amount=_amount(data, "amount", kind="dispute"),
            currency=_str(data, "currency", kind="dispute").lower(),
            status=status,
            livemode=livemode,
            charge=_str(data, "charge", kind="dispute", required=False),
            payment_intent=_str(data, "payment_intent", kind="dispute", required=False),
            reason=_str(data, "reason", kind="dispute", required=False),
            created=_created(data),
            withdrawn=withdrawn,
            reinstated=reinstated,
            stage=_DISPUTE_STAGE[status] * 100 + min(len(amounts), 99),
            metadata=_metadata(data),
        )

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED_DISPUTE_STATUSES


def _count(data: Mapping[str, object], key: str, *, kind: str) -> int:
    value = data.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventRejected(f"Stripe {kind}: {key!r} must be a count, not {value!r}.")
    return value


def _post_payment(data: Mapping[str, object]) -> dict[str, int]:
    kind = "credit_note"
    post = _count(data, "post_payment_amount", kind=kind)
    out_of_band = _count(data, "out_of_band_amount", kind=kind)
    raw_refunds = data.get("refunds")
    refunds = raw_refunds if isinstance(raw_refunds, list) else []
    refunded = sum(
        _count(item, "amount_refunded", kind=kind) for item in refunds if isinstance(item, Mapping)
    )
    amount = data.get("amount")
    if post and isinstance(amount, int) and post > amount:
        raise EventRejected(f"Stripe {kind}: post_payment_amount {post} exceeds amount {amount}.")
    if out_of_band + refunded > post:
        raise EventRejected(
            f"Stripe {kind}: refunds {refunded} and out_of_band_amount {out_of_band} exceed "
            f"post_payment_amount {post}."
        )
    return {"post_payment_amount": post, "out_of_band_amount": out_of_band, "refunded": refunded}


@dataclass(frozen=True)
class CreditNoteFacts:
    id: str
    invoice: str
    amount: int
    currency: str
    status: str
    livemode: bool
    number: str = ""
    reason: str = ""
    memo: str = ""
    created: int | None = None
    voided_at: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Beyond what the invoice still asked for: refunded (``refunds``), paid back outside Stripe
    # (``out_of_band_amount``), and the rest credited to the customer's balance.
    post_payment_amount: int = 0
    out_of_band_amount: int = 0
    refunded: int = 0

    @classmethod
    def parse(cls, credit_note: StripeLike) -> CreditNoteFacts:
        """Stripe: "the sum of refunds, customer balance credits, and outside of Stripe credits
        must equal the post_payment_amount"; a view where they do not fit is refused."""
        data = as_mapping(credit_note, kind="credit_note")
        status = _str(data, "status", kind="credit_note")
        if status not in {"issued", "void"}:
            raise EventRejected(f"Stripe credit note: {status!r} is not a credit note status.")
        livemode = data.get("livemode")
        if not isinstance(livemode, bool):
            raise EventRejected("Stripe credit note: 'livemode' is missing.")
        voided_at = data.get("voided_at")
        return cls(
            id=_str(data, "id", kind="credit_note"),
            invoice=_str(data, "invoice", kind="credit_note"),
            amount=_amount(data, "amount", kind="credit_note"),
            currency=_str(data, "currency", kind="credit_note").lower(),
            status=status,
            livemode=livemode,
            number=_str(data, "number", kind="credit_note", required=False),
            reason=_str(data, "reason", kind="credit_note", required=False),
            memo=_str(data, "memo", kind="credit_note", required=False),
            created=_created(data),
            voided_at=voided_at if isinstance(voided_at, int) else None,
            metadata=_metadata(data),
            **_post_payment(data),
        )

    @property
    def credit_balance_amount(self) -> int:
        """What the credit note credited to the customer's balance (minor units)."""
        return self.post_payment_amount - self.out_of_band_amount - self.refunded

    @property
    def voided(self) -> bool:
        return self.status == "void"

    @property
    def purpose(self) -> CreditPurpose:
        """``metadata[purpose]`` of the notes we issue; any other note lowers what is owed."""
        raw = self.metadata.get("purpose", "")
        if raw in {CreditPurpose.REDUCE, CreditPurpose.CANCEL, CreditPurpose.REISSUE}:
            return CreditPurpose(raw)
        return CreditPurpose.EXTERNAL
