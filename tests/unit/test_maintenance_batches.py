"""sqlite maintenance beside other writers (issue 15): the plan is made on a snapshot and
applied in short batches, each its own write transaction.

The interleavings are forced, not timed: ``SqliteIndex.maintenance_batch_hook`` runs
between two batches, and a step of the plan is wrapped to write while it runs. A writer that
gets in proves the write lock is free at that point: its connection has no busy timeout, so
a held lock fails it at once with ``BusyError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore import SessionStore
from sessionstore.clock import now_ms
from sessionstore.context import StoreContext
from sessionstore.index.sqlite import SqliteIndex
from sessionstore.maintenance import _Run, run_maintenance

DAY = 86_400_000
STALE = 10


def _store(state_dir: Path) -> SessionStore:
    store = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    store.config = replace(
        store.config,
        maintenance=replace(store.config.maintenance, mode="enforce", max_entries=1_000),
    )
    return store


def _fill(store: SessionStore) -> dict[str, str]:
    """``STALE`` sessions 40 days idle and one fresh one, each with a transcript."""
    now = now_ms()
    ids: dict[str, str] = {}
    for i in range(STALE + 1):
        key = f"agent:main:s{i:02d}" if i < STALE else "agent:main:fresh"
        sid = str(uuid.uuid4())
        age = 40 * DAY if i < STALE else 1_000
        store.put(key, {"sessionId": sid, "updatedAt": now - age})
        (store.paths.sessions_dir / f"{sid}.jsonl").write_text('{"type":"session"}\n')
        ids[key] = sid
    return ids


def _index(store: SessionStore) -> SqliteIndex:
    index = StoreContext.of(store).index
    assert isinstance(index, SqliteIndex)
    return index


def _take_write_lock(path: str) -> None:
    """BEGIN IMMEDIATE on a connection of its own that never waits: fails if it is held."""
    conn = apsw.Connection(path)
    try:
        conn.set_busy_timeout(0)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _archived(store: SessionStore, sid: str) -> bool:
    return any(
        p.name.startswith(f"{sid}.jsonl.deleted.") for p in store.paths.sessions_dir.iterdir()
    )


def test_a_writer_gets_in_between_batches_and_its_write_survives(state_dir: Path) -> None:
    with _store(state_dir) as store, _store(state_dir) as other:
        ids = _fill(store)
        index = _index(store)
        index.maintenance_batch_rows = 3
        writes: list[int] = []

        def between() -> None:
            _take_write_lock(index.location)
            other.update("agent:main:fresh", {"label": f"written between batches {len(writes)}"})
            writes.append(len(writes))

        index.maintenance_batch_hook = between
        report = store.maintain()
        assert report.pruned == STALE and report.afterCount == 1
        # ten rows in batches of at most three: at least three gaps between batches
        assert len(writes) >= 3
        fresh = store.get("agent:main:fresh")
        assert fresh is not None and fresh["label"] == f"written between batches {len(writes) - 1}"
        assert store.count() == 1
        assert all(_archived(store, ids[f"agent:main:s{i:02d}"]) for i in range(STALE))


def test_a_row_updated_after_the_plan_is_kept(state_dir: Path) -> None:
    with _store(state_dir) as store, _store(state_dir) as other:
        ids = _fill(store)
        index = _index(store)
        index.maintenance_batch_rows = 4
        touched: list[str] = []

        def between() -> None:
            if touched:
                return
            # Every stale row the first batch has not deleted yet gets a fresh updatedAt.
            for i in range(STALE):
                key = f"agent:main:s{i:02d}"
                if other.get(key) is not None:
                    other.update(key, {"updatedAt": now_ms(), "label": "busy again"})
                    touched.append(key)

        index.maintenance_batch_hook = between
        report = store.maintain()
        assert 0 < len(touched) < STALE
        assert report.pruned == STALE - len(touched)
        assert {a.key for a in report.actions}.isdisjoint(touched)
        assert len(report.actions) == report.pruned
        assert report.afterCount == 1 + len(touched) == store.count()
        assert any("changed by another writer" in w for w in report.warnings)
        for i in range(STALE):
            key = f"agent:main:s{i:02d}"
            entry = store.get(key)
            if key in touched:
                assert entry is not None and entry["label"] == "busy again"
                assert (store.paths.sessions_dir / f"{ids[key]}.jsonl").exists()
                assert not _archived(store, ids[key])
            else:
                assert entry is None and _archived(store, ids[key])
        assert all(Path(p).exists() for p in report.archived)


def _write_during(step: str, monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    original = getattr(_Run, step)

    def wrapped(self: _Run, *args: Any) -> Any:
        hook()
        return original(self, *args)

    monkeypatch.setattr(_Run, step, wrapped)


@pytest.mark.parametrize("dry_run", [True, False])
def test_planning_leaves_the_write_lock_free(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    with _store(state_dir) as store, _store(state_dir) as other:
        _fill(store)
        index = _index(store)
        during: list[bool] = []

        def write() -> None:
            _take_write_lock(index.location)
            other.put("agent:main:during-plan", {"sessionId": "p", "updatedAt": now_ms()})
            during.append(True)

        # archive() runs after prune and cap removed their rows from the plan
        _write_during("archive", monkeypatch, write)
        report = run_maintenance(StoreContext.of(store), dry_run=dry_run)
        assert during == [True]
        assert report.pruned == STALE
        assert store.get("agent:main:during-plan") is not None
        assert store.count() == (STALE + 2 if dry_run else 2)


def test_a_dry_run_writes_nothing(state_dir: Path) -> None:
    with _store(state_dir) as store:
        _fill(store)
        path = Path(_index(store).location)
        # the -shm file holds readers' marks, which any read changes
        skip = {path.name, f"{path.name}-shm"}
        before = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name not in skip}
        db = path.read_bytes()
        report = store.maintain(dry_run=True)
        assert report.pruned == STALE and report.would_mutate
        assert store.count() == STALE + 1
        assert path.read_bytes() == db
        after = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name not in skip}
        assert after == before
