"""The purchase orders' changelist actions: approve, sync, void, re-issue, cancel.

Each action says, for every selected PO, what was done or queued, or why it was refused. Stripe
is only ever called by the worker: the actions queue the pipeline's jobs
(:mod:`invoicing.background`). Whether a PO may be synced, voided, re-issued or cancelled is asked
of :mod:`invoicing.selectors`, the one place that says so (the services ask it too). Each action
acts only on the selected POs of conferences where the person is an organizer (:meth:`_operable`),
and those that ask for money or change what is asked (approve, void, re-issue, cancel) confirm
first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from invoicing import access, background
from invoicing.admin.common import amount_or_dash, staff_member
from invoicing.admin.scoping import ConferenceScopedAdmin
from invoicing.background import Job
from invoicing.logging import log_state_change
from invoicing.models import PurchaseOrder
from invoicing.selectors import (
    cancel_refusal,
    reissue_refusal,
    retry_creation_refusal,
    sync_refusal,
    void_refusal,
)
from invoicing.services import purchase_orders

logger = logging.getLogger(__name__)

Status = PurchaseOrder.Status


def _total(po: PurchaseOrder) -> str:
    """The changelist's annotation when the PO came from it, else the lines' sum."""
    total = getattr(po, "admin_total", None)
    return amount_or_dash(po.total if total is None else total, po.currency)


def _balance(po: PurchaseOrder) -> str:
    balance = getattr(po, "admin_balance", None)
    return amount_or_dash(po.balance_due if balance is None else balance, po.currency)


class PurchaseOrderActions(ConferenceScopedAdmin[PurchaseOrder]):
    """The actions of :class:`~invoicing.admin.purchase_orders.PurchaseOrderAdmin`."""

    actions = (
        "approve_selected",
        "retry_creation_selected",
        "sync_selected",
        "void_selected",
        "reissue_selected",
        "cancel_selected",
    )

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # The bulk delete would skip the per-PO rule of has_delete_permission.
        actions.pop("delete_selected", None)
        return actions

    def _approve(self, request: HttpRequest, po: PurchaseOrder) -> None:
        try:
            purchase_orders.approve_purchase_order(po, approved_by=staff_member(request))
        except ValueError as error:  # InvalidTransition, InvalidPurchaseOrder: nothing changed
            self.message_user(request, f"{po.reference}: not approved: {error}", messages.WARNING)
        else:
            self.message_user(
                request,
                f"{po.reference}: approved; its Stripe invoice is being created and sent (queued).",
                messages.SUCCESS,
            )

    def _operable(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder], verb: str
    ) -> QuerySet[PurchaseOrder]:
        """The selected POs the person organizes; each other one is refused with a message."""
        allowed = access.scope(queryset, request.user, role=access.PURCHASE_ORDER_ACTIONS_ROLE)
        others = queryset.exclude(pk__in=allowed.values("pk")).select_related("conference")
        for po in others.order_by("reference"):
            self._refuse(request, po, verb, f"you are not an organizer of {po.conference}.")
        return allowed

    @admin.action(description="Approve: create and send the Stripe invoice", permissions=["change"])
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> HttpResponse | None:
        queryset = self._operable(request, queryset, "approved")
        confirmation = self._confirm(
            request,
            queryset,
            action="approve_selected",
            title="Approve these purchase orders?",
            explanation=(
                "For each draft, the worker creates a Stripe invoice with the PO's lines, "
                "finalizes it and emails it to the contact: the customer is asked for this money. "
                "Lines and terms are frozen from then on."
            ),
            describe=lambda po: f"invoice for {_total(po)} to {po.contact_email}",
        )
        if confirmation is not None:
            return confirmation
        for po in queryset.order_by("reference"):
            self._approve(request, po)
        return None

    def _queue(
        self,
        request: HttpRequest,
        po: PurchaseOrder,
        *,
        event: str,
        what: str,
        next_step: str,
        job: Job,
        args: tuple[Any, ...],
    ) -> None:
        queued = background.request(job, po.pk, *args)
        log_state_change(
            logger,
            event=f"{event}_requested" if queued else f"{event}_not_queued",
            po_reference=po.reference,
            invoice_id=po.stripe_invoice_id or None,
            requested_by=getattr(staff_member(request), "pk", None),
            level=logging.INFO if queued else logging.WARNING,
        )
        if queued:
            self.message_user(
                request, f"{po.reference}: {what} queued; {next_step}", messages.SUCCESS
            )
        else:
            self.message_user(
                request,
                f"{po.reference}: {what} could not be queued (the broker did not answer); "
                "nothing changed, try again in a moment.",
                messages.ERROR,
            )

    def _refuse(self, request: HttpRequest, po: PurchaseOrder, verb: str, why: str) -> None:
        self.message_user(request, f"{po.reference}: not {verb}: {why}", messages.WARNING)

    @admin.action(
        description="Retry invoice creation (after fixing what blocked it)", permissions=["change"]
    )
    def retry_creation_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> None:
        for po in self._operable(request, queryset, "retried").order_by("reference"):
            why = retry_creation_refusal(po)
            if why:
                self._refuse(request, po, "retried", why)
                continue
            self._queue(
                request,
                po,
                event="invoice_creation_retry",
                what="retry of the invoice creation",
                next_step=(
                    "the worker resumes where the last attempt stopped (a draft already at Stripe "
                    "is reused); reload the page in a moment."
                ),
                job=Job.RETRY_INVOICE_CREATION,
                args=(getattr(staff_member(request), "pk", None),),
            )

    @admin.action(description="Sync with Stripe now", permissions=["change"])
    def sync_selected(self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]) -> None:
        for po in self._operable(request, queryset, "synced").order_by("reference"):
            why = sync_refusal(po)
            if why:
                self._refuse(request, po, "synced", why)
                continue
            self._queue(
                request,
                po,
                event="sync",
                what=f"sync of invoice {po.stripe_invoice_id}",
                next_step="new payments and the invoice's status will show here shortly.",
                job=Job.SYNC_PURCHASE_ORDER,
                args=(),
            )

    @admin.action(
        description="Void the Stripe invoice (then re-issue or cancel)", permissions=["change"]
    )
    def void_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> HttpResponse | None:
        queryset = self._operable(request, queryset, "voided")
        confirmation = self._confirm(
            request,
            queryset,
            action="void_selected",
            title="Void these invoices?",
            explanation=(
                "Each unpaid open or uncollectible invoice is voided at Stripe: the customer can "
                "no longer pay it. The PO then shows “Invoice voided”, and you re-issue or cancel "
                "it. Stripe never voids an invoice with payments: re-issue or cancel a part-paid "
                "PO directly instead."
            ),
            describe=lambda po: (
                f"invoice {po.stripe_invoice_id or '(none yet)'}, balance {_balance(po)}"
            ),
            refusal=void_refusal,
            verb="voided",
        )
        if confirmation is not None:
            return confirmation
        for po in queryset.order_by("reference"):
            why = void_refusal(po)
            if why:
                self._refuse(request, po, "voided", why)
                continue
            self._queue(
                request,
                po,
                event="void",
                what=f"void of invoice {po.stripe_invoice_id}",
                next_step="the PO will show “Invoice voided”; then re-issue or cancel it.",
                job=Job.VOID_INVOICE,
                args=(getattr(staff_member(request), "pk", None),),
            )
        return None

    @admin.action(description="Re-issue the invoice (for the balance)", permissions=["change"])
    def reissue_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> HttpResponse | None:
        queryset = self._operable(request, queryset, "re-issued")
        confirmation = self._confirm(
            request,
            queryset,
            action="reissue_selected",
            title="Re-issue these invoices?",
            explanation=(
                "For each PO whose invoice was voided or marked uncollectible, or is part-paid, "
                "the worker creates and emails a new Stripe invoice for the balance; payments "
                "received so far are credited on it. A part-paid invoice is first closed with a "
                "credit note for its unpaid rest (it ends paid at Stripe and can take no more "
                "money); its payments stay in the ledger."
            ),
            describe=lambda po: f"new invoice for the balance {_balance(po)} to {po.contact_email}",
            refusal=reissue_refusal,
            verb="re-issued",
        )
        if confirmation is not None:
            return confirmation
        for po in queryset.order_by("reference"):
            why = reissue_refusal(po)
            if why:
                self._refuse(request, po, "re-issued", why)
                continue
            self._queue(
                request,
                po,
                event="reissue",
                what=f"re-issue (replacing invoice {po.stripe_invoice_id})",
                next_step=(
                    "a new invoice for the balance is created and sent; payments received so far "
                    "are credited on it."
                ),
                job=Job.REISSUE_INVOICE,
                args=(getattr(staff_member(request), "pk", None),),
            )
        return None

    @admin.action(
        description="Cancel (voids the Stripe invoice, or credits its unpaid rest, first)",
        permissions=["change"],
    )
    def cancel_selected(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> HttpResponse | None:
        queryset = self._operable(request, queryset, "cancelled")
        confirmation = self._confirm(
            request,
            queryset,
            action="cancel_selected",
            title="Cancel these purchase orders?",
            explanation=(
                "A PO with a Stripe invoice is cancelled by the worker once the invoice can take "
                "no more money: an unpaid invoice is voided (a draft deleted); a part-paid one "
                "gets a credit note for its unpaid rest and ends paid at Stripe. One without an "
                "invoice "
                "is cancelled now. Payments already received stay in the ledger (refund them "
                "separately if needed). A fully paid PO must be refunded first."
            ),
            describe=lambda po: f"total {_total(po)}, balance {_balance(po)}",
            refusal=cancel_refusal,
            verb="cancelled",
            ask_reason=True,
        )
        if confirmation is not None:
            return confirmation
        reason = str(request.POST.get("reason", "")).strip()
        for po in queryset.order_by("reference"):
            why = cancel_refusal(po)
            if why:
                self._refuse(request, po, "cancelled", why)
                continue
            if not po.stripe_invoice_id:
                try:
                    purchase_orders.cancel_purchase_order(
                        po, cancelled_by=staff_member(request), reason=reason
                    )
                except ValueError as error:  # raced into a state that has an invoice
                    self._refuse(request, po, "cancelled", str(error))
                else:
                    self.message_user(request, f"{po.reference}: cancelled.", messages.SUCCESS)
                continue
            self._queue(
                request,
                po,
                event="cancel",
                what=(
                    f"cancellation (closing invoice {po.stripe_invoice_id} first: void if unpaid, "
                    "a credit note for the unpaid rest if part-paid)"
                ),
                next_step="the PO shows “Cancelled” once Stripe confirmed it.",
                job=Job.CANCEL_PURCHASE_ORDER,
                args=(getattr(staff_member(request), "pk", None), reason),
            )
        return None

    def _confirm(
        self,
        request: HttpRequest,
        queryset: QuerySet[PurchaseOrder],
        *,
        action: str,
        title: str,
        explanation: str,
        describe: Callable[[PurchaseOrder], str],
        refusal: Callable[[PurchaseOrder], str] | None = None,
        verb: str = "",
        ask_reason: bool = False,
    ) -> HttpResponse | None:
        """The page that lists the POs and what the action means for each (``describe``: the
        amounts); None once the person confirmed.

        POs the action would refuse (``refusal``) are refused now, not listed; when none is left,
        the person is sent back to the list with the reasons.
        """
        if request.POST.get("confirm") == "yes":
            if not ask_reason or str(request.POST.get("reason", "")).strip():
                return None
            # Asked again, with the reason required: the PO keeps it for whoever reads it later.
            self.message_user(
                request, "Give a reason: nothing was cancelled without one.", messages.ERROR
            )
        selected = list(queryset.select_related("conference").order_by("reference"))
        if refusal is not None:
            for po in selected:
                why = refusal(po)
                if why:
                    self._refuse(request, po, verb, why)
            selected = [po for po in selected if not refusal(po)]
        if not selected:
            return HttpResponseRedirect(request.get_full_path())
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "explanation": explanation,
            "ask_reason": ask_reason,
            "action": action,
            "rows": [(po, describe(po)) for po in selected],
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/invoicing/purchaseorder/confirm_action.html", context
        )
