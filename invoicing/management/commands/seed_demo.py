"""``manage.py seed_demo``: the demo conference, an admin login and a few purchase orders.

Idempotent: run it as often as you like (``make run`` runs it at every start). It

- creates (or keeps) the conference ``demo`` whose Stripe key is an *emulator* account key
  (``sk_test_...``, not a secret: it only means something to the emulator);
- registers its webhook endpoint with the same Stripe API call real Stripe takes
  (``client.v1.webhook_endpoints.create``, against ``STRIPE_API_BASE``) and stores the returned
  ``whsec_`` secret and endpoint id, or keeps the endpoint already registered;
- creates (or resets the password of) a superuser and prints the login;
- adds the demo POs that are missing: drafts to approve, one approved (so the worker invoices it),
  one cancelled, one paid by card then refunded, one whose amount owed was reduced by a
  credit note, one reduced by line (two of its five booth passes; :mod:`._demo_money`).

The emulator keeps its accounts in memory. When it restarted, the demo account at "Stripe" is
empty while the database still knows its customers and invoices: the demo conference's POs,
events and customers are then deleted and seeded again, since a ledger must equal Stripe.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import stripe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from invoicing.logging import scrub_secrets
from invoicing.management.commands import _demo_money
from invoicing.models import (
    Conference,
    PurchaseOrder,
    PurchaseOrderCredit,
    PurchaseOrderDispute,
    PurchaseOrderPayment,
    StripeCustomer,
    StripeEvent,
    StripeSyncState,
    StripeWriteRequest,
)
from invoicing.services import purchase_orders
from invoicing.services.purchase_orders import LineItemInput
from invoicing.services.stripe_client import build_stripe_client
from invoicing.services.webhook_endpoints import WebhookRegistrationError, register_webhook_endpoint

DEMO_SLUG = "demo"
DEMO_NAME = "DemoCon 2026"
# An account of the Stripe emulator: any well-formed key is one. Not a secret.
DEMO_STRIPE_KEY = "sk_test_emulator_democon_2026_account"
DEFAULT_SITE_URL = "http://127.0.0.1:8000"
DEFAULT_ADMIN_USERNAME = "admin"
PASSWORD_FILE_NAME = "demo-admin-password"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class DemoPurchaseOrder:
    reference: str
    organization: str
    contact_name: str
    contact_email: str
    lines: tuple[LineItemInput, ...]
    state: str  # "draft", "approved", "cancelled", "refunded", "reduced" or "reduced_by_line"
    billing: dict[str, Any] = field(default_factory=dict)  # create_purchase_order's billing kwargs


DEMO_PURCHASE_ORDERS = (
    DemoPurchaseOrder(
        "DEMO-1001",
        "Initech",
        "Bill Lumbergh",
        "ap@initech.example",
        (
            LineItemInput("Gold sponsorship", 1, Decimal("5000.00")),
            LineItemInput("Conference ticket", 3, Decimal("450.00")),
        ),
        "draft",
    ),
    DemoPurchaseOrder(
        "DEMO-1002",
        "Globex Corporation",
        "Hank Scorpio",
        "billing@globex.example",
        (LineItemInput("Conference ticket", 10, Decimal("450.00")),),
        "draft",
    ),
    DemoPurchaseOrder(
        "DEMO-1003",
        "Umbrella Labs",
        "Alice Abernathy",
        "payables@umbrella.example",
        (
            LineItemInput("Exhibition booth (3 x 3 m)", 1, Decimal("2500.00")),
            LineItemInput("Booth staff pass", 2, Decimal("150.00")),
        ),
        "draft",
    ),
    DemoPurchaseOrder(
        "DEMO-1004",
        "Acme Corporation",
        "Wile E. Coyote",
        "accounts@acme.example",
        (
            LineItemInput("Silver sponsorship", 1, Decimal("3000.00")),
            LineItemInput("Conference ticket", 2, Decimal("450.00")),
        ),
        "approved",
        {
            "buyer_po_number": "4500012345",
            "legal_name": "Acme Corporation GmbH",
            "billing_address": {
                "line1": "Friedrichstr. 10",
                "city": "Berlin",
                "postal_code": "10117",
                "country": "DE",
            },
            "tax_ids": [{"type": "eu_vat", "value": "DE123456789"}],
        },
    ),
    DemoPurchaseOrder(
        "DEMO-1005",
        "Hooli",
        "Gavin Belson",
        "finance@hooli.example",
        (LineItemInput("Diversity scholarship sponsorship", 1, Decimal("1500.00")),),
        "cancelled",
    ),
    DemoPurchaseOrder(
        "DEMO-1006",
        "Stark Industries",
        "Pepper Potts",
        "ap@stark.example",
        (
            LineItemInput("Bronze sponsorship", 1, Decimal("1000.00")),
            LineItemInput("Conference ticket", 3, Decimal("450.00")),
        ),
        "refunded",
    ),
    DemoPurchaseOrder(
        "DEMO-1007",
        "Wayne Enterprises",
        "Lucius Fox",
        "payables@wayne.example",
        (LineItemInput("Exhibition booth (3 x 3 m)", 1, Decimal("2500.00")),),
        "reduced",
    ),
    DemoPurchaseOrder(
        "DEMO-1008",
        "Cyberdyne Systems",
        "Miles Dyson",
        "ap@cyberdyne.example",
        (
            LineItemInput("Startup sponsorship", 1, Decimal("1500.00")),
            LineItemInput("Booth pass", 5, Decimal("200.00")),
        ),
        "reduced_by_line",
    ),
)


def password_file() -> Path:
    return Path(settings.VAR_DIR) / PASSWORD_FILE_NAME


def demo_admin_password(explicit: str | None) -> str:
    """The given password, else the one stored under VAR_DIR, else a new one (then stored)."""
    path = password_file()
    if explicit:
        password = explicit
    elif path.exists():
        password = path.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
    if not path.exists() or path.read_text().strip() != password:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    return password


def _exists_at_stripe(client: stripe.StripeClient, kind: str, object_id: str) -> bool:
    try:
        if kind == "invoice":
            client.v1.invoices.retrieve(object_id)
        else:
            client.v1.customers.retrieve(object_id)
    except stripe.InvalidRequestError as error:
        if error.code == "resource_missing" or error.http_status == 404:
            return False
        raise
    return True


def stripe_forgot_demo(conference: Conference) -> bool:
    """True when the conference's Stripe account no longer has the objects our rows point to."""
    client = build_stripe_client(conference)
    invoice_id = (
        PurchaseOrder.objects.filter(conference=conference)
        .exclude(stripe_invoice_id="")
        .values_list("stripe_invoice_id", flat=True)
        .first()
    )
    if invoice_id is not None:
        return not _exists_at_stripe(client, "invoice", invoice_id)
    customer_id = (
        StripeCustomer.objects.filter(conference=conference)
        .exclude(stripe_customer_id="")
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    if customer_id is not None:
        return not _exists_at_stripe(client, "customer", customer_id)
    return False


def reset_demo_conference(conference: Conference) -> int:
    """Delete the conference's POs (with lines and ledger), inbox events and customers."""
    with transaction.atomic():
        PurchaseOrderPayment.objects.filter(purchase_order__conference=conference).delete()
        StripeWriteRequest.objects.filter(purchase_order__conference=conference).delete()
        PurchaseOrderCredit.objects.filter(purchase_order__conference=conference).delete()
        PurchaseOrderDispute.objects.filter(purchase_order__conference=conference).delete()
        StripeEvent.objects.filter(conference=conference).delete()
        deleted, _ = PurchaseOrder.objects.filter(conference=conference).delete()
        StripeCustomer.objects.filter(conference=conference).delete()
        # The reconciliation's events cursor pointed into the account that is gone.
        StripeSyncState.objects.filter(conference=conference).delete()
        conference.stripe_webhook_endpoint_id = ""
        conference.stripe_webhook_secret = ""
        conference.save(
            update_fields=["stripe_webhook_endpoint_id", "stripe_webhook_secret", "updated_at"]
        )
    return deleted


class Command(BaseCommand):
    help = (
        "Seed the demo: conference 'demo' on the Stripe emulator (webhook endpoint registered "
        "through the Stripe API), a superuser and a few purchase orders. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--site-url",
            default=DEFAULT_SITE_URL,
            help=f"where Stripe (the emulator) reaches this site's webhooks ({DEFAULT_SITE_URL})",
        )
        parser.add_argument(
            "--stripe-key",
            default=DEMO_STRIPE_KEY,
            help="the emulator account of the demo conference",
        )
        parser.add_argument("--admin-username", default=DEFAULT_ADMIN_USERNAME)
        parser.add_argument(
            "--admin-password",
            default=os.environ.get("DEMO_ADMIN_PASSWORD") or None,
            help=(
                "default: $DEMO_ADMIN_PASSWORD, else the one stored in "
                f"$VAR_DIR/{PASSWORD_FILE_NAME}, else a new random one"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.STRIPE_API_BASE:
            raise CommandError(
                "seed_demo seeds a conference on the Stripe emulator: set STRIPE_API_BASE to the "
                "emulator's address (make run does). To use real Stripe, create a conference in "
                "the admin and run register_stripe_webhook."
            )
        key: str = options["stripe_key"]
        if not key.startswith("sk_test_"):
            raise CommandError("The demo conference takes a test-mode key (sk_test_...).")

        conference = self._conference(key)
        try:
            if stripe_forgot_demo(conference):
                deleted = reset_demo_conference(conference)
                self.stdout.write(
                    self.style.WARNING(
                        "The Stripe emulator no longer knows the demo account's invoices (it "
                        f"keeps them in memory and was restarted): reset the demo conference "
                        f"({deleted} rows deleted) and seeding it again."
                    )
                )
            registration = register_webhook_endpoint(conference=conference, url=options["site_url"])
        except WebhookRegistrationError as error:
            raise CommandError(str(error)) from None
        except stripe.StripeError as error:
            message = error.user_message or str(error) or type(error).__name__
            raise CommandError(
                f"The Stripe emulator at {settings.STRIPE_API_BASE} refused or failed "
                f"({type(error).__name__}): {scrub_secrets(message)}"
            ) from None
        verb = "registered" if registration.created else "kept"
        self.stdout.write(
            f"Conference {conference.slug!r} ({conference.name}): webhook endpoint "
            f"{registration.endpoint_id} {verb} for {registration.url}"
        )

        username: str = options["admin_username"]
        password = demo_admin_password(options["admin_password"])
        admin = self._superuser(username, password)
        self.stdout.write(f"Admin login: {username} / {password}")

        for spec in DEMO_PURCHASE_ORDERS:
            po, created = self._purchase_order(conference, spec, admin)
            state = po.get_status_display()
            self.stdout.write(
                f"  {po.reference:<10} {po.organization_name:<20} "
                f"{'created, ' if created else ''}{state}"
            )

    def _conference(self, key: str) -> Conference:
        conference, created = Conference.objects.get_or_create(
            slug=DEMO_SLUG,
            defaults={"name": DEMO_NAME, "currency": "usd", "stripe_secret_key": key},
        )
        if not created and conference.stripe_secret_key != key:
            conference.stripe_secret_key = key
            conference.save(update_fields=["stripe_secret_key", "updated_at"])
        if not conference.is_active:
            conference.is_active = True
            conference.save(update_fields=["is_active", "updated_at"])
        return conference

    def _superuser(self, username: str, password: str) -> Any:
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@democon.example"}
        )
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
        return user

    def _purchase_order(
        self, conference: Conference, spec: DemoPurchaseOrder, admin: Any
    ) -> tuple[PurchaseOrder, bool]:
        existing = PurchaseOrder.objects.filter(
            conference=conference, reference=spec.reference
        ).first()
        if existing is not None:
            return existing, False
        po = purchase_orders.create_purchase_order(
            conference=conference,
            reference=spec.reference,
            organization_name=spec.organization,
            contact_name=spec.contact_name,
            contact_email=spec.contact_email,
            lines=spec.lines,
            **spec.billing,
        )
        if spec.state == "approved":
            # Approval queues the invoice creation (on commit): the worker takes it from there.
            po = purchase_orders.approve_purchase_order(po, approved_by=admin)
        elif spec.state == "refunded":
            po = _demo_money.paid_then_refunded(po, admin)
        elif spec.state == "reduced":
            po = _demo_money.owes_less(po, admin)
        elif spec.state == "reduced_by_line":
            po = _demo_money.owes_less_by_line(po, admin)
        elif spec.state == "cancelled":
            po = purchase_orders.cancel_purchase_order(
                po, cancelled_by=admin, reason="Sponsorship budget withdrawn."
            )
        return po, True
