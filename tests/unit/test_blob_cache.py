"""The SQLite index's blob cache and its read path (real databases, no mocks)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore import CorruptStoreError, SessionStore
from sessionstore.index.sqlite import BlobCache

KEY = "agent:main:main"


def test_lru_evicts_the_least_recently_used_within_the_budget() -> None:
    cache = BlobCache(budget=400)
    for name in "abcd":
        cache.put(name, name.encode() * 100)
    assert cache.size == 400
    assert cache.get("a") == b"a" * 100  # a is now the most recently used
    cache.put("e", b"e" * 100)
    assert cache.get("b") is None  # b was the least recently used
    assert [cache.get(n) is not None for n in "acde"] == [True] * 4
    assert cache.size == 400


def test_a_blob_larger_than_a_quarter_of_the_budget_is_not_kept() -> None:
    cache = BlobCache(budget=400)
    cache.put("big", b"x" * 101)
    assert cache.get("big") is None and cache.size == 0
    cache.put("fits", b"x" * 100)
    assert cache.get("fits") == b"x" * 100


def test_threads_share_the_cache_without_losing_its_size() -> None:
    cache = BlobCache(budget=10_000)

    def work(t: int) -> None:
        for i in range(2_000):
            cache.put(f"{t}-{i % 50}", b"y" * (i % 200 + 1))
            cache.get(f"{(t + 1) % 4}-{i % 50}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # the running total equals what is really held, and stays within the budget
    held = sum(len(v) for v in cache._items.values())
    assert cache.size == held <= 10_000


@pytest.fixture
def store(state_dir: Path) -> Any:
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        yield s


def _conn(store: SessionStore) -> apsw.Connection:
    return store.index.connection()  # type: ignore[attr-defined,no-any-return]


def test_a_blob_dropped_between_row_and_blob_reads_is_read_again(
    store: SessionStore, state_dir: Path
) -> None:
    store.put(KEY, {"sessionId": "s", "rev": 1, "skillsSnapshot": {"version": 1}})
    store.index._blob_cache.clear()  # type: ignore[attr-defined]
    other = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    fired: list[str] = []

    def replace_before_blob_read(_cursor: Any, sql: str, _bindings: Any) -> bool:
        # A real second writer commits between the reader's two statements: the entry is
        # replaced and its old blob row deleted (its reference count drops to zero).
        if "FROM blobs WHERE digest" in sql and not fired:
            fired.append(sql)
            other.put(KEY, {"sessionId": "s", "rev": 2, "skillsSnapshot": {"version": 2}})
        return True

    conn = _conn(store)
    conn.exec_trace = replace_before_blob_read
    try:
        entry = store.get(KEY)
    finally:
        conn.exec_trace = None
        other.close()
    assert fired, "the blob read never ran"
    assert entry is not None
    assert entry["rev"] == 2 and entry["skillsSnapshot"] == {"version": 2}


def test_a_blob_missing_inside_one_snapshot_is_corruption(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "s", "skillsSnapshot": {"version": 1}})
    store.index._blob_cache.clear()  # type: ignore[attr-defined]
    _conn(store).execute("DELETE FROM blobs")
    with pytest.raises(CorruptStoreError, match=r"blob .* missing.*doctor"):
        store.get(KEY)
    with pytest.raises(CorruptStoreError, match=r"blob .* missing"):
        store.update(KEY, {"status": "x"})
    # the row itself is untouched
    rows = _conn(store).execute("SELECT count(*) FROM sessions").fetchall()
    assert rows == [(1,)]


def test_each_read_returns_its_own_copy_of_a_cached_blob(store: SessionStore) -> None:
    snapshot = {"prompt": "p", "skills": [{"name": "a"}]}
    store.put(KEY, {"sessionId": "s", "skillsSnapshot": snapshot})
    first = store.get(KEY)
    assert first is not None
    first["skillsSnapshot"]["skills"].append({"name": "mine"})
    updated = store.update(KEY, {"status": "running"})
    assert updated is not None and updated["skillsSnapshot"] == snapshot
    updated["skillsSnapshot"]["prompt"] = "changed"
    again = store.get(KEY)
    assert again is not None and again["skillsSnapshot"] == snapshot


def test_update_sets_only_changed_columns_and_they_match_a_full_encode(
    store: SessionStore,
) -> None:
    from sessionstore.index.sqlite import _ROW_COLUMNS, _encode

    store.put(KEY, {"sessionId": "s", "updatedAt": 5, "totalTokens": 1, "label": "a"})
    patches: list[dict[str, Any]] = [
        {"totalTokens": 1.0},  # equal in Python, a different JSON type: must be written
        {"label": None, "displayName": "Dee"},
        {"lastThreadId": 42},
        {"lastThreadId": "42"},
        {"channel": "telegram", "lastTo": "123"},
        {"sessionId": "s2", "spawnedBy": "agent:main:parent"},
    ]
    conn = _conn(store)
    for patch in patches:
        entry = store.update(KEY, patch, preserve_activity=True)
        assert entry is not None
        (row,) = conn.execute(f"SELECT {_ROW_COLUMNS} FROM sessions").fetchall()
        expected = _encode(KEY, entry, now=0).params
        for i, name in enumerate(_ROW_COLUMNS.split(",")):
            if name.strip() in ("created_at", "archived"):
                continue
            assert row[i] == expected[i], name
            assert type(row[i]) is type(expected[i]), name


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_holds_the_cache_lock_still_reads(
    store: SessionStore,
) -> None:
    snapshot = {"prompt": "p"}
    store.put(KEY, {"sessionId": "s", "skillsSnapshot": snapshot})
    store.get(KEY)
    lock = store.index._blob_cache._lock  # type: ignore[attr-defined]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the parent's holder thread does not exist here
            code = 3
            try:
                entry = store.get(KEY)
                code = 0 if entry is not None and entry["skillsSnapshot"] == snapshot else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung on a lock held by a thread of its parent")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join()
