"""Production settings: HTTPS by default outside DJANGO_DEBUG, Django's deploy check, a TLS proxy.

The suite itself runs over plain HTTP (pyproject's test environment turns the HTTPS settings
off); these tests take them back out and run the real processes with production's environment:
``manage.py check --deploy --fail-level WARNING``, and gunicorn behind a proxy that says
``X-Forwarded-Proto: https``.
"""

from __future__ import annotations

import http.client
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests.pipeline.conftest import wait_for_http
from tests.support.celery_workers import worker_environment
from tests.support.processes import REPO_ROOT, LoggedProcess, procfile_command
from tests.support.redis_server import free_port

# What pyproject's test environment sets for the suite's plain HTTP; production leaves them unset.
TEST_ONLY = (
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SESSION_COOKIE_SECURE",
    "DJANGO_CSRF_COOKIE_SECURE",
    "DJANGO_SECURE_HSTS_SECONDS",
    "DJANGO_DEBUG",
)
HOST = "invoicing.example.org"
PASSWORD = "a-proxy-test-password"


def production_environment(**extra: str) -> dict[str, str]:
    """The README's production settings: a real secret key, the site's host, DEBUG off."""
    env = worker_environment()
    for name in TEST_ONLY:
        env.pop(name, None)
    env.update(
        {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": HOST,
        }
    )
    env.update(extra)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_deploy_check_passes_with_the_production_settings() -> None:
    result = check_deploy(production_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("setting", "warning"),
    [
        ("DJANGO_SESSION_COOKIE_SECURE", "security.W012|security.W010"),
        ("DJANGO_CSRF_COOKIE_SECURE", "security.W016"),
        ("DJANGO_SECURE_SSL_REDIRECT", "security.W008"),
        ("DJANGO_SECURE_HSTS_SECONDS", "security.W004"),
    ],
)
def test_turning_one_off_fails_the_deploy_check(setting: str, warning: str) -> None:
    result = check_deploy(production_environment(**{setting: "0"}))
    assert result.returncode != 0
    assert re.search(warning, result.stdout + result.stderr)


@pytest.fixture
def web_behind_proxy(django_db_setup: None, tmp_path: Path) -> Iterator[int]:
    """Gunicorn (the Procfile's web) with production's settings, told to trust the proxy."""
    port = free_port()
    env = production_environment(
        PORT=str(port),
        WEB_CONCURRENCY="1",
        DJANGO_ALLOWED_HOSTS=f"{HOST},127.0.0.1",
        DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    web = LoggedProcess(
        name="web",
        argv=["/bin/sh", "-c", f"exec {procfile_command('web')}"],
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        log_path=tmp_path / "web.log",
    )
    web.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/", service=web)
        yield port
    finally:
        web.stop()


def _request(
    port: int, method: str, path: str, *, body: str = "", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    all_headers = {"Host": HOST, **(headers or {})}
    if body:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return response


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    """Each Set-Cookie header as sent (name -> the whole header)."""
    return {
        header.split("=", 1)[0]: header for header in response.headers.get_all("Set-Cookie") or []
    }


@pytest.mark.django_db(transaction=True)
def test_the_admin_login_works_behind_a_tls_proxy(web_behind_proxy: int) -> None:
    User.objects.create_user("staff", password=PASSWORD, is_staff=True, is_superuser=True)
    port = web_behind_proxy
    proxied = {"X-Forwarded-Proto": "https"}

    # Plain HTTP straight to the app: sent to HTTPS.
    plain = _request(port, "GET", "/admin/login/")
    assert plain.status == 301
    assert plain.headers["Location"] == f"https://{HOST}/admin/login/"

    # Through the proxy: the login page, a Secure CSRF cookie, HSTS.
    page = _request(port, "GET", "/admin/login/", headers=proxied)
    assert page.status == 200
    assert "max-age=31536000" in page.headers["Strict-Transport-Security"]
    csrf_header = _cookies(page)["csrftoken"]
    assert "Secure" in csrf_header
    csrf = SimpleCookie(csrf_header)["csrftoken"].value

    login = _request(
        port,
        "POST",
        "/admin/login/?next=/admin/",
        body=f"csrfmiddlewaretoken={csrf}&username=staff&password={PASSWORD}&next=/admin/",
        headers={**proxied, "Cookie": f"csrftoken={csrf}", "Origin": f"https://{HOST}"},
    )
    assert login.status == 302, login.headers
    assert login.headers["Location"] == "/admin/"
    session_header = _cookies(login)["sessionid"]
    assert "Secure" in session_header
    assert "HttpOnly" in session_header
    session = SimpleCookie(session_header)["sessionid"].value

    admin = _request(port, "GET", "/admin/", headers={**proxied, "Cookie": f"sessionid={session}"})
    assert admin.status == 200
