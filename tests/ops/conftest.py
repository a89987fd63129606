"""Fixtures of the operations tests (admin, management commands, the demo runner)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

# The core suite's factories: conferences and POs on PostgreSQL, emulator-backed conferences.
from tests.core.conftest import (  # noqa: F401 (fixtures)
    MakePurchaseOrder,
    make_conference,
    make_purchase_order,
    stripe_conference,
)
from tests.ops.teams import Team, build_team
from tests.stripe_emulator.handle import EmulatorHandle


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


@pytest.fixture
def make_team(
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    make_purchase_order: MakePurchaseOrder,  # noqa: F811 (the fixture, imported above)
) -> Callable[[str], Team]:
    """``make_team("Alpha")``: a conference on its own emulator account, its objects, its people."""
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    return partial(build_team, emulator=stripe_emulator, make_purchase_order=make_purchase_order)
