"""Root conftest: only registers the Stripe emulator's fixtures; each directory adds its own."""

pytest_plugins = ["tests.stripe_emulator.pytest_plugin"]
