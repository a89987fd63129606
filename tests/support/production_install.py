"""The project installed as production installs it: ``pip install -c constraints.txt .``, no extras.

The virtualenv lives outside the checkout (ruff, mypy and pytest would read one inside it), in the
user's cache directory under a hash of what decides its contents: ``pyproject.toml``,
``constraints.txt`` and this Python. Building it takes a few minutes once on a cold pip cache;
afterwards only the project itself is reinstalled, from a copy of this checkout (building in the
checkout would leave ``build/`` behind for mypy to read). A lock keeps two test runs from
reinstalling the project under each other; virtualenvs nobody used for a week are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import REPO_ROOT

CACHE_ROOT = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "po-invoicing"
    / "production-install"
)
PYTHON_VERSION_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
COMPLETE_MARKER = "installed-by-tests"
UNUSED_MAX_AGE_SECONDS = 7 * 24 * 3600
PIP_TIMEOUT_SECONDS = 900.0
# What a checkout has besides what setuptools reads to build the project.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", "*.pyc",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "test-artifacts", "tests",
)  # fmt: skip


class InstallFailed(RuntimeError):
    """pip (or venv) failed; the message holds the command and the end of its output."""


@dataclass(frozen=True)
class ProductionInstall:
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        return self.venv / "lib" / PYTHON_VERSION_DIR / "site-packages"


def install_key() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((REPO_ROOT / name).read_bytes())
    digest.update(f"{sys.version}\0{sys.base_prefix}".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def production_install(work_dir: Path) -> Iterator[ProductionInstall]:
    """The cached install with this checkout's code in it, kept from other runs until exit."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    key = install_key()
    install = ProductionInstall(CACHE_ROOT / key)
    with _exclusive_lock(CACHE_ROOT / f"{key}.lock"):
        source = work_dir / "source"
        shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
        marker = install.venv / COMPLETE_MARKER
        if marker.exists() and _runs(install.python):
            _run_pip(install, ["--no-deps", "--force-reinstall", str(source)])
        else:
            shutil.rmtree(install.venv, ignore_errors=True)
            _run_logged([sys.executable, "-m", "venv", str(install.venv)])
            _run_pip(install, ["-c", str(source / "constraints.txt"), str(source)])
            marker.write_text(f"{key}\n")
        marker.touch()
        _remove_unused(keep=key)
        yield install


def _run_pip(install: ProductionInstall, arguments: Sequence[str]) -> None:
    command = [str(install.python), "-m", "pip", "--disable-pip-version-check", "install"]
    _run_logged([*command, "--quiet", *arguments])


def _run_logged(argv: Sequence[str]) -> None:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as timeout:
        raise InstallFailed(f"`{' '.join(argv)}` took over {timeout.timeout:.0f} s") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-6000:]
        raise InstallFailed(f"`{' '.join(argv)}` exited with {result.returncode}:\n{output}")


def _runs(python: Path) -> bool:
    """The virtualenv still works (its base interpreter may have gone)."""
    try:
        return subprocess.run([str(python), "-c", ""], check=False, timeout=30).returncode == 0
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_unused(*, keep: str) -> None:
    """Virtualenvs of other pins that no run has used for a week (and none is using now)."""
    for venv in CACHE_ROOT.iterdir():
        if not venv.is_dir() or venv.name == keep:
            continue
        marker = venv / COMPLETE_MARKER
        last_used = (marker if marker.exists() else venv).stat().st_mtime
        if time.time() - last_used < UNUSED_MAX_AGE_SECONDS:
            continue
        with _exclusive_lock(CACHE_ROOT / f"{venv.name}.lock", blocking=False) as locked:
            if locked:
                shutil.rmtree(venv, ignore_errors=True)
