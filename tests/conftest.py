"""Root conftest: pytest only honours ``pytest_plugins`` here; each directory adds its own fixtures."""

pytest_plugins = [
    "tests.stripe_emulator.pytest_plugin",
    "tests.support.celery_workers",
]
