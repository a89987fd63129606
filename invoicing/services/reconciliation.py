"""Reconciliation: bring every conference's open invoices in line with Stripe, cheaply.

Webhooks can be dropped, delayed past our patience, or refused while we were down; the beat runs
this for each active conference every ``RECONCILE_INTERVAL_SECONDS`` (15 minutes by default). The
naive way, one retrieve per open PO, costs one Stripe call and one row-locking transaction per PO
per run: 10,000 open invoices would take 10,000 calls (400 s at the sandbox's 25 requests/s).
Instead, per conference:

(a) **Events since the cursor.** ``GET /v1/events`` filtered to the types that end an invoice's open
    life (``invoice.paid``, ``invoice.voided``, ``invoice.marked_uncollectible``) and to the
    refund, dispute and credit note events, created since the stored cursor minus
    ``RECONCILE_EVENTS_OVERLAP_SECONDS`` (events may become listable a little after their
    timestamp), 100 a page. Each carries the object as it was then; an invoice comes without
    ``amount_paid_off_stripe`` (never in events), so one that shows money the ledger lacks is
    retrieved with it, and only invoices closed while their webhooks were lost cost a call. This
    is what catches an invoice that left ``open`` while its webhook was lost: it is in no list of
    open invoices any more. The cursor then moves to the newest event's ``created`` (Stripe's
    clock, never ours). Without a cursor (the first run) it reads what Stripe keeps (30 days).
(b) **Open invoices.** ``GET /v1/invoices?status=open&collection_method=send_invoice``, 100 a
    page, with ``expand[]=data.amount_paid_off_stripe``: partial payments on invoices still open.
(c) **The rest, one by one.** Only POs we consider open (mirrored invoice status ``open`` or
    ``uncollectible``) whose invoice appeared in neither (a) nor (b) are retrieved individually
    (an uncollectible invoice, one that left ``open`` before the cursor's window...).
(d) **Money going back** (:mod:`.reconciliation_money`): the refunds and credit notes created
    since the cursor (one list call each), with the refund, dispute and credit note events of
    (a); those the ledger does not hold yet find their PO (one ``invoice_payments`` call per
    PaymentIntent) and go through the ledger's row-locked functions, as webhooks do.

**A full run** (``sync_stripe_invoices --full``) reads everything Stripe holds instead of what
changed since the cursor: (b) lists every invoice whatever its status, (d) every refund, credit
note and dispute, and a snapshot level with the PO's mirror is applied too (not only a newer one),
so entries a webhook or an earlier version of this code never recorded are added. It costs about
``(invoices + refunds + credit notes + disputes) / 100`` calls plus the lookups of money the ledger
does not hold; run it once after an upgrade that gives the ledger new kinds of entries, or when an
account's history is in doubt. Every entry is still keyed, so running it twice adds nothing.

For every page of (a) and (b) the POs of the page's invoices are read in ONE query, and a snapshot
whose rank (status, ``amount_paid``) is not above what the PO mirrors is skipped without touching
the PO: it cannot change anything (``invoice_snapshots.mirrored_rank``). Only the rest reach
``ledger.apply_invoice_snapshot``, the single entry point, under the PO's row lock (through
``reconcile_invoice`` for an invoice no PO has as its current one: an earlier generation's). So a
run costs about ``(open invoices + events) / 100 + stragglers + 2`` Stripe calls (plus one per
refunded or disputed payment the ledger does not hold yet, and one retrieve per invoice whose
closing event shows money the ledger lacks: an event cannot say how much was paid off Stripe)
and one transaction per object that actually changed (measured:
``tests/benchmarks/reconciliation.py``; figures in the benchmarks README).

Pages are read as plain JSON (``raw_request`` through the same rate-limited client), not as
``StripeObject`` trees, which cost more CPU than the HTTP call for 100 invoices; the next page is
fetched in a background thread while the current one is applied.

A lease on the conference's :class:`~invoicing.models.StripeSyncState` keeps two runs for one
conference from overlapping. Transient Stripe errors abort the run (the task retries it; nothing
is half-applied: each invoice is its own transaction, and the cursor only moves at the end). An
invoice that cannot be applied (another conference's, another currency) is logged and counted,
and the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import stripe
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from invoicing.errors import EventRejected
from invoicing.models import Conference, PurchaseOrder, StripeSyncState
from invoicing.retry import describe_error
from invoicing.services.event_types import CHARGE_REFUNDED_EVENTS, MONEY_EVENTS
from invoicing.services.invoice_snapshots import InvoiceSnapshot, mirrored_rank
from invoicing.services.invoice_sync import (
    EventOutcome,
    lacks_the_split,
    reconcile_invoice,
    sync_invoice,
)
from invoicing.services.ledger import apply_invoice_snapshot
from invoicing.services.reconciliation_money import MoneyViews, reconcile_money
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.stripe_pages import pages as _pages
from invoicing.services.stripe_pages import prefetched as _prefetched
from invoicing.stripe_invoice_status import PAYABLE_STATUSES

if TYPE_CHECKING:
    from stripe.params import EventListParams, InvoiceListParams

logger = logging.getLogger(__name__)

PAGE_SIZE: Final = 100
# Events that end an invoice's open life; each carries the invoice (data.object).
CLOSING_EVENT_TYPES: Final = ("invoice.paid", "invoice.voided", "invoice.marked_uncollectible")
# Money going back and amounts owed changing (``charge.refunded`` aside: its refunds have their
# own events and are listed anyway). Stripe takes up to 20 ``types[]``.
MONEY_EVENT_TYPES: Final = tuple(sorted(MONEY_EVENTS - CHARGE_REFUNDED_EVENTS))


@dataclass
class ReconcileSummary:
    """What one run did, for the log, the sync state row and the benchmarks."""

    conference: str
    event_pages: int = 0
    events: int = 0
    invoice_pages: int = 0
    open_invoices: int = 0
    retrieved: int = 0
    money_pages: int = 0  # refunds and credit notes created since the cursor
    money_lookups: int = 0  # the invoice behind a refund's or dispute's PaymentIntent
    money_seen: int = 0
    money_applied: int = 0
    applied: int = 0
    unchanged: int = 0
    not_ours: int = 0
    errors: int = 0
    seconds: float = 0.0
    apply_seconds: float = 0.0  # in the ledger (row-locking transactions), of ``seconds``
    cursor: int | None = None
    full: bool = False
    skipped: bool = False
    error_samples: list[str] = field(default_factory=list)

    @property
    def stripe_calls(self) -> int:
        return (
            self.event_pages
            + self.invoice_pages
            + self.retrieved
            + self.money_pages
            + self.money_lookups
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stripe_calls"] = self.stripe_calls
        return data


def _acquire_lease(conference: Conference) -> bool:
    now = timezone.now()
    state, _ = StripeSyncState.objects.get_or_create(conference=conference)
    lease = timedelta(seconds=settings.STRIPE_EVENT_CLAIM_SECONDS)
    return bool(
        StripeSyncState.objects.filter(pk=state.pk)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .update(lease_expires_at=now + lease, last_started_at=now)
    )


class _Reconciler:
    def __init__(self, conference: Conference, summary: ReconcileSummary) -> None:
        self.conference = conference
        self.summary = summary
        self.seen: set[str] = set()
        # Closing events' invoices that showed money the ledger lacks, without saying how much
        # was paid off Stripe: applied from the paid list below, or retrieved in (c).
        self.split_pending: dict[str, InvoiceSnapshot] = {}

    def _note_error(self, message: str) -> None:
        self.summary.errors += 1
        if len(self.summary.error_samples) < 5:
            self.summary.error_samples.append(message)

    def apply_page(self, snapshots: Iterable[InvoiceSnapshot], *, level_too: bool = False) -> None:
        """Apply a page's snapshots that can change something (one query for the page's POs).

        ``level_too``: also those level with the PO's mirror (a full run: entries may be missing
        behind an unchanged status and amount paid); an older one never changes anything.
        """
        best: dict[str, InvoiceSnapshot] = {}
        for snapshot in snapshots:
            kept = best.get(snapshot.id)
            if kept is None or snapshot.rank > kept.rank:
                best[snapshot.id] = snapshot
        if not best:
            return
        self.seen.update(best)
        mirrors = {
            invoice_id: (
                pk,
                mirrored_rank(
                    stripe_invoice_status=status, stripe_amount_paid=paid, currency=currency
                ),
            )
            for pk, invoice_id, status, paid, currency in PurchaseOrder.objects.filter(
                conference=self.conference, stripe_invoice_id__in=list(best)
            ).values_list(
                "pk", "stripe_invoice_id", "stripe_invoice_status", "stripe_amount_paid", "currency"
            )
        }
        for invoice_id, snapshot in best.items():
            mirror = mirrors.get(invoice_id)
            if mirror is not None and (
                snapshot.rank < mirror[1] or (snapshot.rank == mirror[1] and not level_too)
            ):
                self.summary.unchanged += 1
                continue
            if mirror is None and snapshot.metadata.get("conference") not in (
                None,
                self.conference.slug,
            ):
                self.summary.not_ours += 1  # issued by another app or conference on this account
                continue
            self._apply(snapshot, purchase_order_id=mirror[0] if mirror is not None else None)

    def _apply(self, snapshot: InvoiceSnapshot, *, purchase_order_id: int | None) -> None:
        started = time.monotonic()
        try:
            self._reconcile(snapshot, purchase_order_id)
        finally:
            self.summary.apply_seconds += time.monotonic() - started

    def _reconcile(self, snapshot: InvoiceSnapshot, purchase_order_id: int | None) -> None:
        try:
            if purchase_order_id is not None and snapshot.amount_paid_off_stripe is None:
                # An event's copy never says what was paid off Stripe: when it shows money the
                # ledger lacks, it waits for a view that does (the paid list, or a retrieve).
                po = PurchaseOrder.objects.select_related("conference").get(pk=purchase_order_id)
                if lacks_the_split(po, snapshot):
                    self.split_pending[snapshot.id] = snapshot
                    self.seen.discard(snapshot.id)
                    return
                apply_invoice_snapshot(purchase_order=po, invoice=snapshot, source="reconcile")
                outcome = EventOutcome.HANDLED
            elif purchase_order_id is not None:
                # The page's query found the PO (this conference, current invoice): apply.
                apply_invoice_snapshot(
                    purchase_order=PurchaseOrder(pk=purchase_order_id),
                    invoice=snapshot,
                    source="reconcile",
                )
                outcome = EventOutcome.HANDLED
            else:  # an earlier generation's invoice, found through payments or metadata
                outcome = reconcile_invoice(
                    conference=self.conference, invoice=snapshot, source="reconcile"
                )
        except EventRejected as error:
            logger.warning(
                "reconcile %s: invoice %s refused: %s", self.conference.slug, snapshot.id, error
            )
            self._note_error(f"{snapshot.id}: {error}")
            return
        if outcome == EventOutcome.IGNORED:
            self.summary.not_ours += 1
        else:
            self.summary.applied += 1

    def snapshot(self, invoice: Any) -> InvoiceSnapshot | None:
        if not isinstance(invoice, Mapping):
            self._note_error("malformed invoice: not an object")
            return None
        try:
            return InvoiceSnapshot.from_payload(invoice)
        except EventRejected as error:
            self._note_error(f"malformed invoice: {error}")
            return None


def _event_snapshots(reconciler: _Reconciler, events: list[Any]) -> list[InvoiceSnapshot]:
    snapshots = []
    for event in events:
        data = event.get("data") if isinstance(event, Mapping) else None
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(obj, Mapping) or obj.get("object") != "invoice":
            continue
        snapshot = reconciler.snapshot(obj)
        if snapshot is not None:
            snapshots.append(snapshot)
    return snapshots


def reconcile_conference(*, conference: Conference, full: bool = False) -> ReconcileSummary:
    """Run (a) to (d) of the module docstring for one conference (``full``: a full run).

    Returns the summary (``skipped`` when another run holds the conference's lease).

    Raises:
        StripeKeyMissing: the conference has no key.
        stripe.StripeError: Stripe failed; the run stopped, the cursor did not move.
    """
    summary = ReconcileSummary(conference=conference.slug, full=full)
    started = time.monotonic()
    if not _acquire_lease(conference):
        summary.skipped = True
        logger.info("reconcile %s: another run is in progress; skipped", conference.slug)
        return summary
    state = StripeSyncState.objects.get(conference=conference)
    try:
        client = build_stripe_client(conference)
        reconciler = _Reconciler(conference, summary)
        newest = state.events_cursor

        # (a) events that closed invoices since the cursor
        event_params: EventListParams = {
            "types": [*CLOSING_EVENT_TYPES, *MONEY_EVENT_TYPES],
            "limit": PAGE_SIZE,
        }
        since: int | None = None
        if state.events_cursor is not None:
            since = max(0, state.events_cursor - settings.RECONCILE_EVENTS_OVERLAP_SECONDS)
            event_params["created"] = {"gte": since}
        money = MoneyViews()
        for events in _prefetched(_pages(client, "/v1/events", event_params)):
            summary.event_pages += 1
            summary.events += len(events)
            for event in events:
                created = event.get("created") if isinstance(event, Mapping) else None
                if isinstance(created, int):
                    newest = created if newest is None else max(newest, created)
            reconciler.apply_page(_event_snapshots(reconciler, events))
            money.add_events(events)

        # (b) every open invoice (a full run: every invoice), a page at a time
        invoice_params: InvoiceListParams = {
            "collection_method": "send_invoice",
            "limit": PAGE_SIZE,
            "expand": ["data.amount_paid_off_stripe"],  # includable: only when asked for
        }
        if not full:
            invoice_params["status"] = "open"
        for invoices in _prefetched(_pages(client, "/v1/invoices", invoice_params)):
            summary.invoice_pages += 1
            page = [reconciler.snapshot(invoice) for invoice in invoices]
            summary.open_invoices += (
                sum(1 for s in page if s is not None and s.status == "open") if full else len(page)
            )
            reconciler.apply_page((s for s in page if s is not None), level_too=full)

        # (a') invoices paid while their webhooks were lost, as listed with the off-Stripe split
        wanted = {i for i, s in reconciler.split_pending.items() if s.status == "paid"}
        wanted -= reconciler.seen
        if wanted:
            paid_since = min(reconciler.split_pending[i].created for i in wanted)
            paid_params: InvoiceListParams = {
                "status": "paid",
                "created": {"gte": paid_since},
                "limit": PAGE_SIZE,
                "expand": ["data.amount_paid_off_stripe"],
            }
            for invoices in _pages(client, "/v1/invoices", paid_params):
                summary.invoice_pages += 1
                page = [reconciler.snapshot(invoice) for invoice in invoices]
                found = [s for s in page if s is not None and s.id in wanted]
                reconciler.apply_page(found)
                wanted -= {s.id for s in found}
                if not wanted:
                    break

        # (c) POs we consider open that neither list mentioned
        stragglers = (
            PurchaseOrder.objects.filter(
                conference=conference, stripe_invoice_status__in=PAYABLE_STATUSES
            )
            .exclude(stripe_invoice_id="")
            .values_list("pk", "stripe_invoice_id")
        )
        for pk, invoice_id in stragglers:
            if invoice_id in reconciler.seen:
                continue
            summary.retrieved += 1
            po = PurchaseOrder.objects.select_related("conference").get(pk=pk)
            try:
                sync_invoice(purchase_order=po, invoice_id=invoice_id, source="reconcile")
            except (EventRejected, stripe.InvalidRequestError) as error:
                # Refused or gone at Stripe: counted and logged; the other POs still reconcile.
                logger.warning(
                    "reconcile %s: invoice %s of po %s: %s",
                    conference.slug,
                    invoice_id,
                    po.reference,
                    describe_error(error),
                )
                reconciler._note_error(f"{invoice_id}: {describe_error(error)}")
        # (d) refunds, disputes and credit notes whose webhooks never arrived
        reconcile_money(
            conference=conference,
            client=client,
            views=money,
            since=None if full else since,
            with_disputes=full,
            summary=summary,
            note_error=reconciler._note_error,
        )
        summary.cursor = newest
        summary.seconds = round(time.monotonic() - started, 3)
        summary.apply_seconds = round(summary.apply_seconds, 3)
    except BaseException as error:
        StripeSyncState.objects.filter(pk=state.pk).update(
            lease_expires_at=None, last_error=describe_error(error)
        )
        raise
    StripeSyncState.objects.filter(pk=state.pk).update(
        lease_expires_at=None,
        last_finished_at=timezone.now(),
        events_cursor=newest,
        last_error="",
        last_summary=summary.as_json(),
    )
    logger.info(
        "reconcile %s: %s Stripe call(s) (%s event page(s), %s invoice page(s), %s retrieve(s)); "
        "%s open invoice(s), %s applied, %s unchanged, %s not ours, %s error(s); "
        "%s refund/dispute/credit note(s) seen, %s applied",
        conference.slug,
        summary.stripe_calls,
        summary.event_pages,
        summary.invoice_pages,
        summary.retrieved,
        summary.open_invoices,
        summary.applied,
        summary.unchanged,
        summary.not_ours,
        summary.errors,
        summary.money_seen,
        summary.money_applied,
    )
    return summary


def conferences_to_reconcile() -> list[Conference]:
    """Active conferences with a Stripe key (the beat fans out one task per conference)."""
    return list(Conference.objects.filter(is_active=True).exclude(stripe_secret_key=""))
