"""``make mutants``: remove each guard of DESIGN.md's invariants in turn and check a test fails.

The list is :data:`tests.mutants.catalog.MUTANTS`; the runner is :mod:`tests.mutants.run`
(``python -m tests.mutants --help``). Not part of ``make test``: it takes minutes.
"""
