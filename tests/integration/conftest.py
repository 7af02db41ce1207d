"""Integration tests run against a clean environment: no inherited state dir or config."""

from __future__ import annotations

from pathlib import Path

import pytest

ENV_DROP = (
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_HOME",
    "SESSIONSTORE_STORE_TYPE",
    "SESSIONSTORE_BENCH_PG_DSN",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_DROP:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
