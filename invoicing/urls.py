"""Routes of the invoicing app (the Stripe webhook endpoint and the health check)."""

from django.urls import URLPattern, path

from invoicing.health import health
from invoicing.views import stripe_webhook

urlpatterns: list[URLPattern] = [
    path("health/", health, name="health"),
    path(
        "stripe/webhooks/<slug:conference_slug>/",
        stripe_webhook,
        name="stripe-webhook",
    ),
]
