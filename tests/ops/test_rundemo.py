"""``manage.py rundemo`` (``make run``) as a user runs it: a subprocess on a fresh VAR_DIR.

It must bring up the emulator, web, worker and beat on the ports it is given, migrate a SQLite
database, start a private Redis when none answers, seed the demo, let an organizer approve a PO in
the admin and see it invoiced and paid through webhooks, and leave nothing running after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.ops.test_commands import DEMO_REFUNDED_STATUS
from tests.support.processes import LoggedProcess, parent_pids
from tests.support.redis_server import free_port

pytestmark = pytest.mark.slow

START_TIMEOUT = 120.0


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` (pid -> command line), from /proc."""
    children: dict[int, list[int]] = {}
    for pid, parent in parent_pids().items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, str] = {}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found[child] = cmdline(child)
            stack.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def still_running(pid: int, command: str) -> bool:
    """The same process (same command line: pids get reused) is alive and not a zombie."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and cmdline(pid) == command


@dataclass
class Demo:
    process: LoggedProcess
    var_dir: Path
    web: str
    emulator: str

    def output(self) -> str:
        return self.process.log_text()

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.process.running:
                pytest.fail(self.process.exit_report(chars=6000))
            if time.monotonic() > deadline:
                pytest.fail(f"{what} within {timeout} s; output:\n{self.output()[-6000:]}")
            time.sleep(0.3)

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.var_dir / "db.sqlite3", timeout=20) as db:
            return db.execute(sql, params).fetchall()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    var_dir = tmp_path / "var"
    web_port, emulator_port, no_redis_port = free_port(), free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",  # the default: SQLite under VAR_DIR
            "CELERY_BROKER_URL",
            "STRIPE_RATE_LIMIT_REDIS_URL",
            "DJANGO_SECRET_KEY",  # the demo keeps its own under VAR_DIR
            "DJANGO_DEBUG",
            "STRIPE_API_BASE",
        }
    }
    env.update(
        {
            "VAR_DIR": str(var_dir),
            "DEMO_WEB_PORT": str(web_port),
            "DEMO_EMULATOR_PORT": str(emulator_port),
            # Nothing answers there, so the demo starts (and must stop) a private redis-server:
            # the machine's shared Redis stays untouched.
            "DEMO_REDIS_URL": f"redis://127.0.0.1:{no_redis_port}",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = LoggedProcess(
        name="rundemo",
        argv=[sys.executable, "manage.py", "rundemo"],
        env=env,
        log_path=tmp_path / "rundemo.log",
    )
    process.start()
    handle = Demo(
        process=process,
        var_dir=var_dir,
        web=f"http://127.0.0.1:{web_port}",
        emulator=f"http://127.0.0.1:{emulator_port}",
    )
    try:
        yield handle
    finally:
        if process.running:  # the test failed before stopping it: no orphans either way
            started = descendants(process.pid)
            process.stop(timeout=30, sig=signal.SIGINT)
            for pid, command in started.items():
                if still_running(pid, command):
                    os.kill(pid, signal.SIGKILL)


def get_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def admin_session(demo: Demo, password: str) -> requests.Session:
    session = requests.Session()
    login = f"{demo.web}/admin/login/"
    session.get(login, timeout=10)
    response = session.post(
        login,
        data={
            "username": "admin",
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=10,
    )
    assert response.status_code == 200
    assert "Log out" in response.text, response.text[-2000:]
    return session


def test_make_run_brings_up_the_demo_and_stops_cleanly(demo: Demo) -> None:
    demo.wait_for(lambda: get_ok(f"{demo.web}/health/"), "/health/ did not answer", START_TIMEOUT)
    demo.wait_for(
        lambda: "PO invoicing demo is running" in demo.output(),
        "the demo was not seeded",
        START_TIMEOUT,
    )
    login_page = requests.get(f"{demo.web}/admin/login/", timeout=10)
    assert login_page.status_code == 200
    assert "PO invoicing" in login_page.text
    assert requests.get(f"{demo.web}/health/", timeout=5).json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
    }

    output = demo.output()
    password = (demo.var_dir / "demo-admin-password").read_text().strip()
    assert f"Login:            admin / {password}" in output
    assert f"Admin:            {demo.web}/admin/" in output
    assert f"Stripe emulator:  {demo.emulator}" in output
    assert "starting a private redis-server" in output
    assert (demo.var_dir / "dev-secret-key").stat().st_mode & 0o077 == 0
    assert demo.query("PRAGMA journal_mode") == [("wal",)]
    statuses = {
        str(reference): str(status)
        for reference, status in demo.query("SELECT reference, status FROM invoicing_purchaseorder")
    }
    # DEMO-1004 was approved by the seed: the worker may have invoiced it already.
    assert statuses.pop("DEMO-1004") in {"approved", "invoiced"}
    assert statuses == {
        "DEMO-1001": "draft",
        "DEMO-1002": "draft",
        "DEMO-1003": "draft",
        "DEMO-1005": "cancelled",
        "DEMO-1006": DEMO_REFUNDED_STATUS,  # paid by card, then refunded
        "DEMO-1007": "invoiced",  # its amount owed reduced by a credit note
        "DEMO-1008": "invoiced",  # reduced by line: 2 of its 5 booth passes
    }
    [(requests_done,)] = demo.query(
        "SELECT count(*) FROM invoicing_stripewriterequest WHERE state = 'succeeded'"
    )
    assert requests_done == 3

    session = admin_session(demo, password)
    changelist = session.get(f"{demo.web}/admin/invoicing/purchaseorder/", timeout=10)
    assert "DEMO-1001" in changelist.text
    [(po_id,)] = demo.query("SELECT id FROM invoicing_purchaseorder WHERE reference='DEMO-1001'")
    approved = session.post(
        f"{demo.web}/admin/invoicing/purchaseorder/",
        data={
            "action": "approve_selected",
            "_selected_action": [str(po_id)],
            "confirm": "yes",  # what the confirmation page's "Yes, go ahead" posts
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{demo.web}/admin/invoicing/purchaseorder/"},
        timeout=10,
    )
    assert "DEMO-1001: approved" in approved.text

    def status() -> str:
        [(value,)] = demo.query("SELECT status FROM invoicing_purchaseorder WHERE id=?", po_id)
        return str(value)

    demo.wait_for(lambda: status() == "invoiced", "DEMO-1001 was not invoiced", 60)
    [(invoice_id, url)] = demo.query(
        "SELECT stripe_invoice_id, stripe_invoice_url FROM invoicing_purchaseorder WHERE id=?",
        po_id,
    )
    assert str(url).startswith(f"{demo.emulator}/i/")
    assert requests.get(str(url), timeout=10).status_code == 200
    # The customer pays part by ACH; the webhook (signed with the secret seed_demo stored) brings
    # it into the ledger.
    paid = requests.post(
        f"{demo.emulator}/_emulator/invoices/{invoice_id}/payments",
        json={"amount": 100000, "payment_method_type": "us_bank_account"},
        timeout=10,
    )
    assert paid.status_code == 200, paid.text
    demo.wait_for(lambda: status() == "partially_paid", "the payment did not arrive", 60)
    assert demo.query(
        "SELECT amount, method FROM invoicing_purchaseorderpayment WHERE purchase_order_id=?",
        po_id,
    ) == [(1000, "stripe")]

    started = descendants(demo.process.pid)
    names = " ".join(started.values())
    for expected in ("redis-server", "tests.stripe_emulator", "gunicorn", "celery", "beat"):
        assert expected in names, f"{expected} not running: {started}"

    demo.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert demo.process.wait(timeout=60) == 0, demo.output()[-4000:]
    time.sleep(0.5)
    left = {pid: command for pid, command in started.items() if still_running(pid, command)}
    assert left == {}, f"still running after Ctrl-C: {left}"

    output = demo.output()
    assert "Demo stopped." in output
    assert "Private Redis stopped." in output
    # Logs: JSON lines from the worker, and never a Stripe secret (the demo key is masked).
    worker_lines = [
        line.split("| ", 1)[1]
        for line in output.splitlines()
        if re.match(r"^\S+ worker +\| \{", line)
    ]
    assert worker_lines, "no JSON log line from the worker"
    assert all(isinstance(json.loads(line), dict) for line in worker_lines)
    # seed_demo's own lines (it invoices DEMO-1006 in its process) come through the printer too,
    # whole, instead of landing inside a worker line.
    seed_lines = [
        line.split("| ", 1)[1]
        for line in output.splitlines()
        if re.match(r"^\S+ seed +\| \{", line)
    ]
    assert any(json.loads(line).get("event") == "invoice_sent" for line in seed_lines), seed_lines
    assert "sk_test_emulator_democon_2026_account" not in output
    assert re.search(r"whsec_(?!…)", output) is None
