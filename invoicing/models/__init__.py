"""Conferences, purchase orders, their payment ledger, Stripe customers and the webhook inbox.

Invariants the database enforces (not just the code):

- A PO's reference is unique within its conference; a Stripe invoice belongs to at most one PO.
- A Stripe payment row is unique on ``(stripe_invoice_id, stripe_amount_paid_after)``: replaying
  the same invoice snapshot can never insert it twice (README, "The ledger equals Stripe").
- Ledger entries carry their kind's sign (payments in, refunds and disputes out); only Stripe
  entries carry Stripe data, and they always do. A refund, its reversal, a dispute's withdrawal
  and its reinstatement are each unique per Stripe object; a credit note is recorded once.
- One Stripe customer per (conference, organization); one inbox row per Stripe event id.
- A person holds at most one role per conference (``teams``).
- An organizer's refund or reduction has a positive amount and a reason (``stripe_writes``).
"""

from invoicing.models.activity import PurchaseOrderActivity
from invoicing.models.adjustments import PurchaseOrderCredit, PurchaseOrderDispute
from invoicing.models.amounts import (
    MONEY_DECIMAL_PLACES,
    MONEY_LIMIT,
    MONEY_MAX_DIGITS,
    MONEY_OUTPUT,
    ZERO,
    owed_after_refunds,
)
from invoicing.models.conferences import (
    DEFAULT_PAYMENT_METHOD_TYPES,
    INVOICE_PAYMENT_METHOD_TYPES,
    Conference,
    StripeCustomer,
    default_payment_method_types,
    validate_currency,
    validate_payment_method_types,
)
from invoicing.models.money_kinds import (
    CLOSED_DISPUTE_STATUSES,
    COUNTED_CREDIT_PURPOSES,
    REFUND_KINDS,
    CreditPurpose,
)
from invoicing.models.notifications import (
    Notification,
    NotificationKind,
    NotificationSubscription,
)
from invoicing.models.payments import PurchaseOrderPayment
from invoicing.models.purchase_orders import (
    PURCHASE_ORDER_STATUSES,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderStatus,
)
from invoicing.models.stripe_records import StripeEvent, StripeSyncState
from invoicing.models.stripe_writes import StripeWriteRequest
from invoicing.models.teams import ConferenceRole, ConferenceSettingsChange, Role

__all__ = [
    "CLOSED_DISPUTE_STATUSES",
    "COUNTED_CREDIT_PURPOSES",
    "DEFAULT_PAYMENT_METHOD_TYPES",
    "INVOICE_PAYMENT_METHOD_TYPES",
    "MONEY_DECIMAL_PLACES",
    "MONEY_LIMIT",
    "MONEY_MAX_DIGITS",
    "MONEY_OUTPUT",
    "PURCHASE_ORDER_STATUSES",
    "REFUND_KINDS",
    "ZERO",
    "Conference",
    "ConferenceRole",
    "ConferenceSettingsChange",
    "CreditPurpose",
    "Notification",
    "NotificationKind",
    "NotificationSubscription",
    "PurchaseOrder",
    "PurchaseOrderActivity",
    "PurchaseOrderCredit",
    "PurchaseOrderDispute",
    "PurchaseOrderLineItem",
    "PurchaseOrderPayment",
    "PurchaseOrderStatus",
    "Role",
    "StripeCustomer",
    "StripeEvent",
    "StripeSyncState",
    "StripeWriteRequest",
    "default_payment_method_types",
    "owed_after_refunds",
    "validate_currency",
    "validate_payment_method_types",
]
