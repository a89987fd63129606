"""The admin's words and figures: money shown as money, states and labels as people read them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from invoicing.admin.purchase_order_money import MoneyRequestForm
from invoicing.models import Conference, PurchaseOrder, PurchaseOrderCredit, StripeWriteRequest
from invoicing.timeline import purchase_order_timeline

Kind = StripeWriteRequest.Kind
State = StripeWriteRequest.State
Status = PurchaseOrder.Status


def a_po(
    status: str = Status.PARTIALLY_PAID, currency: str = "usd", **fields: object
) -> PurchaseOrder:
    conference, _ = Conference.objects.get_or_create(slug="words", defaults={"name": "Words"})
    return PurchaseOrder.objects.create(
        conference=conference,
        reference=f"DEMO-{PurchaseOrder.objects.count() + 1001}",
        organization_name="Initech",
        contact_email="ap@example.com",
        currency=currency,
        status=status,
        **fields,
    )


def page(po: PurchaseOrder) -> str:
    return reverse("admin:invoicing_purchaseorder_change", args=[po.pk])


@pytest.mark.parametrize(
    ("currency", "step"), [("usd", "0.01"), ("jpy", "1"), ("kwd", "0.010"), ("isk", "1.00")]
)
@pytest.mark.parametrize("kind", [Kind.REFUND, Kind.REDUCE])
def test_the_amount_field_steps_by_what_the_currency_can_charge(
    kind: str, currency: str, step: str
) -> None:
    form = MoneyRequestForm(kind=kind, check=lambda *_: "", currency=currency)
    assert form.fields["amount"].widget.attrs["step"] == step
    assert f'step="{step}"' in str(form["amount"])


def test_each_money_form_says_where_its_reason_goes() -> None:
    refund = MoneyRequestForm(kind=Kind.REFUND, check=lambda *_: "", currency="usd")
    reduce = MoneyRequestForm(kind=Kind.REDUCE, check=lambda *_: "", currency="usd")
    assert "memo" not in refund.fields["reason"].help_text.replace("no credit note or memo", "")
    assert "metadata" in refund.fields["reason"].help_text
    assert "credit note's memo" in reduce.fields["reason"].help_text


@pytest.mark.django_db
def test_a_request_row_shows_money_and_the_state_column_words(admin_client: Client) -> None:
    po = a_po()
    done = StripeWriteRequest.objects.create(
        purchase_order=po,
        kind=Kind.REFUND,
        amount=Decimal("2350"),
        reason="x",
        state=State.SUCCEEDED,
    )
    bounced = StripeWriteRequest.objects.create(
        purchase_order=po,
        kind=Kind.REFUND,
        amount=Decimal("10"),
        reason="x",
        state=State.FAILED,
        plan=[{"charge": "ch_1", "amount": 1000, "refund": "re_1", "status": "failed"}],
    )
    reduced = StripeWriteRequest.objects.create(
        purchase_order=a_po(currency="jpy"), kind=Kind.REDUCE, amount=Decimal("5000"), reason="x"
    )
    assert str(done) == "Refund of 2,350.00 USD (Done)"
    assert str(bounced) == "Refund of 10.00 USD (Failed at the bank)"
    assert str(reduced) == "Reduce amount owed of 5,000 JPY (Queued)"
    html = admin_client.get(page(po)).content.decode()
    assert "Refund of 2,350.00 USD (Done)" in html
    assert "Refund of 10.00 USD (Failed at the bank)" in html


@pytest.mark.django_db
def test_a_credit_notes_reason_shows_stripes_code_in_words_and_the_memo(
    admin_client: Client,
) -> None:
    po = a_po()
    for number, (reason, memo) in enumerate(
        [("order_change", "Booth cancelled"), ("", "Typed at Stripe"), ("duplicate", "")]
    ):
        PurchaseOrderCredit.objects.create(
            purchase_order=po,
            stripe_credit_note_id=f"cn_{number}",
            stripe_invoice_id="in_1",
            amount=Decimal("500"),
            purpose=PurchaseOrderCredit.Purpose.REDUCE,
            reason=reason,
            memo=memo,
        )
    html = admin_client.get(page(po)).content.decode()
    assert "<td>Order change: Booth cancelled</td>" in html
    assert "<td>Typed at Stripe</td>" in html
    assert "<td>Duplicate</td>" in html
    assert "order_change" not in html


@pytest.mark.django_db
def test_the_history_names_credit_notes_keeping_capitals() -> None:
    po = a_po(status=Status.CANCELLED)
    for number, purpose in enumerate(
        [PurchaseOrderCredit.Purpose.CANCEL, PurchaseOrderCredit.Purpose.EXTERNAL]
    ):
        PurchaseOrderCredit.objects.create(
            purchase_order=po,
            stripe_credit_note_id=f"cn_h{number}",
            stripe_invoice_id="in_1",
            amount=Decimal("500"),
            purpose=purpose,
            issued_at=timezone.now(),
        )
    said = {entry.what for entry in purchase_order_timeline(po)}
    assert "Credit note (unpaid remainder of a cancelled PO)" in said
    assert "Credit note (issued at Stripe (Dashboard or another app))" in said
