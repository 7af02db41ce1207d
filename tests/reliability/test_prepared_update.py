"""Updates prepared outside the write lock lose nothing (sqlite, ``_modify_prepared``).

Once a connection has waited for the write lock, a pure update (a dict patch)
reads the row, merges and encodes before ``BEGIN IMMEDIATE`` and only checks and writes
under the lock. The interleavings that could make such a write stale are forced here
with the index's ``prepared_hook``, which runs between the read and the lock: another
connection commits to the same key, to a case variant of it, or to another key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore import SessionStore
from sessionstore.errors import SessionStoreError
from sessionstore.index import sqlite as sq

KEY = "agent:main:telegram:direct:1001"
OTHER = "agent:main:discord:channel:c42"
SKILLS = {"prompt": "You can use these skills.", "skills": [{"name": f"s{i}"} for i in range(9)]}


def _index(store: SessionStore) -> sq.SqliteIndex:
    index = store.index
    assert isinstance(index, sq.SqliteIndex)
    return index


def _wait_for_the_lock(store: SessionStore, key: str, patch: dict[str, Any]) -> None:
    """``store.update`` while another connection holds the write lock for a while (and
    commits a change)."""
    holder = apsw.Connection(_index(store).location)
    holder.execute(
        "BEGIN IMMEDIATE; INSERT INTO meta(key, value) VALUES ('test_holder', '1')"
        " ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )
    release = threading.Timer(0.05, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        store.update(key, patch)
    finally:
        release.join()
        holder.close()


@pytest.fixture
def stores(state_dir: Path) -> Iterator[tuple[SessionStore, SessionStore]]:
    """Two stores (two connections) on one file; the first has waited for the lock."""
    a = sessionstore.open_store(state_dir=state_dir, store_type="sqlite", lock_timeout_ms=5_000)
    b = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    a.put(KEY, {"sessionId": "s-1", "updatedAt": 1_000, "totalTokens": 1})
    a.put(OTHER, {"sessionId": "s-2", "updatedAt": 1_000})
    _wait_for_the_lock(a, OTHER, {"inputTokens": 2})
    assert _index(a)._local.contended == sq.CONTENDED_WRITES
    yield a, b
    a.close()
    b.close()


def _hook(store: SessionStore, action: Any) -> list[int]:
    """Run ``action`` at the prepared update's point between read and lock; count calls."""
    calls: list[int] = []
    index = _index(store)

    def hook() -> None:
        calls.append(1)
        assert not index._local.in_write  # before the lock
        assert sq._writes.paths[str(index._path)] == 1  # but inside the fork registry
        if len(calls) == 1:
            action()

    index.prepared_hook = hook
    return calls


def _spy_locked(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys whose change ``store`` made (or made again) inside the write transaction."""
    calls: list[str] = []
    real = sq.SqliteIndex._modify_in
    index = _index(store)

    def spy(self: sq.SqliteIndex, conn: Any, key: str, *args: Any) -> Any:
        if self is index:
            calls.append(key)
        return real(self, conn, key, *args)

    monkeypatch.setattr(sq.SqliteIndex, "_modify_in", spy)
    return calls


def test_a_commit_to_the_same_key_before_the_lock_is_not_lost(
    stores: tuple[SessionStore, SessionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stores
    calls = _hook(a, lambda: b.update(KEY, {"label": "from b", "totalTokens": 5}))
    locked = _spy_locked(a, monkeypatch)
    out = a.update(KEY, {"inputTokens": 7})
    assert calls == [1]
    assert locked == [KEY]  # the prepared write was stale: made again under the lock
    assert out is not None
    assert (out["label"], out["totalTokens"], out["inputTokens"]) == ("from b", 5, 7)
    assert a.get(KEY) == out
    assert b.get(KEY) == out
    assert [r["label"] for r in a.list().rows if r["key"] == KEY] == ["from b"]


@pytest.mark.parametrize("fresher", [True, False])
def test_a_case_variant_written_before_the_lock_is_folded(
    stores: tuple[SessionStore, SessionStore], fresher: bool
) -> None:
    a, _ = stores
    variant = "agent:main:Telegram:direct:1001"  # a legacy mixed-case row of the same session
    db = Path(_index(a).location)

    def insert_variant() -> None:
        conn = apsw.Connection(str(db))
        try:
            updated = 9_000_000_000_000 if fresher else 1
            entry = {"sessionId": "s-1", "updatedAt": updated, "fromVariant": True}
            params = sq._encode(variant, entry, now=0).params
            conn.execute(
                f"INSERT INTO sessions ({sq._ROW_COLUMNS})"
                f" VALUES ({', '.join('?' * len(sq._ROW_NAMES))})",
                params,
            )
        finally:
            conn.close()

    calls = _hook(a, insert_variant)
    out = a.update(KEY, {"inputTokens": 7})
    assert calls == [1]
    # the freshest of the key's rows is the entry the patch applies to
    assert out is not None and out.get("fromVariant", False) is fresher
    assert out["inputTokens"] == 7
    assert a.get(KEY) == out
    keys = [r[0] for r in _index(a).connection().execute("SELECT session_key FROM sessions")]
    assert variant not in keys and KEY in keys


def test_a_commit_to_another_key_keeps_the_prepared_write(
    stores: tuple[SessionStore, SessionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stores
    calls = _hook(a, lambda: b.update(OTHER, {"label": "other"}))
    locked = _spy_locked(a, monkeypatch)
    out = a.update(KEY, {"inputTokens": 7}, fields=("inputTokens", "totalTokens"))
    assert calls == [1]
    assert locked == []  # the key's row was as read: the prepared write ran
    assert out == {"inputTokens": 7, "totalTokens": 1}
    entry = b.get(KEY)
    assert entry is not None and entry["inputTokens"] == 7 and entry["totalTokens"] == 1
    other = b.get(OTHER)
    assert other is not None and other["label"] == "other"


def test_every_prepared_update_of_two_stores_lands(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    a, b = stores
    for i in range(1, 40):
        b.update(OTHER, {"inputTokens": i})
        _hook(a, lambda i=i: b.update(KEY, {"fromB": i}))
        out = a.update(KEY, {"fromA": i})
        assert out is not None and (out["fromA"], out["fromB"]) == (i, i)
    entry = b.get(KEY)
    assert entry is not None and (entry["fromA"], entry["fromB"]) == (39, 39)


def test_a_callback_runs_once_and_only_under_the_lock(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    a, _ = stores
    calls = _hook(a, lambda: None)
    seen: list[bool] = []

    def bump(entry: Any) -> dict[str, Any]:
        seen.append(_index(a)._local.in_write)
        return {"totalTokens": entry["totalTokens"] + 1}

    out = a.update(KEY, bump)
    assert out is not None and out["totalTokens"] == 2
    assert seen == [True]
    assert calls == []


def test_an_entry_with_blobs_is_changed_under_the_lock(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    a, _ = stores
    a.update(KEY, {"skillsSnapshot": SKILLS})
    calls = _hook(a, lambda: None)
    out = a.update(KEY, {"inputTokens": 3})
    assert calls == []
    assert out is not None and out["skillsSnapshot"] == SKILLS and out["inputTokens"] == 3


def test_an_update_that_changes_nothing_takes_no_write_lock(
    stores: tuple[SessionStore, SessionStore], state_dir: Path
) -> None:
    a, _ = stores
    before = a.get(KEY)
    holder = apsw.Connection(_index(a).location)
    holder.execute("BEGIN IMMEDIATE")
    try:
        out = a.update(KEY, {"totalTokens": 1}, preserve_activity=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out == before


def test_a_write_inside_a_callback_is_refused_as_before(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    a, _ = stores

    def nested(entry: Any) -> dict[str, Any]:
        a.update(OTHER, {"inputTokens": 9})  # pure, and the store is contended
        return {}

    with pytest.raises(SessionStoreError, match="inside another write's callback"):
        a.update(KEY, nested)
    other = a.get(OTHER)
    assert other is not None and other["inputTokens"] == 2


def test_writers_that_never_wait_for_each_other_never_prepare(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another connection's commits alone (a benchmark's floor beside the store, say) do
    # not switch preparing on: only a wait for the lock does (none counts as one here,
    # however slow a loaded machine makes a BEGIN).
    monkeypatch.setattr(sq, "CONTENDED_WAIT_NS", 10**15)
    a = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    b = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    with a, b:
        a.put(KEY, {"sessionId": "s-1"})
        calls = _hook(a, lambda: None)
        for i in range(20):
            a.update(KEY, {"inputTokens": i})
            b.update(KEY, {"outputTokens": i})
        assert calls == []
        assert _index(a)._local.contended == 0
        entry = b.get(KEY)
        assert entry is not None and (entry["inputTokens"], entry["outputTokens"]) == (19, 19)


def test_preparing_stops_after_a_while_without_waits(
    stores: tuple[SessionStore, SessionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = stores
    monkeypatch.setattr(sq, "CONTENDED_WAIT_NS", 10**15)  # no slow BEGIN counts as a wait
    calls = _hook(a, lambda: None)
    for i in range(sq.CONTENDED_WRITES):
        a.update(KEY, {"inputTokens": i})
    assert len(calls) == sq.CONTENDED_WRITES
    a.update(KEY, {"inputTokens": -1})
    assert len(calls) == sq.CONTENDED_WRITES
    entry = a.get(KEY)
    assert entry is not None and entry["inputTokens"] == -1


def test_a_slow_begin_without_another_writer_does_not_prepare(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A BEGIN that took long because a loaded machine descheduled the process, not because
    # another writer held the lock, leaves a writer alone on its usual path.
    store = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    with store:
        store.put(KEY, {"sessionId": "s-1"})
        monkeypatch.setattr(sq, "CONTENDED_WAIT_NS", 0)  # every BEGIN counts as slow
        calls = _hook(store, lambda: None)
        for i in range(20):
            store.update(KEY, {"inputTokens": i})
        assert calls == []
        assert _index(store)._local.contended == 0
