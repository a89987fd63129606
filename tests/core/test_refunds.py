"""Refunds and reductions an organizer asks for, against the emulator (services, no worker).

The request is our row first, checked in the organizer's words; the Stripe side makes exactly one
refund per planned charge (newest payment first) or one credit note, however often it runs and
wherever it stopped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from django.contrib.auth.models import User

from invoicing.errors import InvalidTransition
from invoicing.models import (
    Conference,
    ConferenceRole,
    PurchaseOrder,
    PurchaseOrderPayment,
    Role,
    StripeWriteRequest,
)
from invoicing.selectors import cancel_refusal, refundable_amount, write_request_outcome
from invoicing.services.amount_owed import process_reduce_request
from invoicing.services.reconciliation import reconcile_conference
from invoicing.services.refunds import process_refund_request
from invoicing.services.stripe_invoicing import sync_stripe_invoice_status
from invoicing.services.stripe_write_requests import (
    InvalidStripeWriteRequest,
    apply_refund_view,
    record_request,
)
from tests.core.conftest import MakePurchaseOrder, invoiced_here
from tests.stripe_emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

Status = PurchaseOrder.Status
Kind = StripeWriteRequest.Kind
State = StripeWriteRequest.State
Entry = PurchaseOrderPayment.Kind


@pytest.fixture
def invoiced(
    stripe_conference: Conference, make_purchase_order: MakePurchaseOrder
) -> PurchaseOrder:
    """An invoiced PO of 6,350.00 USD on a fresh emulator account (no webhooks: syncs only)."""
    return invoiced_here(make_purchase_order(conference=stripe_conference, approve=False))


def paid(emulator: EmulatorHandle, po: PurchaseOrder, *amounts: int, method: str = "card") -> Any:
    for amount in amounts:
        emulator.pay_invoice(po.stripe_invoice_id, amount=amount, payment_method_type=method)
    sync_stripe_invoice_status(po)
    po.refresh_from_db()
    return po


def person(conference: Conference, role: Role, name: str) -> User:
    user = User.objects.create_user(username=name, is_staff=True)
    ConferenceRole.objects.create(conference=conference, user=user, role=role)
    return user


def refunds_at_stripe(emulator: EmulatorHandle, key: str) -> list[Any]:
    return list(emulator.client(key).v1.refunds.list({"limit": 100}).data)


def ask(
    po: PurchaseOrder, kind: str, amount: str, by: User, reason: str = "Sponsor dropped out"
) -> StripeWriteRequest:
    return record_request(
        purchase_order=po, kind=kind, amount=Decimal(amount), reason=reason, requested_by=by
    )


def test_a_full_card_refund_gives_back_the_charge_once(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    po = paid(stripe_emulator, invoiced, 635000)
    row = ask(po, Kind.REFUND, "6350.00", admin_user)
    process_refund_request(write_request=row)
    process_refund_request(write_request=row)  # a redelivered task: nothing more happens
    assert row.state == State.SUCCEEDED
    (refund,) = refunds_at_stripe(stripe_emulator, stripe_secret_key)
    assert (refund.amount, refund.status) == (635000, "succeeded")
    assert refund.metadata is not None
    assert refund.metadata.to_dict() == {
        "purchase_order": po.reference,
        "refund_request": str(row.pk),
        "reason": "Sponsor dropped out",
    }
    assert row.refund_ids == [refund.id]
    # The ledger: one negative entry keyed by the refund, and the PO has given everything back.
    po.refresh_from_db()
    entry = PurchaseOrderPayment.objects.get(purchase_order=po, kind=Entry.REFUND)
    assert (entry.amount, entry.stripe_object_id) == (Decimal("-6350.00"), refund.id)
    assert (po.amount_received, po.status) == (0, Status.REFUNDED)


def test_a_partial_refund_takes_the_newest_payment_first(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    po = paid(stripe_emulator, invoiced, 200000)
    stripe_emulator.advance_clock(60, secret_key=stripe_secret_key)
    po = paid(stripe_emulator, po, 435000)
    row = ask(po, Kind.REFUND, "5000.00", admin_user)
    process_refund_request(write_request=row)
    assert row.state == State.SUCCEEDED
    client = stripe_emulator.client(stripe_secret_key)
    by_charge = {r.charge: r.amount for r in refunds_at_stripe(stripe_emulator, stripe_secret_key)}
    charges = sorted(client.v1.charges.list({"limit": 10}).data, key=lambda charge: charge.created)
    older, newer = charges
    assert by_charge == {newer.id: 435000, older.id: 65000}
    assert [item["amount"] for item in row.plan] == [435000, 65000]
    po.refresh_from_db()
    refunded = PurchaseOrderPayment.objects.filter(purchase_order=po, kind=Entry.REFUND)
    assert sorted(entry.amount for entry in refunded) == [Decimal("-4350.00"), Decimal("-650.00")]
    # What was given back is owed no more: the PO is paid, as Stripe's invoice is.
    assert (po.amount_received, po.balance_due, po.status) == (Decimal("1350.00"), 0, Status.PAID)


def test_a_crash_after_stripe_refunded_resumes_without_refunding_again(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    """The refund happens at Stripe, the answer is lost: our row has no refund id yet."""
    po = paid(stripe_emulator, invoiced, 635000)
    row = ask(po, Kind.REFUND, "1000.00", admin_user)
    stripe_emulator.configure(
        stripe_secret_key,
        fail_next=[{"error": "reset_after_commit", "method": "POST", "path": "/v1/refunds$"}],
    )
    with pytest.raises(stripe.APIConnectionError):
        process_refund_request(write_request=row)
    row.refresh_from_db()
    assert row.state == State.QUEUED
    assert row.refund_ids == []  # the crash came before our row learned the refund
    assert len(refunds_at_stripe(stripe_emulator, stripe_secret_key)) == 1
    process_refund_request(write_request=row)
    (refund,) = refunds_at_stripe(stripe_emulator, stripe_secret_key)
    assert (row.state, row.refund_ids, refund.amount) == (State.SUCCEEDED, [refund.id], 100000)
    assert [e.amount for e in PurchaseOrderPayment.objects.filter(kind=Entry.REFUND)] == [
        Decimal("-1000.00")
    ]


def test_a_server_error_stripe_replays_moves_the_request_to_a_fresh_key(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    """Stripe stores a 500 under the key and replays it for a day: the next run must not reuse
    the key (the charge's refunds are listed first, so a fresh key cannot refund twice)."""
    po = paid(stripe_emulator, invoiced, 635000)
    row = ask(po, Kind.REFUND, "100.00", admin_user)
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": "500", "method": "POST", "path": "/v1/refunds$"}]
    )
    with pytest.raises(stripe.APIError):
        process_refund_request(write_request=row)
    row.refresh_from_db()
    assert (row.state, row.key_epoch) == (State.QUEUED, 1)
    process_refund_request(write_request=row)
    (refund,) = refunds_at_stripe(stripe_emulator, stripe_secret_key)
    assert (row.state, refund.amount) == (State.SUCCEEDED, 10000)
    keys = [
        entry["idempotency_key"]
        for entry in stripe_emulator.requests(stripe_secret_key)
        if entry["method"] == "POST" and entry["path"] == "/v1/refunds"
    ]
    assert keys == [f"refund-{row.uid}-{refund.charge}", f"refund-{row.uid}-{refund.charge}-e1"]


def test_over_refund_is_refused_before_anything_is_saved_or_sent(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    po = paid(stripe_emulator, invoiced, 200000)
    stripe_emulator.clear_requests(stripe_secret_key)
    with pytest.raises(InvalidStripeWriteRequest) as refused:
        ask(po, Kind.REFUND, "2000.01", admin_user)
    assert "2000.01 USD is more than what can still be refunded (2000.00 USD)" in str(refused.value)
    with pytest.raises(InvalidStripeWriteRequest, match="at most 2 decimal"):
        ask(po, Kind.REFUND, "10.005", admin_user)
    with pytest.raises(InvalidStripeWriteRequest, match="greater than zero"):
        ask(po, Kind.REFUND, "0", admin_user)
    with pytest.raises(InvalidStripeWriteRequest, match="give a reason"):
        ask(po, Kind.REFUND, "10.00", admin_user, reason="  ")
    # A refund under way speaks for its amount: a second one cannot spend it again.
    ask(po, Kind.REFUND, "1500.00", admin_user)
    with pytest.raises(InvalidStripeWriteRequest, match=r"than what can still be refunded \(500"):
        ask(po, Kind.REFUND, "600.00", admin_user)
    assert StripeWriteRequest.objects.filter(purchase_order=po).count() == 1
    assert stripe_emulator.requests(stripe_secret_key) == []


def test_what_stripe_cannot_give_back_fails_the_request_and_refunds_nothing(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    """Refunded in the Dashboard meanwhile: Stripe has less left than our request asks."""
    po = paid(stripe_emulator, invoiced, 200000)
    row = ask(po, Kind.REFUND, "1500.00", admin_user)
    client = stripe_emulator.client(stripe_secret_key)
    (charge,) = client.v1.charges.list({"limit": 10}).data
    client.v1.refunds.create({"charge": charge.id, "amount": 100000})
    with pytest.raises(InvalidTransition, match=r"at most 1000\.00 USD"):
        process_refund_request(write_request=row)
    row.refresh_from_db()
    assert (row.state, row.plan) == (State.FAILED, [])
    assert "nothing was refunded" in row.error
    assert len(refunds_at_stripe(stripe_emulator, stripe_secret_key)) == 1


def test_a_charge_whose_dispute_was_won_is_refunded_and_one_still_disputed_is_not(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    """Stripe keeps ``Charge.disputed`` set after a win, and refunds the charge again then."""
    po = paid(stripe_emulator, invoiced, 200000, 435000)
    client = stripe_emulator.client(stripe_secret_key)
    older, newer = sorted(client.v1.charges.list({"limit": 10}).data, key=lambda c: c.amount)
    won = stripe_emulator.open_dispute(older.id)["dispute"]["id"]
    stripe_emulator.close_dispute(won, won=True)
    stripe_emulator.open_dispute(newer.id)  # still open: Stripe refuses to refund it
    assert reconcile_conference(conference=po.conference).errors == 0
    po.refresh_from_db()
    assert refundable_amount(po) == Decimal("2000.00")  # the reinstated 2,000.00 only
    assert client.v1.charges.retrieve(older.id).disputed is True

    row = ask(po, Kind.REFUND, "1500.00", admin_user)
    process_refund_request(write_request=row)
    row.refresh_from_db()
    assert (row.state, row.error) == (State.SUCCEEDED, "")
    (refund,) = refunds_at_stripe(stripe_emulator, stripe_secret_key)
    assert (refund.charge, refund.amount, refund.status) == (older.id, 150000, "succeeded")


def test_a_po_paid_through_stripe_is_cancelled_once_its_payments_are_refunded(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    admin_user: User,
) -> None:
    po = paid(stripe_emulator, invoiced, 635000)
    assert cancel_refusal(po).startswith("it is paid: refund the payments first, then cancel")
    process_refund_request(write_request=ask(po, Kind.REFUND, "6350.00", admin_user))
    po.refresh_from_db()
    assert (po.status, cancel_refusal(po)) == (Status.REFUNDED, "")


def test_an_ach_refund_waits_for_the_bank(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    po = paid(stripe_emulator, invoiced, 300000, method="us_bank_account")
    row = ask(po, Kind.REFUND, "3000.00", admin_user)
    process_refund_request(write_request=row)
    (refund,) = refunds_at_stripe(stripe_emulator, stripe_secret_key)
    assert (refund.status, row.state) == ("pending", State.PENDING)
    # Nothing in the ledger until the bank answers; meanwhile the money is spoken for.
    assert not PurchaseOrderPayment.objects.filter(kind=Entry.REFUND).exists()
    with pytest.raises(InvalidStripeWriteRequest, match="refunded already"):
        ask(po, Kind.REFUND, "0.01", admin_user)


def test_refunds_take_a_finance_admin(
    invoiced: PurchaseOrder, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    po = paid(stripe_emulator, invoiced, 200000)
    organizer = person(po.conference, Role.ORGANIZER, "olga")
    finance = person(po.conference, Role.FINANCE, "fiona")
    with pytest.raises(InvalidStripeWriteRequest, match="only a finance admin"):
        ask(po, Kind.REFUND, "10.00", organizer)
    row = ask(po, Kind.REFUND, "10.00", finance)
    # The role is asked again when the worker runs: revoked meanwhile, nothing is refunded.
    ConferenceRole.objects.filter(user=finance).update(role=Role.ORGANIZER)
    with pytest.raises(InvalidTransition, match="only a finance admin"):
        process_refund_request(write_request=row)
    assert refunds_at_stripe(stripe_emulator, stripe_secret_key) == []


def test_reducing_the_amount_owed_credits_the_open_invoice_once(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
) -> None:
    po = paid(stripe_emulator, invoiced, 100000)
    organizer = person(po.conference, Role.ORGANIZER, "otto")
    viewer = person(po.conference, Role.VIEWER, "vera")
    with pytest.raises(InvalidStripeWriteRequest, match="only an organizer"):
        ask(po, Kind.REDUCE, "10.00", viewer)
    with pytest.raises(InvalidStripeWriteRequest, match=r"what the invoice still asks \(5350"):
        ask(po, Kind.REDUCE, "5350.01", organizer)
    row = ask(po, Kind.REDUCE, "350.00", organizer, reason="Booth cancelled")
    process_reduce_request(write_request=row)
    process_reduce_request(write_request=row)
    client = stripe_emulator.client(stripe_secret_key)
    (note,) = client.v1.credit_notes.list({"invoice": po.stripe_invoice_id}).data
    assert (note.amount, note.pre_payment_amount, note.memo) == (35000, 35000, "Booth cancelled")
    assert note.metadata is not None
    assert note.metadata.to_dict() == {
        "purchase_order": po.reference,
        "credit_note_request": str(row.pk),
        "purpose": "reduce",
    }
    invoice = client.v1.invoices.retrieve(po.stripe_invoice_id)
    assert (invoice.amount_remaining, invoice.status) == (500000, "open")
    po.refresh_from_db()
    assert po.stripe_amount_remaining == Decimal("5000.00")
    # The PO owes 350.00 less: 6,000.00, of which 1,000.00 is paid.
    (credit,) = po.credits.all()
    assert (credit.stripe_credit_note_id, credit.amount, credit.purpose) == (
        note.id,
        Decimal("350.00"),
        "reduce",
    )
    assert (po.amount_owed, po.balance_due) == (Decimal("6000.00"), Decimal("5000.00"))
    assert (row.state, row.stripe_credit_note_id) == (State.SUCCEEDED, note.id)


def test_a_reduction_brings_in_a_payment_no_webhook_brought_yet(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
) -> None:
    """The reduction applies the invoice as Stripe has it; a view without
    ``amount_paid_off_stripe`` could not record the card payment yet would move the PO's mirror,
    and the reconciliation, which skips invoices whose mirror is up to date, would never add it."""
    stripe_emulator.pay_invoice(
        invoiced.stripe_invoice_id, amount=100000, payment_method_type="card"
    )  # its webhooks are late: the ledger has not seen it
    organizer = person(invoiced.conference, Role.ORGANIZER, "otto")
    row = ask(invoiced, Kind.REDUCE, "500.00", organizer, reason="One ticket fewer")
    process_reduce_request(write_request=row)
    assert reconcile_conference(conference=invoiced.conference).errors == 0
    po = PurchaseOrder.objects.get(pk=invoiced.pk)
    assert (po.stripe_amount_paid, po.amount_received) == (Decimal("1000.00"), Decimal("1000.00"))
    assert (po.amount_owed, po.balance_due) == (Decimal("5850.00"), Decimal("4850.00"))
    assert po.status == Status.PARTIALLY_PAID


def test_a_reduction_refused_when_it_runs_makes_no_credit_note(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    """Paid in full after the organizer asked: the invoice is no longer open."""
    row = ask(invoiced, Kind.REDUCE, "100.00", admin_user)
    stripe_emulator.pay_invoice(invoiced.stripe_invoice_id)
    with pytest.raises(InvalidTransition, match="is paid; only an open invoice"):
        process_reduce_request(write_request=row)
    row.refresh_from_db()
    assert row.state == State.FAILED
    client = stripe_emulator.client(stripe_secret_key)
    assert client.v1.credit_notes.list({"invoice": invoiced.stripe_invoice_id}).data == []


def test_reduce_is_refused_without_an_open_invoice(
    invoiced: PurchaseOrder, stripe_emulator: EmulatorHandle, admin_user: User
) -> None:
    paid(stripe_emulator, invoiced, 635000)
    with pytest.raises(InvalidStripeWriteRequest, match="its invoice is paid"):
        ask(invoiced, Kind.REDUCE, "1.00", admin_user)


def test_the_request_follows_its_ach_refunds_at_the_bank_one_failing_fails_it(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    """No webhooks here: the reconciliation brings the bank's answers, as after lost events."""
    po = paid(stripe_emulator, invoiced, 200000, method="us_bank_account")
    stripe_emulator.advance_clock(60, secret_key=stripe_secret_key)
    po = paid(stripe_emulator, po, 435000, method="us_bank_account")
    row = ask(po, Kind.REFUND, "5000.00", admin_user)
    process_refund_request(write_request=row)
    newer, older = row.refund_ids  # newest payment first: 4,350.00 then 650.00
    assert (row.state, write_request_outcome(row)) == (State.PENDING, "Sent, waiting for the bank")
    assert refundable_amount(po) == Decimal("1350.00")

    stripe_emulator.fail_refund(newer, failure_reason="declined")
    assert reconcile_conference(conference=po.conference).errors == 0
    row.refresh_from_db()
    assert (row.state, write_request_outcome(row)) == (State.FAILED, "Failed at the bank")
    assert row.error == (
        f"Stripe could not refund 4350.00 USD ({newer}): the customer's bank declined it "
        "(declined). That money was not given back; it may be refunded again."
    )
    # The failed 4,350.00 may be refunded again; the 650.00 still at the bank stays spoken for.
    assert refundable_amount(po) == Decimal("5700.00")

    stripe_emulator.settle_refund(older)
    assert reconcile_conference(conference=po.conference).errors == 0
    settled = StripeWriteRequest.objects.get(pk=row.pk)
    assert (settled.state, settled.error) == (State.FAILED, row.error)  # failed stays failed
    assert [item["status"] for item in settled.plan] == ["failed", "succeeded"]
    assert refundable_amount(po) == Decimal("5700.00")
    po.refresh_from_db()
    assert po.amount_received == Decimal("5700.00")

    # A stale view (the refund as it was when sent) changes neither the ledger nor the request.
    stale = stripe_emulator.client(stripe_secret_key).v1.refunds.retrieve(newer).to_dict()
    stale.update(status="pending", failure_reason=None)
    apply_refund_view(purchase_order=po, refund=stale, source="test")
    assert StripeWriteRequest.objects.get(pk=row.pk).plan == settled.plan


def ach_refund_sent(
    emulator: EmulatorHandle, po: PurchaseOrder, by: User
) -> tuple[PurchaseOrder, StripeWriteRequest, str]:
    """3,000.00 paid by ACH, 1,000.00 of it refunded by request: sent, the bank not answered."""
    po = paid(emulator, po, 300000, method="us_bank_account")
    row = ask(po, Kind.REFUND, "1000.00", by)
    process_refund_request(write_request=row)
    (refund_id,) = row.refund_ids
    return po, row, refund_id


def test_the_request_is_done_once_the_bank_settles_its_refund(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    admin_user: User,
) -> None:
    po, row, refund_id = ach_refund_sent(stripe_emulator, invoiced, admin_user)
    assert row.state == State.PENDING
    assert refundable_amount(po) == Decimal("2000.00")
    reconcile_conference(conference=po.conference)  # the bank has not answered: still pending
    row.refresh_from_db()
    assert row.state == State.PENDING
    stripe_emulator.settle_refund(refund_id)
    assert reconcile_conference(conference=po.conference).errors == 0
    row.refresh_from_db()
    assert (row.state, row.error, write_request_outcome(row)) == (State.SUCCEEDED, "", "Done")
    assert refundable_amount(po) == Decimal("2000.00")
    po.refresh_from_db()
    assert po.amount_received == Decimal("2000.00")


def test_a_full_reconciliation_brings_a_request_left_waiting_up_to_its_settled_refund(
    invoiced: PurchaseOrder,
    stripe_emulator: EmulatorHandle,
    admin_user: User,
) -> None:
    po, row, refund_id = ach_refund_sent(stripe_emulator, invoiced, admin_user)
    stripe_emulator.settle_refund(refund_id)
    assert reconcile_conference(conference=po.conference).errors == 0
    row.refresh_from_db()
    assert row.state == State.SUCCEEDED
    # What a version before requests followed their refunds left: the ledger holds the refund,
    # the request still says it waits for the bank.
    waiting = [{**item, "status": "pending"} for item in row.plan]
    StripeWriteRequest.objects.filter(pk=row.pk).update(state=State.PENDING, plan=waiting)
    entries = PurchaseOrderPayment.objects.count()

    summary = reconcile_conference(conference=po.conference, full=True)
    assert summary.errors == 0, summary.error_samples
    row.refresh_from_db()
    assert (row.state, write_request_outcome(row)) == (State.SUCCEEDED, "Done")
    assert [item["status"] for item in row.plan] == ["succeeded"]
    assert PurchaseOrderPayment.objects.count() == entries  # the ledger had it: nothing added
