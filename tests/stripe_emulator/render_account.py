"""``GET /v1/account``: the account behind the secret key, as Stripe shows a standard account to
its own key (every emulated account is a fully onboarded US standard account).

The field set is stripe-python's ``Account``; the spec makes ``company``, ``individual`` and
``groups`` optional (sent only for some business types and for Connect), so they are absent.
"""

from __future__ import annotations

from .models import JSON, Account

ACCOUNT_NAME = "Stripe Emulator"

_NOTHING_DUE: JSON = {
    "alternatives": [],
    "current_deadline": None,
    "currently_due": [],
    "disabled_reason": None,
    "errors": [],
    "eventually_due": [],
    "past_due": [],
    "pending_verification": [],
}


def render_account(account: Account) -> JSON:
    return {
        "id": account.id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": None,
            "minority_owned_business_designation": None,
            "name": ACCOUNT_NAME,
            "product_description": None,
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": None,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": account.created,
        "default_currency": "usd",
        "details_submitted": True,
        "email": None,
        "external_accounts": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/accounts/{account.id}/external_accounts",
        },
        "future_requirements": dict(_NOTHING_DUE),
        "metadata": {},
        "payouts_enabled": True,
        "requirements": dict(_NOTHING_DUE),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {
                "icon": None,
                "logo": None,
                "primary_color": None,
                "secondary_color": None,
            },
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                "statement_descriptor_prefix": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": ACCOUNT_NAME, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": None},
            "payments": {
                "statement_descriptor": None,
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "payouts": {
                "debit_negative_balances": True,
                "schedule": {"delay_days": 2, "interval": "daily"},
                "statement_descriptor": None,
            },
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": account.created, "ip": None, "user_agent": None},
        "type": "standard",
    }
