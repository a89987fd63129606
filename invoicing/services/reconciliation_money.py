"""Reconciliation's part for money going back: refunds, disputes and credit notes whose webhooks
never arrived.

Two sources per run, both cheap: the refund, dispute and credit note events since the cursor (read
with the invoice events, in the same pages), and the refunds and credit notes *created* since the
cursor, listed account-wide (one call a page each: the objects of the invoices that were active
since the last run, in their current state). Of each object only its newest view is kept (a list's
current state beats an event's). Views whose facts the ledger already holds are skipped without a
Stripe call or a lock (four queries for the whole run); the rest find their PO as webhooks do
(:mod:`.money_events`: one ``invoice_payments`` call per PaymentIntent, cached for the run) and go
through the same row-locked ledger functions. A full run lists every refund, credit note and
dispute instead (``since=None``, ``with_disputes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import stripe

from invoicing.errors import EventRejected
from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderDispute,
    PurchaseOrderPayment,
)
from invoicing.retry import describe_error
from invoicing.services.invoice_sync import find_purchase_order_for_invoice
from invoicing.services.ledger import apply_credit_note, apply_dispute
from invoicing.services.ledger_balance import post_payment_entry_kinds
from invoicing.services.ledger_objects import CreditNoteFacts, DisputeFacts, RefundFacts
from invoicing.services.money_events import (
    invoice_paid_by,
    payment_intent_of,
    purchase_order_of_credit_note,
)
from invoicing.services.stripe_pages import pages, prefetched
from invoicing.services.stripe_write_requests import apply_refund_view, refunds_moving_a_request

if TYPE_CHECKING:
    from stripe.params import CreditNoteListParams, DisputeListParams, RefundListParams

logger = logging.getLogger(__name__)

Kind = PurchaseOrderPayment.Kind
_OBJECTS = ("refund", "dispute", "credit_note")
Facts = RefundFacts | DisputeFacts | CreditNoteFacts


class MoneySummary(Protocol):
    """The counters of ``reconciliation.ReconcileSummary`` this part adds to."""

    money_pages: int
    money_lookups: int
    money_seen: int
    money_applied: int
    unchanged: int
    not_ours: int


@dataclass
class MoneyViews:
    """The newest view of each refund, dispute and credit note seen in one run."""

    views: dict[str, Mapping[str, object]] = field(default_factory=dict)

    def add(self, obj: object, *, current: bool) -> None:
        """``current``: a list's view (now); else an event's (events come newest first)."""
        if not isinstance(obj, Mapping) or obj.get("object") not in _OBJECTS:
            return
        object_id = obj.get("id")
        if isinstance(object_id, str) and (current or object_id not in self.views):
            self.views[object_id] = obj

    def add_events(self, events: Iterable[Any]) -> None:
        for event in events:
            data = event.get("data") if isinstance(event, Mapping) else None
            self.add(data.get("object") if isinstance(data, Mapping) else None, current=False)


def _parse(obj: Mapping[str, object]) -> Facts:
    kind = obj.get("object")
    if kind == "refund":
        return RefundFacts.parse(obj)
    if kind == "dispute":
        return DisputeFacts.parse(obj)
    return CreditNoteFacts.parse(obj)


def _already_held(facts: list[Facts]) -> set[str]:
    """Ids whose facts the ledger (and a request waiting for the refund) holds already: applying
    them could change nothing."""
    ids = [item.id for item in facts]
    entries: dict[str, set[str]] = {}
    for object_id, kind in PurchaseOrderPayment.objects.filter(
        stripe_object_id__in=ids
    ).values_list("stripe_object_id", "kind"):
        entries.setdefault(object_id, set()).add(kind)
    credits = dict(
        PurchaseOrderCredit.objects.filter(stripe_credit_note_id__in=ids).values_list(
            "stripe_credit_note_id", "voided_at"
        )
    )
    disputes = dict(
        PurchaseOrderDispute.objects.filter(stripe_dispute_id__in=ids).values_list(
            "stripe_dispute_id", "stage"
        )
    )
    moving_requests = refunds_moving_a_request(f for f in facts if isinstance(f, RefundFacts))
    held = set()
    for item in facts:
        kinds = entries.get(item.id, set())
        if isinstance(item, RefundFacts):
            wanted = {Kind.REFUND} if item.gave_money_back else set()
            wanted |= {Kind.REFUND_REVERSAL} if item.undone else set()
            done = wanted <= kinds and item.id not in moving_requests
        elif isinstance(item, DisputeFacts):
            wanted = {Kind.DISPUTE} if item.withdrawn else set()
            wanted |= {Kind.DISPUTE_REINSTATEMENT} if item.reinstated else set()
            done = item.id in disputes and disputes[item.id] >= item.stage and wanted <= kinds
        else:
            wanted = post_payment_entry_kinds(item)
            done = (
                item.id in credits
                and (credits[item.id] is not None or not item.voided)
                and wanted <= kinds
            )
        if done:
            held.add(item.id)
    return held


class _Finder:
    """The PO of a refund or dispute, one ``invoice_payments`` call per PaymentIntent."""

    def __init__(self, conference: Conference, summary: MoneySummary) -> None:
        self.conference = conference
        self.summary = summary
        self.invoices: dict[str, str] = {}

    def __call__(self, obj: Mapping[str, object]) -> tuple[PurchaseOrder | None, str]:
        if not obj.get("payment_intent"):
            self.summary.money_lookups += 1  # the charge is retrieved for its PaymentIntent
        intent = payment_intent_of(conference=self.conference, obj=obj)
        if intent and intent not in self.invoices:
            self.summary.money_lookups += 1
            self.invoices[intent] = invoice_paid_by(
                conference=self.conference, payment_intent=intent
            )
        invoice_id = self.invoices.get(intent, "")
        if not invoice_id:
            return None, ""
        po = find_purchase_order_for_invoice(conference=self.conference, invoice_id=invoice_id)
        return po, invoice_id


def _apply(conference: Conference, obj: Mapping[str, object], facts: Facts, find: _Finder) -> bool:
    """Apply one changed view; False when it is not one of our POs'."""
    if isinstance(facts, CreditNoteFacts):
        po = purchase_order_of_credit_note(conference=conference, credit_note=obj)
        if po is not None:
            apply_credit_note(purchase_order=po, credit_note=obj, source="reconcile")
        return po is not None
    po, invoice_id = find(obj)
    if po is None:
        return False
    if isinstance(facts, RefundFacts):
        apply_refund_view(
            purchase_order=po, refund=obj, source="reconcile", stripe_invoice_id=invoice_id
        )
    else:
        apply_dispute(
            purchase_order=po, dispute=obj, source="reconcile", stripe_invoice_id=invoice_id
        )
    return True


def reconcile_money(
    *,
    conference: Conference,
    client: stripe.StripeClient,
    views: MoneyViews,
    since: int | None,
    summary: MoneySummary,
    note_error: Callable[[str], None],
    with_disputes: bool = False,
) -> None:
    """List what was created since ``since`` (None: everything), then apply what changed.

    ``with_disputes``: list the disputes too (otherwise only their events reach this run).

    Raises:
        stripe.StripeError: a list or lookup failed transiently; the run stops (nothing is
            half-applied: each object is its own transaction).
    """
    refund_params: RefundListParams = {"limit": 100}
    note_params: CreditNoteListParams = {"limit": 100}
    if since is not None:
        refund_params["created"] = {"gte": since}
        note_params["created"] = {"gte": since}
    lists: list[tuple[str, Mapping[str, Any]]] = [
        ("/v1/refunds", refund_params),
        ("/v1/credit_notes", note_params),
    ]
    if with_disputes:
        dispute_params: DisputeListParams = {"limit": 100}
        if since is not None:
            dispute_params["created"] = {"gte": since}
        lists.append(("/v1/disputes", dispute_params))
    for path, params in lists:
        for page in prefetched(pages(client, path, params)):
            summary.money_pages += 1
            for obj in page:
                views.add(obj, current=True)
    parsed: list[tuple[Mapping[str, object], Facts]] = []
    for obj in views.views.values():
        try:
            parsed.append((obj, _parse(obj)))
        except EventRejected as error:
            note_error(f"malformed {obj.get('object')}: {error}")
    summary.money_seen += len(parsed)
    held = _already_held([facts for _, facts in parsed])
    find = _Finder(conference, summary)
    for obj, facts in parsed:
        if facts.id in held:
            summary.unchanged += 1
            continue
        try:
            applied = _apply(conference, obj, facts, find)
        except (EventRejected, stripe.InvalidRequestError) as error:
            logger.warning(
                "reconcile %s: %s refused: %s", conference.slug, facts.id, describe_error(error)
            )
            note_error(f"{facts.id}: {describe_error(error)}")
            continue
        if applied:
            summary.money_applied += 1
        else:
            summary.not_ours += 1
