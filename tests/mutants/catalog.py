"""The guard-removing mutants ``make mutants`` applies, one at a time, and the tests that must fail.

Each :class:`Mutant` names the invariant of ``../shared/DESIGN.md`` whose guard it removes, the
exact source text it replaces (found exactly once at HEAD, or the run stops: a guard that moved must
be re-targeted here, never skipped) and the tests that should catch it, fastest first.

Invariant 7 (conferences are separate teams: roles per conference) has no code yet, so no mutant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PURCHASE_ORDERS = "invoicing/services/purchase_orders.py"
STRIPE_INVOICING = "invoicing/services/stripe_invoicing.py"
STRIPE_EVENTS = "invoicing/services/stripe_events.py"
RECONCILIATION = "invoicing/services/reconciliation.py"

CORE_LOCKS = "tests/core/test_locks.py"
PIPELINE_CLAIMS = "tests/pipeline/test_claims.py"
SNAPSHOT_LOCK_TEST = (
    f"{CORE_LOCKS}::test_a_snapshot_waits_for_the_po_row_lock_before_reading_ledger_and_mirror"
)


def unlocked(purchase_order: str) -> str:
    """What a ledger writer that forgot the row lock reads: the same row, without FOR UPDATE."""
    return f'PurchaseOrder.objects.select_related("conference").get(pk={purchase_order}.pk)'


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (exactly one occurrence) with ``new`` in ``path`` (relative to the repo)."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    id: str
    invariant: int
    guard: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    # The edit changes a model: generate its migration, as a developer would, so the test
    # database (built from migrations) has the mutant's schema.
    makemigrations: bool = field(default=False)


MUTANTS: tuple[Mutant, ...] = (
    # --- 1. One invoice per PO -------------------------------------------------------------------
    Mutant(
        id="creation-no-idempotency-key",
        invariant=1,
        guard="the invoice is created without our idempotency key",
        edits=(
            Edit(
                STRIPE_INVOICING,
                'client.v1.invoices.create(params, options={"idempotency_key": key})',
                "client.v1.invoices.create(params)",
            ),
        ),
        tests=(
            "tests/core/test_stripe_invoicing.py::test_failure_after_each_creation_step_then_rerun_gives_one_invoice",
        ),
    ),
    Mutant(
        id="invoice-id-persisted-late",
        invariant=1,
        guard="the new invoice's id is stored only once its lines are added",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "        po, stored_here = _persist_invoice_created(po, invoice)\n",
                "        stored_here = True\n",
            ),
            Edit(
                STRIPE_INVOICING,
                "        _check_lines(po, invoice, expected_subtotal)\n"
                '        po = _persist_step(po, invoice, stamp="invoice_lines_added_at")\n'
                "        log_state_change(\n",
                "        _check_lines(po, invoice, expected_subtotal)\n"
                "        if not po.stripe_invoice_id:\n"
                "            po, _ = _persist_invoice_created(po, invoice)\n"
                '        po = _persist_step(po, invoice, stamp="invoice_lines_added_at")\n'
                "        log_state_change(\n",
            ),
        ),
        tests=(
            "tests/core/test_stripe_invoicing.py::test_lines_added_but_not_recorded_for_over_a_day_are_not_added_again",
        ),
    ),
    Mutant(
        id="creation-resume-lock",
        invariant=1,
        guard="storing the new invoice's id reads the PO without its row lock",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "        locked = purchase_orders.lock_purchase_order(po)\n"
                "        if locked.stripe_invoice_id and locked.stripe_invoice_id != invoice.id:\n",
                f"        locked = {unlocked('po')}\n"
                "        if locked.stripe_invoice_id and locked.stripe_invoice_id != invoice.id:\n",
            ),
        ),
        tests=(
            f"{CORE_LOCKS}::test_a_creation_run_that_finds_the_invoice_stored_by_another_run_resumes_from_stripe",
        ),
    ),
    Mutant(
        id="creation-resume-from-replay",
        invariant=1,
        guard="a run whose invoice another run stored goes on from its own (replayed) answer",
        edits=(Edit(STRIPE_INVOICING, "        if not stored_here:\n", "        if False:\n"),),
        tests=(
            f"{CORE_LOCKS}::test_a_creation_run_that_finds_the_invoice_stored_by_another_run_resumes_from_stripe",
        ),
    ),
    # --- 2. The ledger equals Stripe -------------------------------------------------------------
    Mutant(
        id="po-row-lock",
        invariant=2,
        guard="lock_purchase_order takes no row lock (select_for_update removed)",
        edits=(
            Edit(
                PURCHASE_ORDERS,
                'PurchaseOrder.objects.select_for_update(of=("self",))\n',
                "PurchaseOrder.objects\n",
            ),
        ),
        tests=(CORE_LOCKS,),
    ),
    Mutant(
        id="webhook-apply-lock",
        invariant=2,
        guard="an invoice event is applied to the PO read without its row lock",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "        locked = purchase_orders.lock_purchase_order(po)\n"
                "        extra: tuple[str, ...] = ()\n"
                "        if (\n",
                f"        locked = {unlocked('po')}\n"
                "        extra: tuple[str, ...] = ()\n"
                "        if (\n",
            ),
        ),
        tests=(f"{SNAPSHOT_LOCK_TEST}[by_webhook]",),
    ),
    Mutant(
        id="snapshot-apply-lock",
        invariant=2,
        guard="apply_invoice_snapshot (reconciliation, cancel, void) reads the PO without its lock",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "        locked = purchase_orders.lock_purchase_order(purchase_order)\n"
                "        recorded = _apply_locked(\n",
                f"        locked = {unlocked('purchase_order')}\n"
                "        recorded = _apply_locked(\n",
            ),
        ),
        tests=(f"{SNAPSHOT_LOCK_TEST}[by_reconciliation]",),
    ),
    Mutant(
        id="sync-lock",
        invariant=2,
        guard="a sync applies the retrieved invoice to the PO read without its row lock",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "        locked = purchase_orders.lock_purchase_order(po)\n"
                "        locked.last_synced_at = timezone.now()\n",
                f"        locked = {unlocked('po')}\n"
                "        locked.last_synced_at = timezone.now()\n",
            ),
        ),
        tests=(
            f"{CORE_LOCKS}::test_a_sync_waits_for_the_po_row_lock_before_reading_ledger_and_mirror",
        ),
    ),
    Mutant(
        id="record-payment-lock",
        invariant=2,
        guard="record_payment checks and writes a (wire) payment on the PO read without its lock",
        edits=(
            Edit(
                PURCHASE_ORDERS,
                "        locked = lock_purchase_order(purchase_order)\n"
                "        try:\n"
                "            money.to_minor_units(amount, locked.currency)\n",
                f"        locked = {unlocked('purchase_order')}\n"
                "        try:\n"
                "            money.to_minor_units(amount, locked.currency)\n",
            ),
        ),
        tests=(
            f"{CORE_LOCKS}::test_a_wire_payment_waits_for_the_po_row_lock_before_checking_the_po",
        ),
    ),
    Mutant(
        id="ledger-delta-against-all-payments",
        invariant=2,
        guard="the delta is taken against every payment of the PO, wires and other invoices too",
        edits=(
            Edit(
                PURCHASE_ORDERS,
                "        purchase_order=purchase_order,\n"
                "        method=Method.STRIPE,\n"
                "        stripe_invoice_id=stripe_invoice_id,\n",
                "        purchase_order=purchase_order,\n",
            ),
        ),
        tests=("tests/core/test_ledger.py::test_wire_payment_never_hides_a_stripe_payment",),
    ),
    Mutant(
        id="full-amount-not-delta",
        invariant=2,
        guard="a snapshot records its whole amount_paid instead of the delta",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "                amount=delta,\n",
                "                amount=paid,\n",
            ),
        ),
        tests=("tests/core/test_ledger.py::test_snapshots_in_any_order_give_the_same_ledger",),
    ),
    Mutant(
        id="unique-constraint-dropped",
        invariant=2,
        guard="the unique (stripe_invoice_id, stripe_amount_paid_after) constraint is dropped",
        edits=(
            Edit(
                "invoicing/models.py",
                "            models.UniqueConstraint(\n"
                '                fields=("stripe_invoice_id", "stripe_amount_paid_after"),\n'
                '                condition=Q(method="stripe"),\n'
                '                name="payment_unique_stripe_snapshot",\n'
                "            ),\n",
                "",
            ),
        ),
        makemigrations=True,
        tests=(
            "tests/core/test_purchase_orders.py::test_replayed_stripe_payment_cannot_be_inserted_twice",
            "tests/core/test_purchase_orders.py::test_database_constraints_back_the_ledger",
        ),
    ),
    Mutant(
        id="reconciliation-lease",
        invariant=2,
        guard="the reconciliation lease is taken whether or not another run holds it",
        edits=(
            Edit(
                RECONCILIATION,
                "        .filter(Q(lease_expires_at__isnull=True)"
                " | Q(lease_expires_at__lte=now))\n",
                "",
            ),
        ),
        tests=(
            f"{PIPELINE_CLAIMS}::test_a_second_reconciliation_waits_for_the_lease_being_taken_and_then_skips",
        ),
    ),
    Mutant(
        id="open-invoice-listing-skipped",
        invariant=2,
        guard="reconciliation skips the list of open invoices (step b)",
        edits=(
            Edit(
                RECONCILIATION,
                'for invoices in _prefetched(_pages(client, "/v1/invoices", invoice_params)):',
                "for invoices in []:",
            ),
        ),
        tests=(
            "tests/pipeline/test_reconciliation.py::test_a_second_run_changes_nothing_and_reads_events_from_the_cursor",
        ),
    ),
    # --- 3. No event is lost ---------------------------------------------------------------------
    Mutant(
        id="inbox-write-skipped",
        invariant=3,
        guard="the webhook's inbox INSERT is skipped",
        edits=(
            Edit(
                STRIPE_EVENTS,
                "    inserted = _without_health_check_round_trip(insert)\n",
                "    inserted = None\n",
            ),
        ),
        tests=(
            "tests/pipeline/test_webhook_view.py::test_a_signed_event_is_recorded_and_queued_once",
        ),
    ),
    Mutant(
        id="inbox-claim-skip-locked",
        invariant=3,
        guard="the inbox claim waits for a row another worker is claiming (SKIP LOCKED removed)",
        edits=(
            Edit(
                STRIPE_EVENTS,
                'StripeEvent.objects.select_for_update(skip_locked=True, of=("self",))',
                'StripeEvent.objects.select_for_update(of=("self",))',
            ),
        ),
        tests=(f"{PIPELINE_CLAIMS}::test_a_worker_skips_an_inbox_row_another_worker_is_claiming",),
    ),
    Mutant(
        id="enqueue-before-commit",
        invariant=3,
        guard="approval queues the creation task at once, not after the commit",
        edits=(
            Edit(
                "invoicing/signals.py",
                "    transaction.on_commit(\n"
                "        partial(_queue_invoice_creation, instance.pk, instance.reference),"
                " robust=True\n"
                "    )\n",
                "    _queue_invoice_creation(instance.pk, instance.reference)\n",
            ),
        ),
        tests=("tests/pipeline/test_approval.py::test_a_rolled_back_approval_queues_nothing",),
    ),
    # --- 4. Conferences are isolated -------------------------------------------------------------
    Mutant(
        id="conference-check-skipped",
        invariant=4,
        guard="an event's invoice is looked up among every conference's POs",
        edits=(
            Edit(
                STRIPE_INVOICING,
                "po = pos.filter(conference=conference, stripe_invoice_id=invoice_id).first()",
                "po = pos.filter(stripe_invoice_id=invoice_id).first()",
            ),
        ),
        tests=("tests/core/test_stripe_payments.py::test_conferences_are_isolated",),
    ),
    # --- 5. Money is exact -----------------------------------------------------------------------
    Mutant(
        id="currency-exponent-ignored",
        invariant=5,
        guard="amounts go to Stripe in hundredths whatever the currency",
        edits=(
            Edit(
                "invoicing/money.py",
                "    exponent = currency_exponent(code)\n    scaled = value.scaleb(exponent)\n",
                "    exponent = 2\n    scaled = value.scaleb(exponent)\n",
            ),
        ),
        tests=("tests/core/test_money.py",),
    ),
    # --- 6. Bad input gets a clear answer and changes nothing ------------------------------------
    Mutant(
        id="any-signature-timestamp",
        invariant=6,
        guard="a signature of any age, past or future, is accepted",
        edits=(
            Edit(
                STRIPE_EVENTS,
                "    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS\n",
                "    tolerance = 10**12\n",
            ),
        ),
        tests=("tests/pipeline/test_webhook_view.py::TestRefusals::test_stale_timestamp",),
    ),
)
