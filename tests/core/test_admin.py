"""The minimal admin: every model is registered; Stripe secrets are write-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from invoicing.models import Conference
from tests.core.conftest import MakeConference, MakePurchaseOrder

pytestmark = pytest.mark.django_db

SECRET = "sk_test_AdminMustNeverShowThis"


@pytest.fixture(autouse=True)
def _static_root(settings: Any, tmp_path: Path) -> None:
    # WhiteNoise warns (an error here) when STATIC_ROOT does not exist; collectstatic never ran.
    settings.STATIC_ROOT = tmp_path


def form_data(conference: Conference, **overrides: Any) -> dict[str, Any]:
    data = {
        "slug": conference.slug,
        "name": conference.name,
        "currency": conference.currency,
        "is_active": "on",
        "stripe_secret_key": "",
        "stripe_webhook_secret": "",
        "stripe_webhook_endpoint_id": "",
        "invoice_days_until_due": "30",
        "payment_method_types": ["card", "us_bank_account"],
        # What the browser sends back for a field with a callable default (change detection).
        "invoice_memo": "",
        "invoice_footer": "",
    }
    data.update(overrides)
    return data


def test_secrets_are_never_rendered_and_blank_keeps_them(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference(secret_key=SECRET, stripe_webhook_secret="whsec_NeverShown")
    url = reverse("admin:invoicing_conference_change", args=[conference.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert SECRET not in page.content.decode()
    assert "whsec_NeverShown" not in page.content.decode()

    response = admin_client.post(url, form_data(conference, name="Renamed"))
    assert response.status_code == 302
    conference.refresh_from_db()
    assert conference.name == "Renamed"
    assert conference.stripe_secret_key == SECRET

    # pytest-django's admin_user signs in with the password "password".
    admin_client.post(
        url,
        form_data(conference, stripe_secret_key="sk_test_rotated", current_password="password"),
    )
    conference.refresh_from_db()
    assert conference.stripe_secret_key == "sk_test_rotated"


def test_invalid_settings_are_refused_by_the_form(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference()
    url = reverse("admin:invoicing_conference_change", args=[conference.pk])
    response = admin_client.post(
        url, form_data(conference, currency="USD", payment_method_types='["cheque"]')
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "lowercase" in content
    assert "Unknown payment method type" in content


def test_every_model_has_a_changelist(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    make_purchase_order()
    for model in (
        "conference",
        "purchaseorder",
        "stripecustomer",
        "stripeevent",
    ):
        response = admin_client.get(reverse(f"admin:invoicing_{model}_changelist"))
        assert response.status_code == 200, model


def test_approved_po_lines_and_terms_are_read_only(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    draft = make_purchase_order(approve=False)
    approved = make_purchase_order()
    draft_page = admin_client.get(reverse("admin:invoicing_purchaseorder_change", args=[draft.pk]))
    approved_page = admin_client.get(
        reverse("admin:invoicing_purchaseorder_change", args=[approved.pk])
    )
    assert 'name="line_items-0-unit_price"' in draft_page.content.decode()
    assert 'name="line_items-0-unit_price"' not in approved_page.content.decode()
    assert 'name="currency"' in draft_page.content.decode()
    assert 'name="currency"' not in approved_page.content.decode()
