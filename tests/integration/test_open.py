"""Opening a store: nothing is created by reading, splits are reported, odd paths and
read-only directories work (issue 11, defects 3, 14 and 20)."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import ReadOnlyStoreError, SessionStore
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

KEY = "agent:main:telegram:direct:42"


def openclaw_write(path: Path, doc: dict[str, Any]) -> None:
    """Write sessions.json as OpenClaw does (JSON.stringify(store, null, 2), mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    os.chmod(path, 0o600)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def sessions_dir(state: Path) -> Path:
    return state / "agents" / "main" / "sessions"


# --- defect 3: auto never creates on a read path, and never splits silently ---------------------


def test_reading_a_new_auto_store_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sessionstore.open_store(state_dir=state) as store:
        assert store.get(KEY) is None
        assert store.list().rows == []
        assert store.count() == 0
        assert store.load_all() == {}
        assert store.update(KEY, {"label": "x"}) is None  # a write that writes nothing
        assert store.delete(KEY) is False
        report = store.maintain(dry_run=True)
        assert report.beforeCount == 0
        store.info()
        assert [f for f in store.check() if f.unresolved] == []
    assert tree(state) == []


def test_a_gateway_sessions_json_written_after_a_read_only_open_is_used(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    store = sessionstore.open_store(state_dir=state)
    try:
        assert store.get(KEY) is None
        # An OpenClaw gateway starts and writes its sessions.json.
        openclaw_write(
            sessions_dir(state) / "sessions.json", {KEY: {"sessionId": "g", "updatedAt": 5}}
        )
        entry = store.get(KEY)
        assert entry is not None and entry["sessionId"] == "g"
        assert store.store_type == "json"
        store.update(KEY, {"label": "from us"})
    finally:
        store.close()
    assert not (sessions_dir(state) / "sessions.sqlite").exists()
    doc = json.loads((sessions_dir(state) / "sessions.json").read_text())
    assert doc[KEY]["label"] == "from us"
    with sessionstore.open_store(state_dir=state) as again:
        assert again.store_type == "json"


def test_first_write_of_a_new_auto_store_creates_sqlite(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with sessionstore.open_store(state_dir=state) as store:
        store.put(KEY, {"sessionId": "s"})
        assert store.store_type == "sqlite"
    assert (sessions_dir(state) / "sessions.sqlite").exists()
    assert not (sessions_dir(state) / "sessions.json").exists()


def _split_sqlite_store(state: Path) -> SessionStore:
    with sessionstore.open_store(state_dir=state) as store:
        store.put(KEY, {"sessionId": "ours", "updatedAt": 1_000, "label": "ours"})
    # Later, a gateway (upstream OpenClaw knows only sessions.json) writes the json store.
    openclaw_write(
        sessions_dir(state) / "sessions.json",
        {
            KEY: {"sessionId": "theirs", "updatedAt": 2_000, "label": "theirs"},
            "agent:main:main": {"sessionId": "m", "updatedAt": 500},
        },
    )
    return sessionstore.open_store(state_dir=state)


def test_sqlite_store_with_a_never_imported_sessions_json_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    with caplog.at_level(logging.WARNING, logger="sessionstore"):
        store = _split_sqlite_store(state)
    try:
        assert store.store_type == "sqlite"
        assert store.split_warning is not None and "never imported" in store.split_warning
        assert any("never imported" in r.getMessage() for r in caplog.records)
        info = store.info().to_dict()
        assert "migrate --force" in info["splitWarning"]
        found = [f for f in store.check() if f.kind == "split-store"]
        assert len(found) == 1 and found[0].unresolved and "migrate --force" in found[0].message
    finally:
        store.close()
    # The fix the warning names: merge, the newer updatedAt winning.
    result = migrate_agent(resolve_store_paths(state, "main"), force=True)
    assert result.status == "migrated"
    with sessionstore.open_store(state_dir=state) as store:
        assert store.split_warning is None
        entry = store.get(KEY)
        assert entry is not None and entry["label"] == "theirs"  # 2_000 beats 1_000
        assert store.get("agent:main:main") is not None
        assert [f for f in store.check() if f.kind == "split-store"] == []


def test_sqlite_store_whose_sessions_json_changed_after_import_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    json_path = sessions_dir(state) / "sessions.json"
    openclaw_write(json_path, {KEY: {"sessionId": "a", "updatedAt": 1}})
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        assert store.split_warning is None
        assert store.get(KEY) is not None
    doc = json.loads(json_path.read_text())
    doc["agent:main:later"] = {"sessionId": "b", "updatedAt": 2}
    openclaw_write(json_path, doc)
    with sessionstore.open_store(state_dir=state) as store:
        assert store.split_warning is not None and "changed after" in store.split_warning
        assert store.info().sourceChangedSinceMigration is True


def test_json_store_beside_a_newer_database_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    json_path = sessions_dir(state) / "sessions.json"
    openclaw_write(json_path, {KEY: {"sessionId": "a", "updatedAt": 1}})
    past = json_path.stat().st_mtime - 60
    os.utime(json_path, (past, past))
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        assert store.split_warning is None  # just imported: nothing written since
    with sessionstore.open_store(state_dir=state, store_type="json") as store:
        assert store.split_warning is None
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        store.put("agent:main:only-in-sqlite", {"sessionId": "s"})
    with sessionstore.open_store(state_dir=state, store_type="json") as store:
        assert store.split_warning is not None and "sessions.sqlite" in store.split_warning
        assert [f.kind for f in store.check() if f.kind == "split-store"] == ["split-store"]


def test_an_empty_database_file_beside_sessions_json_gets_the_import(tmp_path: Path) -> None:
    # A zero-byte sessions.sqlite (e.g. left by a crash of an older version at creation).
    state = tmp_path / "state"
    openclaw_write(sessions_dir(state) / "sessions.json", {KEY: {"sessionId": "a", "updatedAt": 1}})
    (sessions_dir(state) / "sessions.sqlite").write_bytes(b"")
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        assert store.get(KEY) is not None
        assert store.split_warning is None


# --- defect 14: paths with URI characters ---------------------------------------------------------


@pytest.mark.parametrize("name", ["with#hash", "with?query", "per%25cent", "sp ace&amp"])
def test_state_dirs_with_uri_characters(tmp_path: Path, name: str) -> None:
    state = tmp_path / name
    openclaw_write(sessions_dir(state) / "sessions.json", {KEY: {"sessionId": "a", "updatedAt": 1}})
    paths = resolve_store_paths(state, "main")
    assert migrate_agent(paths, dry_run=True).status == "would_migrate"
    assert migrate_agent(paths).status == "migrated"
    assert migrate_agent(paths).status == "skipped"
    with sessionstore.open_store(state_dir=state) as store:
        assert store.store_type == "sqlite"
        assert store.get(KEY) is not None
        store.put("agent:main:x", {"sessionId": "x"})
        assert store.info().migration is not None
    with sessionstore.open_store(state_dir=state, read_only=True) as store:
        assert store.count() == 2
    with sessionstore.open_store(state_dir=state, store_type="json") as store:
        assert store.get(KEY) is not None


# --- defect 20: read-only directories -------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _drop_dac_capabilities() -> None:
    # As root, permission bits are not enforced; without CAP_DAC_OVERRIDE,
    # CAP_DAC_READ_SEARCH and CAP_FOWNER (dropped from the bounding set before exec) the
    # child is held to them like any user.
    for cap in (1, 2, 3):
        if _libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_without_write_permission(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None,
    )


READER = """
    import json, sys
    import sessionstore
    state, backend = sys.argv[1], sys.argv[2]
    out = {}
    with sessionstore.open_store(state_dir=state, store_type=backend) as store:
        out["type"] = store.store_type
        out["count"] = store.count()
        out["get"] = store.get("agent:main:telegram:direct:42")
        out["rows"] = [r["key"] for r in store.list().rows]
        out["all"] = sorted(store.load_all())
        out["info"] = store.info().sessionCount
        out["findings"] = [f.kind for f in store.check() if f.unresolved]
        try:
            store.put("agent:main:new", {"sessionId": "n"})
            out["write"] = "written"
        except sessionstore.SessionStoreError as exc:
            out["write"] = type(exc).__name__
            out["message"] = str(exc)
    print(json.dumps(out))
"""


def _read_only_state(tmp_path: Path, backend: str) -> Path:
    state = tmp_path / "state"
    with sessionstore.open_store(state_dir=state, store_type=backend) as store:  # type: ignore[arg-type]
        store.put(KEY, {"sessionId": "a", "updatedAt": 1})
        store.put("agent:main:main", {"sessionId": "b", "updatedAt": 2})
    return state


def _lock_down(directory: Path) -> None:
    for p in [directory, *directory.iterdir()]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_reads_work_in_a_read_only_directory(tmp_path: Path, backend: str) -> None:
    state = _read_only_state(tmp_path, backend)
    sd = sessions_dir(state)
    _lock_down(sd)
    before = tree(sd)
    try:
        run = run_without_write_permission(READER, str(state), backend)
    finally:
        os.chmod(sd, 0o700)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["type"] == backend
    assert out["count"] == 2 and out["info"] == 2
    assert out["get"]["sessionId"] == "a"
    assert out["rows"] == ["agent:main:main", KEY]
    assert out["write"] == "ReadOnlyStoreError"
    assert "not writable" in out["message"]
    assert out["findings"] == []
    assert tree(sd) == before


def test_sqlite_reads_in_a_read_only_directory_see_a_live_writer(tmp_path: Path) -> None:
    import apsw

    state = _read_only_state(tmp_path, "sqlite")
    sd = sessions_dir(state)
    # A writer with the database open: the -wal and -shm files exist and hold a commit.
    writer = apsw.Connection(str(sd / "sessions.sqlite"))
    writer.execute("PRAGMA journal_mode=WAL")
    with sessionstore.open_store(state_dir=state) as store:
        store.put("agent:main:late", {"sessionId": "late", "updatedAt": 3})
        assert (sd / "sessions.sqlite-wal").stat().st_size > 0
        os.chmod(sd, 0o555)
        try:
            run = run_without_write_permission(READER, str(state), "sqlite")
        finally:
            os.chmod(sd, 0o700)
    writer.close()
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["count"] == 3
    assert "agent:main:late" in out["all"]
    assert out["write"] == "ReadOnlyStoreError"


def test_read_only_open_never_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    json_path = sessions_dir(state) / "sessions.json"
    openclaw_write(json_path, {KEY: {"sessionId": "a", "updatedAt": 1}})
    with sessionstore.open_store(state_dir=state, store_type="sqlite", read_only=True) as store:
        assert store.count() == 0  # nothing imported: that would write
        assert store.split_warning is not None and "never imported" in store.split_warning
        with pytest.raises(ReadOnlyStoreError):
            store.put("agent:main:x", {"sessionId": "x"})
        with pytest.raises(ReadOnlyStoreError):
            store.maintain(mode="enforce")
    assert tree(sessions_dir(state)) == ["sessions.json"]
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        store.put("agent:main:old", {"sessionId": "o", "updatedAt": 1})
    before = {p: p.read_bytes() for p in sessions_dir(state).iterdir()}
    with sessionstore.open_store(state_dir=state, store_type="sqlite", read_only=True) as store:
        plan = store.maintain(mode="enforce", dry_run=True)
        assert plan.pruned == 2 and plan.afterCount == 0  # both are far older than 30 days
        assert store.count() == 2
        with pytest.raises(ReadOnlyStoreError):
            store.maintain(mode="enforce")
        with pytest.raises(ReadOnlyStoreError):
            store.vacuum()
    assert {p: p.read_bytes() for p in sessions_dir(state).iterdir()} == before
    with sessionstore.open_store(state_dir=state, store_type="json", read_only=True) as store:
        assert store.count() == 1
        with pytest.raises(ReadOnlyStoreError):
            store.update(KEY, {"label": "x"})
    assert {p: p.read_bytes() for p in sessions_dir(state).iterdir()} == before


def _posix_locks(path: Path) -> list[str]:
    """This process's POSIX locks on ``path``: /proc/locks lines without their ordinal.

    The ordinal ("7:") numbers the lines of the whole table, so it moves when another
    process takes or drops a lock; the rest (kind, mode, pid, file, range) is the lock.
    """
    inode, pid = os.stat(path).st_ino, os.getpid()
    return [
        " ".join(fields[1:])
        for fields in (line.split() for line in Path("/proc/locks").read_text().splitlines())
        if "POSIX" in fields
        and fields[4] == str(pid)
        and fields[5].rsplit(":", 1)[-1] == str(inode)
    ]


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_opening_a_second_store_keeps_the_first_one_s_locks(tmp_path: Path) -> None:
    # Closing any descriptor of a file drops every POSIX lock the process holds on it: the
    # header check of a second open must not take the locks of a reader in progress.
    first = sessionstore.open_store(agent="main", state_dir=tmp_path, store_type="sqlite")
    first.put("agent:main:main", {"sessionId": "s1"})
    conn = first.index.connection()  # type: ignore[attr-defined]
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sessions").fetchall()
    db = first.paths.sqlite_path
    held = _posix_locks(db)
    assert held, "a read transaction holds a lock on the database file"
    second = sessionstore.open_store(agent="main", state_dir=tmp_path, store_type="sqlite")
    try:
        assert second.get("agent:main:main") is not None
        assert _posix_locks(db) == held
    finally:
        second.close()
        conn.execute("COMMIT")
        first.close()
