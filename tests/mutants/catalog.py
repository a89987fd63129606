"""The guard-removing mutants ``make mutants`` applies, one at a time, and the tests that must fail.

Each :class:`Mutant` names the invariant of ``../shared/DESIGN.md`` whose guard it removes, the
exact source text it replaces (found exactly once at HEAD, or the run stops: a guard that moved must
be re-targeted here, never skipped) and the tests that should catch it.

"""

from __future__ import annotations

from dataclasses import dataclass

LEDGER = "invoicing/services/ledger.py"
LEDGER_CORE = "invoicing/services/ledger_core.py"
LEDGER_ADJUSTMENTS = "invoicing/services/ledger_adjustments.py"
MONEY_ADJUSTMENTS_TESTS = "tests/core/test_ledger_adjustments.py"
INVOICE_CREATION = "invoicing/services/invoice_creation.py"
INVOICE_SYNC = "invoicing/services/invoice_sync.py"
STRIPE_CUSTOMERS = "invoicing/services/stripe_customers.py"
OFF_STRIPE_REPORTS = "invoicing/services/off_stripe_reports.py"
STRIPE_EVENTS = "invoicing/services/stripe_events.py"
WEBHOOK_INTAKE = "invoicing/services/webhook_intake.py"
RECONCILIATION = "invoicing/services/reconciliation.py"
SCOPING = "invoicing/admin/scoping.py"
TEAM_WALK = "tests/ops/test_team_walk.py"

CORE_LOCKS = "tests/core/test_locks.py"
CLAIMS = "tests/pipeline/test_claims.py"
SNAPSHOT_LOCK = (
    f"{CORE_LOCKS}::test_a_snapshot_waits_for_the_po_row_lock_before_reading_ledger_and_mirror"
)
CREATION_RESUME = (
    f"{CORE_LOCKS}::"
    "test_a_creation_run_that_finds_the_invoice_stored_by_another_run_resumes_from_stripe"
)
STRIPE_INVOICING_TESTS = "tests/core/test_stripe_invoicing.py"
CUSTOMER_LOCK_TESTS = "tests/core/test_customer_lock.py"
OFF_STRIPE_KEY_TESTS = "tests/core/test_off_stripe_keys.py"
LEDGER_BALANCE = "invoicing/services/ledger_balance.py"
BALANCE_MOVES_TESTS = "tests/core/test_credit_balance_moves.py"
FULL_RECONCILIATION = "tests/pipeline/test_full_reconciliation.py"


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (exactly one occurrence) with ``new`` in ``path`` (relative to the repo)."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    """``Mutant(id, invariant, guard, edits, tests)``: the invariant (1-7) whose guard it removes,
    the guard in words, the edits that remove it, the tests that must then fail."""

    id: str
    invariant: int
    guard: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    # The edit changes a model: its migration is generated, as a developer would, so that the
    # test database (built from migrations) has the mutant's schema.
    makemigrations: bool = False


def row_lock_dropped(
    mutant_id: str, invariant: int, guard: str, path: str, lock_call: str, context: str, test: str
) -> Mutant:
    """A ledger writer reads its PO without the row lock: ``locked = <lock_call>`` (followed by
    ``context``, which makes it unique) becomes the same read without ``FOR UPDATE``."""
    purchase_order = lock_call[lock_call.index("(") + 1 : -1]
    unlocked = f'PurchaseOrder.objects.select_related("conference").get(pk={purchase_order}.pk)'
    edit = Edit(
        path, f"        locked = {lock_call}\n{context}", f"        locked = {unlocked}\n{context}"
    )
    return Mutant(mutant_id, invariant, guard, (edit,), (test,))


MUTANTS: tuple[Mutant, ...] = (
    # --- 1. One invoice per PO -------------------------------------------------------------------
    Mutant(
        "creation-no-idempotency-key",
        1,
        "the invoice is created without our idempotency key",
        (
            Edit(
                INVOICE_CREATION,
                'client.v1.invoices.create(params, options={"idempotency_key": key})',
                "client.v1.invoices.create(params)",
            ),
        ),
        (
            f"{STRIPE_INVOICING_TESTS}::test_failure_after_each_creation_step_then_rerun_gives_one_invoice",
        ),
    ),
    Mutant(
        "invoice-id-persisted-late",
        1,
        "the new invoice's id is stored only once its lines are added",
        (
            Edit(
                INVOICE_CREATION,
                "        po, stored_here = _persist_invoice_created(po, invoice)\n",
                "        stored_here = True\n",
            ),
            Edit(
                INVOICE_CREATION,
                '    po = _persist_step(po, invoice, stamp="invoice_lines_added_at")\n'
                "    log_state_change(\n",
                "    if not po.stripe_invoice_id:\n"
                "        po, _ = _persist_invoice_created(po, invoice)\n"
                '    po = _persist_step(po, invoice, stamp="invoice_lines_added_at")\n'
                "    log_state_change(\n",
            ),
        ),
        (
            f"{STRIPE_INVOICING_TESTS}::test_lines_added_but_not_recorded_for_over_a_day_are_not_added_again",
        ),
    ),
    row_lock_dropped(
        "creation-resume-lock",
        1,
        "storing the new invoice's id reads the PO without its row lock",
        INVOICE_CREATION,
        "lock_purchase_order(po)",
        "        if locked.stripe_invoice_id and locked.stripe_invoice_id != invoice.id:\n",
        f"{CORE_LOCKS}::test_a_creation_run_stores_its_new_invoice_under_the_po_row_lock",
    ),
    Mutant(
        "creation-resume-from-replay",
        1,
        "a run whose invoice another run stored goes on from its own (replayed) answer",
        (
            Edit(
                INVOICE_CREATION,
                "        if stored_here:\n            return po, invoice\n",
                "        if True:\n            return po, invoice\n",
            ),
        ),
        (CREATION_RESUME,),
    ),
    Mutant(
        "customer-not-held-to-finalize",
        1,
        "an invoice's customer update and finalization run without the customer's advisory lock",
        (
            Edit(
                STRIPE_CUSTOMERS,
                'cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key(customer)])',
                'cursor.execute("SELECT %s", [lock_key(customer)])',
            ),
        ),
        (
            f"{CUSTOMER_LOCK_TESTS}::"
            "test_an_invoice_of_the_same_customer_waits_until_the_other_is_finalized",
        ),
    ),
    Mutant(
        "customer-read-before-the-wait",
        1,
        "a run that waited for the customer's lock decides on the customer row it read before "
        "waiting, not as the other run left it",
        (
            Edit(
                STRIPE_CUSTOMERS,
                "        customer.refresh_from_db()\n"
                "        po.stripe_customer = customer  # what ensure_stripe_customer reads\n",
                "",
            ),
        ),
        (
            f"{CUSTOMER_LOCK_TESTS}::"
            "test_a_run_that_waited_reads_the_customer_as_the_other_run_left_it",
        ),
    ),
    # --- 2. The ledger equals Stripe -------------------------------------------------------------
    Mutant(
        "off-stripe-report-key-kept",
        2,
        "an off-Stripe report retries under the key Stripe poisoned with a 5xx",
        (
            Edit(
                OFF_STRIPE_REPORTS,
                "    moved = ledger_off_stripe.move_report_key(payment)\n",
                "    moved = False\n",
            ),
        ),
        (
            f"{OFF_STRIPE_KEY_TESTS}::"
            "test_a_5xx_moves_the_key_once_stripe_shows_nothing_happened_and_the_retry_reports_once",
        ),
    ),
    Mutant(
        "po-row-lock",
        2,
        "lock_purchase_order takes no row lock (select_for_update removed)",
        (
            Edit(
                LEDGER_CORE,
                'PurchaseOrder.objects.select_for_update(of=("self",))\n',
                "PurchaseOrder.objects\n",
            ),
        ),
        (CORE_LOCKS,),
    ),
    row_lock_dropped(
        "webhook-apply-lock",
        2,
        "an invoice event is applied to the PO read without its row lock",
        INVOICE_SYNC,
        "lock_purchase_order(po)",
        "        extra: tuple[str, ...] = ()\n        if (\n",
        f"{SNAPSHOT_LOCK}[by_webhook]",
    ),
    row_lock_dropped(
        "snapshot-apply-lock",
        2,
        "apply_invoice_snapshot (reconciliation, cancel, void) reads the PO without its lock",
        LEDGER,
        "lock_purchase_order(purchase_order)",
        "        recorded = apply_invoice_snapshot_locked(\n",
        f"{SNAPSHOT_LOCK}[by_reconciliation]",
    ),
    row_lock_dropped(
        "sync-lock",
        2,
        "a sync applies the retrieved invoice to the PO read without its row lock",
        INVOICE_SYNC,
        "lock_purchase_order(po)",
        "        locked.last_synced_at = timezone.now()\n",
        f"{CORE_LOCKS}::test_a_sync_waits_for_the_po_row_lock_before_reading_ledger_and_mirror",
    ),
    row_lock_dropped(
        "record-payment-lock",
        2,
        "record_payment checks and writes a (wire) payment on the PO read without its lock",
        LEDGER,
        "lock_purchase_order(purchase_order)",
        "        if method != Method.STRIPE:\n",
        f"{CORE_LOCKS}::test_a_wire_payment_waits_for_the_po_row_lock_before_checking_the_po",
    ),
    Mutant(
        "ledger-delta-against-all-payments",
        2,
        "the delta is taken against every payment of the PO, wires and other invoices too",
        (
            Edit(
                LEDGER,
                "        purchase_order=purchase_order,\n"
                "        method=Method.STRIPE,\n"
                "        stripe_invoice_id=stripe_invoice_id,\n",
                "        purchase_order=purchase_order,\n",
            ),
        ),
        ("tests/core/test_ledger.py::test_wire_payment_never_hides_a_stripe_payment",),
    ),
    Mutant(
        "full-amount-not-delta",
        2,
        "a snapshot records its whole amount_paid instead of the delta",
        (
            Edit(
                LEDGER,
                "        amount=delta,\n",
                "        amount=paid,\n",
            ),
        ),
        ("tests/core/test_ledger.py::test_snapshots_in_any_order_give_the_same_ledger",),
    ),
    Mutant(
        "unique-constraint-dropped",
        2,
        "the unique (stripe_invoice_id, stripe_amount_paid_after) constraint is dropped",
        (
            Edit(
                "invoicing/models/payments.py",
                "            models.UniqueConstraint(\n"
                '                fields=("stripe_invoice_id", "stripe_amount_paid_after"),\n'
                '                condition=Q(kind="payment", method="stripe"),\n'
                '                name="payment_unique_stripe_snapshot",\n'
                "            ),\n",
                "",
            ),
        ),
        (
            "tests/core/test_purchase_orders.py::test_replayed_stripe_payment_cannot_be_inserted_twice",
            "tests/core/test_purchase_orders.py::test_database_constraints_back_the_ledger",
        ),
        makemigrations=True,
    ),
    Mutant(
        "reconciliation-lease",
        2,
        "the reconciliation lease is taken whether or not another run holds it",
        (
            Edit(
                RECONCILIATION,
                "        .filter(Q(lease_expires_at__isnull=True)"
                " | Q(lease_expires_at__lte=now))\n",
                "",
            ),
        ),
        (f"{CLAIMS}::test_a_second_reconciliation_waits_for_the_lease_being_taken_and_then_skips",),
    ),
    Mutant(
        "open-invoice-listing-skipped",
        2,
        "reconciliation skips the list of open invoices (step b)",
        (
            Edit(
                RECONCILIATION,
                'for invoices in _prefetched(_pages(client, "/v1/invoices", invoice_params)):',
                "for invoices in []:",
            ),
        ),
        (
            "tests/pipeline/test_reconciliation.py::test_a_second_run_changes_nothing_and_reads_events_from_the_cursor",
        ),
    ),
    Mutant(
        "refund-failure-not-reversed",
        2,
        "a refund that fails after it succeeded keeps its entry (no reversal)",
        (Edit(LEDGER_ADJUSTMENTS, "    if facts.undone:\n", "    if False:\n"),),
        (f"{MONEY_ADJUSTMENTS_TESTS}::test_a_refund_failing_after_it_succeeded_is_reversed",),
    ),
    Mutant(
        "dispute-view-moves-backwards",
        2,
        "a stale view of a dispute moves its stored status backwards (reopens a lost dispute)",
        (Edit(LEDGER_ADJUSTMENTS, "    if facts.stage > row.stage:\n", "    if True:\n"),),
        (
            f"{MONEY_ADJUSTMENTS_TESTS}::"
            "test_a_lost_dispute_withdraws_once_and_the_po_shows_it_while_open",
        ),
    ),
    Mutant(
        "reissue-credit-counted",
        2,
        "a re-issue's moved remainder lowers what the PO owes (forgiven twice)",
        (
            Edit(
                "invoicing/models/money_kinds.py",
                "    {CreditPurpose.REDUCE, CreditPurpose.CANCEL, CreditPurpose.EXTERNAL}\n",
                "    {CreditPurpose.REDUCE, CreditPurpose.CANCEL, CreditPurpose.EXTERNAL,"
                " CreditPurpose.REISSUE}\n",
            ),
        ),
        (
            f"{MONEY_ADJUSTMENTS_TESTS}::test_credit_notes_lower_what_is_owed_and_voiding_restores_it",
        ),
    ),
    Mutant(
        "reconcile-ignores-money-events",
        2,
        "reconciliation drops the refund, dispute and credit note events it read",
        (Edit(RECONCILIATION, "            money.add_events(events)\n", ""),),
        (
            "tests/pipeline/test_money_events.py::"
            "test_with_webhooks_dropped_the_next_reconciliation_brings_refunds_disputes_and_credits",
        ),
    ),
    # --- 3. No event is lost ---------------------------------------------------------------------
    Mutant(
        "inbox-write-skipped",
        3,
        "the webhook's inbox INSERT is skipped",
        (
            Edit(
                WEBHOOK_INTAKE,
                "    inserted = _without_health_check_round_trip(insert)\n",
                "    inserted = None\n",
            ),
        ),
        ("tests/pipeline/test_webhook_view.py::test_a_signed_event_is_recorded_and_queued_once",),
    ),
    Mutant(
        "inbox-claim-skip-locked",
        3,
        "the inbox claim waits for a row another worker is claiming (SKIP LOCKED removed)",
        (
            Edit(
                STRIPE_EVENTS,
                'select_for_update(skip_locked=True, of=("self",))',
                'select_for_update(of=("self",))',
            ),
        ),
        (f"{CLAIMS}::test_a_worker_skips_an_inbox_row_another_worker_is_claiming",),
    ),
    Mutant(
        # Invariant 3's order, durable first and queued after, for the approval that starts a
        # creation: queued before the commit, a rolled-back approval still queues one.
        "enqueue-before-commit",
        3,
        "approval queues the creation task at once, not after the commit",
        (
            Edit(
                "invoicing/signals.py",
                "    transaction.on_commit(\n"
                "        partial(_queue_invoice_creation, instance.pk, instance.reference),"
                " robust=True\n"
                "    )\n",
                "    _queue_invoice_creation(instance.pk, instance.reference)\n",
            ),
        ),
        ("tests/pipeline/test_approval.py::test_a_rolled_back_approval_queues_nothing",),
    ),
    # --- 4. Conferences are isolated -------------------------------------------------------------
    Mutant(
        "conference-check-skipped",
        4,
        "an event's invoice is looked up among every conference's POs",
        (
            Edit(
                INVOICE_SYNC,
                "po = pos.filter(conference=conference, stripe_invoice_id=invoice_id).first()",
                "po = pos.filter(stripe_invoice_id=invoice_id).first()",
            ),
        ),
        ("tests/core/test_stripe_payments.py::test_conferences_are_isolated",),
    ),
    # --- 5. Money is exact -----------------------------------------------------------------------
    Mutant(
        "currency-exponent-ignored",
        5,
        "amounts go to Stripe in hundredths whatever the currency",
        (
            Edit(
                "invoicing/money.py",
                "    exponent = currency_exponent(code)\n    scaled = value.scaleb(exponent)\n",
                "    exponent = 2\n    scaled = value.scaleb(exponent)\n",
            ),
        ),
        ("tests/core/test_money.py",),
    ),
    # --- 6. Bad input gets a clear answer and changes nothing ------------------------------------
    Mutant(
        "any-signature-timestamp",
        6,
        "a signature of any age, past or future, is accepted",
        (
            Edit(
                WEBHOOK_INTAKE,
                "    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS\n",
                "    tolerance = 10**12\n",
            ),
        ),
        ("tests/pipeline/test_webhook_view.py::TestRefusals::test_stale_timestamp",),
    ),
    # --- 7. Conferences are separate teams -------------------------------------------------------
    Mutant(
        "admin-queryset-unscoped",
        7,
        "the admin lists and opens every conference's objects",
        (
            Edit(
                SCOPING,
                "        return access.scope(\n"
                "            super().get_queryset(request), request.user, "
                "through=self.conference_lookup\n"
                "        )\n\n    def get_object(",
                "        return super().get_queryset(request)\n\n    def get_object(",
            ),
        ),
        (TEAM_WALK,),
    ),
    Mutant(
        "po-moved-to-any-conference",
        7,
        "a PO's conference may be any conference, not only one its person organizes",
        (
            Edit(
                "invoicing/admin/purchase_orders.py",
                '            kwargs["queryset"] = access.conferences(request.user, '
                "role=Role.ORGANIZER)\n",
                "            pass\n",
            ),
        ),
        (TEAM_WALK,),
    ),
    Mutant(
        "actions-ignore-the-role-here",
        7,
        "an organizer of one conference acts on the POs of another where they only view",
        (
            Edit(
                "invoicing/admin/purchase_order_actions.py",
                "        allowed = access.scope(queryset, request.user, "
                "role=access.PURCHASE_ORDER_ACTIONS_ROLE)\n",
                "        allowed = queryset\n",
            ),
        ),
        (f"{TEAM_WALK}::test_an_organizer_elsewhere_is_only_a_viewer_here",),
    ),
    Mutant(
        "cancel-without-a-reason",
        6,
        "a PO is cancelled (its invoice voided or credited at Stripe) with no reason given",
        (
            Edit(
                "invoicing/services/purchase_orders.py",
                "    if not reason.strip():\n",
                "    if False:\n",
            ),
        ),
        (
            "tests/core/test_purchase_orders.py::"
            "test_cancel_without_a_reason_is_refused_and_changes_nothing",
            "tests/core/test_reissue_cancel.py::test_cancel_without_a_reason_asks_nothing_of_stripe",
        ),
    ),
    Mutant(
        "po-buttons-ignore-the-role",
        7,
        "the PO page offers a viewer the buttons of actions that then refuse them",
        (
            Edit(
                "invoicing/admin/purchase_order_story.py",
                "    if not role.includes(access.PURCHASE_ORDER_ACTIONS_ROLE):\n",
                "    if False:\n",
            ),
        ),
        (
            "tests/ops/test_team_roles.py::"
            "test_the_po_page_offers_action_buttons_only_to_whom_the_actions_allow",
        ),
    ),
    Mutant(
        "money-settings-without-password",
        7,
        "the Stripe key, webhook secret, payment methods, memo and footer change without the "
        "password typed again",
        (
            Edit(
                "invoicing/admin/conference_forms.py",
                "        if not self._password_confirmed():\n",
                "        if False:\n",
            ),
        ),
        (
            "tests/ops/test_money_settings.py::"
            "test_a_key_change_without_the_password_is_refused_and_recorded",
        ),
    ),
    Mutant(
        "over-refund-accepted",
        2,
        "a refund (or reduction) above what can still be refunded (or the invoice still asks) is "
        "saved and sent",
        (Edit("invoicing/selectors.py", "    if amount > most:\n", "    if False:\n"),),
        (
            "tests/core/test_refunds.py::"
            "test_over_refund_is_refused_before_anything_is_saved_or_sent",
        ),
    ),
    Mutant(
        "refund-key-kept-after-cached-5xx",
        2,
        "a refund whose Stripe 5xx is replayed under its key keeps that key and never goes through",
        (
            Edit(
                "invoicing/services/refunds.py",
                "            StripeWriteRequest.objects.filter(pk=row.pk, key_epoch=row.key_epoch)"
                ".update(\n                key_epoch=row.key_epoch + 1\n            )\n",
                "            pass\n",
            ),
        ),
        (
            "tests/core/test_refunds.py::"
            "test_a_server_error_stripe_replays_moves_the_request_to_a_fresh_key",
        ),
    ),
    Mutant(
        "organizers-refund",
        7,
        "an organizer (not a finance admin) sends a conference's money back",
        (
            Edit(
                "invoicing/access.py",
                "    return may(user, conference_id, Role.FINANCE)\n",
                "    return may(user, conference_id, Role.ORGANIZER)\n",
            ),
        ),
        (
            "tests/core/test_refunds.py::test_refunds_take_a_finance_admin",
            "tests/ops/test_money_actions.py::test_each_role_sees_the_money_actions_it_may_take",
        ),
    ),
    Mutant(
        "refund-request-unlocked",
        2,
        "two refunds asked at once both spend the same money (checked without the PO's row lock)",
        (
            Edit(
                "invoicing/services/stripe_write_requests.py",
                "        locked = lock_purchase_order(purchase_order)\n",
                "        locked = PurchaseOrder.objects.select_related('conference')"
                ".get(pk=purchase_order.pk)\n",
            ),
        ),
        (
            "tests/core/test_refund_locks.py::"
            "test_a_second_refund_waits_for_the_first_and_finds_the_money_spoken_for",
        ),
    ),
    Mutant(
        "over-credit-by-line-accepted",
        6,
        "a reduction by line asking more of a line than its invoice still bills is saved and sent",
        (
            Edit(
                "invoicing/selectors_credit_lines.py",
                "    if quantity > line.left:\n",
                "    if False:\n",
            ),
        ),
        (
            "tests/core/test_reduce_by_line.py::"
            "test_more_than_a_line_still_bills_is_refused_and_nothing_reaches_stripe",
        ),
    ),
    Mutant(
        "reduce-credit-note-twice-after-crash",
        2,
        "a reduction whose credit note Stripe made before the crash makes a second one on retry",
        (
            Edit(
                "invoicing/services/amount_owed.py",
                "        note = _earlier_credit_note(client, row)\n",
                "        note = None\n",
            ),
        ),
        (
            "tests/core/test_reduce_by_line.py::test_a_crash_between_stripes_answer_and_our_save_credits_once",
        ),
    ),
    Mutant(
        "overpaid-excess-stays-on-po",
        2,
        "what Stripe credited to the customer's balance from an overpaid invoice stays counted "
        "on its PO (and again on the next PO that uses the balance)",
        (
            Edit(
                LEDGER_BALANCE,
                "    if snapshot.amount_overpaid <= 0 or snapshot.status == "
                "StripeInvoiceStatus.DELETED:\n",
                "    if True:\n",
            ),
        ),
        (
            f"{BALANCE_MOVES_TESTS}::test_an_overpaid_invoice_moves_its_excess_off_the_po_once",
            f"{BALANCE_MOVES_TESTS}::"
            "test_growth_of_amount_overpaid_moves_only_the_growth_in_any_order",
        ),
    ),
    Mutant(
        "post-payment-credit-stays-on-po",
        2,
        "a credit note's customer balance credit or out-of-band amount on a paid invoice stays "
        "counted as received on the PO",
        (
            Edit(
                "invoicing/services/ledger_credits.py",
                "    ledger_balance.apply_post_payment(locked, facts, "
                "seen_via=seen_via(source, event_id))\n",
                "",
            ),
        ),
        (
            f"{BALANCE_MOVES_TESTS}::"
            "test_a_credit_note_crediting_the_balance_after_payment_leaves_the_po_paid",
            f"{BALANCE_MOVES_TESTS}::"
            "test_voiding_the_credit_note_reverses_its_entries_whatever_the_order",
        ),
    ),
    Mutant(
        "reconcile-skips-credit-note-missing-its-balance-entry",
        2,
        "reconciliation counts a credit note as held once its credit row exists, though the "
        "entries of its post-payment part are missing",
        (
            Edit(
                "invoicing/services/reconciliation_money.py",
                "                and wanted <= kinds\n",
                "",
            ),
        ),
        (FULL_RECONCILIATION,),
    ),
    Mutant(
        "reconcile-skips-refund-its-request-awaits",
        2,
        "reconciliation counts a refund as held once the ledger has it, though the request that "
        "made it still waits for the bank",
        (
            Edit(
                "invoicing/services/reconciliation_money.py",
                "            done = wanted <= kinds and item.id not in moving_requests\n",
                "            done = wanted <= kinds\n",
            ),
        ),
        (
            "tests/core/test_refunds.py::"
            "test_a_full_reconciliation_brings_a_request_left_waiting_up_to_its_settled_refund",
        ),
    ),
    Mutant(
        "full-reconcile-skips-level-invoices",
        2,
        "a full reconciliation skips an invoice level with the PO's mirror, so entries missing "
        "behind an unchanged status and amount paid are never added",
        (
            Edit(
                RECONCILIATION,
                "snapshot.rank == mirror[1] and not level_too",
                "snapshot.rank == mirror[1]",
            ),
        ),
        (FULL_RECONCILIATION,),
    ),
    Mutant(
        "refund-skips-won-dispute",
        2,
        "a refund plan counts a charge whose dispute was won as never refundable (Stripe keeps "
        "Charge.disputed set), so money the ledger holds again cannot be given back",
        (
            Edit(
                "invoicing/services/refunds.py",
                "if left > 0 and not (charge.disputed and _held_by_a_dispute(client, charge.id)):",
                "if left > 0 and not charge.disputed:",
            ),
        ),
        (
            "tests/core/test_refunds.py::"
            "test_a_charge_whose_dispute_was_won_is_refunded_and_one_still_disputed_is_not",
        ),
    ),
    Mutant(
        "reduce-applies-a-view-without-the-split",
        2,
        "a reduction applies the invoice retrieved without amount_paid_off_stripe: the mirror "
        "moves past a payment the ledger cannot record from that view, and the reconciliation "
        "skips the invoice as unchanged",
        (
            Edit(
                "invoicing/services/amount_owed.py",
                'row.stripe_invoice_id, params={"expand": WITH_OFF_STRIPE}',
                "row.stripe_invoice_id",
            ),
        ),
        (
            "tests/core/test_refunds.py::"
            "test_a_reduction_brings_in_a_payment_no_webhook_brought_yet",
        ),
    ),
    Mutant(
        "void-keeps-the-returned-credit-balance",
        2,
        "a voided invoice's applied credit balance, which Stripe gives back to the customer, "
        "leaves the PO: otherwise a re-issue carries it forward as received while Stripe applies "
        "it again to the new invoice, and a cancelled PO keeps it",
        (
            Edit(
                "invoicing/services/ledger_balance.py",
                "    if snapshot.status != StripeInvoiceStatus.VOID:",
                "    if True:",
            ),
        ),
        (
            "tests/core/test_void_credit_balance.py::"
            "test_a_reissue_counts_the_credit_balance_once_and_asks_for_the_rest",
            "tests/core/test_void_credit_balance.py::"
            "test_cancel_leaves_the_credit_balance_with_the_customer",
        ),
    ),
    Mutant(
        "refunded-money-owed-again",
        2,
        "a refund beyond an overpayment does not lower what the PO owes, so a paid PO refunded "
        "in part shows the refund due again while Stripe's invoice never asks it",
        (
            Edit(
                "invoicing/models/amounts.py",
                "    return owed - max(ZERO, refunded - held_beyond_owed)\n",
                "    return owed\n",
            ),
        ),
        (
            "tests/core/test_money.py::"
            "test_a_refund_lowers_what_is_owed_once_it_gives_back_more_than_the_overpayment",
            "tests/core/test_refunds.py::test_a_partial_refund_takes_the_newest_payment_first",
        ),
    ),
    Mutant(
        "invoice-sent-story-told-by-every-run",
        1,
        "every creation run that sends the invoice tells the PO's story, not only the one that "
        "marks it sent, so two runs of one PO write 'Invoice created and sent' twice",
        (
            Edit(
                INVOICE_CREATION,
                "        if extra and first_time is not None:\n",
                "        if first_time is not None:\n",
            ),
        ),
        ("tests/core/test_locks.py::test_two_runs_sending_one_invoice_tell_its_story_once",),
    ),
    Mutant(
        "paid-back-off-an-open-invoice",
        2,
        "money an invoice still taking payments counts as paid at Stripe (a wire reported, or to "
        "be reported, to it) may be recorded as paid back, so the ledger gives back money Stripe "
        "goes on counting as paid",
        (
            Edit(
                "invoicing/selectors_paid_back.py",
                "    return max(ZERO, held_off_stripe(po) - on_open_invoice(po))\n",
                "    return max(ZERO, held_off_stripe(po))\n",
            ),
        ),
        (
            "tests/core/test_paid_back.py::test_a_payment_an_invoice_counts_as_paid_is_not_paid_back",
        ),
    ),
)
