"""Every path into ``approved`` queues exactly one creation task after commit (real worker).

Nothing in these tests calls a task: the approval's signal queues it, the session's embedded
worker runs it against the emulator, and the test watches the PO and the emulator's account.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from invoicing.models import Conference, PurchaseOrder
from invoicing.services import purchase_orders
from tests.core.conftest import MakePurchaseOrder
from tests.ops.teams import lines_as_posted, po_form
from tests.pipeline.conftest import PublishLog, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
CREATE = "create_invoice_for_purchase_order"


def assert_invoiced_once(
    po: PurchaseOrder, emulator: EmulatorHandle, key: str, published: PublishLog
) -> None:
    wait_for_status(po, Status.INVOICED)
    assert po.stripe_invoice_url.startswith(emulator.base_url)
    invoices = emulator.client(key).v1.invoices.list({"limit": 100}).data
    assert [(i.id, i.status) for i in invoices] == [(po.stripe_invoice_id, "open")]
    assert invoices[0].hosted_invoice_url == po.stripe_invoice_url
    assert po.invoice_sent_at is not None
    sends = [e for e in emulator.requests(key) if e["path"].endswith("/send")]
    assert len(sends) == 1
    assert len(published.of(CREATE, po.pk)) == 1


def test_the_approval_service_queues_the_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
) -> None:
    po = make_purchase_order(conference=stripe_conference, approve=False)
    purchase_orders.approve_purchase_order(po)
    assert_invoiced_once(po, stripe_emulator, stripe_secret_key, published)


def test_a_plain_save_into_approved_queues_the_invoice_and_a_second_save_nothing(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
) -> None:
    po = make_purchase_order(conference=stripe_conference, approve=False)
    po = PurchaseOrder.objects.get(pk=po.pk)
    po.status = Status.APPROVED
    po.save()
    po.notes = "saved again while approved"
    po.save()
    assert_invoiced_once(po, stripe_emulator, stripe_secret_key, published)
    po.notes = "and once more after invoicing"
    po.save()
    fresh = PurchaseOrder.objects.get(pk=po.pk)
    fresh.save()
    assert len(published.of(CREATE, po.pk)) == 1


def test_the_admin_action_queues_one_invoice_per_po(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
    admin_client: Client,
    settings: Any,
    tmp_path: Any,
) -> None:
    settings.STATIC_ROOT = tmp_path
    po = make_purchase_order(conference=stripe_conference, approve=False)
    response = admin_client.post(
        reverse("admin:invoicing_purchaseorder_changelist"),
        {"action": "approve_selected", "_selected_action": [str(po.pk)], "confirm": "yes"},
    )
    assert response.status_code == 302
    assert_invoiced_once(po, stripe_emulator, stripe_secret_key, published)
    # Approving again (already approved) is refused and queues nothing.
    admin_client.post(
        reverse("admin:invoicing_purchaseorder_changelist"),
        {"action": "approve_selected", "_selected_action": [str(po.pk)], "confirm": "yes"},
    )
    assert len(published.of(CREATE, po.pk)) == 1


def test_the_admin_edit_form_approves_and_queues_the_invoice(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
    admin_client: Client,
    settings: Any,
    tmp_path: Any,
) -> None:
    settings.STATIC_ROOT = tmp_path
    po = make_purchase_order(conference=stripe_conference, approve=False)
    url = reverse("admin:invoicing_purchaseorder_change", args=[po.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="approve"' in page.content.decode()
    form = admin_form_data(po, approve=True)
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert_invoiced_once(po, stripe_emulator, stripe_secret_key, published)
    # The approved PO's form offers no approval, and saving it queues nothing.
    assert 'name="approve"' not in admin_client.get(url).content.decode()


def admin_form_data(po: PurchaseOrder, *, approve: bool) -> dict[str, str]:
    data = {**po_form(po, notes="approved from the form"), **lines_as_posted(po)}
    if approve:
        data["approve"] = "on"
    return data


def test_a_rolled_back_approval_queues_nothing(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    published: PublishLog,
) -> None:
    po = make_purchase_order(conference=stripe_conference, approve=False)

    class Abort(Exception):
        pass

    def approve_then_fail() -> None:
        with transaction.atomic():
            purchase_orders.approve_purchase_order(po)
            raise Abort

    with pytest.raises(Abort):
        approve_then_fail()
    po.refresh_from_db()
    assert po.status == Status.DRAFT
    assert published.of(CREATE) == []
    # Then a real approval: the worker is alive, and only this one reaches Stripe.
    purchase_orders.approve_purchase_order(po)
    assert_invoiced_once(po, stripe_emulator, stripe_secret_key, published)
