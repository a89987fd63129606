"""The client's address for the lockout: never one the client wrote itself."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from config.proxy import client_address


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.1"),  # no proxy trusted: whoever connected
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # what our proxy saw, not the client's claim
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.1"),  # came round the proxies: what connected
    ],
)
def test_client_address(settings: Any, proxies: int, forwarded: str, expected: str) -> None:
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected
