"""Routes of the invoicing app (the Stripe webhook endpoint, the health check, the icon)."""

from django.urls import URLPattern, path

from invoicing.favicon import favicon
from invoicing.health import health
from invoicing.views import stripe_webhook

urlpatterns: list[URLPattern] = [
    path("health/", health, name="health"),
    path("favicon.ico", favicon, name="favicon"),
    path(
        "stripe/webhooks/<slug:conference_slug>/",
        stripe_webhook,
        name="stripe-webhook",
    ),
]
