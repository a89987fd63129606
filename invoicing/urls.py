"""Routes of the invoicing app (the Stripe webhook endpoint and the health check)."""

from django.urls import URLPattern, path

from invoicing.health import health

urlpatterns: list[URLPattern] = [
    path("health/", health, name="health"),
]
