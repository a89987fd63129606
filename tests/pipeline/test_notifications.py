"""E-mail notifications through the real pipeline: decided once, sent by the worker after commit.

The session's embedded worker runs in this process (a thread), so Django's locmem mail backend
(pytest-django's ``mailoutbox``) sees what the worker sent. Replays are real: the same Stripe
event recorded twice and its task run again, a second event showing the same payment, the send
task queued twice. The worker's queue is first-in first-out with one consumer, so a marker
notification queued last and seen sent means everything queued before it ran.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from invoicing.models import (
    Conference,
    Notification,
    NotificationKind,
    NotificationSubscription,
    PurchaseOrder,
    Role,
    StripeEvent,
)
from invoicing.services import invoice_sync, notifications, purchase_orders, webhook_intake
from invoicing.services.conference_access import grant_conference_role, revoke_conference_role
from tests.core.conftest import MakeConference, MakePurchaseOrder
from tests.core.test_stripe_invoicing import stripe_events as emulator_events
from tests.pipeline.conftest import wait_for, wait_for_status
from tests.stripe_emulator.handle import EmulatorHandle
from workers import money_tasks, tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

Status = PurchaseOrder.Status
Kind = NotificationKind


def person(conference: Conference, name: str, role: Role, kinds: list[str]) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", "not-used")
    grant_conference_role(conference=conference, user=user, role=role)
    NotificationSubscription.objects.create(conference=conference, user=user, kinds=kinds)
    return user


def record(conference: Conference, event: dict[str, Any]) -> StripeEvent:
    event = json.loads(json.dumps(event, default=str))
    return webhook_intake.record_stripe_event(conference=conference, event=event).stripe_event


def settled(row: StripeEvent) -> None:
    def done() -> bool:
        row.refresh_from_db()
        return row.status in {StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED}

    wait_for(done, message=f"event {row.stripe_event_id} stayed {row.status}")


def drain(po: PurchaseOrder, recipient: User) -> None:
    """Queue a marker notification last and wait for it, twice: the first round runs what was
    queued before it, the second what those tasks queued when they committed (the sends)."""
    for _ in range(2):
        marker = Notification.objects.create(
            kind=Kind.PAYMENT_FAILED,
            key=f"marker-{timezone.now().timestamp()}",
            recipient=recipient,
            conference=po.conference,
            purchase_order=po,
            subject="marker",
            body="marker",
        )
        money_tasks.send_notification.delay(marker.pk)
        wait_for(Notification.objects.filter(pk=marker.pk, status="sent").exists)
        Notification.objects.filter(pk=marker.pk).delete()
    mail.outbox[:] = [m for m in mail.outbox if m.subject != "marker"]


def test_payment_and_paid_are_told_once_under_replays(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    mailoutbox: list[Any],
) -> None:
    organizer = person(stripe_conference, "ada", Role.ORGANIZER, list(Kind.values))
    person(stripe_conference, "vic", Role.VIEWER, list(Kind.values))  # viewers are not told
    person(stripe_conference, "quiet", Role.ORGANIZER, [Kind.INVOICE_OVERDUE])
    po = wait_for_status(make_purchase_order(conference=stripe_conference), Status.INVOICED)

    stripe_emulator.pay_invoice(po.stripe_invoice_id)  # the whole amount, by card
    (event,) = emulator_events(stripe_emulator, stripe_secret_key, "invoice_payment.paid")
    row = record(stripe_conference, event)
    settled(row)
    wait_for_status(po, Status.PAID)
    wait_for(lambda: len(mailoutbox) == 2, message=f"mails: {[m.subject for m in mailoutbox]}")

    # Replays: the same delivery again, its task again, another event with the same payment,
    # a sync, and every send task queued a second time.
    assert not webhook_intake.record_stripe_event(conference=stripe_conference, event=event).created
    tasks.process_stripe_event.delay(row.pk)
    (paid_event,) = emulator_events(stripe_emulator, stripe_secret_key, "invoice.paid")
    settled(record(stripe_conference, paid_event))
    tasks.sync_purchase_order.delay(po.pk)
    for notification in Notification.objects.all():
        money_tasks.send_notification.delay(notification.pk)
    drain(po, organizer)

    assert sorted(m.subject for m in mailoutbox) == sorted(
        [
            f"[{stripe_conference.name}] 6350.00 USD received on {po.reference}",
            f"[{stripe_conference.name}] {po.reference} is paid in full",
        ]
    )
    assert all(m.to == ["ada@example.com"] for m in mailoutbox)
    rows = Notification.objects.order_by("kind")
    assert [(n.kind, n.recipient_id, n.status) for n in rows] == [
        (Kind.PAYMENT_RECEIVED, organizer.pk, "sent"),
        (Kind.PO_PAID, organizer.pk, "sent"),
    ]
    assert f"/admin/invoicing/purchaseorder/{po.pk}/change/" in mailoutbox[0].body


def test_payment_failed_and_creation_blocked_once_each(
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    stripe_conference: Conference,
    make_purchase_order: MakePurchaseOrder,
    mailoutbox: list[Any],
) -> None:
    organizer = person(stripe_conference, "bea", Role.FINANCE, list(Kind.values))
    po = wait_for_status(make_purchase_order(conference=stripe_conference), Status.INVOICED)
    result = stripe_emulator.pay_invoice(
        po.stripe_invoice_id, payment_method_type="us_bank_account", pending=True
    )
    stripe_emulator.fail_payment(result["invoice_payment"]["id"])
    (failed,) = emulator_events(stripe_emulator, stripe_secret_key, "invoice.payment_failed")
    settled(record(stripe_conference, failed))
    # The handler run again on the same event (a replay from the admin does exactly this).
    invoice_sync.handle_invoice_event(conference=stripe_conference, event=failed)

    message = "invoice creation failed: InvalidRequestError: amount_too_large"
    purchase_orders.record_invoice_error(po, message=message, blocks_creation=True)
    purchase_orders.record_invoice_error(po, message=message, blocks_creation=True)  # retried
    drain(po, organizer)

    assert sorted(m.subject.split("] ", 1)[1] for m in mailoutbox) == sorted(
        [
            f"A payment on {po.reference} failed",
            f"The invoice of {po.reference} cannot be created",
        ]
    )
    assert Notification.objects.filter(kind=Kind.PAYMENT_FAILED, key=failed["id"]).count() == 1


def test_overdue_invoices_are_told_once_by_the_beat_task(
    make_conference: MakeConference, make_purchase_order: MakePurchaseOrder, mailoutbox: list[Any]
) -> None:
    conference = make_conference()
    organizer = person(conference, "cy", Role.ORGANIZER, [Kind.INVOICE_OVERDUE])
    po = make_purchase_order(conference=conference, approve=False)
    due = timezone.now() - datetime.timedelta(days=2)
    PurchaseOrder.objects.filter(pk=po.pk).update(  # an invoiced PO, as Stripe left it
        status=Status.INVOICED, stripe_invoice_id="in_overdue_1", invoice_due_at=due
    )
    # Long overdue before anyone asked: the overview shows it, no e-mail flood.
    stale = make_purchase_order(conference=conference, approve=False, reference="STALE")
    PurchaseOrder.objects.filter(pk=stale.pk).update(
        status=Status.PARTIALLY_PAID,
        stripe_invoice_id="in_stale_1",
        invoice_due_at=timezone.now() - datetime.timedelta(days=45),
    )
    not_due = make_purchase_order(conference=conference, approve=False, reference="LATER")
    PurchaseOrder.objects.filter(pk=not_due.pk).update(
        status=Status.INVOICED,
        stripe_invoice_id="in_later_1",
        invoice_due_at=timezone.now() + datetime.timedelta(days=3),
    )

    money_tasks.notify_overdue_invoices.delay()
    money_tasks.notify_overdue_invoices.delay()  # the beat runs it again an hour later
    drain(po, organizer)

    assert [m.subject for m in mailoutbox] == [
        f"[{conference.name}] Invoice of {po.reference} is overdue"
    ]
    assert f"was due on {due.date().isoformat()}" in mailoutbox[0].body
    # A person who lost the role is no longer told (revoked, then a new invoice falls due).
    revoke_conference_role(conference=conference, user=organizer)
    assert notifications.recipients(conference.pk, Kind.INVOICE_OVERDUE) == []


def test_organizers_choose_their_own_emails_for_their_conferences_only(
    make_conference: MakeConference,
) -> None:
    mine, theirs = make_conference(), make_conference()
    user = User.objects.create_user("dee", "dee@example.com", "not-used")
    grant_conference_role(conference=mine, user=user, role=Role.ORGANIZER)
    client = Client()
    client.force_login(user)
    add = reverse("admin:invoicing_notificationsubscription_add")

    refused = client.post(add, {"conference": theirs.pk, "kinds": [Kind.PO_PAID]})
    assert refused.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in refused.content.decode()
    saved = client.post(add, {"conference": mine.pk, "kinds": [Kind.PO_PAID, Kind.PAYMENT_FAILED]})
    assert saved.status_code == 302
    (choice,) = NotificationSubscription.objects.all()
    assert (choice.user_id, choice.conference_id) == (user.pk, mine.pk)
    assert choice.kinds == [Kind.PO_PAID, Kind.PAYMENT_FAILED]
    again = client.post(add, {"conference": mine.pk, "kinds": [Kind.PO_PAID]})
    assert "already chosen" in again.content.decode()

    viewer = User.objects.create_user("eve", "eve@example.com", "not-used")
    grant_conference_role(conference=mine, user=viewer, role=Role.VIEWER)
    client.force_login(viewer)
    assert client.get(add).status_code == 403
    changelist = client.get(reverse("admin:invoicing_notificationsubscription_changelist"))
    assert "dee" not in changelist.content.decode()  # another person's choices stay theirs
