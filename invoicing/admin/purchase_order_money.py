"""The PO page's money actions: refund its Stripe payments, reduce what its invoice asks.

Each is a button on the PO's page, shown only to whom it is allowed (finance admins refund,
organizers reduce: :mod:`invoicing.access`), leading to a page with the amounts and a form (amount,
reason). The form is checked by the same rules the service applies under the PO's row lock
(:func:`~invoicing.services.stripe_write_requests.refusal`), so a refused request says why in the
organizer's words and saves nothing. An accepted one is saved, then queued; the worker makes the
Stripe call. The requests and their states are listed on the PO's page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from invoicing import background, money
from invoicing.admin.common import ReadOnlyAdminMixin, amount_or_dash, staff_member
from invoicing.admin.scoping import ConferenceScopedInline
from invoicing.background import Job
from invoicing.models import PurchaseOrder, StripeWriteRequest
from invoicing.selectors import (
    reduce_refusal,
    reducible_amount,
    refund_refusal,
    refundable_amount,
    write_request_outcome,
)
from invoicing.selectors_credit_lines import (
    CreditableLine,
    creditable_lines,
    credited_lines_text,
)
from invoicing.selectors_paid_back import paid_back_refusal
from invoicing.services import stripe_write_requests
from invoicing.services.stripe_write_requests import InvalidStripeWriteRequest

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[PurchaseOrder]
else:
    _Base = object

logger = logging.getLogger(__name__)

Kind = StripeWriteRequest.Kind

_ACTIONS: dict[str, dict[str, Any]] = {
    Kind.REFUND: {
        "title": "Refund payments of {po}",
        "explanation": (
            "The worker refunds this amount of the PO's card and bank payments at Stripe, the "
            "newest payment first; the money goes back to the customer and leaves the ledger once "
            "Stripe confirms it (bank refunds take a few days). The PO then owes that much less, "
            "as Stripe's invoice never asks refunded money again (a refund of an overpayment "
            "leaves it paid). This cannot be undone."
        ),
        "job": Job.REFUND,
        "done": "refund of {amount} queued; the ledger shows it once Stripe confirms.",
    },
    Kind.REDUCE: {
        "title": "Reduce what {po} owes",
        "explanation": (
            "Give either an amount, or how many of each line to credit (e.g. 2 of 5 booth "
            "passes). The worker issues a Stripe credit note on the open invoice for that amount, "
            "or crediting those lines: the invoice then asks the customer for that much less (if "
            "nothing is left, it is paid), and the PO owes that much less. Nothing is refunded."
        ),
        "job": Job.REDUCE_AMOUNT_OWED,
        "done": "reduction of {amount} queued; the invoice will ask that much less.",
    },
}


# Where the reason goes: Stripe's refund has no memo, only our metadata (services/refunds.py);
# the credit note shows it as its memo (services/amount_owed.py).
_REASON_HELP: dict[str, str] = {
    Kind.REFUND: (
        "Kept with the request and stored on each refund at Stripe (its metadata, as "
        "“reason”, first 500 characters); a refund has no credit note or memo."
    ),
    Kind.REDUCE: "Kept with the request and sent to Stripe (the credit note's memo).",
}


def money_page(
    model_admin: _Base,
    request: HttpRequest,
    po: PurchaseOrder,
    *,
    title: str,
    explanation: str,
    form: forms.Form,
    limit: Decimal,
    limit_label: str,
) -> TemplateResponse:
    """A PO's money page (refund, reduce, paid back): what it means, how much at most, the form."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "explanation": explanation,
        "po": po,
        "form": form,
        "limit": amount_or_dash(limit, po.currency),
        "limit_label": limit_label,
        "opts": PurchaseOrder._meta,
        "original": po,
    }
    return TemplateResponse(request, "admin/invoicing/purchaseorder/money_request.html", context)


def _line_field_name(line: CreditableLine) -> str:
    return f"line_{line.position}"


class MoneyRequestForm(forms.Form):
    """An amount and a reason; a reduction may instead credit a quantity of each PO line."""

    amount = forms.DecimalField(max_digits=14, decimal_places=3)  # zero: the rules say why
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def __init__(
        self,
        *args: Any,
        kind: str,
        check: Any,
        lines: Sequence[CreditableLine] = (),
        currency: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = _REASON_HELP[kind]
        if currency:
            # The browser offers only amounts the currency has (0.01 USD, 1 JPY, 0.010 KWD).
            self.fields["amount"].widget.attrs["step"] = str(money.smallest_amount(currency))
        self._check = check
        self._lines = list(lines)
        if not self._lines:
            return
        amount = self.fields["amount"]
        amount.required = False
        amount.help_text = "Or leave it empty and give quantities per line below."
        reason = self.fields.pop("reason")
        for line in self._lines:
            already = f"{line.credited} credited already, " if line.credited else ""
            self.fields[_line_field_name(line)] = forms.IntegerField(
                required=False,  # bounds: the rules say why, in the organizer's words
                label=f"Credit of “{line.description}”",
                widget=forms.NumberInput(attrs={"style": "width: 6em"}),
                help_text=(
                    f"{line.quantity} on the invoice at "
                    f"{money.format_display(line.unit_price, currency)}; {already}"
                    f"{line.left} can still be credited."
                ),
            )
        self.fields["reason"] = reason

    def _quantities(self, cleaned: dict[str, Any]) -> dict[int, int] | None:
        asked = {line.position: cleaned.get(_line_field_name(line)) or 0 for line in self._lines}
        return {position: n for position, n in asked.items() if n} or None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors or "reason" not in cleaned:
            return cleaned
        lines = self._quantities(cleaned) if self._lines else None
        if cleaned.get("amount") is None and lines is None:
            raise forms.ValidationError(
                "Enter an amount, or how many to credit on at least one line."
            )
        cleaned["lines"] = lines
        if why := self._check(cleaned.get("amount"), cleaned["reason"], lines):
            raise forms.ValidationError(why[:1].upper() + why[1:])
        return cleaned


class StripeWriteRequestInline(
    ReadOnlyAdminMixin,
    ConferenceScopedInline[StripeWriteRequest, PurchaseOrder],
    admin.TabularInline[StripeWriteRequest, PurchaseOrder],
):
    """Refunds and reductions asked for, newest first, with where each stands."""

    model = StripeWriteRequest
    extra = 0
    can_delete = False
    verbose_name = "refund or reduction"
    verbose_name_plural = "Refunds and reductions (read-only)"
    fields = (
        "requested_at",
        "kind",
        "amount_display",
        "lines_display",
        "reason",
        "outcome",
        "at_stripe",
        "error",
        "requested_by",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[StripeWriteRequest]:
        return super().get_queryset(request).select_related("purchase_order", "requested_by")

    @admin.display(description="Amount")
    def amount_display(self, obj: StripeWriteRequest) -> str:
        return amount_or_dash(obj.amount, obj.purchase_order.currency)

    @admin.display(description="Credited")
    def lines_display(self, obj: StripeWriteRequest) -> str:
        if obj.kind != Kind.REDUCE:
            return "-"
        return credited_lines_text(obj) or "by amount"

    @admin.display(description="State")
    def outcome(self, obj: StripeWriteRequest) -> str:
        return write_request_outcome(obj)

    @admin.display(description="At Stripe")
    def at_stripe(self, obj: StripeWriteRequest) -> str:
        if obj.kind == Kind.REDUCE:
            return obj.stripe_credit_note_id or "-"
        return ", ".join(obj.refund_ids) or "-"


class PurchaseOrderMoneyViews(_Base):
    """The refund and reduce pages of the PO admin (``PurchaseOrderAdmin``)."""

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                f"<path:object_id>/{kind}/",
                self.admin_site.admin_view(self._money_view(kind)),
                name=f"invoicing_purchaseorder_{kind}",
            )
            for kind in (Kind.REFUND, Kind.REDUCE)
        ]
        return [*own, *super().get_urls()]

    @staticmethod
    def money_refusals(request: HttpRequest, po: PurchaseOrder) -> dict[str, str]:
        """Why each money action is refused to this person on this PO ("" when allowed)."""
        by = staff_member(request)
        return {
            Kind.REFUND: refund_refusal(po, by=by),
            Kind.REDUCE: reduce_refusal(po, by=by),
            "paid_back": paid_back_refusal(po, by=by),  # purchase_order_paid_back.py
        }

    def _money_view(self, kind: str) -> Any:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            return self.money_request_view(request, object_id, kind)

        return view

    def money_request_view(self, request: HttpRequest, object_id: str, kind: str) -> HttpResponse:
        po = self.get_object(request, object_id)
        if po is None:  # not there, or another conference's: the same 404
            raise Http404("No purchase order here.")
        page = reverse("admin:invoicing_purchaseorder_change", args=[po.pk])
        by = staff_member(request)
        verb = "refunded" if kind == Kind.REFUND else "reduced"
        if why := self.money_refusals(request, po)[kind]:
            self.message_user(request, f"{po.reference}: not {verb}: {why}", messages.WARNING)
            return HttpResponseRedirect(page)

        def check(amount: Decimal | None, reason: str, lines: dict[int, int] | None) -> str:
            return stripe_write_requests.refusal(
                purchase_order=po, kind=kind, amount=amount, reason=reason, by=by, lines=lines
            )

        form = MoneyRequestForm(
            request.POST or None,
            kind=kind,
            check=check,
            lines=creditable_lines(po) if kind == Kind.REDUCE else [],
            currency=po.currency,
        )
        if request.method == "POST" and form.is_valid():
            try:
                row = stripe_write_requests.record_request(
                    purchase_order=po,
                    kind=kind,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    requested_by=by,
                    lines=form.cleaned_data.get("lines"),
                )
            except InvalidStripeWriteRequest as error:  # another request won the race
                form.add_error(None, str(error))
            else:
                self._queue_request(request, po, row)
                return HttpResponseRedirect(page)
        spec = _ACTIONS[kind]
        most = refundable_amount(po) if kind == Kind.REFUND else reducible_amount(po)
        return money_page(
            self,
            request,
            po,
            title=spec["title"].format(po=po.reference),
            explanation=spec["explanation"],
            form=form,
            limit=most,
            limit_label="Can still be refunded" if kind == Kind.REFUND else "Invoice asks",
        )

    def _queue_request(
        self, request: HttpRequest, po: PurchaseOrder, row: StripeWriteRequest
    ) -> None:
        spec = _ACTIONS[row.kind]
        amount = amount_or_dash(row.amount, po.currency)
        if lines := credited_lines_text(row):
            amount = f"{amount} ({lines})"
        if background.request(spec["job"], row.pk):
            self.message_user(
                request,
                f"{po.reference}: {spec['done'].format(amount=amount)}",
                messages.SUCCESS,
            )
            return
        stripe_write_requests.record_broker_refusal(row)
        self.message_user(
            request,
            f"{po.reference}: could not be queued (the broker did not answer); nothing was sent "
            "to Stripe, try again in a moment.",
            messages.ERROR,
        )
