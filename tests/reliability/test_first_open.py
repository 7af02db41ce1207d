"""First open of a new sqlite store by several processes at once (issue 11, defect 1).

A new ``sessions.sqlite`` is built (with the import of ``sessions.json``) under a temporary
name and linked into place; a process that loses the race uses the winner's database, and
one whose build fails removes only its own temporary file. The interleavings are forced:
a builder is held inside its import until another process has created the database and
acknowledged a write.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore import MigrationError, SessionStoreError
from sessionstore.index.sqlite import SqliteIndex
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import import_on_create

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
SOURCE_ENTRIES = 150


def _typical() -> dict[str, Any]:
    path = FIXTURES / "typical-entry.json"
    if path.exists():
        doc = json.loads(path.read_text())
        entry = next(iter(doc.values())) if "sessionId" not in doc else doc
        if isinstance(entry, dict):
            return entry
    return {"sessionId": "x", "updatedAt": 1, "chatType": "direct", "notes": "n" * 1200}


def write_openclaw_store(state: Path, count: int = SOURCE_ENTRIES) -> dict[str, Any]:
    """A sessions.json as OpenClaw writes it: JSON.stringify(store, null, 2), no newline."""
    base = _typical()
    doc = {}
    for i in range(count):
        entry = {k: v for k, v in base.items() if k not in ("sessionFile", "messageCount")}
        entry["sessionId"] = f"00000000-0000-4000-8000-{i:012d}"
        entry["updatedAt"] = 1_700_000_000_000 + i
        doc[f"agent:main:telegram:direct:{1000 + i}"] = entry
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    (sessions / "sessions.json").write_text(json.dumps(doc, indent=2))
    return doc


CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import sessionstore

    state, idx, fail = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    if fail:
        # The database this process would build does not fit: its import fails.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, resource.RLIM_INFINITY))
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        store = sessionstore.open_store(state_dir=state, store_type="sqlite")
    except sessionstore.SessionStoreError as exc:
        print(json.dumps({"open": "failed", "error": type(exc).__name__}), flush=True)
        if not fail:
            raise
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        store = sessionstore.open_store(state_dir=state, store_type="sqlite")
    for i in range(12):
        key = f"agent:main:writer{idx}:direct:{i}"
        try:
            store.put(key, {"sessionId": f"w{idx}-{i}", "updatedAt": 1000 + i, "v": i})
        except sessionstore.SessionStoreError as exc:
            print(json.dumps({"failed": key, "error": type(exc).__name__}), flush=True)
            continue
        print(json.dumps({"ack": key, "v": i}), flush=True)
    store.close()
    """
)


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_first_opens_lose_no_acknowledged_write(tmp_path: Path, round_: int) -> None:
    state = tmp_path / "state"
    source = write_openclaw_store(state)
    failing = {1, 4}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(state), str(i), "1" if i in failing else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:  # every child starts its open at (nearly) the same moment
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    acked: dict[str, int] = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        for line in out.splitlines():
            doc = json.loads(line)
            if "ack" in doc:
                acked[doc["ack"]] = doc["v"]
    assert len(acked) >= 12 * (6 - len(failing))

    paths = resolve_store_paths(state, "main")
    conn = apsw.Connection(str(paths.sqlite_path))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        for key, value in acked.items():
            entry = store.get(key)
            assert entry is not None, f"acknowledged write of {key} was lost"
            assert entry["v"] == value
        for key in source:
            assert store.get(key) is not None, f"imported {key} is missing"
        assert store.count() == len(source) + len(acked)
        assert [f for f in store.check() if f.unresolved] == []
    leftovers = [p.name for p in paths.sessions_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def _writer(state: str, done: Any) -> None:
    store = sessionstore.open_store(state_dir=state, store_type="sqlite")
    store.put("agent:main:winner", {"sessionId": "winner", "v": 1})
    store.close()
    done.send("acked")


@pytest.mark.parametrize("builder_fails", [True, False])
def test_builder_held_in_its_import_while_another_process_creates(
    tmp_path: Path, builder_fails: bool
) -> None:
    """Forced: our build is inside its import when another process creates and writes."""
    state = tmp_path / "state"
    write_openclaw_store(state, 20)
    paths = resolve_store_paths(state, "main")
    inside, release = threading.Event(), threading.Event()
    real_import = import_on_create(paths.json_path)

    def held_import(index: SqliteIndex, conn: Any) -> None:
        real_import(index, conn)
        inside.set()
        assert release.wait(60)
        if builder_fails:
            raise MigrationError("the import failed (forced)")

    index = SqliteIndex(paths.sqlite_path, agent_id="main", on_create=held_import)
    outcome: list[Any] = []

    def build() -> None:
        try:
            outcome.append(index.create())
        except SessionStoreError as exc:
            outcome.append(exc)

    builder = threading.Thread(target=build)
    builder.start()
    assert inside.wait(60)
    ctx = mp.get_context("fork")
    ours, theirs = ctx.Pipe()
    winner = ctx.Process(target=_writer, args=(str(state), theirs))
    winner.start()
    assert ours.poll(60) and ours.recv() == "acked"
    winner.join(30)
    release.set()
    builder.join(60)
    if builder_fails:
        assert isinstance(outcome[0], MigrationError)
    else:
        assert outcome == [False]  # the other process's database is used, ours dropped
        winner_entry = index.get("agent:main:winner")
        assert winner_entry is not None and winner_entry["v"] == 1
    index.close()
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        entry = store.get("agent:main:winner")
        assert entry is not None and entry["v"] == 1
        assert store.count() == 21  # the import (by the winner) and its write
    assert not [p for p in paths.sessions_dir.iterdir() if ".tmp" in p.name]


def test_migration_waits_for_a_writer_no_longer_than_lock_timeout(tmp_path: Path) -> None:
    """``migrate --force`` into a database another process is writing honours the timeout."""
    state = tmp_path / "state"
    write_openclaw_store(state, 5)
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        store.put("agent:main:other", {"sessionId": "o"})
    paths = resolve_store_paths(state, "main")
    holder = apsw.Connection(str(paths.sqlite_path))
    holder.execute("BEGIN IMMEDIATE")
    try:
        from sessionstore.migrate import migrate_agent

        with pytest.raises(MigrationError, match="locked"):
            migrate_agent(paths, force=True, lock_timeout_ms=200)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_dead_creators_half_built_database_is_removed_by_the_next_creation(
    tmp_path: Path,
) -> None:
    import fcntl
    import os

    sessions = tmp_path / "state" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    dead = sessions / "sessions.sqlite.0123abcd.tmp"  # its builder was killed
    dead.write_bytes(b"x" * 4096)
    Path(f"{dead}-wal").write_bytes(b"w")
    live = sessions / "sessions.sqlite.4567cdef.tmp"  # a builder still at work
    live.write_bytes(b"y")
    fresh = sessions / "sessions.sqlite.89abcdef.tmp"  # created, not locked yet: too new
    fresh.write_bytes(b"")
    just_killed = sessions / "sessions.sqlite.fedcba98.tmp"  # written, unlocked: dead now
    just_killed.write_bytes(b"z" * 4096)
    old = 1_000_000_000
    for p in (dead, Path(f"{dead}-wal"), live):
        os.utime(p, (old, old))
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with sessionstore.open_store(state_dir=tmp_path / "state") as store:
            store.put("agent:main:x", {"sessionId": "x"})
    finally:
        os.close(holder)
    names = sorted(p.name for p in sessions.iterdir())
    assert names == [
        "sessions.sqlite",
        "sessions.sqlite.4567cdef.tmp",
        "sessions.sqlite.89abcdef.tmp",
    ]


KILLED_AFTER_PLACING = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import sessionstore

    state = Path(sys.argv[1])
    database = state / "agents" / "main" / "sessions" / "sessions.sqlite"
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        # kill -9 at the first removal of a temporary name once the database has its name
        if str(path).endswith(".tmp") and database.exists():
            os._exit(9)
        return real_unlink(path, *args, **kwargs)

    os.unlink = unlink
    store = sessionstore.open_store(agent="main", state_dir=state, store_type="sqlite")
    store.put("agent:main:x", {"sessionId": "00000000-0000-4000-8000-000000000001"})
    """
)


def test_a_creator_killed_right_after_placing_the_database_leaves_no_second_name(
    tmp_path: Path,
) -> None:
    # With link-then-unlink, the kill left sessions.sqlite.<hex>.tmp (a second name of the
    # live database) that check() then reported as an unresolved stale temp file.
    state = tmp_path / "state"
    write_openclaw_store(state)
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER_PLACING, str(state)], check=False)
    assert child.returncode == 9
    sessions = state / "agents" / "main" / "sessions"
    assert [p.name for p in sessions.iterdir() if p.name.endswith(".tmp")] == []
    with sessionstore.open_store(agent="main", state_dir=state, store_type="sqlite") as store:
        assert store.count() == SOURCE_ENTRIES
        assert [f.kind for f in store.check() if f.unresolved] == []
