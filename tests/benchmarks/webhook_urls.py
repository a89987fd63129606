"""The project's routes plus ``/trivial/``: a CSRF-exempt POST view that does nothing."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"received": true}', content_type="application/json")


urlpatterns = [
    path("trivial/", trivial),
    path("", include("config.urls")),
]
