"""What the PO's list and page show of its story: status badges, problems in plain words, the
actions its status allows as buttons, its timeline and every invoice it had.

Whether an action is allowed is asked of :mod:`invoicing.selectors`, and who may take it of
:mod:`invoicing.access`; the buttons post the changelist's own actions for this one PO (with their
confirmation pages, which refuse whoever the access rule refuses), so nothing here re-implements a
rule or calls a service. A read-only field sees only the PO, not who looks at it, so the Actions
row is one field per role and the page shows the one of the person's role in the PO's conference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from invoicing import access, selectors
from invoicing.admin.common import amount_or_dash
from invoicing.failure_advice import advise
from invoicing.models import PurchaseOrder, Role
from invoicing.selectors_overview import owes_nothing
from invoicing.timeline import invoice_generations, purchase_order_timeline

Status = PurchaseOrder.Status

_BADGE = (
    '<span style="display:inline-block;margin-left:4px;padding:0 6px;border-radius:8px;'
    'background:{};color:#fff;font-size:11px;white-space:nowrap">{}</span>'
)

# (changelist action, button label, the selector that says whether it is allowed)
PAGE_ACTIONS: tuple[tuple[str, str, Callable[[PurchaseOrder], str]], ...] = (
    ("retry_creation_selected", "Retry invoice creation", selectors.retry_creation_refusal),
    ("sync_selected", "Sync with Stripe now", selectors.sync_refusal),
    ("void_selected", "Void the invoice", selectors.void_refusal),
    ("reissue_selected", "Re-issue the invoice", selectors.reissue_refusal),
    ("cancel_selected", "Cancel the PO…", selectors.cancel_refusal),
)


class NeedsAttentionFilter(admin.SimpleListFilter):
    """POs with a recorded failure: a blocked creation or a failed background action."""

    title = "attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("needed", "Needs attention"), ("blocked", "Invoice creation blocked")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[PurchaseOrder]
    ) -> QuerySet[PurchaseOrder]:
        if self.value() == "needed":
            return queryset.filter(Q(invoice_creation_blocked=True) | ~Q(invoice_error=""))
        if self.value() == "blocked":
            return queryset.filter(invoice_creation_blocked=True)
        return queryset


class PurchaseOrderStory:
    """Columns and read-only fields of the purchase orders' admin (list and page)."""

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: PurchaseOrder) -> SafeString:
        label = obj.get_status_display()
        if obj.invoice_creation_blocked and obj.status in {Status.APPROVED, Status.PARTIALLY_PAID}:
            label = "Invoice creation blocked"
            return format_html("{}" + _BADGE, label, "#ba2121", "needs attention")
        if obj.invoice_error:
            return format_html("{}" + _BADGE, label, "#c86400", "last action failed")
        return format_html("{}", label)

    @admin.display(description="Organization")
    def organization_display(self, obj: PurchaseOrder) -> SafeString:
        return format_html(
            '{}<br><span style="color:#666;font-size:11px">{}</span>',
            obj.organization_name,
            obj.conference,
        )

    @admin.display(description="Invoice")
    def invoice_display(self, obj: PurchaseOrder) -> SafeString | str:
        label = obj.stripe_invoice_number or ("open ↗" if obj.stripe_invoice_url else "")
        if obj.stripe_invoice_url.startswith(("https://", "http://")):
            return format_html(
                '<a href="{}" target="_blank" rel="noopener noreferrer">{} ↗</a>',
                obj.stripe_invoice_url,
                obj.stripe_invoice_number or "Open invoice",
            )
        return label or "-"

    @admin.display(description="What went wrong")
    def problem_display(self, obj: PurchaseOrder) -> SafeString | str:
        if not obj.invoice_error and not obj.invoice_creation_blocked:
            return "-"
        advice = advise(obj.invoice_error, creation_blocked=obj.invoice_creation_blocked)
        when = obj.invoice_error_at.strftime("%Y-%m-%d %H:%M UTC") if obj.invoice_error_at else ""
        return format_html(
            '<div class="po-problem" style="border-left:4px solid #ba2121;padding:4px 10px;'
            'max-width:60em;white-space:normal"><strong>{}</strong><br>What to do: {}'
            '<br><span style="color:#666;font-size:11px;word-break:break-word">'
            "Technical detail ({}): {}</span></div>",
            advice.problem,
            advice.what_to_do,
            when,
            obj.invoice_error or "-",
        )

    @staticmethod
    def page_actions_field(request: HttpRequest, obj: PurchaseOrder) -> str:
        """The name of the Actions row for this person on this PO (one per role)."""
        role = access.role_in(request.user, obj.conference_id) or Role.VIEWER
        return f"page_actions_{role.value}"

    @admin.display(description="Actions")
    def page_actions_viewer(self, obj: PurchaseOrder) -> SafeString | str:
        return _page_actions(obj, Role.VIEWER)

    @admin.display(description="Actions")
    def page_actions_organizer(self, obj: PurchaseOrder) -> SafeString | str:
        return _page_actions(obj, Role.ORGANIZER)

    @admin.display(description="Actions")
    def page_actions_finance(self, obj: PurchaseOrder) -> SafeString | str:
        return _page_actions(obj, Role.FINANCE)

    @admin.display(description="Invoices")
    def generations_display(self, obj: PurchaseOrder) -> SafeString | str:
        generations = invoice_generations(obj)
        if not generations:
            return "None yet."
        return format_html(
            '<table class="po-generations"><tr><th>#</th><th>Number</th><th>Stripe id</th>'
            "<th>Status</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        g.generation,
                        _invoice_link(g.url, g.number or "(no number yet)"),
                        g.invoice_id,
                        g.status,
                    )
                    for g in generations
                ),
            ),
        )

    @admin.display(description="History")
    def timeline_display(self, obj: PurchaseOrder) -> SafeString:
        return format_html(
            '<table class="po-timeline" style="max-width:100%"><tr><th>When</th><th>What</th>'
            "<th>Who</th><th>Details</th><th>Invoice</th></tr>{}</table>",
            format_html_join(
                "",
                '<tr><td style="white-space:nowrap">{}</td><td>{}</td><td>{}</td>'
                '<td style="white-space:normal;word-break:break-word">{}</td><td>{}</td></tr>',
                (
                    (
                        entry.at.strftime("%Y-%m-%d %H:%M"),
                        entry.what,
                        entry.who,
                        entry.detail,
                        _invoice_link(entry.invoice_url, entry.invoice_number),
                    )
                    for entry in purchase_order_timeline(obj)
                ),
            ),
        )

    @staticmethod
    def owed_display(obj: PurchaseOrder, balance: Any) -> str:
        """The balance in words; the rule of what a PO owes is the selector's (``owes_nothing``)."""
        if owes_nothing(obj.status):
            return "nothing (cancelled)"
        return amount_or_dash(balance, obj.currency)


def _page_actions(obj: PurchaseOrder, role: Role) -> SafeString | str:
    """Buttons for what the PO's status allows and ``role`` may take; each posts the changelist's
    action."""
    if not role.includes(access.PURCHASE_ORDER_ACTIONS_ROLE):
        return (
            f"None for you: as a {role.label.lower()} of {obj.conference} you read this purchase "
            "order; its organizers act on it."
        )
    allowed = [(action, label) for action, label, refusal in PAGE_ACTIONS if not refusal(obj)]
    if not allowed:
        return "None: nothing can be done to this purchase order now."
    changelist = reverse("admin:invoicing_purchaseorder_changelist")
    buttons = format_html_join(
        " ",
        '<button type="submit" class="button po-action" formaction="{}" formnovalidate '
        'name="action" value="{}">{}</button>',
        ((changelist, action, label) for action, label in allowed),
    )
    return format_html(
        '<input type="hidden" name="_selected_action" value="{}">{}', obj.pk, buttons
    )


def _invoice_link(url: str, label: str) -> SafeString | str:
    if url.startswith(("https://", "http://")):
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, label
        )
    return label
