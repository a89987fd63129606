"""In-memory records of one emulated Stripe account: what Stripe stores, not what it returns.

The wire shapes live in :mod:`.render`; the amounts Stripe derives from the records (``amount_due``
and ``amount_remaining``) live here, because the API, the rendering and the hosted page all need
them and must agree.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .balance_records import CustomerBalanceTxnRec
from .clock import Clock
from .config import LIVE_RATE_LIMIT, SANDBOX_RATE_LIMIT, AccountConfig
from .ids import new_id
from .tax_records import TaxIdRec, invoice_taxes

JSON = dict[str, Any]


@dataclass
class CustomerRec:
    id: str
    created: int
    livemode: bool
    email: str | None = None
    name: str | None = None
    business_name: str | None = None  # sent only when set
    individual_name: str | None = None  # sent only when set
    description: str | None = None
    phone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    address: JSON | None = None
    currency: str | None = None
    invoice_prefix: str = ""
    next_invoice_sequence: int = 1
    preferred_locales: list[str] = field(default_factory=list)
    tax_exempt: str = "none"
    balance: int = 0  # negative: credit the customer has with the account
    tax_ids: list[TaxIdRec] = field(default_factory=list)
    balance_transactions: list[CustomerBalanceTxnRec] = field(default_factory=list)
    deleted: bool = False
    seq: int = 0


@dataclass
class InvoiceItemRec:
    id: str
    created: int
    livemode: bool
    customer: str
    currency: str
    amount: int
    quantity: int
    quantity_decimal: Decimal
    unit_amount_decimal: Decimal | None
    description: str | None
    metadata: dict[str, str]
    period_start: int
    period_end: int
    discountable: bool
    price: str | None = None
    product: str | None = None
    invoice: str | None = None
    line_id: str = ""
    line_metadata: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    seq: int = 0


@dataclass
class InvoicePaymentRec:
    """A payment on an invoice: a PaymentIntent (on Stripe) or a PaymentRecord (off Stripe)."""

    id: str
    created: int
    livemode: bool
    invoice: str
    currency: str
    amount_requested: int
    payment_method_type: str
    payment_intent: str | None
    payment_record: str | None = None
    status: str = "open"  # open | paid | canceled
    amount_paid: int | None = None
    paid_at: int | None = None
    canceled_at: int | None = None
    is_default: bool = False
    failure_code: str | None = None
    seq: int = 0


@dataclass
class InvoiceRec:
    id: str
    created: int
    livemode: bool
    customer: str
    currency: str
    collection_method: str
    auto_advance: bool
    days_until_due: int | None = None
    due_date: int | None = None
    description: str | None = None
    footer: str | None = None
    statement_descriptor: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    payment_method_types: list[str] | None = None
    status: str = "draft"
    number: str | None = None
    item_ids: list[str] = field(default_factory=list)
    amount_paid: int = 0
    amount_paid_off_stripe: int = 0
    attempt_count: int = 0
    attempted: bool = False
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    effective_at: int | None = None
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    customer_phone: str | None = None
    customer_address: JSON | None = None
    customer_tax_ids: list[JSON] | None = None  # fixed at finalization; live on a draft
    custom_fields: list[JSON] | None = None
    automatic_tax: bool = False
    payment_ids: list[str] = field(default_factory=list)
    paid_out_of_band: bool = False
    amount_overpaid: int = 0
    # Credit notes: the part that reduced amount_due, and the part beyond what was still due.
    pre_payment_credit_notes_amount: int = 0
    post_payment_credit_notes_amount: int = 0
    credit_note_ids: list[str] = field(default_factory=list)
    # The customer's balance applied at finalization (None while a draft: then Stripe shows
    # the customer's current balance), and what is left of it afterwards.
    starting_balance: int | None = None
    ending_balance: int | None = None
    webhooks_delivered_at: int | None = None
    deleted: bool = False
    seq: int = 0


@dataclass
class PaymentIntentRec:
    """The PaymentIntent behind an invoice payment made on Stripe."""

    id: str
    created: int
    livemode: bool
    amount: int
    currency: str
    customer: str | None
    payment_method_types: list[str]
    client_secret: str
    status: str = "requires_payment_method"
    payment_method: str | None = None
    latest_charge: str | None = None
    amount_received: int = 0
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    last_payment_error: JSON | None = None
    seq: int = 0


@dataclass
class ChargeRec:
    """One attempt to move the money of a PaymentIntent: a card charge or an ACH debit."""

    id: str
    created: int
    livemode: bool
    amount: int
    currency: str
    customer: str | None
    payment_intent: str
    payment_method: str
    payment_method_type: str  # card | us_bank_account
    status: str = "pending"  # pending | succeeded | failed
    amount_refunded: int = 0  # refunds that are pending or succeeded
    failure_code: str | None = None
    failure_message: str | None = None
    balance_transaction: str | None = None
    dispute: str | None = None
    seq: int = 0

    @property
    def refundable(self) -> int:
        return self.amount - self.amount_refunded


@dataclass
class RefundRec:
    id: str
    created: int
    amount: int
    currency: str
    charge: str
    payment_intent: str
    payment_method: str
    payment_method_type: str
    balance_transaction: str
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # pending | succeeded | failed
    failure_reason: str | None = None
    failure_balance_transaction: str | None = None
    seq: int = 0


@dataclass
class BalanceTransactionRec:
    """A movement of the account's balance, as a dispute lists them (withdrawn, reinstated)."""

    id: str
    created: int
    amount: int
    currency: str
    description: str
    source: str
    type: str = "adjustment"
    reporting_category: str = "dispute"


@dataclass
class DisputeRec:
    id: str
    created: int
    livemode: bool
    charge: str
    payment_intent: str
    amount: int
    currency: str
    reason: str
    payment_method_type: str
    evidence_due_by: int
    status: str = "needs_response"
    balance_transactions: list[BalanceTransactionRec] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    seq: int = 0


@dataclass
class CreditNoteLineRec:
    id: str
    type: str  # invoice_line_item | custom_line_item
    amount: int
    livemode: bool
    quantity: int | None = None
    unit_amount: int | None = None
    unit_amount_decimal: Decimal | None = None
    description: str | None = None
    invoice_item: str | None = None  # the credited invoice item (its line is ``line_id``)
    invoice_line_item: str | None = None
    credited_by: str | None = None  # "amount" | "quantity" for invoice lines
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class CreditNoteRec:
    id: str
    number: str
    created: int
    livemode: bool
    invoice: str
    customer: str
    currency: str
    amount: int
    pre_payment_amount: int
    post_payment_amount: int
    lines: list[CreditNoteLineRec]
    effective_at: int
    credit_amount: int = 0
    out_of_band_amount: int | None = None
    refunds: list[tuple[str, int]] = field(default_factory=list)  # (refund id, amount)
    customer_balance_transaction: str | None = None
    memo: str | None = None
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "issued"  # issued | void
    voided_at: int | None = None
    seq: int = 0


@dataclass
class PaymentRecordRec:
    """A payment made outside Stripe (a wire, a check), reported to Stripe."""

    id: str
    created: int
    livemode: bool
    amount: int
    currency: str
    initiated_at: int
    payment_method_details: JSON
    processor_details: JSON
    payment_attempt_record: str
    outcome: str | None = None  # None while initiated; guaranteed | failed | canceled
    outcome_at: int | None = None
    customer_details: JSON | None = None
    customer_presence: str | None = None
    description: str | None = None
    shipping_details: JSON | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    invoice_payment: str | None = None
    seq: int = 0


@dataclass
class WebhookEndpointRec:
    id: str
    created: int
    livemode: bool
    url: str
    enabled_events: list[str]
    secret: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    status: str = "enabled"
    deleted: bool = False
    seq: int = 0

    def wants(self, event_type: str) -> bool:
        return self.status == "enabled" and (
            "*" in self.enabled_events or event_type in self.enabled_events
        )


@dataclass
class EventRec:
    id: str
    type: str
    created: int
    livemode: bool
    data: JSON
    request_id: str | None
    idempotency_key: str | None
    pending_webhooks: int = 0
    seq: int = 0


@dataclass
class IdempotencyRec:
    """The first response for an idempotency key; ``status`` None while the request runs."""

    fingerprint: tuple[str, str, str]
    created: float
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Account:
    """One Stripe account = one secret key. All mutation happens under the store's lock."""

    def __init__(self, secret_key: str, *, livemode: bool, seed: int | None = None) -> None:
        self.secret_key = secret_key
        self.livemode = livemode
        self.id = new_id("acct", 16)
        self.created = int(time.time())
        self.customers: dict[str, CustomerRec] = {}
        self.invoice_items: dict[str, InvoiceItemRec] = {}
        self.invoices: dict[str, InvoiceRec] = {}
        self.invoice_payments: dict[str, InvoicePaymentRec] = {}
        self.payment_intents: dict[str, PaymentIntentRec] = {}
        self.charges: dict[str, ChargeRec] = {}
        self.refunds: dict[str, RefundRec] = {}
        self.disputes: dict[str, DisputeRec] = {}
        self.credit_notes: dict[str, CreditNoteRec] = {}
        self.payment_records: dict[str, PaymentRecordRec] = {}
        self.events: dict[str, EventRec] = {}
        self.webhook_endpoints: dict[str, WebhookEndpointRec] = {}
        self.idempotency: dict[str, IdempotencyRec] = {}
        self.config = AccountConfig(rate_limit=LIVE_RATE_LIMIT if livemode else SANDBOX_RATE_LIMIT)
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.request_times: collections.deque[float] = collections.deque()
        self.deliveries: list[dict[str, Any]] = []
        self.delivered: set[tuple[str, str]] = set()
        self.clock_offset = 0.0
        # Set: the account's time stands still there (and moves only when advanced), as a Stripe
        # test clock's objects live at its ``frozen_time`` (API reference, "Test Clocks": "create
        # objects at a frozen time ... and advance to a specific future time").
        self.clock_frozen_at: float | None = None
        self._seq = 0

    def now(self, clock: Clock) -> float:
        """The account's time: the emulator's clock plus what tests advanced for this account."""
        if self.clock_frozen_at is not None:
            return self.clock_frozen_at
        return clock.now() + self.clock_offset

    def freeze_clock(self, clock: Clock, *, frozen: bool) -> None:
        """Stop the account's time where it is, or let it run on from there (never backwards)."""
        if frozen and self.clock_frozen_at is None:
            self.clock_frozen_at = self.now(clock)
        elif not frozen and self.clock_frozen_at is not None:
            self.clock_offset = self.clock_frozen_at - clock.now()
            self.clock_frozen_at = None

    def advance_clock(self, seconds: float) -> None:
        if self.clock_frozen_at is not None:
            self.clock_frozen_at += seconds
        else:
            self.clock_offset += seconds

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def random(self) -> float:
        with self.rng_lock:
            return self.rng.random()

    def reseed(self, seed: int | None) -> None:
        with self.rng_lock:
            self.rng = random.Random(seed)


def invoice_lines(account: Account, invoice: InvoiceRec) -> list[InvoiceItemRec]:
    return [account.invoice_items[item_id] for item_id in invoice.item_ids]


def invoice_total(account: Account, invoice: InvoiceRec) -> int:
    """``total``: the lines plus the tax on them."""
    items = invoice_lines(account, invoice)
    return sum(item.amount for item in items) + sum(invoice_taxes(account, invoice)[1])


def starting_balance(account: Account, invoice: InvoiceRec) -> int:
    """The customer balance the invoice starts from: fixed at finalization, live on a draft.

    Stripe: "Starting customer balance before the invoice is finalized. If the invoice has not
    been finalized yet, this will be the current customer balance." A balance only applies to
    invoices in the customer's currency.
    """
    if invoice.starting_balance is not None:
        return invoice.starting_balance
    customer = account.customers.get(invoice.customer)
    if customer is None or customer.currency != invoice.currency:
        return 0
    return customer.balance


def amount_due(account: Account, invoice: InvoiceRec) -> int:
    """Stripe's order (docs "Generate credit notes programmatically"): line items, ..., customer
    credit balance, then credit notes applied to the gross amount due; never below zero.
    """
    gross = invoice_total(account, invoice) + starting_balance(account, invoice)
    return max(gross - invoice.pre_payment_credit_notes_amount, 0)


def amount_remaining(account: Account, invoice: InvoiceRec) -> int:
    if invoice.status == "void":
        return 0
    return max(amount_due(account, invoice) - invoice.amount_paid, 0)


# Stripe finalizes an auto_advance draft about an hour after creation (when no webhook is
# pending); the emulator does it exactly one hour after, on the account's clock.
AUTO_FINALIZE_DELAY = 3600
