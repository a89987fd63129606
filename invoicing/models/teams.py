"""Conference teams: who holds which role in a conference, and the record of its settings changes.

They name the conference by its label (``"invoicing.Conference"``): this module imports no other
model module.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    """A person's role in one conference; each includes what the roles before it allow."""

    VIEWER = "viewer", "Viewer"
    ORGANIZER = "organizer", "Organizer"
    FINANCE = "finance", "Finance admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def includes(self, other: Role) -> bool:
        """Whether this role may do what ``other`` may (a finance admin is also an organizer)."""
        return self.rank >= other.rank

    @classmethod
    def at_least(cls, role: Role) -> list[Role]:
        return [candidate for candidate in cls if candidate.includes(role)]


class ConferenceRole(models.Model):
    """One person's role in one conference: what they see and do there, and nowhere else."""

    conference = models.ForeignKey(
        "invoicing.Conference", on_delete=models.CASCADE, related_name="roles"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conference_roles"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    granted_at = models.DateTimeField(auto_now=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("conference", "user")
        verbose_name = "conference role"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=("conference", "user"), name="conference_role_unique"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="conference_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.get_role_display().lower()} of {self.conference}"


class ConferenceSettingsChange(models.Model):
    """Who changed (or tried to change) which settings of a conference, and when.

    Field names only, never values: the values include the Stripe secrets.
    """

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        REFUSED = "refused", "Refused"

    conference = models.ForeignKey(
        "invoicing.Conference", on_delete=models.CASCADE, related_name="settings_changes"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    fields = models.JSONField(default=list, help_text="Names of the fields, never their values.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField(blank=True, default="", help_text="Why it was refused.")
    switched_stripe_account = models.BooleanField(default=False)

    class Meta:
        ordering = ("-changed_at", "-pk")
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(outcome__in=["applied", "refused"]),
                name="conference_settings_change_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} change of {', '.join(self.fields)}"
