"""``manage.py rundemo`` (what ``make run`` calls): the whole system on one machine, with a demo.

1. Prepares ``VAR_DIR`` (default ``./var``): the SQLite database and a development secret key kept
   in ``var/dev-secret-key``, so the encrypted Stripe keys stay readable across restarts.
2. Finds a Redis: ``CELERY_BROKER_URL`` if set, else the one at ``DEMO_REDIS_URL``
   (``redis://127.0.0.1:6379``), else starts a private ``redis-server`` on a free port (stopped
   on exit).
3. Migrates the database (the Procfile's ``release`` entry, else ``migrate``).
4. Starts, under honcho, the Stripe emulator and the Procfile's ``web``, ``worker`` and ``beat``
   entries with ``STRIPE_API_BASE`` pointing at the emulator and ``DJANGO_DEBUG=1``.
5. Once the emulator and the web answer, runs ``seed_demo`` (conference, webhook endpoint registered
   through the Stripe API, admin login, purchase orders) and prints where everything is.

It needs a checkout: the emulator is ``tests.stripe_emulator``, which an installed package does
not include; without it the command says so before it starts anything.

Ctrl-C (or SIGTERM) stops everything it started. Ports and addresses come from the environment:
``DEMO_HOST`` (127.0.0.1), ``DEMO_WEB_PORT`` (8000), ``DEMO_EMULATOR_PORT`` (12111),
``DEMO_REDIS_URL``; see the README.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Message, Printer

from invoicing.management.commands.seed_demo import DEMO_SLUG, PASSWORD_FILE_NAME
from invoicing.management.demo import (
    EMULATOR_MODULE,
    DemoAddresses,
    WholeLines,
    demo_web_command,
    dev_secret_key,
    emulator_checkout,
    env_port,
    free_port,
    port_is_free,
    redis_answers,
    url_host,
    wait_for,
    with_db,
)

REPO_ROOT = Path(settings.BASE_DIR)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
PROCESSES = ("web", "worker", "beat")
READY_TIMEOUT_SECONDS = 90.0


@dataclass
class PrivateRedis:
    """A ``redis-server`` this command started (nothing on disk), stopped by its pid."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_private_redis(var_dir: Path) -> PrivateRedis:
    binary = shutil.which("redis-server")
    if binary is None:
        raise CommandError(
            "No Redis answers and redis-server is not installed: install it "
            "(apt-get install redis-server) or set CELERY_BROKER_URL to a Redis or RabbitMQ."
        )
    directory = var_dir / "redis"
    directory.mkdir(exist_ok=True)
    port = free_port()
    log = (directory / "redis.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 (our own arguments)
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session: a Ctrl-C in the terminal must not stop it before the worker is done.
        start_new_session=True,
    )  # fmt: skip
    log.close()
    server = PrivateRedis(port=port, process=process)
    deadline = time.monotonic() + 15
    while not redis_answers(server.url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise CommandError(f"redis-server did not start; see {directory / 'redis.log'}.")
        time.sleep(0.1)
    return server


class Command(BaseCommand):
    help = (
        "Run the whole system (Stripe emulator, web, worker, beat) with a seeded demo; Ctrl-C "
        "stops everything. Ports: DEMO_WEB_PORT, DEMO_EMULATOR_PORT; see the README."
    )
    requires_system_checks: Any = []  # the children check themselves; this process only runs them

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--procfile",
            default=str(REPO_ROOT / "Procfile"),
            help="the Procfile whose web, worker and beat entries to run (default: ./Procfile)",
        )
        parser.add_argument(
            "--no-seed", action="store_true", help="start everything but do not run seed_demo"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        emulator_dir = emulator_checkout()
        procfile = self._procfile(Path(options["procfile"]))
        addresses = DemoAddresses(
            host=os.environ.get("DEMO_HOST", "127.0.0.1").strip() or "127.0.0.1",
            web_port=env_port("DEMO_WEB_PORT", 8000),
            emulator_port=env_port("DEMO_EMULATOR_PORT", 12111),
        )
        for name, port in (
            ("DEMO_WEB_PORT", addresses.web_port),
            ("DEMO_EMULATOR_PORT", addresses.emulator_port),
        ):
            if not port_is_free(addresses.host, port):
                raise CommandError(
                    f"Port {port} on {addresses.host} is in use (another demo?). Choose another "
                    f"with {name}=<port>."
                )
        var_dir = Path(settings.VAR_DIR).resolve()
        (var_dir / "static").mkdir(parents=True, exist_ok=True)

        with self._redis(var_dir) as (broker_url, rate_limit_url):
            env = self._environment(var_dir, addresses, broker_url, rate_limit_url)
            self._migrate(procfile, env)
            self._run(procfile, env, addresses, var_dir, emulator_dir, seed=not options["no_seed"])

    # --- preparation ------------------------------------------------------------------------

    def _procfile(self, path: Path) -> dict[str, str]:
        if not path.exists():
            raise CommandError(f"No Procfile at {path}.")
        entries: dict[str, str] = dict(parse_procfile(path.read_text()).processes)
        missing = [name for name in PROCESSES if name not in entries]
        if missing:
            raise CommandError(f"{path} has no {', '.join(missing)} entry.")
        return entries

    @contextlib.contextmanager
    def _redis(self, var_dir: Path) -> Iterator[tuple[str, str]]:
        """Broker and rate-limit URLs; a private redis-server while the demo runs, if needed."""
        broker = os.environ.get("CELERY_BROKER_URL", "").strip()
        rate_limit = os.environ.get("STRIPE_RATE_LIMIT_REDIS_URL", "").strip()
        if broker:
            if broker.startswith("redis") and not redis_answers(broker):
                raise CommandError("CELERY_BROKER_URL is set but that Redis does not answer.")
            yield broker, rate_limit or settings.STRIPE_RATE_LIMIT_REDIS_URL
            return
        shared = os.environ.get("DEMO_REDIS_URL", "").strip() or DEFAULT_REDIS_URL
        if redis_answers(shared):
            self.stdout.write(f"Using the Redis at {shared} (databases 0 and 1).")
            yield with_db(shared, 0), rate_limit or with_db(shared, 1)
            return
        self.stdout.write(f"No Redis answers at {shared}: starting a private redis-server.")
        server = start_private_redis(var_dir)
        try:
            self.stdout.write(f"Private Redis at {server.url} (pid {server.process.pid}).")
            yield with_db(server.url, 0), rate_limit or with_db(server.url, 1)
        finally:
            server.stop()
            self.stdout.write("Private Redis stopped.")

    def _environment(
        self, var_dir: Path, addresses: DemoAddresses, broker_url: str, rate_limit_url: str
    ) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        allowed = os.environ.get("DJANGO_ALLOWED_HOSTS") or "localhost,127.0.0.1,[::1]"
        if url_host(addresses.host) not in allowed.split(","):
            allowed += f",{url_host(addresses.host)}"
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_DEBUG": "1",
                "DJANGO_SECRET_KEY": dev_secret_key(var_dir),
                "DJANGO_ALLOWED_HOSTS": allowed,
                "VAR_DIR": str(var_dir),
                "CELERY_BROKER_URL": broker_url,
                "STRIPE_RATE_LIMIT_REDIS_URL": rate_limit_url,
                "STRIPE_API_BASE": addresses.emulator,
                "PORT": str(addresses.web_port),
                "DEMO_HOST": addresses.host,
                "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
                ),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _migrate(self, procfile: Mapping[str, str], env: dict[str, str]) -> None:
        command = procfile.get("release") or f"{shlex.quote(sys.executable)} manage.py migrate"
        self.stdout.write(f"Preparing the database: {command}")
        result = subprocess.run(  # noqa: S602 (the Procfile's own command line, as honcho runs it)
            command, shell=True, cwd=REPO_ROOT, env=env, check=False
        )
        if result.returncode != 0:
            raise CommandError(f"`{command}` failed with exit code {result.returncode}.")

    # --- running ----------------------------------------------------------------------------

    def _run(
        self,
        procfile: Mapping[str, str],
        env: dict[str, str],
        addresses: DemoAddresses,
        var_dir: Path,
        emulator_dir: Path,
        *,
        seed: bool,
    ) -> None:
        # One stream for every writer, so no line is split by another's (see WholeLines).
        printer = Printer(WholeLines(sys.stdout))
        manager = Manager(printer)
        python = shlex.quote(sys.executable)
        manager.add_process(
            "emulator",
            f"exec {python} -m {EMULATOR_MODULE} --host {shlex.quote(addresses.host)} "
            f"--port {addresses.emulator_port} --public-url {addresses.emulator}",
            env=env,
            cwd=str(emulator_dir),
        )
        for name in PROCESSES:
            command = procfile[name]
            if name == "web":
                command = demo_web_command(command, addresses.host)
            manager.add_process(name, command, env=env, cwd=str(REPO_ROOT))

        stopping = threading.Event()
        seeder = DemoSeeder(
            manager=manager,
            printer=printer,
            env=env,
            addresses=addresses,
            var_dir=var_dir,
            stopping=stopping,
            seed=seed,
        )
        seeder.start()
        try:
            manager.loop()
        finally:
            stopping.set()
            seeder.stop()
        if manager.returncode not in {0, None, 130, 143} and not seeder.failed:
            raise CommandError(
                f"A process stopped unexpectedly (exit code {manager.returncode}); everything "
                "else was stopped. See its output above."
            )
        if seeder.failed:
            raise CommandError(seeder.failed)
        self.stdout.write("Demo stopped.")


class DemoSeeder(threading.Thread):
    """Waits for the emulator and the web, seeds the demo, prints where everything is.

    ``seed_demo``'s output goes through the printer as the ``seed`` process's lines: written
    straight to the shared terminal, its lines could land inside another process's line.
    """

    def __init__(
        self,
        *,
        manager: Manager,
        printer: Printer,
        env: dict[str, str],
        addresses: DemoAddresses,
        var_dir: Path,
        stopping: threading.Event,
        seed: bool,
    ) -> None:
        super().__init__(name="demo-seeder", daemon=True)
        self.manager = manager
        self.printer = printer
        self.env = env
        self.addresses = addresses
        self.var_dir = var_dir
        self.stopping = stopping
        self.seed = seed
        self.failed = ""
        self._process: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        web, emulator = self.addresses.web, self.addresses.emulator
        if not wait_for(
            [f"{emulator}/_emulator/health", f"{web}/health/"], READY_TIMEOUT_SECONDS, self.stopping
        ):
            if not self.stopping.is_set():
                self._fail(
                    f"The emulator ({emulator}) or the web ({web}/health/) did not answer within "
                    f"{READY_TIMEOUT_SECONDS:.0f} s."
                )
            return
        if self.seed:
            self._process = subprocess.Popen(  # noqa: S603 (our own arguments)
                [sys.executable, "manage.py", "seed_demo", "--site-url", web],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for line in iter(self._process.stdout.readline, b"") if self._process.stdout else ():
                self._print(line)
            code = self._process.wait()
            if self.stopping.is_set():
                return
            if code != 0:
                self._fail(f"seed_demo failed (exit code {code}); see its output above.")
                return
        self.printer.output.write(self.banner())

    def _print(self, line: bytes) -> None:
        self.printer.write(
            Message(type="line", data=line, time=datetime.datetime.now(), name="seed", colour=None)
        )

    def _fail(self, message: str) -> None:
        self.failed = message
        self.manager.terminate()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.join(timeout=5)

    def banner(self) -> str:
        web, emulator = self.addresses.web, self.addresses.emulator
        password_path = self.var_dir / PASSWORD_FILE_NAME
        password = password_path.read_text().strip() if password_path.exists() else "(see above)"
        rule = "=" * 78
        return "\n".join(
            [
                "",
                rule,
                "  PO invoicing demo is running.",
                f"  Admin:            {web}/admin/",
                f"  Login:            admin / {password}",
                f"  Stripe emulator:  {emulator}  (Stripe's API; STRIPE_API_BASE points here)",
                f"  Webhooks:         {emulator} -> {web}/stripe/webhooks/{DEMO_SLUG}/",
                f"  Health:           {web}/health/",
                "",
                "  Try it: in the admin, Purchase orders > tick DEMO-1001 > action 'Approve' > Go.",
                "  The worker creates and sends its invoice; the 'Open invoice' link goes to the",
                f"  hosted invoice page ({emulator}/i/<invoice id>), where the customer pays it",
                "  all by card or ACH. A part is charged as from Stripe's Dashboard ('Charge",
                f"  customer'): POST {emulator}/_emulator/invoices/<invoice id>/payments",
                "  with amount=<minor units>. Reload the PO to see the payment in its ledger.",
                "",
                f"  Data: {self.var_dir} (SQLite, dev secret key, admin password).",
                "  Ctrl-C stops everything.",
                rule,
                "",
            ]
        )
