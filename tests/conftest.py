"""Shared fixtures: a hermetic environment, a temporary state dir and a store per backend."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessionstore
from hermetic import PREFIXES
from sessionstore import SessionStore

BACKENDS = ["json", "sqlite"]

# The environment pytest was started with, before it was cleaned (for run knobs such as
# SESSIONSTORE_SLOW); and the private HOME of the whole run.
_LAUNCH_ENV: dict[str, str] = {}
_RUN_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # Module-level code and fixtures of wider scope than a test run before the autouse
    # fixture below: clean the whole process once, before collection.
    _LAUNCH_ENV.update(os.environ)
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            del os.environ[name]
    home = tempfile.mkdtemp(prefix="sessionstore-test-home-")
    _RUN_HOME.append(home)
    os.environ["HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _RUN_HOME:
        shutil.rmtree(home, ignore_errors=True)
    os.environ.update({k: v for k, v in _LAUNCH_ENV.items() if k.startswith(PREFIXES)})
    if "HOME" in _LAUNCH_ENV:
        os.environ["HOME"] = _LAUNCH_ENV["HOME"]


@pytest.fixture(autouse=True)
def _hermetic_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No inherited state dir, config or store type, and a private, empty HOME per test."""
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def launch_env() -> dict[str, str]:
    """The environment pytest was started with (read run knobs here, never settings)."""
    return dict(_LAUNCH_ENV)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(state_dir: Path, backend: str) -> Iterator[SessionStore]:
    s = sessionstore.open_store(agent="main", state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        s.close()
