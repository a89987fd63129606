"""``register_stripe_webhook`` and ``seed_demo`` against the emulator, on PostgreSQL."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
import stripe
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.management.commands import _demo_money, seed_demo
from invoicing.models import Conference, PurchaseOrder, StripeCustomer, StripeWriteRequest
from invoicing.services.invoice_sync import HANDLED_EVENT_TYPES
from invoicing.services.stripe_invoicing import create_stripe_invoice
from invoicing.services.webhook_endpoints import WEBHOOK_EVENT_TYPES
from tests.core.conftest import MakeConference
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

SITE = "https://invoicing.example.org"


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_registered_event_types_are_the_handled_ones() -> None:
    assert sorted(WEBHOOK_EVENT_TYPES) == sorted(HANDLED_EVENT_TYPES)
    assert len(set(WEBHOOK_EVENT_TYPES)) == len(WEBHOOK_EVENT_TYPES)


def test_register_creates_the_endpoint_at_stripe_and_stores_its_secret(
    stripe_conference: Conference, stripe_emulator: EmulatorHandle
) -> None:
    key = stripe_conference.stripe_secret_key
    out, _ = run("register_stripe_webhook", "--conference", stripe_conference.slug, "--url", SITE)

    stripe_conference.refresh_from_db()
    endpoint_id = stripe_conference.stripe_webhook_endpoint_id
    secret = stripe_conference.stripe_webhook_secret
    assert endpoint_id.startswith("we_")
    assert secret.startswith("whsec_")
    assert secret not in out
    assert endpoint_id in out
    endpoint = stripe_emulator.client(key).v1.webhook_endpoints.retrieve(endpoint_id)
    assert endpoint.url == f"{SITE}/stripe/webhooks/{stripe_conference.slug}/"
    assert sorted(endpoint.enabled_events) == sorted(WEBHOOK_EVENT_TYPES)
    assert endpoint.api_version == "2026-10-28.endive"
    creates = [r for r in stripe_emulator.requests(key) if r["path"] == "/v1/webhook_endpoints"]
    assert [r["method"] for r in creates] == ["POST"]
    # A new signing secret is a change of where the money goes: on the conference's record.
    [change] = stripe_conference.settings_changes.all()
    assert (change.changed_by, change.fields, change.outcome) == (
        None,
        ["stripe_webhook_endpoint_id", "stripe_webhook_secret"],
        "applied",
    )


def test_register_again_keeps_a_current_endpoint_and_replace_swaps_it(
    stripe_conference: Conference, stripe_emulator: EmulatorHandle
) -> None:
    slug = stripe_conference.slug
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    run("register_stripe_webhook", "--conference", slug, "--url", SITE)
    stripe_conference.refresh_from_db()
    first_id = stripe_conference.stripe_webhook_endpoint_id
    first_secret = stripe_conference.stripe_webhook_secret

    out, _ = run("register_stripe_webhook", "--conference", slug, "--url", f"{SITE}/")
    stripe_conference.refresh_from_db()
    assert "already registered" in out
    assert stripe_conference.stripe_webhook_endpoint_id == first_id
    assert stripe_conference.stripe_webhook_secret == first_secret

    out, _ = run("register_stripe_webhook", "--conference", slug, "--url", SITE, "--replace")
    stripe_conference.refresh_from_db()
    assert stripe_conference.stripe_webhook_endpoint_id != first_id
    assert stripe_conference.stripe_webhook_secret != first_secret
    assert f"Deleted the previous endpoint {first_id}" in out
    remaining = client.v1.webhook_endpoints.list().data
    assert [endpoint.id for endpoint in remaining] == [stripe_conference.stripe_webhook_endpoint_id]

    # A new URL is a new endpoint too; the old one goes.
    run("register_stripe_webhook", "--conference", slug, "--url", "https://new.example.org")
    remaining = client.v1.webhook_endpoints.list().data
    assert [endpoint.url for endpoint in remaining] == [
        f"https://new.example.org/stripe/webhooks/{slug}/"
    ]


def test_an_endpoint_deleted_at_stripe_is_registered_again(
    stripe_conference: Conference, stripe_emulator: EmulatorHandle
) -> None:
    run("register_stripe_webhook", "--conference", stripe_conference.slug, "--url", SITE)
    stripe_conference.refresh_from_db()
    old_id = stripe_conference.stripe_webhook_endpoint_id
    client = stripe_emulator.client(stripe_conference.stripe_secret_key)
    client.v1.webhook_endpoints.delete(old_id)

    run("register_stripe_webhook", "--conference", stripe_conference.slug, "--url", SITE)
    stripe_conference.refresh_from_db()
    assert stripe_conference.stripe_webhook_endpoint_id not in {"", old_id}
    assert len(client.v1.webhook_endpoints.list().data) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("invoicing.example.org", "absolute http"),
        ("ftp://invoicing.example.org", "absolute http"),
        ("https://invoicing.example.org/stripe/webhooks/other-conference/", "is not the webhook"),
        ("https://invoicing.example.org/?x=1", "query"),
    ],
)
def test_register_refuses_bad_urls_and_changes_nothing(
    stripe_conference: Conference, stripe_emulator: EmulatorHandle, url: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run("register_stripe_webhook", "--conference", stripe_conference.slug, "--url", url)
    stripe_conference.refresh_from_db()
    assert stripe_conference.stripe_webhook_endpoint_id == ""
    assert stripe_emulator.requests(stripe_conference.stripe_secret_key) == []


def test_register_refuses_a_conference_without_a_key(make_conference: MakeConference) -> None:
    conference = make_conference(secret_key="", stripe_webhook_secret="")
    with pytest.raises(CommandError, match="has no Stripe secret key"):
        run("register_stripe_webhook", "--conference", conference.slug, "--url", SITE)


def test_register_names_the_conferences_when_the_slug_is_unknown(
    make_conference: MakeConference,
) -> None:
    make_conference(slug="pycon-2026")
    with pytest.raises(CommandError, match="pycon-2026"):
        run("register_stripe_webhook", "--conference", "nope", "--url", SITE)


def test_register_refuses_plain_http_for_a_live_key(
    make_conference: MakeConference, stripe_emulator: EmulatorHandle, settings: SettingsWrapper
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    key = stripe_emulator.new_secret_key(livemode=True)
    conference = make_conference(secret_key=key)
    with pytest.raises(CommandError, match="https"):
        run("register_stripe_webhook", "--conference", conference.slug, "--url", "http://x.org")
    out, _ = run("register_stripe_webhook", "--conference", conference.slug, "--url", SITE)
    assert "live mode" in out


def test_a_stripe_refusal_is_a_clear_error_without_the_key(
    make_conference: MakeConference, stripe_emulator: EmulatorHandle, settings: SettingsWrapper
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    key = stripe_emulator.new_secret_key()
    stripe_emulator.configure(key, fail_next=["500"])
    conference = make_conference(secret_key=key)
    with pytest.raises(CommandError, match="Stripe refused") as raised:
        run("register_stripe_webhook", "--conference", conference.slug, "--url", SITE)
    assert key not in str(raised.value)
    conference.refresh_from_db()
    assert conference.stripe_webhook_secret == "whsec_test_offline"  # untouched


# --- seed_demo ------------------------------------------------------------------------------


@pytest.fixture
def demo_settings(
    settings: SettingsWrapper, stripe_emulator: EmulatorHandle, var_dir: Path
) -> EmulatorHandle:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    return stripe_emulator


# Paid in full by card, then refunded in full through the organizer's refund request.
DEMO_REFUNDED_STATUS = "refunded"


def seed(key: str, *extra: str) -> str:
    out, _ = run("seed_demo", "--stripe-key", key, "--site-url", "http://127.0.0.1:8765", *extra)
    return out


def test_seed_demo_creates_everything_once(demo_settings: EmulatorHandle, var_dir: Path) -> None:
    key = demo_settings.new_secret_key()
    # This test's own reads below use a raw client outside our limiter, right after the seed's
    # calls: the sandbox's 25 requests/s would answer them 429.
    demo_settings.configure(key, rate_limit=None)
    out = seed(key)

    conference = Conference.objects.get(slug=seed_demo.DEMO_SLUG)
    assert conference.stripe_secret_key == key
    assert conference.stripe_webhook_secret.startswith("whsec_")
    assert conference.stripe_webhook_secret not in out
    endpoint = demo_settings.client(key).v1.webhook_endpoints.retrieve(
        conference.stripe_webhook_endpoint_id
    )
    assert endpoint.url == "http://127.0.0.1:8765/stripe/webhooks/demo/"

    password = (var_dir / seed_demo.PASSWORD_FILE_NAME).read_text().strip()
    assert f"Admin login: admin / {password}" in out
    assert (var_dir / seed_demo.PASSWORD_FILE_NAME).stat().st_mode & 0o077 == 0
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    assert admin.check_password(password)

    statuses = dict(
        PurchaseOrder.objects.filter(conference=conference).values_list("reference", "status")
    )
    assert statuses == {
        "DEMO-1001": "draft",
        "DEMO-1002": "draft",
        "DEMO-1003": "draft",
        "DEMO-1004": "approved",
        "DEMO-1005": "cancelled",
        "DEMO-1006": DEMO_REFUNDED_STATUS,
        "DEMO-1007": "invoiced",
        "DEMO-1008": "invoiced",
    }
    approved = PurchaseOrder.objects.get(reference="DEMO-1004")
    assert approved.approved_by == admin
    # The demo's money going back: a refund of a card payment, a credit note lowering an invoice.
    client = demo_settings.client(key)
    refunded = PurchaseOrder.objects.get(reference="DEMO-1006")
    (refund,) = client.v1.refunds.list().data
    assert (refund.amount, refund.status) == (235000, "succeeded")
    assert refunded.amount_received == 0
    assert refund.metadata is not None
    assert refund.metadata.to_dict()["purchase_order"] == refunded.reference
    reduced = PurchaseOrder.objects.get(reference="DEMO-1007")
    (note,) = client.v1.credit_notes.list({"invoice": reduced.stripe_invoice_id}).data
    assert (note.amount, note.memo) == (50000, _demo_money.REDUCE_REASON)
    assert reduced.stripe_amount_remaining == Decimal("2000.00")
    by_line = PurchaseOrder.objects.get(reference="DEMO-1008")
    (note,) = client.v1.credit_notes.list({"invoice": by_line.stripe_invoice_id}).data
    (credited,) = client.v1.credit_notes.line_items.list(note.id).data
    assert (credited.type, credited.quantity, credited.amount) == ("invoice_line_item", 2, 40000)
    assert by_line.stripe_amount_remaining == Decimal("2100.00")
    assert set(StripeWriteRequest.objects.values_list("state", flat=True)) == {"succeeded"}

    # Idempotent: nothing new, same endpoint, same password.
    again = seed(key)
    assert "kept" in again
    assert f"Admin login: admin / {password}" in again
    assert PurchaseOrder.objects.filter(conference=conference).count() == 8
    assert len(client.v1.refunds.list().data) == 1
    assert Conference.objects.count() == 1
    conference_after = Conference.objects.get(pk=conference.pk)
    assert conference_after.stripe_webhook_endpoint_id == conference.stripe_webhook_endpoint_id
    assert len(demo_settings.client(key).v1.webhook_endpoints.list().data) == 1


def test_seed_demo_starts_over_when_the_emulator_forgot_the_account(
    demo_settings: EmulatorHandle,
) -> None:
    key = demo_settings.new_secret_key()
    seed(key)
    approved = PurchaseOrder.objects.get(reference="DEMO-1004")
    create_stripe_invoice(approved)
    approved.refresh_from_db()
    assert approved.stripe_invoice_id
    # DEMO-1004's customer, and those of the refunded and the reduced POs (invoiced by the seed).
    assert StripeCustomer.objects.exclude(stripe_customer_id="").count() == 4

    # A restarted emulator is an empty account: same key, nothing behind it. A fresh key is the
    # same situation without restarting the session's emulator.
    fresh = demo_settings.new_secret_key()
    out = seed(fresh)
    assert "reset the demo conference" in out
    # Only those the new seed made again, in the new account.
    customers = StripeCustomer.objects.values_list("email", "stripe_customer_id")
    assert {email for email, _ in customers} == {
        "ap@stark.example",
        "payables@wayne.example",
        "ap@cyberdyne.example",
    }
    known = {customer.id for customer in demo_settings.client(fresh).v1.customers.list().data}
    assert {customer_id for _, customer_id in customers} == known
    po = PurchaseOrder.objects.get(reference="DEMO-1004")
    assert po.pk != approved.pk
    assert po.stripe_invoice_id == ""
    assert po.status == "approved"
    conference = Conference.objects.get(slug="demo")
    endpoints = demo_settings.client(fresh).v1.webhook_endpoints.list().data
    assert [endpoint.id for endpoint in endpoints] == [conference.stripe_webhook_endpoint_id]


def test_seed_demo_keeps_the_data_while_the_account_knows_it(
    demo_settings: EmulatorHandle,
) -> None:
    key = demo_settings.new_secret_key()
    seed(key)
    approved = PurchaseOrder.objects.get(reference="DEMO-1004")
    create_stripe_invoice(approved)
    out = seed(key)
    assert "reset" not in out
    assert PurchaseOrder.objects.get(reference="DEMO-1004").pk == approved.pk


def test_seed_demo_refuses_without_the_emulator(settings: SettingsWrapper, var_dir: Path) -> None:
    settings.STRIPE_API_BASE = ""
    with pytest.raises(CommandError, match="STRIPE_API_BASE"):
        run("seed_demo")
    assert not Conference.objects.exists()


def test_seed_demo_takes_an_explicit_password(demo_settings: EmulatorHandle) -> None:
    seed(demo_settings.new_secret_key(), "--admin-password", "correct-horse-battery")
    assert get_user_model().objects.get(username="admin").check_password("correct-horse-battery")


def test_seed_demo_reports_an_unreachable_emulator(
    settings: SettingsWrapper, var_dir: Path
) -> None:
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    with pytest.raises(CommandError, match="refused or failed"):
        run("seed_demo")
    assert not stripe.api_key  # nothing global was set on the way
