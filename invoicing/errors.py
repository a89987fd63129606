"""The domain's errors: one base class, so "a rule of ours refused this" is one ``isinstance``.

Every error here means the same call would fail the same way again: the worker records it and
stops instead of retrying (:mod:`invoicing.retry`). Each is a ``ValueError``, as the public
interface promises for refusals. Errors that belong to one self-contained module subclass
:class:`InvoicingError` where they live (``money.AmountNotRepresentable``,
``stripe_client.StripeKeyMissing``, ``webhook_endpoints.WebhookRegistrationError``).
"""

from __future__ import annotations


class InvoicingError(ValueError):
    """A purchase order, invoice or event was refused by a rule of ours; nothing changed."""


class InvalidPurchaseOrder(InvoicingError):
    """The PO input is invalid; nothing was saved. The message lists every problem."""


class InvalidTransition(InvoicingError):
    """The PO is not in a state that allows this action."""


class InvalidPayment(InvoicingError):
    """The payment cannot be recorded; nothing was saved."""


class InvoiceAlreadyAttached(InvoicingError):
    """The PO already has a complete Stripe invoice; re-issue instead of creating another."""


class PurchaseOrderNotInvoiceable(InvoicingError):
    """The PO is not in a state that can be invoiced (draft, cancelled, paid...)."""


class InvoiceMismatch(InvoicingError):
    """Stripe's invoice does not match the PO (edited at Stripe, or not ours)."""


class EventRejected(InvoicingError):
    """An event payload must not be applied: wrong conference, livemode or currency, malformed.

    Permanent: retrying cannot help. The dispatcher should park the event as failed, visibly.
    """
