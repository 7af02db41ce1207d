"""``session.maintainEvery`` and the automatic maintenance it drives (issue 5).

Upstream maintains on every save; here maintenance runs when asked and, if
``session.maintainEvery`` is set and the mode is ``enforce``, after a write at most once per
interval. The last run is recorded by the mtime of ``.sessionstore-maintained`` in the
sessions dir (shared by processes); time passing is simulated by moving that mtime back and
by advancing the store module's monotonic clock, never by sleeping.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import sessionstore
import sessionstore.store as store_module
from sessionstore import SessionStore
from sessionstore.clock import now_ms
from sessionstore.config import DAY_MS, load_config, parse_config
from sessionstore.errors import ConfigError
from sessionstore.store import MAINTENANCE_MARKER

HOUR = 3_600_000


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1h", HOUR),
        ("90s", 90_000),
        ("1h30m", 90 * 60_000),
        ("500ms", 500),
        (2, 2 * DAY_MS),
        ("2", 2 * DAY_MS),
        (0.5, DAY_MS // 2),
        (None, None),
        (False, None),
    ],
)
def test_maintain_every_values(value: object, expected: int | None) -> None:
    assert parse_config({"session": {"maintainEvery": value}}).maintain_every_ms == expected


def test_maintain_every_defaults_to_off() -> None:
    assert parse_config({}).maintain_every_ms is None
    assert parse_config({"session": {}}).maintain_every_ms is None
    assert parse_config({"session": {"maintenance": {"mode": "enforce"}}}).maintain_every_ms is None


@pytest.mark.parametrize(
    "value", ["soon", "-1h", "1h-", "", True, [1], {"h": 1}, -5, "1 fortnight"]
)
def test_maintain_every_errors_name_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"session\.maintainEvery"):
        parse_config({"session": {"maintainEvery": value}})


@pytest.mark.parametrize("value", [0, 0.0])
def test_maintain_every_zero_is_an_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"session\.maintainEvery"):
        parse_config({"session": {"maintainEvery": value}})


def test_maintain_every_belongs_to_session_not_maintenance() -> None:
    with pytest.raises(ConfigError, match=r"session\.maintenance\.maintainEvery"):
        parse_config({"session": {"maintenance": {"maintainEvery": "1h"}}})


def test_maintain_every_from_a_json5_file(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(
        "{ session: { maintainEvery: '6h', // ours\n"
        "  maintenance: { mode: 'enforce', maxEntries: 10 } } }"
    )
    cfg = load_config(path)
    assert cfg.maintain_every_ms == 6 * HOUR
    assert cfg.maintenance.mode == "enforce" and cfg.maintenance.max_entries == 10
    path.write_text("{ session: { maintainEvery: 'often' } }")
    with pytest.raises(ConfigError, match=r"session\.maintainEvery: 'often' is not a duration"):
        load_config(path)


def test_bad_maintain_every_fails_open_store(tmp_path: Path) -> None:
    (tmp_path / "openclaw.json").write_text(json.dumps({"session": {"maintainEvery": "x"}}))
    with pytest.raises(ConfigError, match=r"session\.maintainEvery"):
        sessionstore.open_store(state_dir=tmp_path)


# --- automatic maintenance ------------------------------------------------------------------


def _seed(state: Path, backend: str, entries: dict[str, int]) -> None:
    """Write sessions ``key -> updatedAt`` before any config exists (no automatic runs)."""
    with sessionstore.open_store(state_dir=state, store_type=backend) as s:  # type: ignore[arg-type]
        for key, updated in entries.items():
            s.put(key, {"updatedAt": updated})


def _configure(state: Path, session: dict[str, Any]) -> None:
    (state / "openclaw.json").write_text(json.dumps({"session": session}))


def _open(state: Path, backend: str) -> SessionStore:
    return sessionstore.open_store(state_dir=state, store_type=backend)  # type: ignore[arg-type]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every ``maintain`` call, with its arguments."""
    calls: list[dict[str, Any]] = []
    real = SessionStore.maintain

    def counting(self: SessionStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SessionStore, "maintain", counting)
    yield calls


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The store module's monotonic clock, advanced by hand (``clock.offset`` seconds)."""
    state = SimpleNamespace(offset=0.0)
    fake = SimpleNamespace(monotonic=lambda: time.monotonic() + state.offset)
    monkeypatch.setattr(store_module, "time", fake)
    return state


def _age_marker(marker: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(marker, (when, when))


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_auto_maintenance_runs_at_most_once_per_interval(
    tmp_path: Path, backend: str, runs: list[dict[str, Any]], clock: SimpleNamespace
) -> None:
    state = tmp_path / "state"
    now = now_ms()
    _seed(
        state,
        backend,
        {"agent:main:stale1": now - 40 * DAY_MS, "agent:main:stale2": now - 41 * DAY_MS},
    )
    _configure(state, {"maintainEvery": "1h", "maintenance": {"mode": "enforce"}})
    marker = state / "agents" / "main" / "sessions" / MAINTENANCE_MARKER
    assert not marker.exists()

    with _open(state, backend) as s:
        # the first write runs maintenance; the key written is the active one: kept though stale
        s.put("agent:main:active", {"updatedAt": now - 90 * DAY_MS})
        assert runs == [{"mode": "enforce", "active_key": "agent:main:active"}]
        assert sorted(s.load_all()) == ["agent:main:active"]
        assert marker.exists()

        # inside the interval: writes do not run it
        _age_marker(marker, 600)
        stamp = marker.stat().st_mtime
        s.put("agent:main:stale3", {"updatedAt": now - 40 * DAY_MS})
        s.update("agent:main:stale3", {"label": "x"}, preserve_activity=True)
        s.mutate(lambda d: None)
        s.delete("agent:main:nothing-here")
        assert len(runs) == 1
        assert sorted(s.load_all()) == ["agent:main:active", "agent:main:stale3"]
        assert marker.stat().st_mtime == stamp

        # another process (a second store) sees the marker and waits too
        with _open(state, backend) as other:
            other.put("agent:main:fresh", {})
        assert len(runs) == 1

        # an hour later (by the marker and by the clock): the next write runs it again
        _age_marker(marker, 2 * 3600)
        clock.offset = 2 * 3600
        s.put("agent:main:fresher", {})
        assert runs[1:] == [{"mode": "enforce", "active_key": "agent:main:fresher"}]
        assert sorted(s.load_all()) == ["agent:main:fresh", "agent:main:fresher"]
        assert marker.stat().st_mtime > time.time() - 600

        # and not on the write after that
        s.put("agent:main:stale4", {"updatedAt": now - 40 * DAY_MS})
        assert len(runs) == 2
        assert "agent:main:stale4" in s.load_all()


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_a_fresh_process_runs_after_the_interval(
    tmp_path: Path, backend: str, runs: list[dict[str, Any]]
) -> None:
    state = tmp_path / "state"
    now = now_ms()
    _seed(state, backend, {"agent:main:stale": now - 40 * DAY_MS})
    _configure(state, {"maintainEvery": "30m", "maintenance": {"mode": "enforce"}})
    marker = state / "agents" / "main" / "sessions" / MAINTENANCE_MARKER
    marker.touch()
    with _open(state, backend) as s:
        s.put("agent:main:a", {})
    assert runs == [] and marker.exists()
    _age_marker(marker, 31 * 60)
    with _open(state, backend) as s:
        s.put("agent:main:b", {})
        assert len(runs) == 1
        assert sorted(s.load_all()) == ["agent:main:a", "agent:main:b"]


@pytest.mark.parametrize("backend", ["json", "sqlite"])
@pytest.mark.parametrize(
    "session",
    [
        {"maintainEvery": "1ms", "maintenance": {"mode": "warn"}},
        {"maintainEvery": "1ms"},  # warn is the default mode
        {"maintenance": {"mode": "enforce"}},  # no interval: only when asked
    ],
    ids=["warn", "default-mode", "no-interval"],
)
def test_no_automatic_maintenance_unless_enforce_and_interval(
    tmp_path: Path, backend: str, session: dict[str, Any], runs: list[dict[str, Any]]
) -> None:
    state = tmp_path / "state"
    now = now_ms()
    _seed(state, backend, {"agent:main:stale": now - 400 * DAY_MS})
    _configure(state, session)
    with _open(state, backend) as s:
        for i in range(3):
            s.put(f"agent:main:k{i}", {"updatedAt": now - 400 * DAY_MS})
        s.delete("agent:main:k0")
        assert runs == []
        assert sorted(s.load_all()) == ["agent:main:k1", "agent:main:k2", "agent:main:stale"]
    assert not (state / "agents" / "main" / "sessions" / MAINTENANCE_MARKER).exists()


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_a_failing_automatic_run_does_not_fail_the_write(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _configure(state, {"maintainEvery": "1h", "maintenance": {"mode": "enforce"}})

    def broken(*_: Any, **__: Any) -> Any:
        raise sessionstore.SessionStoreError("disk on fire")

    monkeypatch.setattr(SessionStore, "maintain", broken)
    with _open(state, backend) as s:
        stored = s.put("agent:main:a", {"label": "kept"})
        assert stored["label"] == "kept"
        assert s.get("agent:main:a") == stored
