"""The project's routes plus two views to compare the webhook view with, served by the same gunicorn
and middleware: ``/trivial/`` answers like the webhook view and does nothing (benchmark 1's
ceiling); ``/store-only/`` does nothing but the one durable write any design must make before it
answers (the floor: one autocommit INSERT of the body into ``bench_webhook_floor``)."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def trivial(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"received": True, "duplicate": False})


FLOOR_TABLE = "bench_webhook_floor"


@csrf_exempt
def store_only(request: HttpRequest) -> JsonResponse:
    connection = transaction.get_connection()
    connection.health_check_done = True  # as the webhook view: its query is the check
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {FLOOR_TABLE} (body) VALUES (%s)",  # noqa: S608 (a constant)
            [request.body.decode()],
        )
    return JsonResponse({"received": True, "duplicate": False})


urlpatterns = [
    path("trivial/", trivial),
    path("store-only/", store_only),
    path("", include("config.urls")),
]
