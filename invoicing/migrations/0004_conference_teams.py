"""Conference teams: roles, the record of settings changes, the second approver, the account of a key."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0003_stripe_event_payload_lz4"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="conference",
            name="approvals_need_second_person",
            field=models.BooleanField(
                default=False,
                help_text="Approvals need a second person: whoever created or last edited a purchase order cannot approve it.",
            ),
        ),
        migrations.AddField(
            model_name="conference",
            name="stripe_account_id",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="purchaseorder",
            name="last_edited_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.CreateModel(
            name="ConferenceRole",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("viewer", "Viewer"),
                            ("organizer", "Organizer"),
                            ("finance", "Finance admin"),
                        ],
                        max_length=16,
                    ),
                ),
                ("granted_at", models.DateTimeField(auto_now=True)),
                (
                    "conference",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="roles",
                        to="invoicing.conference",
                    ),
                ),
                (
                    "granted_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="conference_roles",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "conference role",
                "ordering": ("conference", "user"),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("conference", "user"), name="conference_role_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("role__in", ["viewer", "organizer", "finance"])),
                        name="conference_role_valid",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="ConferenceSettingsChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("changed_at", models.DateTimeField(auto_now_add=True)),
                (
                    "fields",
                    models.JSONField(
                        default=list, help_text="Names of the fields, never their values."
                    ),
                ),
                (
                    "outcome",
                    models.CharField(
                        choices=[("applied", "Applied"), ("refused", "Refused")], max_length=16
                    ),
                ),
                (
                    "reason",
                    models.TextField(blank=True, default="", help_text="Why it was refused."),
                ),
                ("switched_stripe_account", models.BooleanField(default=False)),
                (
                    "changed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "conference",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="settings_changes",
                        to="invoicing.conference",
                    ),
                ),
            ],
            options={
                "ordering": ("-changed_at", "-pk"),
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("outcome__in", ["applied", "refused"])),
                        name="conference_settings_change_outcome_valid",
                    )
                ],
            },
        ),
    ]
