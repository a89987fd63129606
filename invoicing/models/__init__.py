"""Conferences, purchase orders, their payment ledger, Stripe customers and the webhook inbox.

Invariants the database enforces (not just the code):

- A PO's reference is unique within its conference; a Stripe invoice belongs to at most one PO.
- A Stripe payment row is unique on ``(stripe_invoice_id, stripe_amount_paid_after)``: replaying
  the same invoice snapshot can never insert it twice (README, "The ledger equals Stripe").
- Payments are positive; only ``stripe`` payments carry Stripe invoice data, and they always do.
- One Stripe customer per (conference, email); one inbox row per Stripe event id.
- A person holds at most one role per conference (``teams``).
"""

from invoicing.models.activity import PurchaseOrderActivity
from invoicing.models.amounts import MONEY_DECIMAL_PLACES, MONEY_LIMIT, MONEY_MAX_DIGITS, ZERO
from invoicing.models.conferences import (
    DEFAULT_PAYMENT_METHOD_TYPES,
    INVOICE_PAYMENT_METHOD_TYPES,
    Conference,
    StripeCustomer,
    default_payment_method_types,
    validate_currency,
    validate_payment_method_types,
)
from invoicing.models.payments import PurchaseOrderPayment
from invoicing.models.purchase_orders import (
    PURCHASE_ORDER_STATUSES,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderStatus,
)
from invoicing.models.stripe_records import StripeEvent, StripeSyncState
from invoicing.models.teams import ConferenceRole, ConferenceSettingsChange, Role

__all__ = [
    "DEFAULT_PAYMENT_METHOD_TYPES",
    "INVOICE_PAYMENT_METHOD_TYPES",
    "MONEY_DECIMAL_PLACES",
    "MONEY_LIMIT",
    "MONEY_MAX_DIGITS",
    "PURCHASE_ORDER_STATUSES",
    "ZERO",
    "Conference",
    "ConferenceRole",
    "ConferenceSettingsChange",
    "PurchaseOrder",
    "PurchaseOrderActivity",
    "PurchaseOrderLineItem",
    "PurchaseOrderPayment",
    "PurchaseOrderStatus",
    "Role",
    "StripeCustomer",
    "StripeEvent",
    "StripeSyncState",
    "default_payment_method_types",
    "validate_currency",
    "validate_payment_method_types",
]
