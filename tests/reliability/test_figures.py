"""The group's own plumbing: sizes are never zero and figures reach the artifacts."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import size, write_figures


def test_size_follows_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIABILITY_SIZE", "full")
    assert size(ci=2, full=200) == 200
    monkeypatch.setenv("RELIABILITY_SIZE", "ci")
    assert size(ci=2, full=200) == 2
    monkeypatch.setenv("RELIABILITY_SIZE", "huge")
    with pytest.raises(pytest.UsageError, match="RELIABILITY_SIZE"):
        size(ci=2, full=200)


def test_recorded_figures_are_written(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("reliability") is not None
    path = write_figures(request.config, "plumbing-check", {"events": 3, "lost": 0})
    try:
        assert json.loads(path.read_text()) == {"events": 3, "lost": 0}
    finally:
        path.unlink()
