"""The reliability group: whole-stack tests under faults, load and bad input (issue 6).

Every case sizes itself with :func:`size` (``RELIABILITY_SIZE=ci`` by default, ``full`` for the
sizes the README's reliability table reports) and records what it saw with ``record_figures``;
the figures are written to ``test-artifacts/reliability/<test>.json`` and printed after the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
_FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()

RecordFigures = Callable[..., None]


def size(*, ci: int, full: int) -> int:
    """The case's size for this run: small in CI, never zero, the README's figures with ``full``."""
    mode = os.environ.get("RELIABILITY_SIZE", "ci")
    if mode not in {"ci", "full"}:
        raise pytest.UsageError(f"RELIABILITY_SIZE={mode!r}: use 'ci' or 'full'.")
    chosen = full if mode == "full" else ci
    assert chosen > 0, "a reliability case never runs at size zero"
    return chosen


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> Iterator[RecordFigures]:
    """Record a case's figures (counts, retries, kills...); later calls add to earlier ones."""
    figures: dict[str, Any] = {}

    def record(**values: Any) -> None:
        figures.update(values)

    yield record
    if figures:
        write_figures(request.config, request.node.name, figures)


def write_figures(config: pytest.Config, name: str, figures: dict[str, Any]) -> Path:
    """Keep a case's figures as an artifact and for the end-of-run summary."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    config.stash.setdefault(_FIGURES, {})[name] = figures
    return path


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, {})
    if not figures:
        return
    terminalreporter.section("reliability figures")
    for name, values in sorted(figures.items()):
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        terminalreporter.write_line(f"{name}: {shown}")
