"""The PO page's "Record money paid back…": money the conference gave back outside Stripe.

Money received by wire, check or other means is given back the same way, outside Stripe; a finance
admin records it here (amount, how, when, reference, a required reason) so the ledger and the
PO's status know. The form is checked by the rule the ledger applies again under the PO's row lock
(:func:`~invoicing.selectors_paid_back.paid_back_refusal`), so a refused entry says why in the
organizer's words and saves nothing. The form posts its own key back: submitting it twice
records once. Nothing is sent to Stripe.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from invoicing import money
from invoicing.admin.common import amount_or_dash, staff_member
from invoicing.admin.purchase_order_money import money_page
from invoicing.errors import InvalidPayment
from invoicing.models import PurchaseOrder, PurchaseOrderPayment
from invoicing.selectors_paid_back import paid_back_amount, paid_back_refusal
from invoicing.services import ledger

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[PurchaseOrder]
else:
    _Base = object

Method = PurchaseOrderPayment.Method

PAID_BACK = "paid_back"  # the page's URL name: admin:invoicing_purchaseorder_paid_back

_EXPLANATION = (
    "Record money the conference paid back to the customer outside Stripe (by wire, check or "
    "other means), out of what the PO received that way. Nothing is sent to Stripe: the ledger "
    "shows it as “Paid back outside Stripe” and the PO owes that much less, as after a refund "
    "(paying back an overpayment leaves it paid; paying back everything makes it refunded). "
    "Stripe payments are given back with Refund payments… This cannot be undone."
)


class PaidBackForm(forms.Form):
    amount = forms.DecimalField(max_digits=14, decimal_places=3)  # zero: the rules say why
    method = forms.ChoiceField(
        label="Paid back by",
        choices=[(m.value, m.label) for m in (Method.WIRE, Method.CHECK, Method.OTHER)],
    )
    payment_date = forms.DateField(
        label="Paid back on", initial=timezone.localdate, widget=forms.DateInput({"type": "date"})
    )
    reference = forms.CharField(
        required=False, max_length=255, help_text="The wire's or check's reference, if any."
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept with the ledger entry (its note).",
    )
    # The entry's own key, posted back: the same form submitted twice records once.
    paid_back_uid = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def __init__(self, *args: Any, check: Callable[[Decimal], str], currency: str, **kw: Any):
        super().__init__(*args, **kw)
        self._check = check
        # The browser offers only amounts the currency has (0.01 USD, 1 JPY, 0.010 KWD).
        self.fields["amount"].widget.attrs["step"] = str(money.smallest_amount(currency))

    def clean_payment_date(self) -> Any:
        payment_date = self.cleaned_data["payment_date"]
        if payment_date > timezone.localdate():
            raise forms.ValidationError("Money paid back cannot be dated in the future.")
        return payment_date

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "amount" in cleaned and (why := self._check(cleaned["amount"])):
            raise forms.ValidationError(why[:1].upper() + why[1:])
        return cleaned


class PurchaseOrderPaidBackView(_Base):
    """The "Record money paid back…" page of the PO admin (``PurchaseOrderAdmin``)."""

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                f"<path:object_id>/{PAID_BACK}/",
                self.admin_site.admin_view(self.paid_back_view),
                name=f"invoicing_purchaseorder_{PAID_BACK}",
            )
        ]
        return [*own, *super().get_urls()]

    def paid_back_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        po = self.get_object(request, object_id)
        if po is None:  # not there, or another conference's: the same 404
            raise Http404("No purchase order here.")
        page = reverse("admin:invoicing_purchaseorder_change", args=[po.pk])
        by = staff_member(request)
        if why := paid_back_refusal(po, by=by):
            self.message_user(
                request, f"{po.reference}: nothing recorded as paid back: {why}", messages.WARNING
            )
            return HttpResponseRedirect(page)

        assert by is not None  # paid_back_refusal refuses nobody signed in

        def check(amount: Decimal) -> str:
            return paid_back_refusal(po, amount, by=by)

        form = PaidBackForm(request.POST or None, check=check, currency=po.currency)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                entry = ledger.record_paid_back(
                    po,
                    amount=data["amount"],
                    method=data["method"],
                    reason=data["reason"],
                    payment_date=data["payment_date"],
                    reference=data.get("reference") or "",
                    recorded_by=by,
                    uid=data["paid_back_uid"],
                )
            except InvalidPayment as error:  # the PO moved on meanwhile
                form.add_error(None, str(error))
            else:
                self._say_recorded(request, po, entry)
                return HttpResponseRedirect(page)
        return money_page(
            self,
            request,
            po,
            title=f"Record money paid back on {po.reference}",
            explanation=_EXPLANATION,
            form=form,
            limit=paid_back_amount(po),
            limit_label="Can be recorded as paid back",
        )

    def _say_recorded(
        self, request: HttpRequest, po: PurchaseOrder, entry: PurchaseOrderPayment
    ) -> None:
        amount = amount_or_dash(abs(entry.amount), po.currency)
        if entry.repeated_submit:
            self.message_user(
                request,
                f"{po.reference}: this money paid back ({amount}) was already recorded (a "
                "repeated submit); nothing new was recorded.",
                messages.INFO,
            )
            return
        self.message_user(
            request,
            f"{po.reference}: recorded {amount} paid back by "
            f"{entry.get_method_display().lower()}; the PO is now "
            f"{po.get_status_display().lower()}. Nothing was sent to Stripe.",
            messages.SUCCESS,
        )
