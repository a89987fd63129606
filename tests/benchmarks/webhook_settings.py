"""Settings for the webhook benchmark: the project's, plus a trivial view to compare with."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.webhook_urls"
