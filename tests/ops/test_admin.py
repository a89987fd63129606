"""The organizer's admin, through Django's test client on PostgreSQL (Stripe = the emulator)."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderLineItem,
    PurchaseOrderPayment,
    StripeCustomer,
    StripeEvent,
)
from invoicing.services import purchase_orders
from invoicing.services.purchase_orders import LineItemInput
from invoicing.services.stripe_invoicing import create_stripe_invoice, sync_stripe_invoice_status
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.ops.teams import conference_form, manual_payment
from tests.ops.teams import po_form as form_data
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:invoicing_purchaseorder_changelist"


def change_url(po: PurchaseOrder) -> str:
    return reverse("admin:invoicing_purchaseorder_change", args=[po.pk])


def page_text(response: object) -> str:
    content: bytes = response.content  # type: ignore[attr-defined]
    return content.decode()


def messages_of(response: object) -> list[str]:
    return [str(message) for message in response.context["messages"]]  # type: ignore[attr-defined]


@pytest.fixture
def invoiced_po(
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> PurchaseOrder:
    """An approved PO with a real (emulated) invoice, 1,000.00 of 6,350.00 paid by ACH."""
    po = make_purchase_order(conference=stripe_conference)
    create_stripe_invoice(po)
    po.refresh_from_db()
    stripe_emulator.pay_invoice(
        po.stripe_invoice_id, amount=100000, payment_method_type="us_bank_account"
    )
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    assert po.status == PurchaseOrder.Status.PARTIALLY_PAID
    return po


# --- the list -----------------------------------------------------------------------------------


def test_the_list_shows_status_money_and_the_invoice(
    admin_client: Client, invoiced_po: PurchaseOrder
) -> None:
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    html = page_text(response)
    assert invoiced_po.reference in html
    assert "Partially paid" in html
    assert "6,350.00 USD" in html  # total
    assert "1,000.00 USD" in html  # paid
    assert "5,350.00 USD" in html  # balance
    assert invoiced_po.stripe_invoice_number in html
    assert f'href="{invoiced_po.stripe_invoice_url}"' in html


def test_the_list_costs_the_same_queries_for_2_or_12_purchase_orders(
    admin_client: Client, make_purchase_order: MakePurchaseOrder, make_conference: MakeConference
) -> None:
    conference = make_conference()

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse(CHANGELIST))
        assert response.status_code == 200
        return len(queries)

    for _ in range(2):
        po = make_purchase_order(conference=conference)
        purchase_orders.record_payment(
            po, amount=Decimal("100"), method="wire", payment_date=timezone.localdate()
        )
    few = count_queries()
    for _ in range(10):
        make_purchase_order(conference=make_conference())
    many = count_queries()
    assert many == few, f"{few} queries for 2 POs, {many} for 12: a query per row"
    assert page_text(admin_client.get(reverse(CHANGELIST))).count("6,250.00 USD") == 2


def test_filters_and_search(
    admin_client: Client, make_purchase_order: MakePurchaseOrder, make_conference: MakeConference
) -> None:
    pycon = make_conference(slug="pycon")
    djangocon = make_conference(slug="djangocon")
    draft = make_purchase_order(
        conference=pycon, approve=False, reference="PO-DRAFT", contact_email="ap@initech.example"
    )
    approved = make_purchase_order(
        conference=djangocon, reference="PO-APPROVED", organization_name="Globex"
    )
    PurchaseOrder.objects.filter(pk=approved.pk).update(
        stripe_invoice_id="in_searchable123", stripe_invoice_number="GLOBEX-0001"
    )

    def listed(**params: str) -> set[str]:
        response = admin_client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {po.reference for po in response.context["cl"].result_list}

    assert listed(status__exact="draft") == {draft.reference}
    assert listed(conference__id__exact=str(djangocon.pk)) == {approved.reference}
    # The "Today" link of the date filter (aware datetimes, as the filter writes them).
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    assert listed(
        approved_at__gte=str(today), approved_at__lt=str(today + datetime.timedelta(days=1))
    ) == {approved.reference}
    assert listed(approved_at__lt=str(today)) == set()
    assert listed(q="initech") == {draft.reference}
    assert listed(q="globex") == {approved.reference}
    assert listed(q="in_searchable") == {approved.reference}
    assert listed(q="GLOBEX-0001") == {approved.reference}
    assert listed(q="PO-DRAFT") == {draft.reference}


# --- the detail page ----------------------------------------------------------------------------


def test_a_draft_has_editable_lines_and_no_payment_form(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    draft = make_purchase_order(approve=False)
    html = page_text(admin_client.get(change_url(draft)))
    assert 'name="line_items-0-unit_price"' in html
    assert 'name="currency"' in html
    assert "payments-2-0-amount" not in html


def test_an_invoiced_po_shows_the_ledger_read_only_and_offers_a_manual_payment(
    admin_client: Client, invoiced_po: PurchaseOrder
) -> None:
    html = page_text(admin_client.get(change_url(invoiced_po)))
    assert "Ledger: payments, refunds, disputes (read-only)" in html
    assert "1,000.00 USD" in html
    assert invoiced_po.stripe_invoice_id in html
    # Stripe rows and every Stripe field are text, never inputs.
    assert 'name="payments-0-amount"' not in html
    assert 'name="stripe_invoice_id"' not in html
    assert 'name="line_items-0-unit_price"' not in html
    # Read-only prices carry the currency's decimals, not the database's three.
    assert "5,000.00 USD" in html
    assert "450.00 USD" in html
    assert "5000.000" not in html
    assert 'name="currency"' not in html
    assert 'name="notes"' in html
    # A blank row for a wire/check/other payment, without Stripe as a choice.
    assert 'name="payments-2-0-amount"' in html
    method_select = re.search(r'<select name="payments-2-0-method".*?</select>', html, re.S)
    assert method_select is not None
    assert 'value="wire"' in method_select.group(0)
    assert 'value="stripe"' not in method_select.group(0)


def test_a_wire_payment_goes_through_record_payment(
    admin_client: Client, admin_user: User, invoiced_po: PurchaseOrder
) -> None:
    response = admin_client.post(
        change_url(invoiced_po),
        form_data(invoiced_po, **manual_payment(amount="5350.00", reference="WIRE-77")),
        follow=True,
    )
    assert response.status_code == 200
    assert any(
        "recorded a wire transfer payment of 5,350.00 USD" in m for m in messages_of(response)
    )
    invoiced_po.refresh_from_db()
    assert invoiced_po.status == PurchaseOrder.Status.PAID
    wire = invoiced_po.payments.get(method="wire")
    assert wire.amount == Decimal("5350.00")
    assert wire.reference == "WIRE-77"
    assert wire.created_by == admin_user
    assert wire.stripe_invoice_id == ""
    # The Stripe row is untouched.
    assert invoiced_po.payments.filter(method="stripe").count() == 1


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"amount": "0"}, "greater than zero"),
        ({"amount": "10.005"}, "cannot be expressed in USD"),
        ({"amount": "10", "method": "stripe"}, "Select a valid choice"),
        (
            {"amount": "10", "payment_date": "2999-01-01"},
            "cannot be dated in the future",
        ),
    ],
)
def test_a_bad_manual_payment_is_refused_and_changes_nothing(
    admin_client: Client, invoiced_po: PurchaseOrder, fields: dict[str, str], error: str
) -> None:
    before = list(invoiced_po.payments.values_list("pk", flat=True))
    response = admin_client.post(
        change_url(invoiced_po), form_data(invoiced_po, notes="x", **manual_payment(**fields))
    )
    assert response.status_code == 200  # the form again, with the error
    assert error in page_text(response)
    invoiced_po.refresh_from_db()
    assert list(invoiced_po.payments.values_list("pk", flat=True)) == before
    assert invoiced_po.notes == ""  # the whole save was refused


def test_saving_an_invoiced_po_writes_only_what_the_form_changed(
    admin_client: Client, invoiced_po: PurchaseOrder
) -> None:
    before: dict[str, object] = dict(PurchaseOrder.objects.values().get(pk=invoiced_po.pk))
    response = admin_client.post(
        change_url(invoiced_po),
        form_data(
            invoiced_po,
            notes="Customer asked for a PDF copy.",
            reference="HACKED",
            currency="eur",
            stripe_invoice_id="in_forged",
            status="paid",
        ),
    )
    assert response.status_code == 302
    after: dict[str, object] = dict(PurchaseOrder.objects.values().get(pk=invoiced_po.pk))
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {"notes", "last_edited_by_id", "updated_at"}


def test_lines_posted_after_approval_are_ignored(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order(approve=False)
    line = po.line_items.first()
    assert line is not None
    purchase_orders.approve_purchase_order(po)  # someone approved it while the page was open
    data = form_data(
        po,
        **{
            "line_items-TOTAL_FORMS": "1",
            "line_items-INITIAL_FORMS": "1",
            "line_items-0-id": str(line.pk),
            "line_items-0-purchase_order": str(po.pk),
            "line_items-0-description": "Changed",
            "line_items-0-quantity": "99",
            "line_items-0-unit_price": "1.00",
        },
    )
    admin_client.post(change_url(po), data)
    line.refresh_from_db()
    assert (line.description, line.quantity, line.unit_price) == (
        "Gold sponsorship",
        1,
        Decimal("5000.000"),
    )


def test_a_draft_is_created_and_edited_with_its_lines(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference(currency="eur")
    add = reverse("admin:invoicing_purchaseorder_add")
    data = {
        "conference": str(conference.pk),
        "reference": "PO-NEW",
        "organization_name": "Initech",
        "contact_name": "",
        "contact_email": "ap@initech.example",
        "currency": "",
        "notes": "",
        "line_items-TOTAL_FORMS": "2",
        "line_items-INITIAL_FORMS": "0",
        "line_items-MIN_NUM_FORMS": "1",
        "line_items-MAX_NUM_FORMS": "1000",
        "line_items-0-description": "Ticket",
        "line_items-0-quantity": "2",
        "line_items-0-unit_price": "400.00",
        "line_items-1-description": "Workshop",
        "line_items-1-quantity": "1",
        "line_items-1-unit_price": "150.00",
    }
    response = admin_client.post(add, data)
    assert response.status_code == 302, page_text(response)
    po = PurchaseOrder.objects.get(reference="PO-NEW")
    assert po.status == "draft"
    assert po.currency == "eur"
    assert list(po.line_items.values_list("position", "description")) == [
        (1, "Ticket"),
        (2, "Workshop"),
    ]
    assert po.total == Decimal("950.00")

    bad = dict(data, reference="PO-BAD", **{"line_items-0-unit_price": "1.005"})
    response = admin_client.post(add, bad)
    assert response.status_code == 200
    assert "cannot be charged in EUR" in page_text(response)
    assert not PurchaseOrder.objects.filter(reference="PO-BAD").exists()

    # Beyond what Stripe charges on one invoice: refused in the form, before any approval.
    absurd = dict(
        data, reference="PO-ABSURD", approve="on", **{"line_items-0-unit_price": "99999999999.99"}
    )
    response = admin_client.post(add, absurd)
    assert response.status_code == 200
    assert "is more than Stripe can charge on one invoice (999,999.99 EUR at most)" in page_text(
        response
    )
    assert not PurchaseOrder.objects.filter(reference="PO-ABSURD").exists()

    duplicate = dict(data, **{"line_items-0-unit_price": "1.00"})
    response = admin_client.post(add, duplicate)
    assert response.status_code == 200
    assert PurchaseOrder.objects.filter(reference="PO-NEW").count() == 1


def test_only_drafts_can_be_deleted(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    draft = make_purchase_order(approve=False)
    approved = make_purchase_order()
    delete = "admin:invoicing_purchaseorder_delete"
    assert admin_client.get(reverse(delete, args=[approved.pk])).status_code == 403
    assert admin_client.post(reverse(delete, args=[draft.pk]), {"post": "yes"}).status_code == 302
    assert not PurchaseOrder.objects.filter(pk=draft.pk).exists()
    assert PurchaseOrderLineItem.objects.filter(purchase_order_id=draft.pk).count() == 0
    response = admin_client.get(reverse(CHANGELIST))
    assert "delete_selected" not in response.context["action_form"].fields["action"].choices[1:][0]


# --- actions --------------------------------------------------------------------------------------


def run_action(client: Client, action: str, *pos: PurchaseOrder, **extra: str) -> object:
    data = {"action": action, "_selected_action": [str(po.pk) for po in pos], **extra}
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_approve_action_approves_drafts_and_explains_refusals(
    admin_client: Client,
    admin_user: User,
    make_purchase_order: MakePurchaseOrder,
    make_conference: MakeConference,
) -> None:
    draft = make_purchase_order(approve=False, reference="PO-A1")
    already = make_purchase_order(reference="PO-A2")
    keyless = make_purchase_order(
        conference=make_conference(secret_key=""), approve=False, reference="PO-A3"
    )
    confirm = run_action(admin_client, "approve_selected", draft, already, keyless)
    assert "Approve these purchase orders?" in page_text(confirm)
    assert "PO-A1: Acme Corp" in page_text(confirm)
    assert "invoice for 6,350.00 USD to billing@acme.example" in page_text(confirm)
    draft.refresh_from_db()
    assert draft.status == "draft"  # nothing happens before the confirmation
    response = run_action(admin_client, "approve_selected", draft, already, keyless, confirm="yes")
    notes = messages_of(response)
    assert "PO-A1: approved; its Stripe invoice is being created and sent (queued)." in notes
    assert any(m.startswith("PO-A2: not approved: PO PO-A2 is approved") for m in notes)
    assert any(m.startswith("PO-A3: not approved:") and "no Stripe secret key" in m for m in notes)
    draft.refresh_from_db()
    keyless.refresh_from_db()
    assert draft.status == "approved"
    assert draft.approved_by == admin_user
    assert keyless.status == "draft"


# --- conferences ----------------------------------------------------------------------------------

SECRET = "sk_test_AdminMustNeverShowThis1234"


# pytest-django's admin_user signs in with this password; money settings ask for it again.
PASSWORD = "password"


def test_conference_secrets_are_masked_and_never_echoed(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference(secret_key=SECRET, stripe_webhook_secret="whsec_NeverShownAtAll")
    listing = page_text(admin_client.get(reverse("admin:invoicing_conference_changelist")))
    page = page_text(
        admin_client.get(reverse("admin:invoicing_conference_change", args=[conference.pk]))
    )
    for html in (listing, page):
        assert SECRET not in html
        assert "AdminMustNeverShow" not in html
        assert "NeverShownAtAll" not in html
        assert "sk_test_…1234 (test mode)" in html
    assert "set" in page
    assert f"http://testserver/stripe/webhooks/{conference.slug}/" in page
    assert f"register_stripe_webhook --conference {conference.slug}" in page
    # The slug is fixed once the conference exists (it is in the webhook URL and the invoices).
    assert 'name="slug"' not in page


def test_a_blank_secret_keeps_the_stored_one_and_a_new_one_replaces_it(
    admin_client: Client, make_conference: MakeConference
) -> None:
    conference = make_conference(secret_key=SECRET, stripe_webhook_secret="whsec_keepme")
    Conference.objects.filter(pk=conference.pk).update(stripe_webhook_endpoint_id="we_123")
    url = reverse("admin:invoicing_conference_change", args=[conference.pk])

    assert admin_client.post(url, conference_form(conference, name="Renamed")).status_code == 302
    conference.refresh_from_db()
    assert conference.name == "Renamed"
    assert conference.stripe_secret_key == SECRET
    assert conference.stripe_webhook_secret == "whsec_keepme"
    assert conference.stripe_webhook_endpoint_id == "we_123"

    response = admin_client.post(
        url,
        conference_form(
            conference, stripe_secret_key="sk_test_rotated9999", current_password=PASSWORD
        ),
    )
    assert response.status_code == 302
    conference.refresh_from_db()
    assert conference.stripe_secret_key == "sk_test_rotated9999"
    assert conference.stripe_webhook_secret == "whsec_keepme"


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("stripe_secret_key", "pk_test_abc123", "publishable key"),
        ("stripe_secret_key", "hunter2", "looks like sk_test_"),
        ("stripe_webhook_secret", "sk_test_wrongplace", "looks like whsec_"),
        ("currency", "USD", "lowercase"),
        ("payment_method_types", '["cheque"]', "Unknown payment method type"),
    ],
)
def test_bad_conference_settings_are_refused(
    admin_client: Client, make_conference: MakeConference, field: str, value: str, error: str
) -> None:
    conference = make_conference(secret_key=SECRET)
    url = reverse("admin:invoicing_conference_change", args=[conference.pk])
    response = admin_client.post(url, conference_form(conference, **{field: value}))
    assert response.status_code == 200
    html = page_text(response)
    assert error in html
    assert value not in html or field in {"currency", "payment_method_types"}
    conference.refresh_from_db()
    assert conference.stripe_secret_key == SECRET


def test_the_mode_cannot_change_once_there_are_invoices(
    admin_client: Client, invoiced_po: PurchaseOrder, stripe_emulator: EmulatorHandle
) -> None:
    conference = invoiced_po.conference
    url = reverse("admin:invoicing_conference_change", args=[conference.pk])
    live = stripe_emulator.new_secret_key(livemode=True)
    response = admin_client.post(
        url, conference_form(conference, stripe_secret_key=live, current_password=PASSWORD)
    )
    assert response.status_code == 200
    assert "has invoices in test mode" in page_text(response)
    conference.refresh_from_db()
    assert conference.stripe_livemode is False
    # (A rolled key of the same account is fine: tests/ops/test_money_settings.py.)


def test_a_new_conference_can_be_added_with_its_key(admin_client: Client) -> None:
    data = {
        "slug": "pycon-us",
        "name": "PyCon US",
        "currency": "usd",
        "is_active": "on",
        "stripe_secret_key": "sk_test_newconference0001",
        "stripe_webhook_secret": "",
        "invoice_days_until_due": "30",
        "payment_method_types": ["card", "us_bank_account"],
        "invoice_memo": "",
        "invoice_footer": "",
        "current_password": PASSWORD,
    }
    response = admin_client.post(reverse("admin:invoicing_conference_add"), data)
    assert response.status_code == 302
    conference = Conference.objects.get(slug="pycon-us")
    assert conference.stripe_secret_key == "sk_test_newconference0001"
    assert conference.stripe_webhook_secret == ""


# --- Stripe events and customers ------------------------------------------------------------------


def make_event(conference: Conference, **fields: object) -> StripeEvent:
    defaults: dict[str, object] = {
        "stripe_event_id": "evt_admin_1",
        "type": "invoice.paid",
        "livemode": False,
        "payload": {"id": "evt_admin_1", "data": {"object": {"id": "in_payload42"}}},
        "status": StripeEvent.Status.FAILED,
        "attempts": 5,
        "last_error": "EventRejected: Invoice in_payload42 belongs to another conference",
    }
    defaults.update(fields)
    return StripeEvent.objects.create(conference=conference, **defaults)


def test_stripe_events_list_filter_search_and_read_only_detail(
    admin_client: Client, make_conference: MakeConference, make_purchase_order: MakePurchaseOrder
) -> None:
    conference = make_conference()
    failed = make_event(conference)
    make_event(
        conference,
        stripe_event_id="evt_admin_2",
        type="invoice.updated",
        status="processed",
        attempts=1,
        last_error="",
        processed_at=timezone.now(),
        payload={"id": "evt_admin_2", "data": {"object": {"id": "in_other"}}},
    )
    changelist = reverse("admin:invoicing_stripeevent_changelist")
    html = page_text(admin_client.get(changelist))
    assert "evt_admin_1" in html
    assert "EventRejected: Invoice in_payload42" in html

    def listed(**params: str) -> set[str]:
        response = admin_client.get(changelist, params)
        return {event.stripe_event_id for event in response.context["cl"].result_list}

    assert listed(status__exact="failed") == {"evt_admin_1"}
    assert listed(type__exact="invoice.updated") == {"evt_admin_2"}
    assert listed(q="in_payload42") == {"evt_admin_1"}
    assert listed(q="evt_admin_2") == {"evt_admin_2"}

    # Newest first, each with the PO of the invoice it is about (a link), in one query.
    po = make_purchase_order(conference=conference, approve=False, reference="PO-EVT")
    PurchaseOrder.objects.filter(pk=po.pk).update(stripe_invoice_id="in_other")
    response = admin_client.get(changelist)
    rows = [event.stripe_event_id for event in response.context["cl"].result_list]
    assert rows == ["evt_admin_2", "evt_admin_1"]
    assert f'href="{change_url(po)}">PO-EVT</a>' in response.content.decode()

    detail = page_text(
        admin_client.get(reverse("admin:invoicing_stripeevent_change", args=[failed.pk]))
    )
    assert "<pre" in detail
    assert "&quot;in_payload42&quot;" in detail
    assert 'name="payload"' not in detail
    assert 'name="status"' not in detail
    assert admin_client.get(reverse("admin:invoicing_stripeevent_add")).status_code == 403
    delete = reverse("admin:invoicing_stripeevent_delete", args=[failed.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert StripeEvent.objects.filter(pk=failed.pk).exists()


def test_stripe_customers_are_read_only(
    admin_client: Client, make_conference: MakeConference
) -> None:
    customer = StripeCustomer.objects.create(
        conference=make_conference(), email="ap@initech.example", stripe_customer_id="cus_1"
    )
    url = reverse("admin:invoicing_stripecustomer_change", args=[customer.pk])
    html = page_text(admin_client.get(url))
    assert "cus_1" in html
    assert 'name="stripe_customer_id"' not in html
    admin_client.post(url, {"email": "x@y.example", "stripe_customer_id": "cus_forged"})
    customer.refresh_from_db()
    assert customer.stripe_customer_id == "cus_1"


def test_the_ledger_cannot_be_changed_from_anywhere(
    admin_client: Client, invoiced_po: PurchaseOrder
) -> None:
    # No admin page of its own: payments exist only through the PO page's services.
    from django.contrib import admin as django_admin

    assert PurchaseOrderPayment not in django_admin.site._registry
    payment = invoiced_po.payments.get()
    data = form_data(
        invoiced_po,
        **{
            "payments-TOTAL_FORMS": "1",
            "payments-INITIAL_FORMS": "1",
            "payments-0-id": str(payment.pk),
            "payments-0-purchase_order": str(invoiced_po.pk),
            "payments-0-amount": "1.00",
            "payments-0-DELETE": "on",
        },
    )
    admin_client.post(change_url(invoiced_po), data)
    payment.refresh_from_db()
    assert payment.amount == Decimal("1000.000")


def test_a_line_price_too_precise_for_the_currency_is_refused(
    admin_client: Client, make_purchase_order: MakePurchaseOrder, make_conference: MakeConference
) -> None:
    po = make_purchase_order(
        conference=make_conference(currency="jpy"),
        approve=False,
        lines=[LineItemInput("Ticket", 1, Decimal("5000"))],
    )
    line = po.line_items.get()
    data = form_data(
        po,
        **{
            "line_items-TOTAL_FORMS": "1",
            "line_items-INITIAL_FORMS": "1",
            "line_items-0-id": str(line.pk),
            "line_items-0-purchase_order": str(po.pk),
            "line_items-0-description": "Ticket",
            "line_items-0-quantity": "1",
            "line_items-0-unit_price": "5000.50",
        },
    )
    response = admin_client.post(change_url(po), data)
    assert response.status_code == 200
    assert "cannot be charged in JPY" in page_text(response)
    line.refresh_from_db()
    assert line.unit_price == Decimal("5000")


def test_the_site_has_an_icon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


def test_a_blocked_creation_reads_as_a_problem_with_what_to_do(
    admin_client: Client, make_purchase_order: MakePurchaseOrder
) -> None:
    fine = make_purchase_order(approve=False, reference="PO-FINE")
    blocked = make_purchase_order(approve=False, reference="PO-BLOCKED")
    raw = (
        "Invoice creation failed: Stripe AuthenticationError 401: Invalid API Key provided: "
        "sk_test_…-key"
    )
    PurchaseOrder.objects.filter(pk=blocked.pk).update(
        status=PurchaseOrder.Status.APPROVED,
        invoice_error=raw,
        invoice_error_at=timezone.now(),
        invoice_creation_blocked=True,
    )
    listing = page_text(admin_client.get(reverse(CHANGELIST)))
    assert "Invoice creation blocked" in listing
    assert "needs attention" in listing
    attention = page_text(admin_client.get(reverse(CHANGELIST), {"attention": "needed"}))
    assert "PO-BLOCKED" in attention
    assert "PO-FINE" not in attention

    page = unescape(page_text(admin_client.get(change_url(blocked))))
    assert "Stripe did not accept the conference's secret key" in page
    assert "A finance admin enters the right key on the conference's page" in page
    assert "Retry invoice creation" in page
    assert raw in page  # the technical detail stays, below the plain words
    # A PO without a problem shows no retry button and no problem box.
    fine_page = admin_client.get(change_url(fine)).content.decode()
    assert 'value="retry_creation_selected"' not in fine_page
    assert "po-problem" not in fine_page
