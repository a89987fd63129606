"""Subprocesses the tests start: each in its own session, output in one log file, stopped by pid.

Its own session (and so its own process group) lets a stop reach what the process forked (a
prefork pool, gunicorn's workers) and nothing else, and keeps a Ctrl-C in the terminal from
stopping it before the test has cleaned up. The log file is what a failure message quotes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_SECONDS = 15.0
LOG_TAIL_CHARS = 4000


@dataclass(kw_only=True)
class LoggedProcess:
    """``argv`` run in its own session with stdout and stderr appended to ``log_path``.

    ``start()`` may be called again once it has stopped (same command line, same log file).
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path = REPO_ROOT
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log_text()[-chars:]

    def exit_report(self, chars: int = LOG_TAIL_CHARS) -> str:
        """How it ended and the end of its log, for a failure message."""
        return f"{self.name} exited with {self.returncode}:\n{self.log_tail(chars)}"

    def send_signal(self, sig: int) -> None:
        """``sig`` to the main process only (its children see nothing), if it still runs."""
        if self.running:
            os.kill(self.pid, sig)

    def send_signal_to_group(self, sig: int) -> None:
        """``sig`` to the main process and everything it forked (a machine that is lost)."""
        if self.running:
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS, *, sig: int = signal.SIGTERM) -> None:
        """``sig`` (a warm shutdown), then SIGKILL to the whole group after ``timeout`` seconds."""
        self.send_signal(sig)
        self.reap(timeout)

    def reap(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Wait for the main process (SIGKILL to its group after ``timeout``); end the group."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.process.wait(timeout=timeout)
        # Children of a main process that is gone (pool workers) must not outlive it.
        self._kill_group()

    def _kill_group(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def parent_pids() -> dict[int, int]:
    """Every process's parent (pid -> ppid), from ``/proc/<pid>/stat``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ")".
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def child_pids(pid: int) -> list[int]:
    """Pids whose parent is ``pid``, sorted."""
    return sorted(child for child, parent in parent_pids().items() if parent == pid)


def procfile_command(kind: str) -> str:
    """The Procfile's command line for ``kind`` (web, worker, beat, release)."""
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return command.strip()
    raise KeyError(kind)
