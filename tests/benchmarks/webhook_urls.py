"""The project's routes plus ``/trivial/``: a CSRF-exempt view that answers like the webhook view
and does nothing (the ceiling of benchmark 1, served by the same gunicorn and middleware)."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def trivial(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"received": True, "duplicate": False})


urlpatterns = [
    path("trivial/", trivial),
    path("", include("config.urls")),
]
