"""What the proxies in front of the site tell us: the address of the client (for the lockout).

With ``DJANGO_TRUSTED_PROXY_COUNT=0`` (the default) the client is whoever connected
(``REMOTE_ADDR``). Behind N proxies each appends the address it saw to ``X-Forwarded-For``; the
N-th entry from the right is the one the outermost trusted proxy saw. Entries further left were
written by the client itself and mean nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    count: int = settings.TRUSTED_PROXY_COUNT
    remote: str | None = request.META.get("REMOTE_ADDR")
    if count <= 0:
        return remote
    forwarded = [
        entry.strip()
        for entry in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if entry.strip()
    ]
    if len(forwarded) < count:
        return remote  # not through all the proxies: what connected is all we know
    return forwarded[-count]
