"""Each ``/v1`` endpoint: its handler, and the stripe-python params class that validates it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..models import JSON
from .account import retrieve_account
from .credit_notes import (
    create_credit_note,
    list_credit_note_lines,
    list_credit_notes,
    preview_credit_note,
    preview_credit_note_lines,
    retrieve_credit_note,
    update_credit_note,
    void_credit_note,
)
from .customer_balance import list_balance_transactions
from .customers import (
    create_customer,
    delete_customer,
    list_customers,
    retrieve_customer,
    update_customer,
)
from .disputes import list_disputes, retrieve_dispute
from .events import list_events, retrieve_event
from .invoice_items import (
    create_invoice_item,
    delete_invoice_item,
    list_invoice_items,
    retrieve_invoice_item,
    update_invoice_item,
)
from .invoice_lifecycle import (
    finalize_invoice,
    mark_uncollectible,
    pay_invoice,
    send_invoice,
    void_invoice,
)
from .invoice_lines import add_lines, list_invoice_lines
from .invoice_payments import list_invoice_payments, retrieve_invoice_payment
from .invoices import (
    create_invoice,
    delete_invoice,
    list_invoices,
    retrieve_invoice,
    update_invoice,
)
from .payment_intents import (
    list_charges,
    list_payment_intents,
    retrieve_charge,
    retrieve_payment_intent,
)
from .payment_records import (
    attach_payment,
    list_payment_records,
    report_canceled,
    report_failed,
    report_guaranteed,
    report_payment,
    retrieve_payment_record,
)
from .refunds import create_refund, list_refunds, retrieve_refund, update_refund
from .tax_ids import create_tax_id, delete_tax_id, list_tax_ids, retrieve_tax_id
from .webhook_endpoints import (
    create_webhook_endpoint,
    delete_webhook_endpoint,
    list_webhook_endpoints,
    retrieve_webhook_endpoint,
    update_webhook_endpoint,
)

Handler = Callable[..., JSON]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    params_class: str


def _route(method: str, path: str, handler: Handler, params_class: str) -> Route:
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
    return Route(method, re.compile(regex), handler, params_class)


ROUTES: list[Route] = [
    _route("POST", "/v1/customers", create_customer, "CustomerCreateParams"),
    _route("GET", "/v1/customers", list_customers, "CustomerListParams"),
    _route("GET", "/v1/customers/{customer_id}", retrieve_customer, "CustomerRetrieveParams"),
    _route("POST", "/v1/customers/{customer_id}", update_customer, "CustomerUpdateParams"),
    _route("DELETE", "/v1/customers/{customer_id}", delete_customer, "CustomerDeleteParams"),
    _route(
        "POST", "/v1/customers/{customer_id}/tax_ids", create_tax_id, "CustomerCreateTaxIdParams"
    ),
    _route("GET", "/v1/customers/{customer_id}/tax_ids", list_tax_ids, "CustomerListTaxIdsParams"),
    _route(
        "GET",
        "/v1/customers/{customer_id}/balance_transactions",
        list_balance_transactions,
        "CustomerListBalanceTransactionsParams",
    ),
    _route(
        "GET",
        "/v1/customers/{customer_id}/tax_ids/{tax_id}",
        retrieve_tax_id,
        "CustomerRetrieveTaxIdParams",
    ),
    _route(
        "DELETE",
        "/v1/customers/{customer_id}/tax_ids/{tax_id}",
        delete_tax_id,
        "CustomerDeleteTaxIdParams",
    ),
    _route("POST", "/v1/invoiceitems", create_invoice_item, "InvoiceItemCreateParams"),
    _route("GET", "/v1/invoiceitems", list_invoice_items, "InvoiceItemListParams"),
    _route("GET", "/v1/invoiceitems/{item_id}", retrieve_invoice_item, "InvoiceItemRetrieveParams"),
    _route("POST", "/v1/invoiceitems/{item_id}", update_invoice_item, "InvoiceItemUpdateParams"),
    _route("DELETE", "/v1/invoiceitems/{item_id}", delete_invoice_item, "InvoiceItemDeleteParams"),
    _route("POST", "/v1/invoices", create_invoice, "InvoiceCreateParams"),
    _route("GET", "/v1/invoices", list_invoices, "InvoiceListParams"),
    _route("GET", "/v1/invoices/{invoice_id}", retrieve_invoice, "InvoiceRetrieveParams"),
    _route("POST", "/v1/invoices/{invoice_id}", update_invoice, "InvoiceUpdateParams"),
    _route("DELETE", "/v1/invoices/{invoice_id}", delete_invoice, "InvoiceDeleteParams"),
    _route(
        "GET", "/v1/invoices/{invoice_id}/lines", list_invoice_lines, "InvoiceLineItemListParams"
    ),
    _route("POST", "/v1/invoices/{invoice_id}/add_lines", add_lines, "InvoiceAddLinesParams"),
    _route(
        "POST",
        "/v1/invoices/{invoice_id}/finalize",
        finalize_invoice,
        "InvoiceFinalizeInvoiceParams",
    ),
    _route("POST", "/v1/invoices/{invoice_id}/send", send_invoice, "InvoiceSendInvoiceParams"),
    _route("POST", "/v1/invoices/{invoice_id}/void", void_invoice, "InvoiceVoidInvoiceParams"),
    _route(
        "POST",
        "/v1/invoices/{invoice_id}/mark_uncollectible",
        mark_uncollectible,
        "InvoiceMarkUncollectibleParams",
    ),
    _route("POST", "/v1/invoices/{invoice_id}/pay", pay_invoice, "InvoicePayParams"),
    _route("GET", "/v1/invoice_payments", list_invoice_payments, "InvoicePaymentListParams"),
    _route(
        "GET",
        "/v1/invoice_payments/{payment_id}",
        retrieve_invoice_payment,
        "InvoicePaymentRetrieveParams",
    ),
    _route(
        "POST",
        "/v1/invoices/{invoice_id}/attach_payment",
        attach_payment,
        "InvoiceAttachPaymentParams",
    ),
    _route("GET", "/v1/payment_intents", list_payment_intents, "PaymentIntentListParams"),
    _route(
        "GET",
        "/v1/payment_intents/{intent_id}",
        retrieve_payment_intent,
        "PaymentIntentRetrieveParams",
    ),
    _route("GET", "/v1/charges", list_charges, "ChargeListParams"),
    _route("GET", "/v1/charges/{charge_id}", retrieve_charge, "ChargeRetrieveParams"),
    _route("POST", "/v1/refunds", create_refund, "RefundCreateParams"),
    _route("GET", "/v1/refunds", list_refunds, "RefundListParams"),
    _route("GET", "/v1/refunds/{refund_id}", retrieve_refund, "RefundRetrieveParams"),
    _route("POST", "/v1/refunds/{refund_id}", update_refund, "RefundUpdateParams"),
    _route("GET", "/v1/disputes", list_disputes, "DisputeListParams"),
    _route("GET", "/v1/disputes/{dispute_id}", retrieve_dispute, "DisputeRetrieveParams"),
    # ``preview`` before ``{note_id}``: the first route whose path matches wins.
    _route("GET", "/v1/credit_notes/preview", preview_credit_note, "CreditNotePreviewParams"),
    _route(
        "GET",
        "/v1/credit_notes/preview/lines",
        preview_credit_note_lines,
        "CreditNotePreviewLinesListParams",
    ),
    _route("POST", "/v1/credit_notes", create_credit_note, "CreditNoteCreateParams"),
    _route("GET", "/v1/credit_notes", list_credit_notes, "CreditNoteListParams"),
    _route("GET", "/v1/credit_notes/{note_id}", retrieve_credit_note, "CreditNoteRetrieveParams"),
    _route("POST", "/v1/credit_notes/{note_id}", update_credit_note, "CreditNoteUpdateParams"),
    _route(
        "GET",
        "/v1/credit_notes/{note_id}/lines",
        list_credit_note_lines,
        "CreditNoteLineItemListParams",
    ),
    _route(
        "POST",
        "/v1/credit_notes/{note_id}/void",
        void_credit_note,
        "CreditNoteVoidCreditNoteParams",
    ),
    _route(
        "POST",
        "/v1/payment_records/report_payment",
        report_payment,
        "PaymentRecordReportPaymentParams",
    ),
    _route("GET", "/v1/payment_records", list_payment_records, "PaymentRecordListParams"),
    _route(
        "GET",
        "/v1/payment_records/{record_id}",
        retrieve_payment_record,
        "PaymentRecordRetrieveParams",
    ),
    _route(
        "POST",
        "/v1/payment_records/{record_id}/report_payment_attempt_guaranteed",
        report_guaranteed,
        "PaymentRecordReportPaymentAttemptGuaranteedParams",
    ),
    _route(
        "POST",
        "/v1/payment_records/{record_id}/report_payment_attempt_failed",
        report_failed,
        "PaymentRecordReportPaymentAttemptFailedParams",
    ),
    _route(
        "POST",
        "/v1/payment_records/{record_id}/report_payment_attempt_canceled",
        report_canceled,
        "PaymentRecordReportPaymentAttemptCanceledParams",
    ),
    _route("GET", "/v1/account", retrieve_account, "AccountRetrieveCurrentParams"),
    _route("GET", "/v1/events", list_events, "EventListParams"),
    _route("GET", "/v1/events/{event_id}", retrieve_event, "EventRetrieveParams"),
    _route("POST", "/v1/webhook_endpoints", create_webhook_endpoint, "WebhookEndpointCreateParams"),
    _route("GET", "/v1/webhook_endpoints", list_webhook_endpoints, "WebhookEndpointListParams"),
    _route(
        "GET",
        "/v1/webhook_endpoints/{endpoint_id}",
        retrieve_webhook_endpoint,
        "WebhookEndpointRetrieveParams",
    ),
    _route(
        "POST",
        "/v1/webhook_endpoints/{endpoint_id}",
        update_webhook_endpoint,
        "WebhookEndpointUpdateParams",
    ),
    _route(
        "DELETE",
        "/v1/webhook_endpoints/{endpoint_id}",
        delete_webhook_endpoint,
        "WebhookEndpointDeleteParams",
    ),
]


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | str | None:
    """The route for ``method path``; the string ``"method"`` if only the method is wrong."""
    path_matched = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        path_matched = True
        if route.method == method:
            return route, found.groupdict()
    return "method" if path_matched else None
