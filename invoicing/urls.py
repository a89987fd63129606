"""Routes of the invoicing app (the Stripe webhook endpoint and the health check)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
