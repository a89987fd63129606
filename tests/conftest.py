"""Root conftest: pytest only honours ``pytest_plugins`` here; directories add their own."""

pytest_plugins = [
    "tests.stripe_emulator.pytest_plugin",
    "tests.support.celery_workers",
    # The ``contention`` fixture of the deterministic lock tests.
    "tests.support.locks",
    # Issue 6, case 7: fails the session if any log line carries a known Stripe secret.
    "tests.support.secret_guard",
    # The guard's own test runs a pytest session inside the suite.
    "pytester",
]
