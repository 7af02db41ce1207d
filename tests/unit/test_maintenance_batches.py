"""sqlite maintenance beside other writers (issue 15): the plan is made on a snapshot and
applied in short batches, each its own write transaction.

The interleavings are forced, not timed: ``SqliteIndex.maintenance_batch_hook`` runs
between two batches, and a step of the plan is wrapped to write while it runs. A writer that
gets in proves the write lock is free at that point: its connection has no busy timeout, so
a held lock fails it at once with ``BusyError``.
"""

from __future__ import annotations

import itertools
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
from sessionstore.index.sqlite import BUSY_HANDLER_DELAYS_MS, SqliteIndex, writer_pause
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


def test_a_cron_run_updated_after_the_reaper_planned_is_kept(state_dir: Path) -> None:
    # The reaper's removals go through the same batches: a run a gateway touched after the
    # plan stays, with its transcript, and leaves the report's count (prune-cron -> reaped).
    with _store(state_dir) as store, _store(state_dir) as other:
        now = now_ms()
        runs = [f"agent:main:cron:job:run:r{i}" for i in range(6)]
        ids = {}
        for key in runs:
            ids[key] = str(uuid.uuid4())
            store.put(key, {"sessionId": ids[key], "updatedAt": now - 2 * DAY})
            (store.paths.sessions_dir / f"{ids[key]}.jsonl").write_text('{"type":"session"}\n')
        index = _index(store)
        index.maintenance_batch_rows = 2
        touched: list[str] = []

        def between() -> None:
            if not touched:
                for key in runs:
                    if other.get(key) is not None:
                        other.update(key, {"updatedAt": now_ms(), "label": "ran again"})
                        touched.append(key)

        index.maintenance_batch_hook = between
        report = store.maintain(reap_cron=True)
        assert 0 < len(touched) < len(runs)
        assert report.reaped == len(runs) - len(touched) == len(report.actions)
        assert {a.action for a in report.actions} == {"prune-cron"}
        assert {a.key for a in report.actions}.isdisjoint(touched)
        assert sorted(store.load_all()) == sorted(touched)
        for key in runs:
            assert _archived(store, ids[key]) == (key not in touched)


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


def test_each_batch_but_the_last_is_followed_by_a_pause_outside_its_transaction(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _store(state_dir) as store:
        _fill(store)
        index = _index(store)
        index.maintenance_batch_rows = 3
        counts: list[int] = []
        pauses: list[float] = []

        def pause(self: SqliteIndex, held_s: float) -> None:
            _take_write_lock(index.location)  # the batch has committed
            counts.append(store.count())
            pauses.append(held_s)

        monkeypatch.setattr(SqliteIndex, "_pause_for_writers", pause)
        report = store.maintain()
        assert report.pruned == STALE
        # ten rows in batches of three: three pauses, after 3, 6 and 9 rows went
        assert counts == [STALE + 1 - 3, STALE + 1 - 6, STALE + 1 - 9]
        assert all(held > 0 for held in pauses)
        assert store.count() == 1


def test_the_pause_covers_the_next_retry_of_a_writer_that_waited_for_the_batch() -> None:
    # SQLite's busy handler retries at these times after a writer first found the lock
    # held (the last delay repeats); the writer began waiting at any moment of the batch.
    retries = list(
        itertools.accumulate([*BUSY_HANDLER_DELAYS_MS, *[BUSY_HANDLER_DELAYS_MS[-1]] * 20])
    )
    for held_tenths in range(0, 3_000):
        held_ms = held_tenths / 10
        pause_ms = writer_pause(held_ms / 1000) * 1000
        assert pause_ms <= BUSY_HANDLER_DELAYS_MS[-1] + 2
        for began_tenths in range(0, held_tenths + 1, 7):
            waited_ms = held_ms - began_tenths / 10  # when the batch commits
            next_retry = next(r for r in retries if r >= waited_ms)
            assert next_retry - waited_ms < pause_ms, (held_ms, waited_ms)
