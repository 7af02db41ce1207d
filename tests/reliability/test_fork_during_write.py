"""A fork while another thread writes to SQLite (found by the fault-injection suite).

SQLite keeps its lock state in process memory; a child forked in the middle of a write
inherits a write that never ends there. A fork waits briefly for other threads' writes to
finish; when one does not, the child refuses to write to that database with an error that
says why (instead of a lock timeout), and other databases are unaffected.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path
from typing import Any

import pytest

import sessionstore

pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="needs the fork start method"
)
KEY = "agent:main:counter"


def _child(store: Any, state: str, conn: Any) -> None:
    out = {}
    for name, action in (
        ("inherited", lambda: store.put("agent:main:child", {"sessionId": "c1"})),
        ("fresh", lambda: _fresh_put(state, "main")),
        ("other", lambda: _fresh_put(state, "ops")),
    ):
        try:
            action()
            out[name] = "written"
        except sessionstore.SessionStoreError as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    conn.send(out)


def _fresh_put(state: str, agent: str) -> None:
    with sessionstore.open_store(agent=agent, state_dir=state, store_type="sqlite") as s:
        s.put(f"agent:{agent}:child-fresh", {"sessionId": "c2"})


def _fork_during(store: Any, state: Path, write_lasts: float) -> dict[str, str]:
    inside, release = threading.Event(), threading.Event()

    def slow(entry: Any) -> dict[str, Any]:
        inside.set()
        release.wait(write_lasts)
        return {"n": entry["n"] + 1}

    writer = threading.Thread(target=lambda: store.update(KEY, slow))
    writer.start()
    assert inside.wait(30)
    ctx = mp.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_child, args=(store, str(state), theirs))
    child.start()  # the fork happens here, while `writer` is inside its write
    assert ours.poll(60)
    result: dict[str, str] = ours.recv()
    child.join(30)
    release.set()
    writer.join(30)
    return result


def _setup(tmp_path: Path) -> tuple[Any, Path]:
    state = tmp_path / "state"
    with sessionstore.open_store(agent="ops", state_dir=state, store_type="sqlite") as ops:
        ops.put("agent:ops:x", {"sessionId": "o"})
    store = sessionstore.open_store(state_dir=state, store_type="sqlite", lock_timeout_ms=3000)
    store.put(KEY, {"sessionId": "n", "n": 0})
    return store, state


def test_a_write_that_ends_soon_is_waited_for_and_the_child_writes(tmp_path: Path) -> None:
    store, state = _setup(tmp_path)
    try:
        result = _fork_during(store, state, write_lasts=0.2)
        assert result == {"inherited": "written", "fresh": "written", "other": "written"}
        assert store.get(KEY)["n"] == 1  # type: ignore[index]
        assert store.get("agent:main:child") is not None
    finally:
        store.close()


def test_a_write_the_fork_cannot_wait_for_is_refused_in_the_child_with_the_reason(
    tmp_path: Path,
) -> None:
    store, state = _setup(tmp_path)
    try:
        result = _fork_during(store, state, write_lasts=60)
        for name in ("inherited", "fresh"):
            assert "forked while another thread of its parent was writing" in result[name]
        assert result["other"] == "written"  # another database is not affected
        assert store.get(KEY)["n"] == 1  # type: ignore[index]  # the parent's write went on
        store.put("agent:main:after", {"sessionId": "a"})
    finally:
        store.close()
