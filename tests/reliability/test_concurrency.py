"""Concurrent writers lose no update: exact post-conditions on every backend.

Each child (``faultkit.harness.spawn``: forked, nothing is open in the parent while it
runs) opens its own store, waits at a shared start line so that all of them start
together, and reports its result over its pipe. Scenario 5 (``test_mixed_load.py``) runs
the mixed-operation version of this against a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit.harness import Acks, Gate, join_all, spawn

import sessionstore
from sessionstore import SessionStore

pytestmark = pytest.mark.stress

KEY = "agent:main:main"
JOIN_TIMEOUT = 120.0


def _open(state_dir: Path, backend: str) -> SessionStore:
    return sessionstore.open_store(state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]


def _child(
    acks: Acks,
    gate: Gate,
    work: Callable[..., Any],
    state_dir: Path,
    backend: str,
    args: tuple[Any, ...],
) -> None:
    store = _open(state_dir, backend)
    try:
        if not gate.wait(30):
            raise TimeoutError("start signal never came")
        out = work(store, *args)
    finally:
        store.close()
    acks.send("result", value=out)


def _run_processes(
    state_dir: Path, backend: str, jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> list[Any]:
    gate = Gate()
    children = [spawn(_child, gate, work, state_dir, backend, args) for work, args in jobs]
    gate.open()
    join_all(children, JOIN_TIMEOUT)
    errors = [c.crash for c in children if c.crash]
    assert not errors, "\n".join(str(e) for e in errors)
    assert [c.status for c in children] == [0] * len(children)
    return [(c.wait_for("result", 0) or {}).get("value") for c in children]


def _no_leftovers(store: SessionStore) -> None:
    if store.store_type != "json":
        return
    path = store.index.path
    assert path is not None
    names = sorted(p.name for p in path.parent.iterdir())
    assert "sessions.json.lock" not in names, names
    assert not [n for n in names if n.endswith(".tmp") or ".stale." in n], names


# --- workers (module level so that they are importable by any start method) ------------------


def _increment(entry: Any) -> dict[str, Any]:
    return {"counter": entry["counter"] + 1}


def _increments(store: SessionStore, n: int) -> int:
    last = 0
    for _ in range(n):
        out = store.update(KEY, _increment)
        assert out is not None
        assert out["counter"] > last  # every update sees its own write, never an older value
        last = out["counter"]
    return last


def _patches(store: SessionStore, key: str, field: str, n: int) -> int:
    """Set ``field`` of ``key`` to 1..n with dict patches (the scalar update path)."""
    for i in range(1, n + 1):
        assert store.update(key, {field: i}, fields=(field,)) == {field: i}
    return n


def _kept(owner: str, n: int) -> list[str]:
    return [f"agent:main:{owner}:k{i:03d}" for i in range(n) if i % 2 == 1]


def _add_and_delete(store: SessionStore, owner: str, n: int) -> int:
    kept = []
    for i in range(n):
        key = f"agent:main:{owner}:k{i:03d}"
        stored = store.put(key, {"sessionId": f"{owner}-{i}", "owner": owner, "i": i})
        assert stored["i"] == i
        if i % 2 == 1:
            # delete the previous (even) key: half of this owner's keys go away
            assert store.delete(f"agent:main:{owner}:k{i - 1:03d}") is True
            kept.append(key)
    assert kept == _kept(owner, n)
    return len(kept)


def _blob_writer(store: SessionStore, n: int) -> int:
    for i in range(n):
        store.put(
            KEY,
            {"sessionId": "s", "updatedAt": i + 1, "rev": i, "skillsSnapshot": {"version": i}},
        )
    return n


def _blob_reader(store: SessionStore, mode: str, n: int) -> int:
    seen = 0
    for i in range(n):
        if mode == "get":
            entry = store.get(KEY)
        elif mode == "update":
            entry = store.update(KEY, {"reader": i})
        else:
            entry = store.load_all()[KEY]
        assert entry is not None and isinstance(entry["skillsSnapshot"], dict)
        # the row and its blob come from one state of the store, never from two
        assert entry["skillsSnapshot"]["version"] == entry.get("rev", -1)
        seen += 1
    return seen


# --- tests -----------------------------------------------------------------------------------


def test_four_processes_increment_exactly(state_dir: Path, backend: str) -> None:
    with _open(state_dir, backend) as store:
        store.put(KEY, {"sessionId": "s", "counter": 0})
    finals = _run_processes(state_dir, backend, [(_increments, (250,))] * 4)
    with _open(state_dir, backend) as store:
        entry = store.get(KEY)
        assert entry is not None
        assert entry["counter"] == 1000
        assert entry["sessionId"] == "s"
        assert store.count() == 1
        _no_leftovers(store)
    assert max(finals) == 1000  # exactly one process saw the last increment
    assert all(250 <= f <= 1000 for f in finals)


def test_dict_patches_beside_increments_lose_nothing(state_dir: Path) -> None:
    # Dict patches of contending sqlite writers take the narrow read and the scalar
    # update; the increments (callbacks) and the other patches of the same key must all
    # survive them, and a patch of another key must not disturb them.
    other = "agent:main:other"
    with _open(state_dir, "sqlite") as store:
        store.put(KEY, {"sessionId": "s", "counter": 0})
        store.put(other, {"sessionId": "o"})
    results = _run_processes(
        state_dir,
        "sqlite",
        [
            (_increments, (150,)),
            (_increments, (150,)),
            (_patches, (KEY, "a", 300)),
            (_patches, (KEY, "b", 300)),
            (_patches, (other, "c", 300)),
        ],
    )
    with _open(state_dir, "sqlite") as store:
        entry = store.get(KEY)
        assert entry is not None
        assert (entry["counter"], entry["a"], entry["b"]) == (300, 300, 300)
        others = store.get(other)
        assert others is not None and others["c"] == 300
        assert store.count() == 2
    assert max(results[:2]) == 300


def test_two_processes_add_and_delete_different_keys(state_dir: Path, backend: str) -> None:
    bystanders = {f"agent:main:bystander:{i}": {"sessionId": f"b{i}", "i": i} for i in range(10)}
    with _open(state_dir, backend) as store:
        for key, entry in bystanders.items():
            store.put(key, entry)
    kept = _run_processes(
        state_dir, backend, [(_add_and_delete, ("alpha", 200)), (_add_and_delete, ("beta", 200))]
    )
    assert kept == [100, 100]
    expected = set(bystanders) | set(_kept("alpha", 200)) | set(_kept("beta", 200))
    assert len(expected) == 10 + 100 + 100
    with _open(state_dir, backend) as store:
        everything = store.load_all()
        assert set(everything) == expected
        assert store.count() == len(expected)
        assert {row["key"] for row in store.list().rows} == expected
        for owner in ("alpha", "beta"):
            for i in range(200):
                entry = store.get(f"agent:main:{owner}:k{i:03d}")
                if i % 2:
                    assert entry is not None and entry["owner"] == owner and entry["i"] == i
                else:
                    assert entry is None
        for key, entry in bystanders.items():
            assert everything[key]["i"] == entry["i"]
        _no_leftovers(store)


def test_eight_threads_increment_exactly(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "s", "counter": 0})
    per_thread = 100
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    finals: list[int] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            finals.append(_increments(store, per_thread))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    entry = store.get(KEY)
    assert entry is not None
    assert entry["counter"] == 8 * per_thread
    assert max(finals) == 8 * per_thread
    _no_leftovers(store)


def test_readers_never_see_a_missing_blob_while_a_writer_replaces_it(
    state_dir: Path, backend: str
) -> None:
    # Each put stores a new skillsSnapshot, so on SQLite the previous blob row is dropped.
    # A reader must still get a whole entry (row and blobs from one snapshot), never a
    # spurious "blob missing" CorruptStoreError, and an update must not fail after commit.
    n = 1500 if backend == "sqlite" else 150
    with _open(state_dir, backend) as store:
        store.put(KEY, {"sessionId": "s", "updatedAt": 0, "skillsSnapshot": {"version": -1}})
    jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (_blob_writer, (n,)),
        (_blob_reader, ("get", n)),
        (_blob_reader, ("update", n)),
        (_blob_reader, ("load_all", n)),
    ]
    _run_processes(state_dir, backend, jobs)
    with _open(state_dir, backend) as store:
        entry = store.get(KEY)
        assert entry is not None
        assert entry["skillsSnapshot"] == {"version": n - 1}
        # the reader's last update, unless the writer's last put (a whole replace) came after
        assert entry.get("reader") in (None, n - 1)
        if backend == "sqlite":
            conn = store.index.connection()  # type: ignore[attr-defined]
            blobs = conn.execute("SELECT refcount FROM blobs").fetchall()
            assert blobs == [(1,)]  # only the current snapshot is kept, referenced once
