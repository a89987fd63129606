"""E-mail notifications: decided where the happening is recorded, sent by the worker after commit.

A notification is a row before it is an e-mail: :func:`notify` inserts one per subscriber in the
transaction that records the happening (a ledger entry, a status, an event), unique on
``(kind, key, recipient)``, and asks for the send only when that transaction commits. So a
replayed webhook, a task run twice or a rolled-back write decides nothing twice, and an e-mail
is never sent for something that did not happen. :func:`send_notification` holds the row's lock
while it hands the message to Django's mail backend and marks it sent; a second run finds it sent.
(At the SMTP boundary it is at-least-once: a crash between the server's acceptance and the commit
sends it again on retry.)

Recipients are the people who opted in for the conference (``NotificationSubscription``) and hold
at least the organizer role there now: a revoked role ends the e-mails with it.

Where to call each kind: ``payment_received`` and ``po_paid`` from the ledger; ``payment_failed``
from the invoice event handler; ``creation_blocked`` from ``record_invoice_error``;
``invoice_overdue`` from the beat (:func:`notify_overdue_invoices`); ``refund_or_dispute`` from
whatever records a refund or dispute entry, through :func:`refund_or_dispute`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from invoicing import access, background, money
from invoicing.background import Job
from invoicing.models import (
    ConferenceRole,
    Notification,
    NotificationKind,
    NotificationSubscription,
    PurchaseOrder,
    PurchaseOrderPayment,
    Role,
)
from invoicing.selectors_overview import overdue, with_money_totals

logger = logging.getLogger(__name__)

Kind = NotificationKind


def recipients(conference_id: int, kind: str) -> list[int]:
    """Users who opted in to ``kind`` for the conference and may still act there."""
    chosen = {
        user_id: is_superuser
        for user_id, is_superuser, kinds in NotificationSubscription.objects.filter(
            conference_id=conference_id, user__is_active=True
        )
        .exclude(user__email="")
        .values_list("user_id", "user__is_superuser", "kinds")
        if kind in kinds
    }
    if not chosen:
        return []
    organizers = set(
        ConferenceRole.objects.filter(
            conference_id=conference_id,
            user_id__in=list(chosen),
            role__in=Role.at_least(Role.ORGANIZER),
        ).values_list("user_id", flat=True)
    )
    return sorted(pk for pk, is_superuser in chosen.items() if is_superuser or pk in organizers)


def _link(purchase_order: PurchaseOrder) -> str:
    path = reverse("admin:invoicing_purchaseorder_change", args=[purchase_order.pk])
    return f"{settings.NOTIFICATION_BASE_URL.rstrip('/')}{path}"


def notify(
    *,
    kind: str,
    key: str,
    purchase_order: PurchaseOrder,
    subject: str,
    body: str,
) -> list[int]:
    """Record the notification for every recipient, once per ``(kind, key)``; send after commit.

    Returns the primary keys of the rows this call created (an empty list on a replay).
    """
    conference = purchase_order.conference
    created: list[int] = []
    for user_id in recipients(conference.pk, kind):
        notification, new = Notification.objects.get_or_create(
            kind=kind,
            key=key[:255],
            recipient_id=user_id,
            defaults={
                "conference": conference,
                "purchase_order": purchase_order,
                "subject": f"[{conference.name}] {subject}"[:255],
                "body": f"{body}\n\n{_link(purchase_order)}\n",
            },
        )
        if new:
            created.append(notification.pk)
            transaction.on_commit(
                partial(background.request, Job.SEND_NOTIFICATION, notification.pk)
            )
    return created


def _amount(value: Decimal, purchase_order: PurchaseOrder) -> str:
    return money.format_amount(value, purchase_order.currency)


def _about(purchase_order: PurchaseOrder) -> str:
    return f"{purchase_order.reference} ({purchase_order.organization_name})"


# --- The happenings ------------------------------------------------------------------------------


def payment_received(purchase_order: PurchaseOrder, payment: PurchaseOrderPayment) -> None:
    """A ledger entry of money in (the ledger calls this under the PO's lock)."""
    notify(
        kind=Kind.PAYMENT_RECEIVED,
        key=f"payment-{payment.pk}",
        purchase_order=purchase_order,
        subject=f"{_amount(payment.amount, purchase_order)} received on {purchase_order.reference}",
        body=(
            f"{_about(purchase_order)}: {_amount(payment.amount, purchase_order)} received by "
            f"{payment.get_method_display().lower()} on {payment.payment_date.isoformat()}"
            f"{f' ({payment.reference})' if payment.reference else ''}."
        ),
    )


def purchase_order_paid(purchase_order: PurchaseOrder, *, received: Decimal) -> None:
    """The PO's status became paid (once per amount: paid again after a refund is news)."""
    minor = money.to_minor_units(received, purchase_order.currency)
    notify(
        kind=Kind.PO_PAID,
        key=f"po-{purchase_order.uid}-paid-{minor}",
        purchase_order=purchase_order,
        subject=f"{purchase_order.reference} is paid in full",
        body=f"{_about(purchase_order)} is paid in full: {_amount(received, purchase_order)}.",
    )


def refund_or_dispute(purchase_order: PurchaseOrder, *, key: str, description: str) -> None:
    """Money going back (a refund, a dispute opened, lost or won): ``key`` is Stripe's id of it,
    with its state (``re_123-succeeded``, ``dp_123-funds_withdrawn``), so each step tells once."""
    notify(
        kind=Kind.REFUND_OR_DISPUTE,
        key=key,
        purchase_order=purchase_order,
        subject=f"{purchase_order.reference}: {description}",
        body=f"{_about(purchase_order)}: {description}.",
    )


def payment_failed(purchase_order: PurchaseOrder, *, event_id: str, invoice_id: str) -> None:
    """Stripe said a payment attempt on the PO's invoice failed (one e-mail per event)."""
    notify(
        kind=Kind.PAYMENT_FAILED,
        key=event_id or f"{invoice_id}-payment-failed",
        purchase_order=purchase_order,
        subject=f"A payment on {purchase_order.reference} failed",
        body=(
            f"{_about(purchase_order)}: a payment on Stripe invoice {invoice_id} failed. "
            "The invoice stays open; the customer can pay again from the hosted page."
        ),
    )


def creation_blocked(purchase_order: PurchaseOrder, *, message: str) -> None:
    """The invoice cannot be created until someone acts (once per generation and reason)."""
    digest = hashlib.sha256(message.encode()).hexdigest()[:16]
    notify(
        kind=Kind.CREATION_BLOCKED,
        key=f"po-{purchase_order.uid}-g{purchase_order.generation}-{digest}",
        purchase_order=purchase_order,
        subject=f"The invoice of {purchase_order.reference} cannot be created",
        body=(
            f"{_about(purchase_order)}: {message}\nFix the cause (the conference's Stripe key, the "
            "amounts), then act on the PO in the admin; nothing is retried until then."
        ),
    )


# Invoices further past due than this are not mailed: they fell due before anyone asked (or the
# beat was away that long); the receivables overview lists them, a flood of e-mails would not help.
OVERDUE_NOTICE_WINDOW = datetime.timedelta(days=31)


def notify_overdue_invoices(*, now: datetime.datetime | None = None) -> int:
    """Tell subscribers once per invoice that it fell past due with a balance; the count told."""
    now = now or timezone.now()
    conference_ids = {
        conference_id
        for conference_id, kinds in NotificationSubscription.objects.values_list(
            "conference_id", "kinds"
        )
        if Kind.INVOICE_OVERDUE in kinds
    }
    if not conference_ids:
        return 0
    already = Notification.objects.filter(kind=Kind.INVOICE_OVERDUE).values("key")
    candidates = (
        with_money_totals(
            PurchaseOrder.objects.filter(conference_id__in=conference_ids).select_related(
                "conference"
            )
        )
        .filter(overdue(None, now=now), invoice_due_at__gt=now - OVERDUE_NOTICE_WINDOW)
        .exclude(Q(stripe_invoice_id="") | Q(stripe_invoice_id__in=already))
        .order_by("invoice_due_at")
    )
    told = 0
    for po in candidates.iterator(chunk_size=500):
        assert po.invoice_due_at is not None  # overdue() requires it
        with transaction.atomic():
            created = notify(
                kind=Kind.INVOICE_OVERDUE,
                key=po.stripe_invoice_id,
                purchase_order=po,
                subject=f"Invoice of {po.reference} is overdue",
                body=(
                    f"{_about(po)}: {_amount(po.admin_balance, po)} was due on "  # type: ignore[attr-defined]
                    f"{po.invoice_due_at.date().isoformat()} and is not paid."
                ),
            )
        told += bool(created)
    return told


# --- Sending -------------------------------------------------------------------------------------


def send_notification(*, notification_id: int) -> bool:
    """Send one notification unless it was sent; True when this call sent it.

    Raises whatever the mail backend raises (the task retries transient failures).
    """
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("recipient")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None or notification.status == Notification.Status.SENT:
            return False
        recipient = notification.recipient
        if not recipient.is_active or not recipient.email:
            notification.status = Notification.Status.FAILED
            notification.last_error = "The recipient has no e-mail address or is inactive."
            notification.save(update_fields=["status", "last_error"])
            return False
        send_mail(
            notification.subject,
            notification.body,
            None,  # DEFAULT_FROM_EMAIL
            [recipient.email],
        )
        notification.status = Notification.Status.SENT
        notification.sent_at = timezone.now()
        notification.attempts += 1
        notification.last_error = ""
        notification.save(update_fields=["status", "sent_at", "attempts", "last_error"])
    logger.info("notification %s (%s) sent", notification.pk, notification.kind)
    return True


def record_send_failure(*, notification_id: int, error: str, final: bool) -> None:
    """Count a failed attempt; ``final``: no more retries, the row shows it failed."""
    fields: dict[str, object] = {"last_error": error[:2000]}
    if final:
        fields["status"] = Notification.Status.FAILED
    Notification.objects.filter(pk=notification_id).exclude(status=Notification.Status.SENT).update(
        **fields
    )


def pending_notification_ids(*, older_than: datetime.timedelta, limit: int = 500) -> list[int]:
    """Notifications whose send request was lost (broker down at commit): the beat asks again."""
    return list(
        Notification.objects.filter(
            status=Notification.Status.PENDING, created_at__lte=timezone.now() - older_than
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def may_subscribe(user: access.Person, conference_id: int) -> bool:
    """Whether the person may choose e-mails about this conference (organizers and above)."""
    return access.may(user, conference_id, Role.ORGANIZER)
