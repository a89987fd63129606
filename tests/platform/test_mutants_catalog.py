"""`make mutants` stays aimed: each mutant's text is still in the code, once; its tests exist.

When code moves, the guard moves with it and the mutant must be re-targeted; this fails in
``make test`` until it is, instead of ``make mutants`` stopping minutes later.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.mutants.catalog import MUTANTS, Mutant
from tests.mutants.run import INVARIANTS, misaligned

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_mutant_replaces_text_found_exactly_once() -> None:
    paths = {edit.path for mutant in MUTANTS for edit in mutant.edits}
    sources = {path: (REPO_ROOT / path).read_text() for path in paths}
    assert misaligned(MUTANTS, sources) == []


def test_every_invariant_with_code_has_a_mutant_and_ids_are_unique() -> None:
    assert {mutant.invariant for mutant in MUTANTS} == set(INVARIANTS)
    ids = [mutant.id for mutant in MUTANTS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.id)
def test_every_selected_test_exists(mutant: Mutant) -> None:
    assert mutant.tests
    for selection in mutant.tests:
        path, *names = selection.split("::")
        source = (REPO_ROOT / path).read_text()
        for name in names:
            bare = name.split("[")[0]
            assert re.search(rf"^\s*(def|class) {re.escape(bare)}\b", source, re.MULTILINE), (
                f"{mutant.id}: no {bare} in {path}"
            )
