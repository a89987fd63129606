"""Stripe's JSON shapes for the money behind invoice payments: PaymentIntents, charges, refunds
and disputes (with the balance transactions a dispute lists).

Which fields are sent: every field of the installed stripe-python's class that Stripe's spec
marks required, with ``null`` where it is nullable and empty; the fields the spec marks optional
only when they apply (``Refund.pending_reason`` while pending, ``failure_reason`` once failed),
never as ``null`` (``tests/test_emulator/test_shapes.py`` checks both).
"""

from __future__ import annotations

from typing import Any

from .models import (
    JSON,
    BalanceTransactionRec,
    ChargeRec,
    DisputeRec,
    PaymentIntentRec,
    RefundRec,
)

_ADDRESS: JSON = {
    "city": None,
    "country": None,
    "line1": None,
    "line2": None,
    "postal_code": None,
    "state": None,
}


def render_payment_intent(intent: PaymentIntentRec, *, latest_charge: Any = None) -> JSON:
    return {
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": 0,
        "amount_received": intent.amount_received,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": intent.canceled_at,
        "cancellation_reason": intent.cancellation_reason,
        "capture_method": "automatic",
        "client_secret": intent.client_secret,
        "confirmation_method": "automatic",
        "created": intent.created,
        "currency": intent.currency,
        "customer": intent.customer,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": intent.last_payment_error,
        "latest_charge": latest_charge if latest_charge is not None else intent.latest_charge,
        "livemode": intent.livemode,
        "managed_payments": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": intent.payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": list(intent.payment_method_types),
        "payment_record": None,
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": intent.status,
        "transfer_group": None,
    }


def _payment_method_details(charge: ChargeRec) -> JSON:
    if charge.payment_method_type == "us_bank_account":
        return {
            "type": "us_bank_account",
            "us_bank_account": {
                "account_holder_type": "company",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "fingerprint": "FFDMA0xfhBjWSZLu",
                "last4": "6789",
                "payment_reference": None,
                "routing_number": "110000000",
            },
        }
    return {
        "type": "card",
        "card": {
            "amount_authorized": charge.amount if charge.status != "failed" else None,
            "authorization_code": None,
            "brand": "visa",
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "credit",
            "installments": None,
            "last4": "4242",
            "mandate": None,
            "network": "visa",
            "network_transaction_id": None,
            "regulated_status": "unregulated",
            "three_d_secure": None,
            "transaction_link_id": None,
            "wallet": None,
        },
    }


def _outcome(charge: ChargeRec) -> JSON | None:
    if charge.status == "pending":
        return None
    failed = charge.status == "failed"
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "declined_by_network" if failed else "approved_by_network",
        "reason": charge.failure_code if failed else None,
        "seller_message": "The bank did not return any further details with this decline."
        if failed
        else "Payment complete.",
        "type": "issuer_declined" if failed else "authorized",
    }


def render_charge(
    charge: ChargeRec, *, refunds: JSON | None = None, payment_intent: Any = None
) -> JSON:
    """``refunds`` is an includable list since 2022-11-15: sent only when expanded."""
    succeeded = charge.status == "succeeded"
    rendered: JSON = {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount if charge.status != "failed" else 0,
        "amount_refunded": charge.amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": charge.balance_transaction,
        "billing_details": {
            "address": dict(_ADDRESS),
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "STRIPE EMULATOR",
        "captured": charge.status != "failed",
        "created": charge.created,
        "currency": charge.currency,
        "customer": charge.customer,
        "description": None,
        "disputed": charge.dispute is not None,
        "failure_balance_transaction": None,
        "failure_code": charge.failure_code,
        "failure_message": charge.failure_message,
        "fraud_details": {},
        "livemode": charge.livemode,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": _outcome(charge),
        "paid": succeeded,
        "payment_intent": payment_intent if payment_intent is not None else charge.payment_intent,
        "payment_method": charge.payment_method,
        "payment_method_details": _payment_method_details(charge),
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": charge.amount_refunded == charge.amount,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": charge.status,
        "transfer_data": None,
        "transfer_group": None,
    }
    if refunds is not None:
        rendered["refunds"] = refunds
    return rendered


def render_refund(refund: RefundRec) -> JSON:
    rendered: JSON = {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": refund.balance_transaction,
        "charge": refund.charge,
        "created": refund.created,
        "currency": refund.currency,
        "customer": None,
        "customer_account": None,
        "metadata": dict(refund.metadata),
        "payment_intent": refund.payment_intent,
        "payment_method": refund.payment_method,
        "reason": refund.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": refund.status,
        "transfer_reversal": None,
    }
    if refund.payment_method_type == "us_bank_account":
        rendered["destination_details"] = {
            "type": "us_bank_transfer",
            "us_bank_transfer": {"reference": None, "reference_status": None},
        }
    else:
        rendered["destination_details"] = {"card": {"type": "refund"}, "type": "card"}
    if refund.status == "pending":
        rendered["pending_reason"] = "processing"
    if refund.status == "failed":
        rendered["failure_reason"] = refund.failure_reason
        rendered["failure_balance_transaction"] = refund.failure_balance_transaction
    return rendered


def render_balance_transaction(txn: BalanceTransactionRec) -> JSON:
    return {
        "id": txn.id,
        "object": "balance_transaction",
        "amount": txn.amount,
        "available_on": txn.created,
        "balance_type": "payments",
        "created": txn.created,
        "currency": txn.currency,
        "description": txn.description,
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": txn.amount,
        "reporting_category": txn.reporting_category,
        "source": txn.source,
        "status": "available",
        "type": txn.type,
    }


_EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)


# Visa's reason codes for the dispute reasons the control API can open.
_VISA_REASON_CODES = {
    "fraudulent": "10.4",
    "product_not_received": "13.1",
    "product_unacceptable": "13.3",
    "duplicate": "12.6.1",
    "subscription_canceled": "13.2",
    "credit_not_processed": "13.6",
    "general": "13.7",
}


def render_dispute(dispute: DisputeRec) -> JSON:
    open_ = dispute.status in ("needs_response", "under_review", "warning_needs_response")
    rendered: JSON = {
        "id": dispute.id,
        "object": "dispute",
        "amount": dispute.amount,
        "balance_transactions": [
            render_balance_transaction(txn) for txn in dispute.balance_transactions
        ],
        "charge": dispute.charge,
        "created": dispute.created,
        "currency": dispute.currency,
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(_EVIDENCE_FIELDS), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": dispute.evidence_due_by if open_ else None,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
            "submission_method": "not_submitted",
        },
        "is_charge_refundable": False,
        "livemode": dispute.livemode,
        "metadata": dict(dispute.metadata),
        "payment_intent": dispute.payment_intent,
        "reason": dispute.reason,
        "status": dispute.status,
    }
    if dispute.payment_method_type == "card":
        # Dispute.payment_method_details knows cards and wallets only (no us_bank_account).
        rendered["payment_method_details"] = {
            "card": {
                "brand": "visa",
                "case_type": "chargeback",
                "network": "visa",
                "network_reason_code": _VISA_REASON_CODES.get(dispute.reason),
            },
            "type": "card",
        }
    return rendered
