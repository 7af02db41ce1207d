"""Reliability tests: a hermetic environment and the slow tier's gate.

The scenarios live in the ``faultkit`` package beside this file (pytest puts this
directory on ``sys.path``; the ``bench/stress`` scripts do the same), so the tests and the
scripts run the very same code: a test runs a short tier and asserts that no promise
broke, a script runs the full figures and reports them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SLOW_ENV = "SESSIONSTORE_SLOW"
SLOW_TIMEOUT = 3600  # seconds, for one test of the slow tier
HERE = Path(__file__).parent


def _slow_selected(config: pytest.Config) -> bool:
    expr = str(config.getoption("-m") or "")
    return ("slow" in expr and "not slow" not in expr) or bool(os.environ.get(SLOW_ENV))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The full figures take minutes per test (every crash point of a migration...): the
    # default timeout (pyproject.toml) guards the short tier only.
    for item in items:
        slow = item.get_closest_marker("slow") and not item.get_closest_marker("timeout")
        if slow and item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slow") and not _slow_selected(item.config):
        pytest.skip(f"slow tier: select with -m slow (or {SLOW_ENV}=1)")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited state dir, config or store type; a private HOME (children inherit it)."""
    for name in list(os.environ):
        if name.startswith(("OPENCLAW_", "SESSIONSTORE_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
