"""pytest plugin for the mutant runs (``-p tests.mutants.plugin``), never loaded otherwise.

- Pins the run to the scratch tree: once the tests are collected, every loaded module of ours
  (``invoicing``, ``workers``, ``config``, ``tests``) must come from ``MUTANT_TREE``. The
  editable install points at the main checkout; a run that imported it would test unmutated code
  and report a mutant as survived (or killed) for nothing.
- Writes what the runner reads to ``MUTANT_REPORT``, one JSON object a line: ``{"pinned": n}``
  once the pin holds, then the first test that failed (setup, call or teardown) with the time
  of its call (its setup also pays for the session's: the test database, the emulator) and the
  line its failure ended with.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

_OURS = ("invoicing", "workers", "config", "tests")


def _report(**line: object) -> None:
    with open(os.environ["MUTANT_REPORT"], "a", encoding="utf-8") as report:
        report.write(json.dumps(line) + "\n")


def _outside_tree(tree: Path) -> list[str]:
    strays = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        ours = name.split(".")[0] in _OURS and origin is not None
        if ours and not Path(str(origin)).resolve().is_relative_to(tree):
            strays.append(f"{name} from {origin}")
    return strays


def pytest_collection_finish(session: pytest.Session) -> None:
    tree = Path(os.environ["MUTANT_TREE"]).resolve()
    import invoicing.services.stripe_invoicing  # noqa: F401 - the code most mutants target

    strays = _outside_tree(tree)
    if strays:
        raise pytest.UsageError(f"not the scratch tree's code: {', '.join(strays[:5])}")
    _report(pinned=sum(1 for name in sys.modules if name.split(".")[0] in _OURS))


class _FirstFailure:
    nodeid: str | None = None
    message = ""


_call_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _call_seconds[report.nodeid] = report.duration
    if report.failed and _FirstFailure.nodeid is None:
        _FirstFailure.nodeid = report.nodeid
        crash = getattr(report.longrepr, "reprcrash", None)
        _FirstFailure.message = str(getattr(crash, "message", "") or report.longrepr)
    if report.when == "teardown" and report.nodeid == _FirstFailure.nodeid:
        _report(
            failed=report.nodeid,
            seconds=round(_call_seconds.get(report.nodeid, 0.0), 3),
            message=_FirstFailure.message.strip().splitlines()[0][:160],
        )
