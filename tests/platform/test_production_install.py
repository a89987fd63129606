"""A production install starts: ``pip install -c constraints.txt .`` without the dev extra.

The rest of the suite runs with the dev extra, whose tools pull in packages the runtime may
forget to declare (kombu's Redis transport imports ``packaging``, which only kombu's ``redis``
extra installs), so every process could die at import in production while every other test
passes. Here a virtualenv of its own (:mod:`tests.support.production_install`) holds exactly what
a deployment installs, and its processes run from a directory that holds nothing but
``manage.py``, with production settings from the environment: every import comes from the
install, none from this checkout.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from django.conf import settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import tests.support.celery_workers as celery_workers  # its test_database_url, uncollected
from tests.support.processes import REPO_ROOT, procfile_command
from tests.support.production_install import ProductionInstall, production_install

pytestmark = pytest.mark.timeout(900)  # the first run on a machine fills pip's cache
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PACKAGES = [
    pattern.rstrip("*")
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
]
STEP_TIMEOUT_SECONDS = 120.0
PUBLIC_HOST = "invoicing.example.org"


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionInstall]:
    with production_install(tmp_path_factory.mktemp("production-install")) as installed:
        yield installed


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Where the processes run: ``manage.py`` alone, so nothing is imported from the checkout."""
    shutil.copy2(REPO_ROOT / "manage.py", tmp_path / "manage.py")
    return tmp_path


@pytest.fixture
def production_env(install: ProductionInstall, run_dir: Path, db: None) -> dict[str, str]:
    """What an operator sets (README, "Running it for real"), on the test database and broker.

    ``db``: pytest-django creates the test database only when a test asks for one.
    """
    return {
        "PATH": os.pathsep.join([str(install.bin), os.defpath]),
        "HOME": str(run_dir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": PUBLIC_HOST,
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{PUBLIC_HOST}",
        "DATABASE_URL": celery_workers.test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "STRIPE_RATE_LIMIT_REDIS_URL": settings.STRIPE_RATE_LIMIT_REDIS_URL,
        "VAR_DIR": str(run_dir / "var"),
    }


def run_step(step: str, argv: Sequence[str | Path], *, env: Mapping[str, str], cwd: Path) -> str:
    """Run one step of a deployment; fail the test with its command and output if it fails."""
    words = [str(word) for word in argv]
    command = shlex.join(words)
    try:
        result = subprocess.run(
            words, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=STEP_TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        output = expired.output or b""  # bytes, whatever text= said
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        pytest.fail(f"{step}: `{command}` took over {STEP_TIMEOUT_SECONDS:.0f} s:\n{text[-4000:]}")
    if result.returncode != 0:
        pytest.fail(
            f"{step}: `{command}` exited with {result.returncode}:\n{result.stdout[-4000:]}"
        )
    return result.stdout


def files_under(directory: Path) -> set[str]:
    return {
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_the_install_holds_every_file_of_the_packages(install: ProductionInstall) -> None:
    for package in PACKAGES:
        missing = files_under(REPO_ROOT / package) - files_under(install.site_packages / package)
        assert not missing, (
            f"{package}/ files the install lacks (pyproject's package-data?): {sorted(missing)}"
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "arguments"),
    [
        ("Django's deployment checks", ["check", "--deploy"]),
        # The migrations are read from the install, the applied ones from the test database.
        ("the release step's migrations", ["migrate", "--check"]),
    ],
    ids=["check --deploy", "migrate --check"],
)
def test_manage_py_passes_with_production_settings(
    step: str,
    arguments: list[str],
    install: ProductionInstall,
    run_dir: Path,
    production_env: dict[str, str],
) -> None:
    run_step(step, [install.python, "manage.py", *arguments], env=production_env, cwd=run_dir)


@pytest.mark.slow
def test_gunicorn_loads_the_web_application(run_dir: Path, production_env: dict[str, str]) -> None:
    """The Procfile's web line with ``--check-config``: gunicorn loads ``config.wsgi``, exits."""
    run_step(
        "the Procfile's web process",
        ["/bin/sh", "-c", f"exec {procfile_command('web')} --check-config"],
        env={**production_env, "PORT": "8000"},
        cwd=run_dir,
    )


WORKER_AND_BEAT_IMPORTS = """
import sys
from celery.utils.imports import symbol_by_name
from config.celery import app
app.loader.import_default_modules()  # what a worker imports as it starts: Django, the tasks
scheduler = symbol_by_name(app.conf.beat_scheduler)  # what the beat runs
for name in ("config", "invoicing", "workers.tasks", scheduler.__module__):
    print(sys.modules[name].__file__)
"""


@pytest.mark.slow
def test_worker_and_beat_modules_import_from_the_install(
    install: ProductionInstall, run_dir: Path, production_env: dict[str, str]
) -> None:
    run_step(
        "celery's report",
        [install.bin / "celery", "-A", "config", "report"],
        env=production_env,
        cwd=run_dir,
    )
    output = run_step(
        "the worker's and beat's imports",
        [install.python, "-c", WORKER_AND_BEAT_IMPORTS],
        env=production_env,
        cwd=run_dir,
    )
    for path in output.split():
        assert Path(path).is_relative_to(install.site_packages), f"{path} is not from the install"


@pytest.mark.slow
def test_a_worker_of_the_install_answers_a_ping(
    install: ProductionInstall, run_dir: Path, production_env: dict[str, str]
) -> None:
    hostname = f"production-install-{uuid.uuid4().hex[:8]}@localhost"
    worker = celery_workers.WorkerProcess(
        name=hostname,
        hostname=hostname,
        # A queue of its own: the test broker's queues may hold messages of other tests.
        argv=[
            str(install.bin / "celery"), "-A", "config", "worker",
            "--hostname", hostname,
            "--queues", f"production-install-{uuid.uuid4().hex[:8]}",
            "--concurrency", "1",
            "--without-gossip", "--without-mingle",
            "--loglevel", "INFO",
        ],
        env=production_env,
        cwd=run_dir,
        log_path=run_dir / "worker.log",
    )  # fmt: skip
    worker.start()
    try:
        worker.wait_ready(celery_workers.celery_app())
    finally:
        worker.stop()
    assert worker.returncode == 0, worker.exit_report()


@pytest.mark.slow
def test_the_installed_demo_says_it_needs_a_checkout(
    install: ProductionInstall, run_dir: Path, production_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [install.python, "manage.py", "rundemo"], cwd=run_dir, env=production_env,
        capture_output=True, text=True, timeout=STEP_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The demo needs a checkout of the repository" in result.stderr, result.stderr
    assert "Run `make run` in a checkout." in result.stderr, result.stderr
    assert not (run_dir / "var").exists(), "rundemo prepared its VAR_DIR before refusing"


def test_every_third_party_import_of_the_runtime_is_a_runtime_dependency() -> None:
    """What web, worker and beat import comes from ``[project.dependencies]``, not the dev extra.

    Read from the source, so an import that no step above reaches (a management command's, one
    inside a function) counts too. Imports under ``if TYPE_CHECKING:`` never run and are left out.
    """
    declared = {
        canonicalize_name(Requirement(spec).name) for spec in PYPROJECT["project"]["dependencies"]
    }
    providers = importlib.metadata.packages_distributions()
    sources = [REPO_ROOT / "manage.py"]
    sources += [path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")]
    undeclared = set()
    for path in sources:
        for module in runtime_imports(ast.parse(path.read_text(), str(path))):
            if module in sys.stdlib_module_names or module in {*PACKAGES, "__future__"}:
                continue
            if not {canonicalize_name(name) for name in providers.get(module, [])} & declared:
                undeclared.add(f"{module} (in {path.relative_to(REPO_ROOT)})")
    assert not undeclared, f"imported at run time, not a runtime dependency: {sorted(undeclared)}"


def runtime_imports(tree: ast.Module) -> Iterator[str]:
    """Top-level names of the absolute imports in ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        pending.extend(ast.iter_child_nodes(node))
