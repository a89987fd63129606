"""The harness of the whole-stack benchmarks: a database, the emulator, gunicorn and a worker.

Each benchmark runs ``with Stack("name") as stack:`` and gets, on loopback only:

- a PostgreSQL database of its own, ``<DATABASE_URL's name>_bench_<name>``, created and migrated
  on entry and dropped on exit (on the server ``DATABASE_URL`` names; nothing else is touched);
- the Stripe emulator in its own process (``stack.emulator``), which ``STRIPE_API_BASE`` points at;
- Django set up in this process on that database, so the benchmark uses the services directly;
- on demand, the Procfile's ``web`` line (gunicorn) and ``worker`` line (celery), on that database
  and on the broker in ``CELERY_BROKER_URL``, whose two worker queues are purged before and after.

Everything it started is stopped by pid on exit, also after Ctrl-C or SIGTERM. Logs go to a
temporary directory (kept with ``keep_logs=True`` or ``BENCH_KEEP_LOGS=1``, and printed on failure).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tests.stripe_emulator.handle import EmulatorHandle
from tests.stripe_emulator.pytest_plugin import start_emulator, stop_emulator
from tests.support.processes import REPO_ROOT, LoggedProcess, child_pids, procfile_command

WORKER_QUEUES = ("default", "stripe")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


class BenchmarkError(RuntimeError):
    """The benchmark could not run as set up (a process died, a wait timed out)."""


# --- The machine ---------------------------------------------------------------------------------


def machine_summary() -> str:
    """``2 vCPU, 23 GiB`` and the load average, for the figures' footnote."""
    total_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_kib = int(line.split()[1])
    return f"{os.cpu_count()} vCPU, {total_kib / 1024 / 1024:.0f} GiB, {load_average()}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` from ``/proc/<pid>/status`` (VmRSS), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used (``/proc/<pid>/stat``), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the comm: state is field 3, utime and stime are fields 14 and 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_backend_pids() -> list[int]:
    """PostgreSQL backends connected to this benchmark's database, this process's excluded."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [int(row[0]) for row in cursor.fetchall()]


class CpuMeter:
    """CPU seconds used by a service (main process and children) and by the database's backends
    between :meth:`start` and :meth:`stop`: what a request costs, however busy the machine is."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._before: dict[tuple[str, int], float] = {}

    def _read(self) -> dict[tuple[str, int], float]:
        pids = [self.service.pid, *child_pids(self.service.pid)]
        readings = {("web", pid): cpu_seconds(pid) for pid in pids}
        readings.update({("db", pid): cpu_seconds(pid) for pid in database_backend_pids()})
        return readings

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {"web": 0.0, "db": 0.0}
        for key, seconds in self._read().items():
            used[key[0]] += seconds - self._before.get(key, 0.0)
        return used


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


# --- Processes -----------------------------------------------------------------------------------


class Service(LoggedProcess):
    """A process of the stack; one that died stops the benchmark with the end of its log."""

    def check_alive(self) -> None:
        if not self.running:
            raise BenchmarkError(self.exit_report())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- Profiling -----------------------------------------------------------------------------------


def py_spy_path() -> str:
    """The py-spy next to this interpreter (a dev dependency), or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise BenchmarkError("py-spy is missing: `make venv` installs it (dev dependency).")
    return found


def start_profile(
    pid: int, out: Path, *, seconds: float, rate: int = 97, gil: bool = False
) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``pid`` and its subprocesses, collapsed stacks (``--format raw``).

    ``gil=True`` samples only the thread holding the GIL: where the Python CPU goes, without
    the threads waiting on the database or the broker.
    """
    argv = [py_spy_path(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
    argv += ["--gil"] if gil else []
    argv += ["--format", "raw", "--rate", str(rate), "--duration", str(max(1, round(seconds)))]
    argv += ["--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def summarize_profile(
    path: Path,
    *,
    top: int = 20,
    idle: Sequence[str] = (),
    ours: Sequence[str] = ("invoicing/", "workers/", "config/", "django/db/", "kombu/", "redis/"),
) -> str:
    """Where the samples of a py-spy ``raw`` profile (``frame;frame;... count`` lines) went.

    Prints the inclusive share of the functions under ``ours`` (our code, the database and broker
    clients), then the functions with the most samples of their own (leaves). Samples whose leaf
    matches one of ``idle`` are left out, so the shares are of the time spent working.
    """
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return f"(no profile written to {path})"
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_short(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame]
        if not frames or any(marker in frames[-1] for marker in idle):
            continue
        count = int(count_text)
        total += count
        leaves[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "(no working samples)"
    lines = [f"{total} samples; inclusive share of our code and its clients:"]
    mine = [(frame, n) for frame, n in inclusive.most_common() if frame.startswith(tuple(ours))]
    for frame, count in mine[:top]:
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    lines.append("own samples (leaf functions):")
    for frame, count in leaves.most_common(top // 2):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return ""  # process and thread labels
    file = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", str(REPO_ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{match['function']}"


# --- The stack -----------------------------------------------------------------------------------


def _database_urls(name: str) -> tuple[str, str, str]:
    """(this benchmark's database URL, its name, the maintenance database URL)."""
    base = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(base)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise BenchmarkError(
            "Set DATABASE_URL to a PostgreSQL URL (postgres://user@host:port/name): the benchmark "
            "creates <name>_bench_<benchmark> on that server and drops it at the end."
        )
    dbname = f"{parts.path.lstrip('/') or 'postgres'}_bench_{name}"
    return (
        urlunsplit(parts._replace(path="/" + quote(dbname, safe=""))),
        dbname,
        urlunsplit(parts._replace(path="/postgres")),
    )


class Stack:
    """See the module docstring. Use as a context manager; ``start_web``/``start_worker`` inside."""

    def __init__(self, name: str, *, keep_logs: bool = False) -> None:
        self.name = name
        self.keep_logs = keep_logs or os.environ.get("BENCH_KEEP_LOGS") == "1"
        self.database_url, self.database_name, self._admin_url = _database_urls(name)
        self.broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.services: list[Service] = []
        self._emulator_process: subprocess.Popen[bytes] | None = None
        self._emulator: EmulatorHandle | None = None
        self._database_created = False
        self._service_log_level = "INFO"
        self._failed = False
        self._previous_sigterm: Any = None

    @property
    def emulator(self) -> EmulatorHandle:
        if self._emulator is None:
            raise BenchmarkError("the emulator is not running")
        return self._emulator

    # -- entering ---------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._emulator_process, self._emulator = start_emulator(self.tmp / "emulator.log")
            self._create_database()
            self._setup_django()
            self.purge_queues()
        except BaseException:
            self._failed = True
            self.close()
            raise
        return self

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            # Our own name: a leftover of an interrupted run of this benchmark, never anything else.
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database_name}"')
        self._database_created = True

    def _setup_django(self) -> None:
        self._service_log_level = os.environ.get("LOG_LEVEL", "INFO")
        os.environ["LOG_LEVEL"] = "WARNING"  # this process prints figures, not its INFO lines
        os.environ["DATABASE_URL"] = self.database_url
        os.environ["STRIPE_API_BASE"] = self.emulator.base_url
        os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(16))
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)

    def service_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a stack process: this one's, on the benchmark's database."""
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": self.database_url,
                "CELERY_BROKER_URL": self.broker_url,
                "STRIPE_API_BASE": self.emulator.base_url,
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": self._service_log_level,
                # Like honcho/foreman: the Procfile line with this venv's executables first.
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            }
        )
        env.update(extra or {})
        return env

    def _start(self, name: str, command: str, env: Mapping[str, str] | None) -> Service:
        service = Service(
            name=name,
            argv=["/bin/sh", "-c", f"exec {command}"],
            env=self.service_env(env),
            log_path=self.tmp / f"{name}.log",
        )
        service.start()
        self.services.append(service)
        return service

    def start_web(self, *, env: Mapping[str, str] | None = None) -> tuple[Service, str]:
        """The Procfile's ``web`` line on a free loopback port; returns it and its base URL."""
        port = free_port()
        environment = {"PORT": str(port), **(env or {})}
        command = procfile_command("web").replace("0.0.0.0:", "127.0.0.1:")
        web = self._start("web", command, environment)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            web.check_alive()
            try:
                with urllib.request.urlopen(f"{base}/health/", timeout=2):
                    return web, base
            except urllib.error.HTTPError as error:
                raise BenchmarkError(f"web answered /health/ with {error.code}") from None
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"web did not answer:\n{web.log_tail()}") from None
                time.sleep(0.1)

    def start_worker(self, *, env: Mapping[str, str] | None = None) -> tuple[Service, str]:
        """The Procfile's ``worker`` line (plus a hostname to ping); waits until it answers."""
        from config.celery import app

        hostname = f"bench-{self.name}-{uuid.uuid4().hex[:6]}@localhost"
        command = f"{procfile_command('worker')} --hostname {hostname}"
        worker = self._start("worker", command, env)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            worker.check_alive()
            replies = app.control.ping(destination=[hostname], timeout=0.5)
            if any(hostname in reply for reply in replies or []):
                return worker, hostname
            if time.monotonic() > deadline:
                raise BenchmarkError(f"worker not ready:\n{worker.log_tail()}")

    def set_consuming(self, hostname: str, *, consuming: bool) -> None:
        """Make the worker stop or resume taking messages from the worker queues."""
        from config.celery import app

        for queue in WORKER_QUEUES:
            if consuming:
                replies = app.control.add_consumer(
                    queue, destination=[hostname], reply=True, timeout=5
                )
            else:
                replies = app.control.cancel_consumer(
                    queue, destination=[hostname], reply=True, timeout=5
                )
            if not replies:
                raise BenchmarkError(f"worker {hostname} did not answer for {queue}")

    def purge_queues(self) -> None:
        """Empty the worker queues in the broker's own Redis database (nothing else)."""
        from django.conf import settings

        from config.celery import app
        from tests.support.celery_workers import purge_worker_queues

        if self.broker_url != settings.CELERY_BROKER_URL:
            raise BenchmarkError("the broker in settings is not the one the stack uses")
        purge_worker_queues(app)

    def wait(
        self, condition: Any, *, timeout: float, interval: float = 0.1, what: str = ""
    ) -> None:
        """Poll ``condition()`` until true; fail (with the services' logs) after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not condition():
            for service in self.services:
                service.check_alive()
            if time.monotonic() > deadline:
                raise BenchmarkError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    # -- leaving ----------------------------------------------------------------------------------

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._failed = exc_type is not None
        self.close()

    def close(self) -> None:
        for service in reversed(self.services):
            if self._failed:
                print(f"--- {service.name} log (tail) ---\n{service.log_tail()}", file=sys.stderr)
            service.stop(STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(Exception):
            self.purge_queues()
        with contextlib.suppress(Exception):
            from workers.enqueue import close_pools

            close_pools()
        if self._emulator_process is not None:
            stop_emulator(self._emulator_process)
        if self._database_created:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            import psycopg

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        if self.keep_logs or self._failed:
            print(f"logs kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def consuming_paused(stack: Stack, hostname: str) -> Iterator[None]:
    """The worker takes no new message inside the block (its queues fill up meanwhile)."""
    stack.set_consuming(hostname, consuming=False)
    try:
        yield
    finally:
        stack.set_consuming(hostname, consuming=True)


# --- Workload: conferences and invoiced purchase orders ------------------------------------------

# A worker's own rate limiter (20 requests/s per test account by default) would make setting up a
# thousand invoices take minutes; the benchmarks that only need invoices to exist raise it.
FAST_SETUP_LIMITER = {
    "STRIPE_RATE_LIMIT_TEST_PER_SECOND": "1000",
}
LINES = (
    ("Gold sponsorship", 1, "5000.00"),
    ("Conference ticket", 3, "450.00"),
    ("Workshop seat", 2, "120.50"),
)


def make_conference(stack: Stack, *, webhook_secret: str = "") -> Any:
    """A conference on a fresh emulator account (its own Stripe key and rate-limit bucket)."""
    from invoicing.models import Conference

    slug = f"bench-{stack.name}-{uuid.uuid4().hex[:6]}"
    return Conference.objects.create(
        slug=slug,
        name=slug,
        stripe_secret_key=stack.emulator.new_secret_key(),
        stripe_webhook_secret=webhook_secret or f"whsec_{secrets.token_hex(16)}",
    )


def create_purchase_order(conference: Any, number: int, *, tag: str) -> Any:
    """A draft PO with three lines for a company of its own (so a new Stripe customer)."""
    from decimal import Decimal

    from invoicing.services import purchase_orders
    from invoicing.services.purchase_orders import LineItemInput

    return purchase_orders.create_purchase_order(
        conference=conference,
        reference=f"{tag}-{number:05d}",
        organization_name=f"Company {tag} {number}",
        contact_email=f"billing-{tag.lower()}-{number}@example.com",
        lines=[LineItemInput(label, quantity, Decimal(price)) for label, quantity, price in LINES],
    )


def invoiced_count(pks: Sequence[int]) -> int:
    from invoicing.models import PurchaseOrder

    return PurchaseOrder.objects.filter(
        pk__in=pks, status=PurchaseOrder.Status.INVOICED, invoice_sent_at__isnull=False
    ).count()


def blocked_purchase_orders(pks: Sequence[int]) -> list[str]:
    """``reference: error`` of POs whose invoice creation failed for good."""
    from invoicing.models import PurchaseOrder

    return [
        f"{reference}: {error}"
        for reference, error in PurchaseOrder.objects.filter(
            pk__in=pks, invoice_creation_blocked=True
        ).values_list("reference", "invoice_error")
    ]


def approve_and_wait(stack: Stack, pks: Sequence[int], *, timeout: float = 300) -> None:
    """Approve the draft POs (each queues its creation task) and wait until all are invoiced."""
    from invoicing.models import PurchaseOrder
    from invoicing.services import purchase_orders

    for po in PurchaseOrder.objects.filter(pk__in=pks).select_related("conference"):
        purchase_orders.approve_purchase_order(po)

    def done() -> bool:
        blocked = blocked_purchase_orders(pks)
        if blocked:
            raise BenchmarkError("invoice creation failed:\n" + "\n".join(blocked[:10]))
        return invoiced_count(pks) == len(pks)

    stack.wait(done, timeout=timeout, interval=0.25, what=f"{len(pks)} invoices to be sent")
