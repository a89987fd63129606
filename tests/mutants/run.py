"""Apply each mutant of :mod:`tests.mutants.catalog` in a scratch worktree and run its tests.

The scratch tree is a ``git worktree`` of HEAD under /tmp (removed at the end): commit what you
want checked. Runs reuse this checkout's virtualenv; the editable install points at this checkout,
so every run puts the scratch tree first on ``PYTHONPATH`` (also for the worker and emulator
subprocesses the tests start) and ``tests.mutants.plugin`` refuses a run that imported anything of
ours from elsewhere. No bytecode is written, so a reverted file is never run from a stale cache.

First a baseline: the union of the selections must pass unmutated (else a "kill" means nothing).
Then per mutant: apply its edits (each text found exactly once, or stop), generate a migration if
it changes a model, run its tests with ``-x`` under a time limit, record the first failing test,
and reset the tree. ``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``STRIPE_RATE_LIMIT_REDIS_URL``
are passed on as the caller set them: do not run another pytest on the same ones meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.mutants.catalog import MUTANTS, Edit, Mutant

PASSED_ON = ("DATABASE_URL", "CELERY_BROKER_URL", "STRIPE_RATE_LIMIT_REDIS_URL")
INVARIANTS = range(1, 8)  # DESIGN.md's seven


class Misaligned(RuntimeError):
    """A mutant's text is not found exactly once: its guard moved; re-target the mutant."""


def mutate(text: str, edit: Edit, mutant_id: str) -> str:
    found = text.count(edit.old)
    if found != 1:
        raise Misaligned(
            f"mutant {mutant_id}: {edit.path} has the text to replace {found} times, not once; "
            f"re-target it in tests/mutants/catalog.py:\n{edit.old}"
        )
    return text.replace(edit.old, edit.new)


def misaligned(mutants: Sequence[Mutant], read: dict[str, str]) -> list[str]:
    """Every mutant whose edits do not apply to the sources in ``read`` (path -> text)."""
    problems = []
    for mutant in mutants:
        texts = dict(read)
        try:
            for edit in mutant.edits:
                texts[edit.path] = mutate(texts[edit.path], edit, mutant.id)
        except Misaligned as error:
            problems.append(str(error))
    return problems


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


@contextmanager
def scratch_tree(checkout: Path) -> Iterator[Path]:
    """A detached worktree of HEAD under /tmp, removed (with its directory) afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="po-mutants-", dir="/tmp"))
    tree = parent / "tree"
    _git("worktree", "add", "--detach", "--quiet", str(tree), "HEAD", cwd=checkout)
    try:
        yield tree
    finally:
        _git("worktree", "remove", "--force", str(tree), cwd=checkout)
        shutil.rmtree(parent, ignore_errors=True)


def _environment(tree: Path, report: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MUTANT_TREE": str(tree),
        "MUTANT_REPORT": str(report),
    }


@dataclass(frozen=True)
class Outcome:
    result: str  # "passed", "failed" (a test failed), or "error: ..."
    seconds: float  # the whole pytest run
    failing: str = ""  # the first failing test, its call's time and its failure
    test_seconds: float = 0.0
    message: str = ""


def run_tests(tree: Path, tests: Sequence[str], *, timeout: float, test_timeout: int) -> Outcome:
    """Run ``tests`` in ``tree`` with ``-x``. "failed" only when a test failed: a collection
    error or a run not pinned to the tree is an error, never a kill."""
    report = tree.parent / "report.jsonl"
    report.unlink(missing_ok=True)
    command = [
        *(sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"),
        *("-p", "tests.mutants.plugin", f"--timeout={test_timeout}", *tests),
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=tree,
        env=_environment(tree, report),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout ends the workers it started
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return Outcome(f"error: over {timeout:.0f} s", time.monotonic() - started)
    seconds = time.monotonic() - started
    lines = (
        [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    )
    tail = " | ".join(output.decode(errors="replace").strip().splitlines()[-3:])
    if not any("pinned" in line for line in lines):
        return Outcome(f"error: not pinned to the scratch tree: {tail}", seconds)
    failed = [line for line in lines if "failed" in line]
    if process.returncode == 0:
        return Outcome("passed", seconds)
    if process.returncode == 1 and failed:
        first = failed[0]
        return Outcome("failed", seconds, first["failed"], first["seconds"], first["message"])
    return Outcome(f"error: pytest exit {process.returncode}: {tail}", seconds)


def apply(tree: Path, mutant: Mutant) -> None:
    for edit in mutant.edits:
        path = tree / edit.path
        path.write_text(mutate(path.read_text(), edit, mutant.id))
    if mutant.makemigrations:
        made = subprocess.run(
            [sys.executable, "manage.py", "makemigrations", "invoicing", "--name", "mutant"],
            cwd=tree,
            env={"DJANGO_SECRET_KEY": "mutants-only-not-a-secret", **_environment(tree, Path())},
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0 or "mutant" not in made.stdout:
            raise Misaligned(
                f"mutant {mutant.id}: makemigrations made no migration for the model edit:\n"
                f"{made.stdout}{made.stderr}"
            )


def reset(tree: Path) -> None:
    _git("checkout", "--quiet", "--", ".", cwd=tree)
    _git("clean", "-fdq", cwd=tree)


def verdict(outcome: Outcome) -> str:
    """What a mutant run's outcome means for the mutant."""
    return {"failed": "killed", "passed": "survived"}.get(outcome.result, outcome.result)


def summary(outcomes: Sequence[Outcome]) -> str:
    """``killed`` when every run killed the mutant, else the first other verdict (with the
    count of kills when it ran more than once)."""
    verdicts = [verdict(outcome) for outcome in outcomes]
    kills = verdicts.count("killed")
    worst = "killed" if kills == len(verdicts) else next(v for v in verdicts if v != "killed")
    return worst if len(verdicts) == 1 else f"{worst} {kills}/{len(verdicts)}"


def _table(rows: list[tuple[Mutant, list[Outcome]]]) -> str:
    width = max(len(mutant.id) for mutant, _ in rows)
    result_width = max(len(summary(outcomes)) for _, outcomes in rows)
    lines = [
        f"{'mutant':<{width}}  inv  {'result':<{result_width}}  {'run':>6}  {'call':>6}  killed by"
    ]
    for mutant, outcomes in rows:
        killers = [outcome for outcome in outcomes if outcome.result == "failed"]
        test_seconds = f"{max(o.test_seconds for o in killers):>5.1f}s" if killers else " " * 6
        lines.append(
            f"{mutant.id:<{width}}  {mutant.invariant:>3}  {summary(outcomes):<{result_width}}  "
            f"{max(o.seconds for o in outcomes):>5.1f}s  {test_seconds}  "
            f"{killers[0].failing if killers else ''}"
        )
    return "\n".join(lines)


def _describe(mutants: Sequence[Mutant]) -> str:
    lines = []
    for mutant in mutants:
        files = ", ".join(dict.fromkeys(edit.path for edit in mutant.edits))
        lines.append(f"{mutant.id} (invariant {mutant.invariant}): {mutant.guard}\n  in {files}")
        lines.extend(f"  test {test}" for test in mutant.tests)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__)
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="this mutant")
    parser.add_argument("--list", action="store_true", help="describe the mutants and stop")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="every run N times")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--test-timeout", type=int, default=120, help="seconds per test")
    args = parser.parse_args(argv)

    unknown = set(args.only) - {mutant.id for mutant in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    mutants = [mutant for mutant in MUTANTS if not args.only or mutant.id in args.only]
    if args.list:
        print(_describe(mutants))
        return 0
    checkout = Path(_git("rev-parse", "--show-toplevel", cwd=Path(__file__).parent).strip())
    paths = sorted({edit.path for mutant in mutants for edit in mutant.edits})
    problems = misaligned(
        mutants, {path: _git("show", f"HEAD:{path}", cwd=checkout) for path in paths}
    )
    if problems:
        print("\n\n".join(problems), file=sys.stderr)
        return 2
    uncovered = set(INVARIANTS) - {mutant.invariant for mutant in MUTANTS}
    if uncovered:
        print(f"no mutant breaks invariant(s) {sorted(uncovered)}", file=sys.stderr)
        return 2
    for name in PASSED_ON:
        print(f"{name}={os.environ.get(name, '(unset: the pytest default)')}")

    rows: list[tuple[Mutant, list[Outcome]]] = []
    with scratch_tree(checkout) as tree:
        print(f"scratch tree {tree} at {_git('rev-parse', '--short', 'HEAD', cwd=tree).strip()}")

        def run(tests: Sequence[str]) -> list[Outcome]:
            return [
                run_tests(tree, tests, timeout=args.run_timeout, test_timeout=args.test_timeout)
                for _ in range(args.repeat)
            ]

        if not args.no_baseline:
            baseline = run(list(dict.fromkeys(test for m in mutants for test in m.tests)))
            passed = sum(outcome.result == "passed" for outcome in baseline)
            print(f"baseline, unmutated: passed {passed} of {len(baseline)}", flush=True)
            if passed < len(baseline):
                failure = next(o for o in baseline if o.result != "passed")
                print(f"the tests fail unmutated, so no kill would mean anything: {failure}")
                return 2
        for mutant in mutants:
            try:
                apply(tree, mutant)
                outcomes = run(mutant.tests)
            finally:
                reset(tree)
            rows.append((mutant, outcomes))
            last = outcomes[-1]
            print(f"{mutant.id}: {summary(outcomes)}; {last.failing} {last.message}", flush=True)
    print("\nrun: the whole pytest run (test database, emulator...); call: the killing test's")
    print(_table(rows))
    killed = sum(all(o.result == "failed" for o in outcomes) for _, outcomes in rows)
    print(f"\n{killed} of {len(rows)} mutants killed")
    return 0 if killed == len(rows) else 1
