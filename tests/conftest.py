"""Root conftest: pytest only honours ``pytest_plugins`` here."""

pytest_plugins = ["tests.support.celery_workers"]
