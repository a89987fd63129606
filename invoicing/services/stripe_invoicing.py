"""DESIGN.md's public interface for Stripe invoices: create one, sync it, apply ``invoice.paid``.

Each name is defined by the module that owns its work and only gathered here, so code and checks
written against the contract keep one import path:

- :func:`create_stripe_invoice` (:mod:`.invoice_creation`): create, finalize and send the PO's
  invoice in its conference's account; resumable and idempotent.
- :func:`sync_stripe_invoice_status` (:mod:`.invoice_sync`): retrieve the invoice and apply it.
- :func:`handle_invoice_paid_webhook` (:mod:`.invoice_sync`): apply an ``invoice.paid`` payload.

Every payment they see reaches the PO through :mod:`.ledger`; voiding, re-issuing and cancelling
are :mod:`.invoice_lifecycle`.
"""

from __future__ import annotations

from invoicing.services.invoice_creation import create_stripe_invoice
from invoicing.services.invoice_sync import handle_invoice_paid_webhook, sync_stripe_invoice_status

__all__ = ["create_stripe_invoice", "handle_invoice_paid_webhook", "sync_stripe_invoice_status"]
