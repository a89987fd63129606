"""Root conftest: pytest only honours ``pytest_plugins`` here; directories add their own."""

pytest_plugins = [
    "tests.stripe_emulator.pytest_plugin",
    "tests.support.celery_workers",
]
