"""Fixtures of the operations tests (admin, management commands, the demo runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

# The core suite's factories: conferences and POs on PostgreSQL, emulator-backed conferences.
from tests.core.conftest import (  # noqa: F401 (fixtures)
    make_conference,
    make_purchase_order,
    stripe_conference,
)


@pytest.fixture
def var_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    """A private VAR_DIR (the demo password file lives there)."""
    path = tmp_path / "var"
    path.mkdir()
    settings.VAR_DIR = path
    return path


@pytest.fixture(autouse=True)
def _static_root(settings: SettingsWrapper, tmp_path: Path) -> None:
    # WhiteNoise warns (an error here) when STATIC_ROOT does not exist; collectstatic never ran.
    settings.STATIC_ROOT = tmp_path
