# The README's two commands: `make run` (the whole system, with the Stripe emulator) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest venv lock clean

venv: $(STAMP)

# Reinstall whenever the pins change; constraints.txt holds every transitive version.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Regenerate the constraints from a clean install of the pins in pyproject.toml.
# A private temporary venv, so two checkouts locking at once never share one.
lock:
	set -e; lockdir=$$(mktemp -d); trap 'rm -rf "$$lockdir"' EXIT; \
	$(PYTHON) -m venv "$$lockdir"; \
	"$$lockdir/bin/python" -m pip install --quiet --upgrade "pip>=25"; \
	"$$lockdir/bin/python" -m pip install --quiet -e ".[dev]"; \
	"$$lockdir/bin/python" -m pip freeze --exclude-editable > constraints.txt

run: $(STAMP)
	$(BIN)/python manage.py rundemo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	DJANGO_SECRET_KEY=mypy-only-not-a-secret $(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: $(STAMP)
	.ci/ensure-services.sh postgres redis rabbitmq chromium
	$(MAKE) --no-print-directory lint typecheck pytest

# Remove each invariant's guard in turn (tests/mutants/catalog.py) and check a test fails: minutes,
# so not part of `make test`. MUTANTS_ARGS: e.g. --only po-row-lock --repeat 20, or --list.
.PHONY: mutants
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants $(MUTANTS_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts
