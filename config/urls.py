"""URL routes: the admin and the app's endpoints."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("invoicing.urls")),
]
