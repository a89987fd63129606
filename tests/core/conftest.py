"""Fixtures of the invoicing core tests: conferences and purchase orders on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.models import Conference, PurchaseOrder
from invoicing.services import purchase_orders
from invoicing.services.purchase_orders import LineItemInput
from invoicing.services.stripe_invoicing import create_stripe_invoice
from tests.stripe_emulator.handle import EmulatorHandle

MakeConference = Callable[..., Conference]


@pytest.fixture(autouse=True)
def _core_tests_run_without_a_worker(request: pytest.FixtureRequest) -> None:
    """Approvals queue a real creation task on commit; the core tests call the services
    themselves, so in transactional tests no worker may consume (it would race them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("embedded_worker_paused")


MakePurchaseOrder = Callable[..., PurchaseOrder]

DEFAULT_LINES = (
    LineItemInput("Gold sponsorship", 1, Decimal("5000.00")),
    LineItemInput("Conference ticket", 3, Decimal("450.00")),
)


def offline_test_key() -> str:
    """A test-mode key for tests that never reach Stripe (no emulator account behind it)."""
    return f"sk_test_offline_{uuid.uuid4().hex}"


@pytest.fixture
def make_conference(db: None) -> MakeConference:
    def make(*, secret_key: str | None = None, **fields: Any) -> Conference:
        slug = fields.pop("slug", f"conf-{uuid.uuid4().hex[:10]}")
        return Conference.objects.create(
            slug=slug,
            name=fields.pop("name", slug.replace("-", " ").title()),
            stripe_secret_key=offline_test_key() if secret_key is None else secret_key,
            stripe_webhook_secret=fields.pop("stripe_webhook_secret", "whsec_test_offline"),
            **fields,
        )

    return make


@pytest.fixture
def make_purchase_order(make_conference: MakeConference) -> MakePurchaseOrder:
    def make(
        *,
        conference: Conference | None = None,
        lines: Sequence[LineItemInput] = DEFAULT_LINES,
        approve: bool = True,
        **fields: Any,
    ) -> PurchaseOrder:
        po = purchase_orders.create_purchase_order(
            conference=conference or make_conference(),
            reference=fields.pop("reference", f"PO-{uuid.uuid4().hex[:8].upper()}"),
            organization_name=fields.pop("organization_name", "Acme Corp"),
            contact_email=fields.pop("contact_email", "billing@acme.example"),
            contact_name=fields.pop("contact_name", "Ada Billing"),
            lines=lines,
            **fields,
        )
        if approve:
            po = purchase_orders.approve_purchase_order(po)
        return po

    return make


@pytest.fixture
def stripe_conference(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    settings: SettingsWrapper,
    make_conference: MakeConference,
) -> Conference:
    """A conference whose Stripe account is a fresh emulator account; our code talks to it."""
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0  # tests that want retries set them
    return make_conference(secret_key=stripe_secret_key)


def invoiced_here(po: PurchaseOrder) -> PurchaseOrder:
    """``po`` approved without the signal (no creation task queued) and invoiced in this process."""
    PurchaseOrder.objects.filter(pk=po.pk).update(status=PurchaseOrder.Status.APPROVED)
    po.refresh_from_db()
    create_stripe_invoice(po)
    po.refresh_from_db()
    return po


def api_calls(emulator: EmulatorHandle, secret_key: str) -> list[tuple[str, str]]:
    """The account's Stripe API requests as (method, path), oldest first."""
    return [(entry["method"], entry["path"]) for entry in emulator.requests(secret_key)]
