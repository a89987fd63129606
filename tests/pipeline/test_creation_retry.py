"""Retry invoice creation after a permanent failure, through the real worker and the emulator.

The organizer fixes what blocked the creation (here the conference's key) and asks for a retry:
the block is lifted, creation resumes from what is stored, and Stripe ends with exactly one
invoice for the PO, also when the failed attempt had already left a draft there.
"""

from __future__ import annotations

from typing import Any

import pytest

from invoicing import background
from invoicing.background import Job
from invoicing.errors import InvalidTransition
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderActivity
from invoicing.selectors import retry_creation_refusal
from invoicing.services.creation_retry import retry_invoice_creation
from tests.core.conftest import MakePurchaseOrder
from tests.pipeline.conftest import wait_for, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from workers import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
BAD_KEY = "sk_test_mistyped-key"


def set_key(conference: Conference, key: str) -> None:
    conference.stripe_secret_key = key
    conference.save(update_fields=["stripe_secret_key"])


def wait_for_block(po: PurchaseOrder) -> PurchaseOrder:
    def blocked() -> bool:
        po.refresh_from_db()
        return po.invoice_creation_blocked

    wait_for(blocked, message=f"{po.reference} never blocked")
    return po


def invoices_of(emulator: EmulatorHandle, key: str) -> list[Any]:
    return list(emulator.client(key).v1.invoices.list({"limit": 100}).data)


def test_a_bad_key_fixed_then_retry_invoices_once(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
) -> None:
    set_key(stripe_conference, BAD_KEY)
    po = wait_for_block(make_purchase_order(conference=stripe_conference))
    assert po.status == Status.APPROVED
    assert "AuthenticationError 401" in po.invoice_error
    # Not fixed yet: a retry is allowed (only Stripe can say the key is good), and fails again.
    assert retry_creation_refusal(po) == ""
    assert background.request(Job.RETRY_INVOICE_CREATION, po.pk, None)
    wait_for(
        lambda: PurchaseOrderActivity.objects.filter(purchase_order=po, kind="error").count() == 2,
        message="the retry with the bad key did not fail again",
    )
    po = wait_for_block(po)
    assert po.status == Status.APPROVED

    set_key(stripe_conference, stripe_secret_key)
    assert background.request(Job.RETRY_INVOICE_CREATION, po.pk, None)
    po = wait_for_status(po, Status.INVOICED)
    wait_for(lambda: not PurchaseOrder.objects.get(pk=po.pk).invoice_error)
    po.refresh_from_db()
    assert po.invoice_creation_blocked is False
    (invoice,) = invoices_of(stripe_emulator, stripe_secret_key)
    assert invoice.id == po.stripe_invoice_id
    assert invoice.status == "open"
    kinds = list(
        PurchaseOrderActivity.objects.filter(purchase_order=po).values_list("kind", flat=True)
    )
    assert kinds == ["approved", "error", "retry", "error", "retry", "invoice_sent"]


def test_retry_reuses_the_draft_the_failed_attempt_left_at_stripe(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    settings: Any,
) -> None:
    # First attempt: the customer and the draft invoice are created, adding the lines fails and
    # retries run out (no retries allowed here) ...
    settings.TASK_MAX_RETRIES = 0
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": "500", "method": "POST", "path": "/add_lines$"}]
    )
    po = make_purchase_order(conference=stripe_conference)
    wait_for(
        lambda: "failed after 0 retries" in PurchaseOrder.objects.get(pk=po.pk).invoice_error,
        message="the first attempt did not fail",
    )
    po.refresh_from_db()
    draft_id = po.stripe_invoice_id
    assert draft_id
    (draft,) = invoices_of(stripe_emulator, stripe_secret_key)
    assert (draft.id, draft.status) == (draft_id, "draft")
    # ... then the key is broken: the next attempt fails for good, the draft stays at Stripe.
    set_key(stripe_conference, BAD_KEY)
    tasks.create_invoice_for_purchase_order.delay(po.pk)
    po = wait_for_block(po)
    assert po.stripe_invoice_id == draft_id

    set_key(stripe_conference, stripe_secret_key)
    assert background.request(Job.RETRY_INVOICE_CREATION, po.pk, None)
    po = wait_for_status(po, Status.INVOICED)
    (invoice,) = invoices_of(stripe_emulator, stripe_secret_key)
    assert (invoice.id, invoice.status) == (draft_id, "open")
    assert po.stripe_invoice_id == draft_id
    # A second retry (a double click, a redelivered message) changes nothing at Stripe.
    assert retry_invoice_creation(purchase_order=po) == po.stripe_invoice_url
    assert [i.id for i in invoices_of(stripe_emulator, stripe_secret_key)] == [draft_id]


def test_retry_is_refused_while_nothing_is_blocked_or_the_amount_is_beyond_stripe(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> None:
    po = make_purchase_order(conference=stripe_conference, approve=False)
    assert "not blocked" in retry_creation_refusal(po)
    # Blocked, but priced beyond what Stripe charges (a row from before the limits were checked):
    # retrying cannot help, the refusal says what to do instead, and nothing changes.
    PurchaseOrder.objects.filter(pk=po.pk).update(
        status=Status.APPROVED, invoice_creation_blocked=True
    )
    po.line_items.update(unit_price=10_000_000)
    po.refresh_from_db()
    assert "more than Stripe can charge" in retry_creation_refusal(po)
    with pytest.raises(InvalidTransition, match=r"not retried: .* Cancel this PO"):
        retry_invoice_creation(purchase_order=po)
    po.refresh_from_db()
    assert po.invoice_creation_blocked is True
    assert not PurchaseOrderActivity.objects.filter(purchase_order=po, kind="retry").exists()
