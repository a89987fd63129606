"""Stripe's JSON shapes for the emulator's records, in the pinned API version.

Field sets are checked against the installed stripe-python's resource classes and Stripe's
example objects (``tests/test_emulator/test_shapes.py``). Rendering is the only place that knows
the wire shape, so a field added by a future API version is added in one function.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from stripe._api_version import _ApiVersion

from .models import (
    AUTO_FINALIZE_DELAY,
    JSON,
    Account,
    CustomerRec,
    EventRec,
    InvoiceItemRec,
    InvoicePaymentRec,
    InvoiceRec,
    WebhookEndpointRec,
    amount_due,
    amount_remaining,
    invoice_lines,
    starting_balance,
)
from .tax_records import invoice_taxes

API_VERSION = _ApiVersion.CURRENT
LINES_EMBEDDED = 10


def render_customer(customer: CustomerRec) -> JSON:
    if customer.deleted:
        return {"id": customer.id, "object": "customer", "deleted": True}
    rendered: JSON = {
        "id": customer.id,
        "object": "customer",
        "address": copy.deepcopy(customer.address),
        "balance": customer.balance,
        "created": customer.created,
        "currency": customer.currency,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": customer.description,
        "discount": None,
        "email": customer.email,
        "invoice_prefix": customer.invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": customer.livemode,
        "metadata": dict(customer.metadata),
        "name": customer.name,
        "next_invoice_sequence": customer.next_invoice_sequence,
        "phone": customer.phone,
        "preferred_locales": list(customer.preferred_locales),
        "shipping": None,
        "tax_exempt": customer.tax_exempt,
        "test_clock": None,
    }
    # The spec makes these optional and not nullable: Stripe sends them only when set.
    for name in ("business_name", "individual_name"):
        value = getattr(customer, name)
        if value is not None:
            rendered[name] = value
    return rendered


def _pricing(item: InvoiceItemRec) -> JSON:
    pricing: JSON = {
        "type": "price_details",
        "unit_amount_decimal": (
            decimal_string(item.unit_amount_decimal)
            if item.unit_amount_decimal is not None
            else None
        ),
    }
    # Optional, not nullable in the spec: a line priced by `amount` has no price_details.
    if item.price is not None:
        pricing["price_details"] = {"price": item.price, "product": item.product}
    return pricing


def decimal_string(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def render_invoice_item(item: InvoiceItemRec) -> JSON:
    if item.deleted:
        return {"id": item.id, "object": "invoiceitem", "deleted": True}
    return {
        "id": item.id,
        "object": "invoiceitem",
        "amount": item.amount,
        "currency": item.currency,
        "customer": item.customer,
        "customer_account": None,
        "date": item.created,
        "description": item.description,
        "discountable": item.discountable,
        "discounts": [],
        "frozen_fields": [],
        "invoice": item.invoice,
        "invoicing_rules": None,
        "livemode": item.livemode,
        "metadata": dict(item.metadata),
        "net_amount": item.amount,
        "parent": None,
        "period": {"end": item.period_end, "start": item.period_start},
        "pricing": _pricing(item),
        "proration": False,
        "proration_details": {"credited_items": None, "discount_amounts": []},
        "quantity": item.quantity,
        "quantity_decimal": decimal_string(item.quantity_decimal),
        "tax_rates": [],
        "test_clock": None,
    }


def _tax(amount: int, taxable: int, country: str | None, rate: Any) -> JSON:
    return {
        "amount": amount,
        "tax_behavior": "exclusive",
        "tax_rate_details": None,
        "taxability_reason": "standard_rated" if rate else "not_collecting",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }


def render_line(item: InvoiceItemRec, tax: JSON | None = None) -> JSON:
    return {
        "id": item.line_id,
        "object": "line_item",
        "amount": item.amount,
        "currency": item.currency,
        "description": item.description,
        "discount_amounts": [],
        "discountable": item.discountable,
        "discounts": [],
        "invoice": item.invoice,
        "livemode": item.livemode,
        "metadata": dict(item.metadata),
        "parent": {
            "invoice_item_details": {
                "invoice_item": item.id,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": {"end": item.period_end, "start": item.period_start},
        "pretax_credit_amounts": [],
        "pricing": _pricing(item),
        "quantity": item.quantity,
        "quantity_decimal": decimal_string(item.quantity_decimal),
        "subscription": None,
        "subtotal": item.amount,
        "taxes": [tax] if tax is not None else [],
    }


def _customer_tax_ids(account: Account, invoice: InvoiceRec) -> list[JSON]:
    """Fixed at finalization; until then "the same tax IDs as customer.tax_ids" (API reference)."""
    if invoice.status != "draft" and invoice.customer_tax_ids is not None:
        return [dict(item) for item in invoice.customer_tax_ids]
    customer = account.customers.get(invoice.customer)
    if customer is None:
        return []
    return [{"type": t.type, "value": t.value} for t in customer.tax_ids if not t.deleted]


def render_invoice(
    account: Account, invoice: InvoiceRec, *, expand: set[str] | None = None
) -> JSON:
    expand = expand or set()
    if invoice.deleted:
        return {"id": invoice.id, "object": "invoice", "deleted": True}
    items = invoice_lines(account, invoice)
    subtotal = sum(item.amount for item in items)
    country, taxes = invoice_taxes(account, invoice)
    rate = account.config.tax_rates.get(country or "")
    line_taxes: list[JSON | None] = (
        [_tax(tax, item.amount, country, rate) for item, tax in zip(items, taxes, strict=True)]
        if invoice.automatic_tax
        else [None] * len(items)
    )
    total = subtotal + sum(taxes)
    due = amount_due(account, invoice)
    remaining = amount_remaining(account, invoice)
    finalized = invoice.status != "draft"
    if invoice.collection_method == "send_invoice" or not finalized:
        next_payment_attempt = None
    elif invoice.status == "open" and invoice.auto_advance:
        next_payment_attempt = (invoice.finalized_at or invoice.created) + 3600
    else:
        next_payment_attempt = None
    customer: Any = invoice.customer
    if "customer" in expand and invoice.customer in account.customers:
        customer = render_customer(account.customers[invoice.customer])
    rendered: JSON = {
        "id": invoice.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Stripe Emulator",
        "account_tax_ids": None,
        "amount_due": due,
        "amount_overpaid": invoice.amount_overpaid,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": remaining,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": invoice.attempt_count,
        "attempted": invoice.attempted,
        "auto_advance": invoice.auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": invoice.automatic_tax,
            "liability": {"account": None, "type": "self"} if invoice.automatic_tax else None,
            "provider": "stripe" if invoice.automatic_tax else None,
            "status": "complete" if invoice.automatic_tax else None,
        },
        "automatically_finalizes_at": (
            invoice.created + AUTO_FINALIZE_DELAY
            if invoice.status == "draft" and invoice.auto_advance
            else None
        ),
        "billing_reason": "manual",
        "collection_method": invoice.collection_method,
        "confirmation_secret": None,
        "created": invoice.created,
        "currency": invoice.currency,
        "custom_fields": (
            [dict(item) for item in invoice.custom_fields]
            if invoice.custom_fields is not None
            else None
        ),
        "customer": customer,
        "customer_account": None,
        "customer_address": copy.deepcopy(invoice.customer_address),
        "customer_email": invoice.customer_email,
        "customer_name": invoice.customer_name,
        "customer_phone": invoice.customer_phone,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": _customer_tax_ids(account, invoice),
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": invoice.description,
        "discounts": [],
        "due_date": invoice.due_date,
        "effective_at": invoice.effective_at,
        "ending_balance": invoice.ending_balance if finalized else None,
        "footer": invoice.footer,
        "from_invoice": None,
        "hosted_invoice_url": invoice.hosted_invoice_url,
        "invoice_pdf": invoice.invoice_pdf,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [
                render_line(item, tax)
                for item, tax in list(zip(items, line_taxes, strict=True))[:LINES_EMBEDDED]
            ],
            "has_more": len(items) > LINES_EMBEDDED,
            "url": f"/v1/invoices/{invoice.id}/lines",
        },
        "livemode": invoice.livemode,
        "metadata": dict(invoice.metadata),
        "next_payment_attempt": next_payment_attempt,
        "number": invoice.number,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": (
                list(invoice.payment_method_types)
                if invoice.payment_method_types is not None
                else None
            ),
        },
        "period_end": invoice.created,
        "period_start": invoice.created,
        "post_payment_credit_notes_amount": invoice.post_payment_credit_notes_amount,
        "pre_payment_credit_notes_amount": invoice.pre_payment_credit_notes_amount,
        "receipt_number": None,
        "rendering": {
            "amount_tax_display": None,
            "pdf": {"page_size": "auto"},
            "template": None,
            "template_version": None,
        },
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": starting_balance(account, invoice),
        "statement_descriptor": invoice.statement_descriptor,
        "status": invoice.status,
        "status_details": None,
        "status_transitions": {
            "finalized_at": invoice.finalized_at,
            "marked_uncollectible_at": invoice.marked_uncollectible_at,
            "paid_at": invoice.paid_at,
            "voided_at": invoice.voided_at,
        },
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": subtotal,
        "total_pretax_credit_amounts": [],
        "total_taxes": (
            [_tax(sum(taxes), subtotal, country, rate)] if invoice.automatic_tax else []
        ),
        "webhooks_delivered_at": invoice.webhooks_delivered_at,
    }
    if "amount_paid_off_stripe" in expand:
        # An includable property: "You can include this property in API requests (for example,
        # retrieving an invoice). The property isn't available in event payloads" (changelog
        # 2026-05-27.dahlia); without ``expand[]=amount_paid_off_stripe`` it is absent.
        rendered["amount_paid_off_stripe"] = invoice.amount_paid_off_stripe
    if "payments" in expand:
        payments = [account.invoice_payments[pid] for pid in reversed(invoice.payment_ids)]
        rendered["payments"] = {
            "object": "list",
            "data": [render_invoice_payment(payment) for payment in payments],
            "has_more": False,
            "url": f"/v1/invoice_payments?invoice={invoice.id}",
        }
    return rendered


def render_invoice_payment(payment: InvoicePaymentRec) -> JSON:
    return {
        "id": payment.id,
        "object": "invoice_payment",
        "amount_paid": payment.amount_paid,
        "amount_requested": payment.amount_requested,
        "created": payment.created,
        "currency": payment.currency,
        "invoice": payment.invoice,
        "is_default": payment.is_default,
        "livemode": payment.livemode,
        "payment": (
            {"payment_record": payment.payment_record, "type": "payment_record"}
            if payment.payment_record is not None
            else {"payment_intent": payment.payment_intent, "type": "payment_intent"}
        ),
        "status": payment.status,
        "status_transitions": {"canceled_at": payment.canceled_at, "paid_at": payment.paid_at},
    }


def render_webhook_endpoint(endpoint: WebhookEndpointRec, *, with_secret: bool = False) -> JSON:
    if endpoint.deleted:
        return {"id": endpoint.id, "object": "webhook_endpoint", "deleted": True}
    rendered: JSON = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "api_version": endpoint.api_version,
        "application": None,
        "created": endpoint.created,
        "description": endpoint.description,
        "enabled_events": list(endpoint.enabled_events),
        "livemode": endpoint.livemode,
        "metadata": dict(endpoint.metadata),
        "status": endpoint.status,
        "url": endpoint.url,
    }
    if with_secret:
        rendered["secret"] = endpoint.secret
    return rendered


def render_event(event: EventRec) -> JSON:
    return {
        "id": event.id,
        "object": "event",
        "api_version": API_VERSION,
        "created": event.created,
        "data": copy.deepcopy(event.data),
        "livemode": event.livemode,
        "pending_webhooks": event.pending_webhooks,
        "request": {"id": event.request_id, "idempotency_key": event.idempotency_key},
        "type": event.type,
    }
