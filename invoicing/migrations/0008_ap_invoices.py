"""AP-ready invoices: buyer PO number, legal name, billing address, tax IDs; one Stripe customer
per (conference, organization); the invoice PDF, total and tax."""

from django.db import migrations, models

import invoicing.models.conferences
from invoicing.billing_details import organization_key


def key_customers_by_organization(apps, schema_editor):
    """Customers were keyed by e-mail and named after the first PO's organization: key them by
    that organization now. Two rows of one organization (two mailboxes) keep the oldest as the
    organization's customer; the others get a key no name normalizes to (a leading "-", which
    ``organization_key`` strips), so they stay as they are (their POs keep them) and are never
    matched again."""
    StripeCustomer = apps.get_model("invoicing", "StripeCustomer")
    taken = set()
    for customer in StripeCustomer.objects.order_by("conference_id", "created_at", "pk"):
        key = organization_key(customer.name) or customer.email
        if (customer.conference_id, key) in taken:
            key = f"-{key}#{customer.pk}"
        taken.add((customer.conference_id, key))
        customer.organization_key = key
        customer.save(update_fields=["organization_key"])


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0007_stripe_write_requests"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="stripecustomer",
            name="stripe_customer_unique_email",
        ),
        migrations.AddField(
            model_name="conference",
            name="automatic_tax",
            field=models.BooleanField(
                default=False,
                help_text="Stripe Tax computes the tax on each invoice (needs Stripe Tax set up in the account, and a billing address on every PO); the company then owes the invoice's total.",
            ),
        ),
        migrations.AddField(
            model_name="conference",
            name="invoice_shows_our_reference",
            field=models.BooleanField(
                default=False,
                help_text="Print our PO reference on invoices (“Our reference”), next to the buyer's.",
            ),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="billing_address",
            field=models.JSONField(
                blank=True,
                default=dict,
                validators=[invoicing.models.conferences.validate_billing_address],
            ),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="buyer_po_number",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The company's own purchase order number; printed as “PO number”.",
                max_length=140,
                verbose_name="buyer's PO number",
            ),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="legal_name",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The name invoices must carry, if it differs from the organization name.",
                max_length=200,
            ),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="stripe_invoice_pdf",
            field=models.URLField(blank=True, default="", max_length=1000),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="stripe_invoice_tax",
            field=models.DecimalField(blank=True, decimal_places=3, max_digits=14, null=True),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="stripe_invoice_total",
            field=models.DecimalField(blank=True, decimal_places=3, max_digits=14, null=True),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="tax_ids",
            field=models.JSONField(
                blank=True,
                default=invoicing.models.conferences.default_tax_ids,
                validators=[invoicing.models.conferences.validate_tax_ids],
            ),
        ),
        migrations.AddField(
            model_name="stripecustomer",
            name="address",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="stripecustomer",
            name="details_digest",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="stripecustomer",
            name="details_version",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="stripecustomer",
            name="organization_key",
            field=models.CharField(default="", max_length=200),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="stripecustomer",
            name="pending_digest",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="stripecustomer",
            name="tax_ids",
            field=models.JSONField(
                blank=True, default=invoicing.models.conferences.default_tax_ids
            ),
        ),
        migrations.RunPython(key_customers_by_organization, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="stripecustomer",
            constraint=models.UniqueConstraint(
                fields=("conference", "organization_key"),
                name="stripe_customer_unique_organization",
            ),
        ),
    ]
