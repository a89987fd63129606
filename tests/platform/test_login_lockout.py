"""Failed-login lockout (django-axes): after DJANGO_LOGIN_FAILURE_LIMIT wrong passwords for one
username from one address, that pair is refused for DJANGO_LOGIN_LOCKOUT_MINUTES."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.support.celery_workers import worker_environment
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password"


def login(client: Client, password: str, *, address: str = "203.0.113.7") -> Any:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "staff", "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def test_the_limit_locks_the_username_from_that_address(settings: Any, tmp_path: Any) -> None:
    settings.STATIC_ROOT = tmp_path
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_user("staff", password=PASSWORD, is_staff=True)
    client = Client()
    for _ in range(2):
        assert login(client, "guess").status_code == 200  # the form again, with its error
    assert login(client, "guess").status_code == 429
    assert login(client, PASSWORD).status_code == 429  # the right password no longer helps
    # Another address is another pair: the person can still sign in from their own machine.
    assert login(Client(), PASSWORD, address="198.51.100.4").status_code == 302


def test_the_lockout_comes_from_the_environment() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.AXES_ENABLED, s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.TRUSTED_PROXY_COUNT)"
    )
    env = worker_environment(
        {
            "DJANGO_LOGIN_FAILURE_LIMIT": "7",
            "DJANGO_LOGIN_LOCKOUT_MINUTES": "45",
            "DJANGO_TRUSTED_PROXY_COUNT": "1",
        }
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split("\n")[-2] == "True 7 0:45:00 1", out.stderr
