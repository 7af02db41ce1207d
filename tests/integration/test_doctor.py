"""Integration tests of the doctor (``store.check``) and ``store.vacuum``.

Every finding kind of ``doctor.FINDING_KINDS`` is injected for real into a store (on every
backend where it applies), detected with its kind, subject and severity, repaired by
``check(fix=True)`` when that is safe, and gone (or still reported, when it cannot be
repaired safely) on a second ``check()``. ``check(fix=True)`` never deletes user data: only
stale temp and lock files disappear, and a torn tail moves into a ``.torn.<ts>`` file.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest

import sessionstore
from sessionstore import SessionStore, doctor
from sessionstore.bench.generate import generate_state_dir
from sessionstore.doctor import FINDING_KINDS, Finding
from sessionstore.errors import CorruptStoreError, InvalidArgumentError, SessionStoreError
from sessionstore.lockfile import process_start_time
from sessionstore.transcripts.jsonl import Transcript

# Generated stores with transcript files: the json and sqlite backends. The doctor on a
# postgres store: tests/postgres/test_doctor_vacuum.py and test_table_transcripts.py.
pytestmark = pytest.mark.file_transcripts

CHAT = "agent:main:telegram:direct:42"
SQLITE_FILES = ("sessions.sqlite", "sessions.sqlite-wal", "sessions.sqlite-shm")
TORN = b'{"type":"message","id":"deadbeef","parentId":"0000'  # a line cut short: no newline

# --- helpers -----------------------------------------------------------------------------------


def open_main(state_dir: Path, backend: str, **kwargs: Any) -> SessionStore:
    return sessionstore.open_store(agent="main", state_dir=state_dir, store_type=backend, **kwargs)  # type: ignore[arg-type]


def message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def add_session(store: SessionStore, key: str, messages: int) -> Path:
    """A session with a transcript of ``messages`` messages.

    On SQLite appends keep ``messageCount``; on sessions.json they leave the index alone.
    """
    store.put(key, {"sessionId": str(uuid.uuid4()), "channel": "telegram", "label": "chat"})
    transcript = store.transcript(key)
    for i in range(messages):
        transcript.append(message(f"message {i}"))
    entry = store.get(key)
    assert entry is not None
    assert entry.get("messageCount") == (None if store.store_type == "json" else messages)
    return transcript.path


def by_kind(findings: list[Finding], kind: str) -> list[Finding]:
    assert kind in FINDING_KINDS
    return [f for f in findings if f.kind == kind]


def only(findings: list[Finding], kind: str) -> Finding:
    matches = by_kind(findings, kind)
    assert len(matches) == 1, [f.to_dict() for f in findings]
    return matches[0]


def kinds(findings: list[Finding]) -> list[str]:
    return sorted(f.kind for f in findings)


def files(directory: Path) -> dict[str, bytes]:
    """Every file of the sessions dir but the database's, with its bytes."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.is_file() and p.name not in SQLITE_FILES
    }


def transcript_keys(store: SessionStore) -> list[str]:
    """Keys of generated sessions whose transcript file exists, in a stable order."""
    return sorted(k for k in store.load_all() if k != CHAT and store.transcript(k).path.exists())


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert process_start_time(proc.pid) is None  # reaped: the pid is free
    return proc.pid


def write_lock(path: Path, pid: int | None, *, age_s: float = 0.0) -> None:
    payload: dict[str, Any] = {}
    if pid is not None:
        payload = {
            "pid": pid,
            "createdAt": datetime.now(timezone.utc).isoformat(),
            "starttime": process_start_time(pid) or 1,
        }
    path.write_text(json.dumps(payload))
    if age_s:
        age(path, age_s)


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def populated(state_dir: Path, backend: str) -> Iterator[SessionStore]:
    """A generated store (sessions, blobs, topic transcripts) plus one tracked chat."""
    generate_state_dir(state_dir, sessions=12, transcripts=True, seed=7, bloated_ratio=0.5)
    store = open_main(state_dir, backend)
    try:
        add_session(store, CHAT, 3)
        yield store
    finally:
        store.close()


@pytest.fixture
def sqlite_store(state_dir: Path) -> Iterator[SessionStore]:
    generate_state_dir(state_dir, sessions=12, transcripts=True, seed=7, bloated_ratio=0.5)
    store = open_main(state_dir, "sqlite")
    try:
        add_session(store, CHAT, 3)
        yield store
    finally:
        store.close()


# --- a clean store -----------------------------------------------------------------------------


def test_finding_kinds_are_the_documented_ones() -> None:
    assert set(FINDING_KINDS) == {
        "integrity",
        "blob-refcount",
        "blob-missing",
        "count-drift",
        "missing-transcript",
        "orphan-transcript",
        "torn-tail",
        "message-count-drift",
        "split-store",
        "openclaw-db-not-imported",
        "stale-temp-file",
        "stale-lock",
        "wal-size",
        "sqlite-version",
        "network-filesystem",
        "openclaw-config",
    }
    assert len(FINDING_KINDS) == len(set(FINDING_KINDS))


def test_generated_store_is_clean(populated: SessionStore) -> None:
    sessions_dir = populated.paths.sessions_dir
    assert any("-topic-" in n for n in files(sessions_dir))  # topic transcripts are not orphans
    entries = populated.load_all()
    before = files(sessions_dir)
    assert populated.check() == []
    assert populated.check(fix=True) == []
    assert populated.load_all() == entries
    assert files(sessions_dir) == before


def test_store_built_through_the_api_is_clean(store: SessionStore) -> None:
    add_session(store, CHAT, 2)
    store.transcript(CHAT, topic_id=7).append(message("in a topic"))
    add_session(store, "agent:main:slack:direct:u1", 1)
    store.reset("agent:main:slack:direct:u1")  # archives *.jsonl.reset.<ts>, new header
    add_session(store, "agent:main:slack:direct:u2", 1)
    store.delete("agent:main:slack:direct:u2")  # archives *.jsonl.deleted.<ts>
    store.put("agent:main:discord:direct:u3", {"label": "no transcript yet"})
    names = files(store.paths.sessions_dir)
    assert any(".jsonl.reset." in n for n in names) and any(".jsonl.deleted." in n for n in names)
    assert store.check() == []


def test_finding_to_dict_and_unresolved() -> None:
    f = Finding("torn-tail", "/x.jsonl", "cut short")
    assert f.to_dict() == {
        "kind": "torn-tail",
        "subject": "/x.jsonl",
        "message": "cut short",
        "severity": "warning",
        "fixed": False,
    }
    assert f.unresolved
    f.fixed = True
    assert not f.unresolved
    assert not Finding("orphan-transcript", "/o.jsonl", "m", severity="info").unresolved


# --- integrity ---------------------------------------------------------------------------------


def _close_and_corrupt_index_page(store: SessionStore, index_name: str) -> Path:
    """Overwrite bytes in the middle of the cell area of one b-tree page of ``index_name``."""
    path = store.paths.sqlite_path
    store.close()
    conn = apsw.Connection(str(path))
    page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    pages = [
        r[0]
        for r in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (index_name,),
        )
    ]
    conn.close()
    assert pages and not Path(f"{path}-wal").exists()  # everything is in the main file
    page_no = pages[len(pages) // 2]
    with open(path, "r+b") as fh:
        fh.seek((page_no - 1) * page_size)
        page = bytearray(fh.read(page_size))
        content_start = int.from_bytes(page[5:7], "big") or 65536
        assert content_start < page_size - 200  # a page with plenty of cells
        middle = (content_start + page_size) // 2
        page[middle : middle + 48] = b"\xa5" * 48
        fh.seek((page_no - 1) * page_size)
        fh.write(page)
    return path


def test_integrity_failure_is_reported_and_the_file_left_alone(state_dir: Path) -> None:
    generate_state_dir(state_dir, sessions=80, transcripts=True, seed=3, bloated_ratio=0.1)
    store = open_main(state_dir, "sqlite")
    add_session(store, CHAT, 2)
    store.update(CHAT, {"messageCount": 40})  # drift the doctor must not repair in a bad file
    path = _close_and_corrupt_index_page(store, "idx_sessions_session_id")
    corrupt = path.read_bytes()
    transcripts = {n: b for n, b in files(path.parent).items() if n.endswith(".jsonl")}

    with open_main(state_dir, "sqlite") as store:  # the file opens: only an index is bad
        found = store.check()
        f = only(found, "integrity")
        assert (f.subject, f.severity, f.fixed) == (str(path), "error", False)
        assert f.unresolved and "integrity_check" in f.message
        assert "sessionstore recover" in f.message
        # The checks that read the index (and whose repairs write it) are skipped.
        assert kinds(found) == ["integrity"]
        fixed = store.check(fix=True)
        assert kinds(fixed) == ["integrity"] and not fixed[0].fixed
        assert kinds(store.check()) == ["integrity"]
    assert path.read_bytes() == corrupt  # nothing written to the damaged file
    assert {n: b for n, b in files(path.parent).items() if n.endswith(".jsonl")} == transcripts


def test_unreadable_database_fails_to_open_with_a_typed_one_line_error(
    sqlite_store: SessionStore,
) -> None:
    path = sqlite_store.paths.sqlite_path
    state_dir = sqlite_store.state_dir
    sqlite_store.close()
    data = bytearray(path.read_bytes())
    data[:100] = b"\x00garbage header\x00" * 6 + b"\x00" * 4
    path.write_bytes(bytes(data))
    with pytest.raises(SessionStoreError) as info:
        open_main(state_dir, "sqlite")
    assert isinstance(info.value, CorruptStoreError)
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    assert path.read_bytes() == bytes(data)
    with pytest.raises(SessionStoreError):
        open_main(state_dir, "auto")  # auto never falls back to sessions.json over it


def test_unreadable_entry_row_is_reported_not_raised(sqlite_store: SessionStore) -> None:
    victim = transcript_keys(sqlite_store)[0]
    transcript = sqlite_store.transcript(victim).path
    conn = apsw.Connection(str(sqlite_store.paths.sqlite_path))
    conn.execute("UPDATE sessions SET entry_json = x'ff00fe' WHERE session_key = ?", (victim,))
    conn.close()
    for fix in (False, True):
        found = sqlite_store.check(fix=fix)
        f = only(found, "integrity")
        assert (f.subject, f.severity, f.fixed) == (victim, "error", False)
        assert kinds(found) == ["integrity"]  # its transcript is still its own, not an orphan
    assert transcript.exists()
    raw = sqlite_store.index.connection().execute(  # type: ignore[attr-defined]
        "SELECT entry_json FROM sessions WHERE session_key = ?", (victim,)
    )
    assert bytes(next(raw)[0]) == b"\xff\x00\xfe"


def test_corrupt_sessions_json_is_reported_and_left_untouched(state_dir: Path) -> None:
    generate_state_dir(state_dir, sessions=5, transcripts=True, seed=1)
    with open_main(state_dir, "json") as store:
        json_path = store.paths.json_path
        bad = b'{"agent:main:main": {"sessionId": "s1", "updatedAt": 17'  # cut short
        json_path.write_bytes(bad)
        for fix in (False, True):
            found = store.check(fix=fix)
            f = only(found, "integrity")
            assert (f.subject, f.severity, f.fixed) == (str(json_path), "error", False)
            assert "not valid JSON" in f.message
            assert kinds(found) == ["integrity"]  # no flood of would-be orphans
    assert json_path.read_bytes() == bad


# --- blobs and counters (sqlite) ---------------------------------------------------------------


def test_blob_refcount_drift_is_recounted(sqlite_store: SessionStore) -> None:
    path = sqlite_store.paths.sqlite_path
    entries = sqlite_store.load_all()
    conn = apsw.Connection(str(path))
    refs: dict[str, int] = {}
    for (doc,) in conn.execute("SELECT blob_refs FROM sessions WHERE blob_refs IS NOT NULL"):
        for digest in orjson.loads(doc).values():
            refs[digest] = refs.get(digest, 0) + 1
    digest = sorted(refs)[0]
    conn.execute("UPDATE blobs SET refcount = refcount + 5 WHERE digest = ?", (digest,))
    conn.execute(
        "INSERT INTO blobs(digest, data, refcount) VALUES (?, ?, 2)", ("0" * 64, b'{"x":1}')
    )

    f = only(sqlite_store.check(), "blob-refcount")
    assert (f.subject, f.severity, f.fixed) == (str(path), "warning", False)
    assert f.message.startswith("2 blob reference count(s)")
    f = only(sqlite_store.check(fix=True), "blob-refcount")
    assert f.fixed and not f.unresolved
    stored = dict(conn.execute("SELECT digest, refcount FROM blobs").fetchall())
    assert stored == refs  # recounted, and the blob nobody references is gone
    conn.close()
    assert sqlite_store.check() == []
    assert sqlite_store.load_all() == entries


def test_blob_missing_is_reported_and_nothing_raises(sqlite_store: SessionStore) -> None:
    conn = apsw.Connection(str(sqlite_store.paths.sqlite_path))
    rows = conn.execute(
        "SELECT session_key, blob_refs FROM sessions WHERE blob_refs IS NOT NULL ORDER BY 1"
    ).fetchall()
    users: dict[str, list[str]] = {}
    for key, doc in rows:
        for digest in orjson.loads(doc).values():
            users.setdefault(digest, []).append(key)
    digest, keys = next((d, k) for d, k in sorted(users.items()) if len(k) == 1)
    [victim] = keys
    assert sqlite_store.transcript(victim).path.exists()
    # Also drift the victim's count: the recount must not need the missing blob.
    actual = sqlite_store.transcript(victim).message_count()
    sqlite_store.update(victim, {"messageCount": 77})
    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
    conn.close()

    for fix in (False, True):
        found = sqlite_store.check(fix=fix)
        f = only(found, "blob-missing")
        assert (f.subject, f.severity, f.fixed) == (f"blob {digest}", "error", False)
        assert f.message.startswith("1 session(s)") and f.unresolved
        drift = only(found, "message-count-drift")
        assert drift.subject == victim and drift.fixed == fix
        assert kinds(found) == ["blob-missing", "message-count-drift"]
    assert sqlite_store.get(CHAT) is not None  # the other entries still read whole
    raw = sqlite_store.index.get(victim, blobs=False)
    assert raw is not None and raw["messageCount"] == actual  # recounted without the blob
    assert kinds(sqlite_store.check()) == ["blob-missing"]


@pytest.mark.parametrize("injection", ["bump", "drop-row"])
def test_count_drift_is_recounted(sqlite_store: SessionStore, injection: str) -> None:
    path = sqlite_store.paths.sqlite_path
    real = len(sqlite_store.load_all())
    conn = apsw.Connection(str(path))
    if injection == "bump":
        conn.execute("UPDATE stats SET row_count = row_count + 3")
        assert sqlite_store.count() == real + 3
    else:
        conn.execute("DELETE FROM stats")
        assert sqlite_store.count() == 0
    conn.close()
    f = only(sqlite_store.check(), "count-drift")
    assert (f.subject, f.severity, f.fixed) == (str(path), "warning", False)
    said = str(real + 3) if injection == "bump" else "nothing"
    assert f"says {said}" in f.message and f"holds {real} rows" in f.message
    assert only(sqlite_store.check(fix=True), "count-drift").fixed
    assert sqlite_store.count() == real
    assert sqlite_store.check() == []
    sqlite_store.put("agent:main:x:direct:new", {"label": "after"})  # triggers keep counting
    assert sqlite_store.count() == real + 1


# --- transcripts -------------------------------------------------------------------------------


def test_missing_transcript_is_reported_never_repaired(populated: SessionStore) -> None:
    populated.put("agent:main:discord:direct:fresh", {"label": "no transcript, no claim"})
    entries = populated.load_all()
    with_file = [k for k in transcript_keys(populated) if entries[k].get("sessionFile")]
    victims = [CHAT, with_file[0]]  # one with a messageCount, one with a sessionFile
    if populated.store_type == "json":
        victims = with_file[:2]  # appends keep no messageCount there: CHAT claims no file
    for key in victims:
        populated.transcript(key).path.unlink()
    for fix in (False, True):
        found = populated.check(fix=fix)
        assert kinds(found) == ["missing-transcript"] * 2
        assert sorted(f.subject for f in found) == sorted(victims)
        for f in found:
            assert f.severity == "warning" and not f.fixed and f.unresolved
            assert "--fix-missing" in f.message
    assert populated.load_all() == entries  # the entries stay


def test_orphan_transcript_is_information_and_never_deleted(populated: SessionStore) -> None:
    sessions_dir = populated.paths.sessions_dir
    orphan = sessions_dir / f"{uuid.uuid4()}.jsonl"
    orphan.write_bytes(b'{"type":"session","version":3,"id":"x"}\n')
    topic_orphan = sessions_dir / f"{uuid.uuid4()}-topic-9.jsonl"
    topic_orphan.write_bytes(b"")
    (sessions_dir / f"{uuid.uuid4()}.jsonl.deleted.2026-01-01T00-00-00.000Z").write_bytes(b"{}\n")
    (sessions_dir / "notes.txt").write_text("not a transcript")
    before = files(sessions_dir)
    for fix in (False, True):
        found = populated.check(fix=fix)
        assert kinds(found) == ["orphan-transcript"] * 2
        assert sorted(f.subject for f in found) == sorted([str(orphan), str(topic_orphan)])
        for f in found:
            assert f.severity == "info" and not f.fixed and not f.unresolved
    assert files(sessions_dir) == before


def test_torn_tail_is_cut_and_kept_beside(populated: SessionStore) -> None:
    key = transcript_keys(populated)[0]
    path = populated.transcript(key).path
    whole = path.read_bytes()
    entry = populated.get(key)
    with open(path, "ab") as fh:
        fh.write(TORN)

    found = populated.check()
    f = only(found, "torn-tail")
    assert (f.subject, f.severity, f.fixed) == (str(path), "warning", False)
    assert f"last {len(TORN)} bytes" in f.message
    assert kinds(found) == ["torn-tail"]
    assert path.read_bytes() == whole + TORN  # a check alone changes nothing

    f = only(populated.check(fix=True), "torn-tail")
    assert f.fixed and not f.unresolved
    assert path.read_bytes() == whole
    [torn] = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.torn.")]
    assert torn.read_bytes() == TORN
    assert populated.check() == []
    assert populated.get(key) == entry


@pytest.mark.parametrize("backend", ["sqlite"])  # json stores keep no count
def test_torn_tail_of_a_tracked_transcript_then_appends_count_right(
    populated: SessionStore,
) -> None:
    path = populated.transcript(CHAT).path
    with open(path, "ab") as fh:
        fh.write(TORN)
    assert kinds(populated.check(fix=True)) == ["torn-tail"]
    populated.transcript(CHAT).append(message("after the repair"))
    entry = populated.get(CHAT)
    assert entry is not None and entry["messageCount"] == 4
    assert populated.check() == []


@pytest.mark.parametrize("backend", ["sqlite"])  # json stores keep no count
def test_message_count_drift_set_through_the_api_is_recounted(populated: SessionStore) -> None:
    path = populated.transcript(CHAT).path
    populated.update(CHAT, {"messageCount": 99})
    before = populated.get(CHAT)
    assert before is not None

    f = only(populated.check(), "message-count-drift")
    assert (f.subject, f.severity, f.fixed) == (CHAT, "warning", False)
    assert "says 99" in f.message and "holds 3 messages" in f.message
    f = only(populated.check(fix=True), "message-count-drift")
    assert f.fixed
    after = populated.get(CHAT)
    assert after is not None
    assert after["messageCount"] == 3
    assert after["transcriptBytes"] == path.stat().st_size
    rest = ("messageCount", "transcriptBytes")
    assert {k: v for k, v in after.items() if k not in rest} == {
        k: v for k, v in before.items() if k not in rest
    }  # updatedAt, label, ... untouched
    assert populated.check() == []


@pytest.mark.parametrize("backend", ["sqlite"])  # json stores keep no count
def test_message_count_drift_from_lines_appended_behind_the_store(
    populated: SessionStore,
) -> None:
    path = populated.transcript(CHAT).path
    lines = b"".join(
        orjson.dumps(
            {
                "type": "message",
                "id": f"0000000{i}",
                "parentId": None,
                "timestamp": "2026-01-01T00:00:00.000Z",
                "message": message(f"behind {i}"),
            }
        )
        + b"\n"
        for i in range(2)
    )
    with open(path, "ab") as fh:
        fh.write(lines)
    f = only(populated.check(), "message-count-drift")
    assert "says 3" in f.message and "holds 5 messages" in f.message
    assert only(populated.check(fix=True), "message-count-drift").fixed
    entry = populated.get(CHAT)
    assert entry is not None
    assert (entry["messageCount"], entry["transcriptBytes"]) == (5, path.stat().st_size)
    assert Transcript(path, entry["sessionId"]).message_count() == 5
    assert populated.check() == []


@pytest.mark.parametrize("backend", ["sqlite"])  # json stores keep no count
def test_transcript_bytes_beyond_the_file_is_drift(populated: SessionStore) -> None:
    path = populated.transcript(CHAT).path
    populated.update(CHAT, {"transcriptBytes": path.stat().st_size + 1000})
    assert only(populated.check(), "message-count-drift").subject == CHAT
    assert only(populated.check(fix=True), "message-count-drift").fixed
    entry = populated.get(CHAT)
    assert entry is not None and entry["transcriptBytes"] == path.stat().st_size
    assert populated.check() == []


def test_drift_repair_waiting_for_a_live_lock_is_reported_not_raised(state_dir: Path) -> None:
    # Only SQLite keeps messageCount (see test_json_store_keeps_no_count_and_reports_no_drift)
    with open_main(state_dir, "sqlite", lock_timeout_ms=200) as store:
        add_session(store, CHAT, 2)
        store.update(CHAT, {"messageCount": 9})
        other = apsw.Connection(str(store.paths.sqlite_path))
        other.execute("BEGIN IMMEDIATE")  # another writer in the middle of a transaction
        try:
            found = store.check(fix=True)
        finally:
            other.execute("ROLLBACK")
            other.close()
        f = only(found, "message-count-drift")
        assert not f.fixed and f.unresolved and "not recounted" in f.message
        assert kinds(found) == ["message-count-drift"]
        assert only(store.check(fix=True), "message-count-drift").fixed


def test_json_store_keeps_no_count_and_reports_no_drift(state_dir: Path) -> None:
    # Appends do not rewrite sessions.json (OpenClaw's whole-file cost per message), so a
    # json store keeps no messageCount and the doctor has none to hold against the file.
    with open_main(state_dir, "json") as store:
        add_session(store, CHAT, 2)
        store.update(CHAT, {"messageCount": 9})  # e.g. from an export of a SQLite store
        before = store.paths.json_path.read_bytes()
        store.transcript(CHAT).append(message("one more"))
        store.transcript(CHAT, topic_id=3).append(message("in a topic"))
        assert store.paths.json_path.read_bytes() == before
        assert store.check() == []
        assert [m["__openclaw"]["seq"] for m in store.transcript(CHAT).tail(2)] == [2, 3]


# --- sessions.json after migration -------------------------------------------------------------


def test_source_changed_after_migration(sqlite_store: SessionStore) -> None:
    json_path = sqlite_store.paths.json_path
    record = sqlite_store.index.migration_record()
    assert record is not None  # the store was migrated from the generated sessions.json
    assert sqlite_store.check() == []
    doc = json.loads(json_path.read_text())
    doc["agent:main:written:direct:later"] = {"sessionId": str(uuid.uuid4()), "updatedAt": 1}
    json_path.write_text(json.dumps(doc, indent=2))
    changed = json_path.read_bytes()
    entries = sqlite_store.load_all()

    for fix in (False, True):
        found = sqlite_store.check(fix=fix)
        f = only(found, "split-store")
        assert (f.subject, f.severity, f.fixed) == (str(json_path), "warning", False)
        assert "migrate --force" in f.message
        assert kinds(found) == ["split-store"]
    assert json_path.read_bytes() == changed
    assert sqlite_store.load_all() == entries
    # A json store on the same sessions.json has no migration to compare with (it sees
    # the transcript of CHAT, written through the sqlite store only, as an orphan).
    with open_main(sqlite_store.state_dir, "json") as legacy:
        assert kinds(legacy.check()) == ["orphan-transcript"]


# --- stale files -------------------------------------------------------------------------------


def test_stale_temp_files_are_removed_fresh_ones_kept(populated: SessionStore) -> None:
    sessions_dir = populated.paths.sessions_dir
    old_tmp = sessions_dir / f"sessions.json.{uuid.uuid4()}.tmp"
    old_tmp.write_text("{")
    age(old_tmp, 120)
    old_aside = sessions_dir / f"sessions.json.lock.stale.{uuid.uuid4().hex}"
    old_aside.write_text("{}")
    age(old_aside, 120)
    fresh_tmp = sessions_dir / f"sessions.json.{uuid.uuid4()}.tmp"
    fresh_tmp.write_text("{")  # possibly a write in flight

    found = populated.check()
    assert kinds(found) == ["stale-temp-file"] * 2
    assert sorted(f.subject for f in found) == sorted([str(old_tmp), str(old_aside)])
    assert all(f.severity == "warning" and not f.fixed for f in found)
    assert old_tmp.exists() and old_aside.exists()

    fixed = populated.check(fix=True)
    assert kinds(fixed) == ["stale-temp-file"] * 2 and all(f.fixed for f in fixed)
    assert not old_tmp.exists() and not old_aside.exists()
    assert fresh_tmp.exists()
    assert populated.check() == []


def test_old_temp_file_is_kept_while_a_live_writer_holds_the_lock(
    populated: SessionStore, sleeper: subprocess.Popen[bytes]
) -> None:
    sessions_dir = populated.paths.sessions_dir
    tmp = sessions_dir / f"sessions.json.{uuid.uuid4()}.tmp"
    tmp.write_text("{")
    age(tmp, 600)
    lock = sessions_dir / "sessions.json.lock"
    write_lock(lock, sleeper.pid, age_s=600)
    assert populated.check(fix=True) == []
    assert tmp.exists() and lock.exists()


@pytest.mark.parametrize("owner", ["dead-pid", "no-owner-old"])
def test_stale_lock_is_removed(populated: SessionStore, owner: str) -> None:
    lock = populated.paths.sessions_dir / "sessions.json.lock"
    pid = dead_pid() if owner == "dead-pid" else None
    write_lock(lock, pid, age_s=0 if pid else 120)
    f = only(populated.check(), "stale-lock")
    assert (f.subject, f.severity, f.fixed) == (str(lock), "warning", False)
    assert f"pid {pid if pid else '?'}" in f.message
    assert lock.exists()
    assert only(populated.check(fix=True), "stale-lock").fixed
    assert not lock.exists()
    assert populated.check() == []
    populated.update(CHAT, {"label": "writable again"})


@pytest.mark.parametrize("owner", ["parent", "child"])
def test_lock_of_a_live_process_is_never_touched(
    populated: SessionStore, sleeper: subprocess.Popen[bytes], owner: str
) -> None:
    lock = populated.paths.sessions_dir / "sessions.json.lock"
    pid = os.getppid() if owner == "parent" else sleeper.pid
    write_lock(lock, pid, age_s=3600)  # however old it is
    content = lock.read_bytes()
    assert populated.check() == []
    assert populated.check(fix=True) == []
    assert lock.read_bytes() == content


def test_fresh_ownerless_lock_is_left_alone(populated: SessionStore) -> None:
    lock = populated.paths.sessions_dir / "sessions.json.lock"
    write_lock(lock, None)  # being written right now, or a gateway without pid
    assert populated.check(fix=True) == []
    assert lock.exists()


# --- the WAL, the SQLite version and the file system -------------------------------------------


def test_wal_size_checkpointed_unless_a_reader_blocks(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_main(state_dir, "sqlite", lock_timeout_ms=100)
    try:
        wal = Path(f"{store.paths.sqlite_path}-wal")
        for i in range(10):
            store.put(f"agent:main:x:direct:{i}", {"label": f"l{i}", "notes": "n" * 2000})
        assert 0 < wal.stat().st_size < doctor.WAL_WARN_BYTES
        assert store.check() == []  # the real threshold: 64 MiB
        monkeypatch.setattr(doctor, "WAL_WARN_BYTES", 16 * 1024)
        reader = apsw.Connection(str(store.paths.sqlite_path))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sessions").fetchall()  # holds its snapshot
        for i in range(10, 40):
            store.put(f"agent:main:x:direct:{i}", {"label": f"l{i}", "notes": "n" * 2000})
        size = wal.stat().st_size
        assert size > doctor.WAL_WARN_BYTES

        f = only(store.check(), "wal-size")
        assert (f.subject, f.severity, f.fixed) == (str(wal), "warning", False)
        assert f"{size} bytes" in f.message
        f = only(store.check(fix=True), "wal-size")
        assert not f.fixed and f.unresolved  # the reader keeps the checkpoint from finishing
        assert wal.stat().st_size >= size
        assert reader.execute("SELECT count(*) FROM sessions").fetchall() == [(10,)]

        reader.execute("COMMIT")
        reader.close()
        f = only(store.check(fix=True), "wal-size")
        assert f.fixed
        assert wal.stat().st_size == 0
        assert store.check() == []
        assert store.count() == 40
    finally:
        store.close()


@pytest.mark.parametrize(
    ("version", "flagged"),
    [("3.40.1", True), ("3.51.2", True), ("3.51.3", False), ("3.54.1", False), ("4.0.0", False)],
)
def test_sqlite_version_without_the_wal_reset_fix(
    populated: SessionStore, monkeypatch: pytest.MonkeyPatch, version: str, flagged: bool
) -> None:
    monkeypatch.setattr(doctor, "_sqlite_version", lambda: version)
    found = populated.check(fix=True)
    if not flagged or populated.store_type != "sqlite":  # only a sqlite store is concerned
        assert found == []
        return
    f = only(found, "sqlite-version")
    assert (f.subject, f.severity, f.fixed) == (str(populated.paths.sqlite_path), "warning", False)
    assert version in f.message and "3.51.3" in f.message and f.unresolved
    assert kinds(found) == ["sqlite-version"]


def test_the_real_sqlite_version_is_not_flagged(sqlite_store: SessionStore) -> None:
    version = tuple(int(p) for p in doctor._sqlite_version().split(".")[:3])
    assert version >= doctor.SQLITE_WAL_RESET_FIX  # apsw bundles a current SQLite
    assert sqlite_store.check() == []


@pytest.mark.parametrize("fstype", ["nfs4", "nfs", "cifs", "fuse.sshfs", "9p"])
def test_network_filesystem(
    populated: SessionStore, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    asked: list[Path] = []

    def fake(path: Path) -> str:
        asked.append(path)
        return fstype

    monkeypatch.setattr(doctor, "_filesystem_type", fake)
    found = populated.check(fix=True)
    f = only(found, "network-filesystem")
    severity = "error" if populated.store_type == "sqlite" else "warning"
    assert (f.subject, f.severity, f.fixed) == (str(populated.paths.sessions_dir), severity, False)
    assert fstype in f.message and f.unresolved
    assert kinds(found) == ["network-filesystem"]
    assert asked == [populated.paths.sessions_dir]


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "tmpfs", "overlay", None])
def test_local_filesystem_is_not_flagged(
    populated: SessionStore, monkeypatch: pytest.MonkeyPatch, fstype: str | None
) -> None:
    monkeypatch.setattr(doctor, "_filesystem_type", lambda path: fstype)
    assert populated.check() == []


@pytest.mark.skipif(not Path("/proc/self/mountinfo").exists(), reason="needs /proc")
def test_filesystem_type_of_a_real_directory(tmp_path: Path) -> None:
    mounted = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        _, _, right = line.partition(" - ")
        mounted.add(right.split()[0])
    fstype = doctor._filesystem_type(tmp_path)
    assert isinstance(fstype, str) and fstype in mounted
    assert fstype not in doctor.NETWORK_FILESYSTEMS  # the test machine's tmp is local
    assert doctor._filesystem_type(Path("/")) in mounted


def test_filesystem_type_parses_mountinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "mountinfo"
    fake.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /mnt/nas rw,relatime shared:7 - nfs4 nas:/export rw,vers=4.2\n"
        "31 30 0:41 / /mnt/nas/sub\\040dir rw - cifs //srv/share rw\n"
        "32 22 0:42 / /mnt/nasty rw master:3 - tmpfs tmpfs rw\n"
        "33 22 0:43 / /home/u/remote rw,nosuid - fuse.sshfs u@host:/ rw\n"
        "garbage line\n"
    )
    real_path = Path

    def fake_path(*args: Any) -> Path:
        if args == ("/proc/self/mountinfo",):
            return fake
        return real_path(*args)

    monkeypatch.setattr(doctor, "Path", fake_path)
    assert doctor._filesystem_type(real_path("/mnt/nas")) == "nfs4"
    assert doctor._filesystem_type(real_path("/mnt/nas/state/agents/main/sessions")) == "nfs4"
    assert doctor._filesystem_type(real_path("/mnt/nas/sub dir/state")) == "cifs"
    assert doctor._filesystem_type(real_path("/mnt/nasty/state")) == "tmpfs"  # not /mnt/nas
    assert doctor._filesystem_type(real_path("/home/u/remote/x")) == "fuse.sshfs"
    assert doctor._filesystem_type(real_path("/var/lib/x")) == "ext4"

    fake.unlink()  # no mountinfo (not Linux): unknown, and nothing is reported
    assert doctor._filesystem_type(real_path("/mnt/nas")) is None


# --- fix=True deletes no user data ---------------------------------------------------------------


def test_fix_repairs_the_safe_problems_and_deletes_no_user_data(
    populated: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = populated
    sqlite = store.store_type == "sqlite"
    sessions_dir = store.paths.sessions_dir
    monkeypatch.setattr(doctor, "_filesystem_type", lambda path: "nfs4")
    keys = transcript_keys(store)

    # Archives exist before the doctor runs, and must survive it.
    store.reset(keys[0])
    store.delete(keys[1])
    missing_key, torn_key = keys[2], keys[3]
    store.transcript(missing_key).path.unlink()
    orphan = sessions_dir / f"{uuid.uuid4()}.jsonl"
    orphan.write_bytes(b'{"type":"session","version":3,"id":"orphan"}\n')
    torn_path = store.transcript(torn_key).path
    with open(torn_path, "ab") as fh:
        fh.write(TORN)
    store.update(CHAT, {"messageCount": 42})
    stale_tmp = sessions_dir / f"sessions.json.{uuid.uuid4()}.tmp"
    stale_tmp.write_text("{")
    age(stale_tmp, 300)
    fresh_tmp = sessions_dir / f"sessions.json.{uuid.uuid4()}.tmp"
    fresh_tmp.write_text("{")
    stale_lock = sessions_dir / "sessions.json.lock"
    write_lock(stale_lock, dead_pid())
    expected_fixed = {"torn-tail", "stale-temp-file", "stale-lock"}
    expected_left = {"missing-transcript", "orphan-transcript", "network-filesystem"}
    if sqlite:
        monkeypatch.setattr(doctor, "_sqlite_version", lambda: "3.40.1")
        # A WAL over the threshold; the repairs after the checkpoint write far less.
        monkeypatch.setattr(doctor, "WAL_WARN_BYTES", 64 * 1024)
        for i in range(8):
            store.put(f"agent:main:pad:direct:{i}", {"notes": "p" * 16_000})
        assert Path(f"{store.paths.sqlite_path}-wal").stat().st_size > 64 * 1024
        conn = apsw.Connection(str(store.paths.sqlite_path))
        conn.execute("UPDATE blobs SET refcount = refcount + 1")
        conn.execute("UPDATE stats SET row_count = row_count + 1")
        conn.close()
        with open(store.paths.json_path, "ab") as fh:
            fh.write(b"\n")
        # json stores keep no messageCount (appends do not rewrite sessions.json)
        expected_fixed |= {"blob-refcount", "count-drift", "wal-size", "message-count-drift"}
        expected_left |= {"split-store", "sqlite-version"}

    entries = store.load_all()
    before = files(sessions_dir)
    found = store.check()
    assert {f.kind for f in found} == expected_fixed | expected_left
    assert not any(f.fixed for f in found)

    fixed = store.check(fix=True)
    assert {f.kind for f in fixed if f.fixed} == expected_fixed
    assert {f.kind for f in fixed if not f.fixed} == expected_left

    # Every entry is still there; only the drifted count changed.
    after_entries = store.load_all()
    assert after_entries.keys() == entries.keys()
    for key, entry in entries.items():
        if key == CHAT and sqlite:
            size = store.transcript(CHAT).path.stat().st_size
            entry = {**entry, "messageCount": 3, "transcriptBytes": size}
        assert after_entries[key] == entry, key

    # Every transcript and archive is still there; only stale temp/lock files went away.
    after = files(sessions_dir)
    gone = set(before) - set(after)
    assert gone == {stale_tmp.name, stale_lock.name}
    new = set(after) - set(before)
    assert len(new) == 1 and next(iter(new)).startswith(f"{torn_path.name}.torn.")
    assert after[next(iter(new))] == TORN
    assert after[torn_path.name] + TORN == before[torn_path.name]
    rewritten = {torn_path.name} | (set() if sqlite else {"sessions.json"})
    for name in set(before) & set(after) - rewritten:
        assert after[name] == before[name], name
    assert any(".jsonl.reset." in n for n in after) and any(".jsonl.deleted." in n for n in after)
    assert orphan.name in after and fresh_tmp.name in after

    again = store.check()
    assert {f.kind for f in again} == expected_left


# --- vacuum ------------------------------------------------------------------------------------


def _fill(store: SessionStore, n: int) -> None:
    def add(sessions: dict[str, Any]) -> None:
        for i in range(n):
            sessions[f"agent:main:bulk:direct:{i}"] = {
                "sessionId": str(uuid.uuid4()),
                "updatedAt": 1_700_000_000_000 + i,
                "notes": f"{i}" * 600,
            }

    store.mutate(add)


def test_vacuum_shrinks_the_database_after_deletes(state_dir: Path) -> None:
    with open_main(state_dir, "sqlite") as store:
        _fill(store, 400)

        def drop(sessions: dict[str, Any]) -> None:
            for key in [k for k in sessions if not k.endswith((":1", ":2", ":3"))]:
                del sessions[key]

        store.mutate(drop)
        kept = store.load_all()
        assert len(kept) == 3
        db = store.paths.sqlite_path
        wal = Path(f"{db}-wal")
        before = db.stat().st_size + wal.stat().st_size

        done = store.vacuum()
        assert set(done) == {"bytesBefore", "bytesAfter", "checkpointed"}
        assert done["bytesBefore"] == before
        assert done["checkpointed"] is True
        assert done["bytesAfter"] < done["bytesBefore"] // 4
        assert done["bytesAfter"] == db.stat().st_size + wal.stat().st_size
        assert wal.stat().st_size == 0
        assert store.load_all() == kept
        assert store.count() == 3
        assert store.check() == []
    with open_main(state_dir, "sqlite") as store:
        assert store.load_all() == kept


def test_vacuum_with_a_reader_reports_the_checkpoint_not_done(state_dir: Path) -> None:
    with open_main(state_dir, "sqlite", lock_timeout_ms=100) as store:
        _fill(store, 50)
        reader = apsw.Connection(str(store.paths.sqlite_path))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sessions").fetchall()
        try:
            done = store.vacuum()
        finally:
            reader.execute("COMMIT")
            reader.close()
        assert done["checkpointed"] is False
        assert store.count() == 50
        assert store.vacuum()["checkpointed"] is True


def test_vacuum_of_a_json_store_is_an_invalid_argument(state_dir: Path) -> None:
    with open_main(state_dir, "json") as store:
        store.put(CHAT, {"label": "x"})
        before = store.paths.json_path.read_bytes()
        with pytest.raises(InvalidArgumentError, match="sqlite") as info:
            store.vacuum()
        assert isinstance(info.value, SessionStoreError)
        assert store.paths.json_path.read_bytes() == before
