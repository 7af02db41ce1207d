"""Shared fixtures: a temporary state dir and a store per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sessionstore
from sessionstore import SessionStore

BACKENDS = ["json", "sqlite"]


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
