"""pytest fixtures for the Stripe emulator (registered in ``tests/conftest.py``).

``stripe_emulator`` (session): the emulator in its own process, on a port it picks itself
(``--port 0``; the process prints the URL it bound, so there is no race for a free port).
``stripe_secret_key`` (function): a fresh, empty account for each test.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .handle import EmulatorError, EmulatorHandle

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


def start_emulator(log_path: Path) -> tuple[subprocess.Popen[bytes], EmulatorHandle]:
    """Start ``python -m tests.stripe_emulator`` and wait until it answers."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.stripe_emulator", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    line = b""
    while time.monotonic() < deadline and b"\n" not in line:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = process.stdout.readline()
            if not chunk:
                break
            line += chunk
    if b"listening on " not in line:
        stop_emulator(process)
        raise RuntimeError(
            f"the Stripe emulator did not start; see {log_path}: {log_path.read_text()[-2000:]}"
        )
    handle = EmulatorHandle(line.decode().split("listening on ", 1)[1].strip(), pid=process.pid)
    while True:
        try:
            handle.health()
            return process, handle
        except (OSError, EmulatorError):
            if time.monotonic() > deadline:
                stop_emulator(process)
                raise
            time.sleep(0.05)


def stop_emulator(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process we started (by its pid, through the Popen object)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="session")
def stripe_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    log_path = tmp_path_factory.mktemp("stripe-emulator") / "emulator.log"
    process, handle = start_emulator(log_path)
    try:
        yield handle
    finally:
        stop_emulator(process)


@pytest.fixture
def stripe_secret_key(stripe_emulator: EmulatorHandle) -> str:
    return stripe_emulator.new_secret_key()
