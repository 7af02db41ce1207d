"""Import of OpenClaw 2026.8+ ``openclaw-agent.sqlite`` files (spec section 15).

The databases are built by ``openclaw_db_builder`` from the spec's facts only, for schema
versions 14, 20, 23 and 24: placeholder rows, large fields in snapshots, zstd rows, cold
archives in a file and in a blob (checksums over the stored and over the decoded bytes),
a reset generation in ``session_windows`` and a deleted session's events. What the import
must produce is computed here from what the builder put in.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from openclaw_db_builder import SNAPSHOT_FIELDS, Generation, Node, build
from typer.testing import CliRunner, Result

import sessionstore
from sessionstore.bench.generate import bloated_entry, typical_entry
from sessionstore.cli.app import app
from sessionstore.entry import json_equal, load_normalize
from sessionstore.errors import (
    CorruptSourceError,
    MigrationError,
    TranscriptConflictError,
    UnsupportedSourceError,
)
from sessionstore.layout import openclaw_db_path, resolve_store_paths
from sessionstore.openclaw_import import RECORD_KEY, migrate_openclaw_db

Entry = dict[str, Any]
NOW = 1_780_000_000_000
VERSIONS = (14, 20, 23, 24)


# --- the source ---------------------------------------------------------------------------------


def iso(ms: int) -> str:
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def pi_lines(rng: random.Random, sid: str, start: int, *, header: bool, turns: int) -> list[str]:
    """pi v3 lines as OpenClaw wrote them (header optional), with non-ASCII text."""
    lines: list[Entry] = []
    if header:
        lines.append(
            {"type": "session", "version": 3, "id": sid, "timestamp": iso(start), "cwd": "/srv/gw"}
        )
    parent = None
    for turn in range(turns):
        for role in ("user", "assistant"):
            ident = f"{rng.getrandbits(32):08x}"
            text = f"turn {turn} {role}: héllo ✓ 日本語 {rng.random()}"
            lines.append(
                {
                    "type": "message",
                    "id": ident,
                    "parentId": parent,
                    "timestamp": iso(start + turn * 1000),
                    "message": {"role": role, "content": [{"type": "text", "text": text}]},
                }
            )
            parent = ident
    return [orjson.dumps(line).decode() for line in lines]


def scenario(
    version: int, agent: str = "main", seed: int = 7
) -> tuple[list[Node], list[Generation]]:
    """Sessions exercising every feature the schema version has."""
    rng = random.Random(seed * 100 + version)
    cold = version >= 20
    zipped = version >= 23

    def entry(bloated: bool = False) -> Entry:
        make = bloated_entry if bloated else typical_entry
        _, e = make(rng, agent_id=agent, now_ms=NOW)
        e = load_normalize(e)
        e["sessionFile"] = f"/old/host/agents/{agent}/sessions/{e['sessionId']}.jsonl"
        return e

    nodes: list[Node] = []
    # The main session, reset once: the old generation is a separate session id.
    main = entry()
    old_id, new_id = f"old-{version}-{seed}", main["sessionId"]
    nodes.append(
        Node(
            f"agent:{agent}:main",
            main,
            generations=[
                Generation(
                    old_id, pi_lines(rng, old_id, NOW - 90_000, header=True, turns=2), NOW - 90_000
                ),
                Generation(
                    new_id,
                    pi_lines(rng, new_id, NOW - 50_000, header=True, turns=3),
                    NOW - 50_000,
                    reason="reset",
                    compress="odd" if zipped else None,
                ),
            ],
        )
    )
    # A bloated entry: large fields (snapshots from 24), no header line, a cold file archive.
    big = entry(bloated=True)
    big["sessionDiffBaseline"] = {"files": {"a.txt": "x" * 3000}, "at": NOW - 10}
    assert all(f in big for f in SNAPSHOT_FIELDS)
    long_line = orjson.dumps(
        {"type": "custom", "customType": "openclaw.blob", "data": {"text": "ü" * 120_000}}
    ).decode()
    lines = [*pi_lines(rng, big["sessionId"], NOW - 40000, header=False, turns=3), long_line]
    nodes.append(
        Node(
            f"agent:{agent}:telegram:direct:8123456789",
            big,
            generations=[
                Generation(
                    big["sessionId"],
                    lines,
                    NOW - 40_000,
                    compress="all" if zipped else None,
                    cold="file" if cold else None,
                    cold_count=2 if cold else 0,
                    cold_sha="stored",
                )
            ],
        )
    )
    # A channel whose older events sit in an archive blob (checksum over the decoded lines).
    slack = entry()
    nodes.append(
        Node(
            f"agent:{agent}:slack:channel:c07abc123",
            slack,
            generations=[
                Generation(
                    slack["sessionId"],
                    pi_lines(rng, slack["sessionId"], NOW - 30_000, header=True, turns=3),
                    NOW - 30_000,
                    cold="sqlite" if cold else None,
                    cold_count=3 if cold else 0,
                    cold_sha="decoded",
                )
            ],
        )
    )
    # An entry with no transcript at all.
    nodes.append(Node(f"agent:{agent}:dashboard:feedface", entry(), generations=[]))
    # Placeholder rows: not entries.
    nodes.append(Node(f"agent:{agent}:pending", None, valid=0))
    nodes.append(Node(f"agent:{agent}:broken", None, valid=-1))
    # Events of a deleted session: no node, no window.
    gone = f"gone-{version}-{seed}"
    orphans = [
        Generation(gone, pi_lines(rng, gone, NOW - 80_000, header=True, turns=1), NOW - 80_000)
    ]
    return nodes, orphans


def make_db(state_dir: Path, version: int, agent: str = "main", **kw: Any) -> Any:
    nodes, orphans = scenario(version, agent)
    return build(
        openclaw_db_path(state_dir, agent), version, nodes, orphans=orphans, agent_id=agent, **kw
    )


# --- what the import must produce ---------------------------------------------------------------


def header_line(sid: str, ms: int, cwd: str) -> str:
    return orjson.dumps(
        {"type": "session", "version": 3, "id": sid, "timestamp": iso(ms), "cwd": cwd}
    ).decode()


def stamp(ms: int) -> str:
    return iso(ms).replace(":", "-")


def expected_files(built: Any, sessions_dir: Path, home: Path) -> dict[str, list[str]]:
    """File name -> lines, from what the builder put in."""
    files: dict[str, list[str]] = {}
    for node in built.nodes:
        if node.entry is None:
            continue
        report = node.entry.get("systemPromptReport")
        cwd = report.get("workspaceDir") if isinstance(report, dict) else None
        cwd = cwd or str(home)
        for i, gen in enumerate(node.generations):
            lines = list(gen.lines)
            if json.loads(lines[0]).get("type") != "session":
                lines.insert(0, header_line(gen.session_id, gen.created_at(1), cwd))
            if i == len(node.generations) - 1:
                files[f"{gen.session_id}.jsonl"] = lines
            else:  # reset at the start of the next generation
                after = node.generations[i + 1].started_at
                files[f"{gen.session_id}.jsonl.reset.{stamp(after)}"] = lines
    for gen in built.orphans:
        files[f"{gen.session_id}.jsonl.deleted.{stamp(gen.created_at(len(gen.lines)))}"] = list(
            gen.lines
        )
    return files


def expected_entries(built: Any, sessions_dir: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for node in built.nodes:
        if node.entry is None:
            continue
        entry = dict(node.entry)
        if node.generations:
            entry["sessionFile"] = str(sessions_dir / f"{node.generations[-1].session_id}.jsonl")
        else:  # no transcript in the database: the old path names nothing
            del entry["sessionFile"]
        out[node.key] = entry
    return out


def transcript_names(sessions_dir: Path) -> set[str]:
    if not sessions_dir.is_dir():
        return set()
    return {p.name for p in sessions_dir.iterdir() if ".jsonl" in p.name}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_json(*args: str | Path, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, result.stderr + result.stdout
    return json.loads(result.stdout)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def home() -> Path:
    return Path(os.environ["HOME"])


# --- the import equals the source ---------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_import_equals_source(state: Path, home: Path, version: int) -> None:
    built = make_db(state, version)
    paths = resolve_store_paths(state, "main")
    before = sha256(built.path)

    result = migrate_openclaw_db(paths, built.path)

    assert result.status == "migrated", result.message
    assert result.schemaVersion == version
    assert result.migratedCount == 4 and result.sourceEntries == 4
    assert result.transcriptCount == 3 and result.archiveCount == 2
    # the source: same bytes, no -wal/-shm left by the reader
    assert sha256(built.path) == before
    assert not Path(f"{built.path}-wal").exists() and not Path(f"{built.path}-shm").exists()

    want = expected_entries(built, paths.sessions_dir)
    with sessionstore.open_store(agent="main", state_dir=state) as store:
        assert store.store_type == "sqlite"
        got = store.load_all()
        assert set(got) == set(want)  # placeholders left out
        for key, entry in want.items():
            assert json_equal(got[key], entry), key
            if version >= 24:
                assert all(got[key].get(f) == entry.get(f) for f in SNAPSHOT_FIELDS)
        record = store.index.migration_record(RECORD_KEY)
        info = store.info()
    assert record is not None
    assert record["sourcePath"] == str(built.path)
    assert record["sha256"] == before
    assert record["sourceBytes"] == built.path.stat().st_size
    assert record["schemaVersion"] == version
    assert record["entryCount"] == 4 and record["transcriptCount"] == 3
    assert record["placeholderRows"] == 2
    assert info.openclawDb == {
        "path": str(built.path),
        "imported": True,
        "importedAt": record["migratedAt"],
        "changedSinceImport": False,
    }

    files = expected_files(built, paths.sessions_dir, home)
    assert transcript_names(paths.sessions_dir) == set(files)
    for name, lines in files.items():
        path = paths.sessions_dir / name
        assert path.read_text(encoding="utf-8").split("\n") == [*lines, ""], name
        assert path.stat().st_mode & 0o777 == 0o600
    # the live transcripts read back through the store, line by line
    with sessionstore.open_store(agent="main", state_dir=state) as store:
        for key, entry in want.items():
            if "sessionFile" not in entry:
                continue
            t = store.transcript(key)
            assert t.path == Path(entry["sessionFile"])
            assert [orjson.dumps(e).decode() for e in t.entries()] == files[t.path.name]
            assert t.skipped == 0
        findings = store.check()
    assert [f.kind for f in findings if f.kind != "sqlite-version"] == []
    # nothing else was left in the sessions dir
    leftovers = {p.name for p in paths.sessions_dir.iterdir()} - set(files)
    assert leftovers <= {"sessions.sqlite", "cold"}


def test_rerun_is_skipped_and_force_finds_identical_files(state: Path) -> None:
    built = make_db(state, 24)
    paths = resolve_store_paths(state, "main")
    assert migrate_openclaw_db(paths, built.path).status == "migrated"
    snapshot = {p.name: sha256(p) for p in paths.sessions_dir.glob("*.jsonl*")}

    again = migrate_openclaw_db(paths, built.path)
    assert again.status == "skipped"
    assert "unchanged" in again.message
    assert again.sourceChanged is False

    forced = migrate_openclaw_db(paths, built.path, force=True)
    assert forced.status == "migrated"
    assert forced.migratedCount == 0  # every entry was up to date
    assert {p.name: sha256(p) for p in paths.sessions_dir.glob("*.jsonl*")} == snapshot


def test_dry_run_writes_nothing(state: Path) -> None:
    built = make_db(state, 23)
    paths = resolve_store_paths(state, "main")
    before = sorted(str(p) for p in state.rglob("*"))
    result = migrate_openclaw_db(paths, built.path, dry_run=True)
    assert result.status == "would_migrate"
    assert result.migratedCount == 4 and result.transcriptCount == 3
    assert result.eventCount > 0
    assert sorted(str(p) for p in state.rglob("*")) == before


# --- damaged sources fail whole -----------------------------------------------------------------


def assert_nothing_written(state: Path, paths: Any, before: set[str]) -> None:
    assert not paths.sqlite_path.exists()
    assert transcript_names(paths.sessions_dir) == set()
    assert {str(p) for p in state.rglob("*")} == before


def damage(db: Path, sql: str, args: tuple[Any, ...] = ()) -> None:
    conn = apsw.Connection(str(db))
    conn.execute(sql, args)
    conn.close()


@pytest.mark.parametrize("how", ["bytes", "size", "utf8"])
def test_damaged_zstd_row_fails_naming_the_session(state: Path, how: str) -> None:
    built = make_db(state, 23)
    sid = built.nodes[1].generations[0].session_id  # every live row compressed
    if how == "bytes":
        conn = apsw.Connection(str(built.path))
        ((blob,),) = conn.execute(
            "SELECT event_zstd FROM transcript_events WHERE session_id = ? AND seq = 4", (sid,)
        ).fetchall()
        conn.close()
        broken = blob[:12] + bytes(b ^ 0xFF for b in blob[12:20]) + blob[20:]
        damage(
            built.path,
            "UPDATE transcript_events SET event_zstd = ? WHERE session_id = ? AND seq = 4",
            (broken, sid),
        )
    elif how == "size":
        damage(
            built.path,
            "UPDATE transcript_events SET event_utf8_bytes = event_utf8_bytes - 1"
            " WHERE session_id = ? AND seq = 4",
            (sid,),
        )
    else:
        from openclaw_db_builder import zstd

        bad = b'{"type":"x","t":"\xff\xfe"}'
        damage(
            built.path,
            "UPDATE transcript_events SET event_zstd = ?, event_utf8_bytes = ?"
            " WHERE session_id = ? AND seq = 4",
            (zstd.compress(bad), len(bad), sid),
        )
    paths = resolve_store_paths(state, "main")
    source = sha256(built.path)
    before = {str(p) for p in state.rglob("*")}
    with pytest.raises(CorruptSourceError) as caught:
        migrate_openclaw_db(paths, built.path)
    assert caught.value.session_id == sid
    assert sid in str(caught.value) and "event 4" in str(caught.value)
    assert_nothing_written(state, paths, before)
    assert sha256(built.path) == source


@pytest.mark.parametrize("storage", ["file", "sqlite"])
def test_wrong_archive_checksum_fails_naming_the_session(state: Path, storage: str) -> None:
    built = make_db(state, 24)
    node = built.nodes[1] if storage == "file" else built.nodes[2]
    sid = node.generations[0].session_id
    damage(
        built.path,
        "UPDATE session_transcript_cold_archives SET archive_sha256 = ? WHERE session_id = ?",
        ("0" * 64, sid),
    )
    paths = resolve_store_paths(state, "main")
    before = {str(p) for p in state.rglob("*")}
    with pytest.raises(CorruptSourceError) as caught:
        migrate_openclaw_db(paths, built.path)
    assert caught.value.session_id == sid
    assert "archive_sha256" in str(caught.value) and sid in str(caught.value)
    assert_nothing_written(state, paths, before)


def test_damaged_archive_file_fails(state: Path) -> None:
    built = make_db(state, 20)
    archive = built.cold_files[0]
    archive.write_bytes(archive.read_bytes()[:-7])
    paths = resolve_store_paths(state, "main")
    before = {str(p) for p in state.rglob("*")}
    with pytest.raises(CorruptSourceError) as caught:
        migrate_openclaw_db(paths, built.path)
    assert caught.value.session_id == built.nodes[1].generations[0].session_id
    assert_nothing_written(state, paths, before)


def test_event_that_is_not_json_fails_and_leaves_no_directory(state: Path) -> None:
    built = make_db(state, 14)
    sid = built.nodes[0].generations[0].session_id  # the old generation of the main key
    damage(
        built.path,
        "UPDATE transcript_events SET event_json = '{\"type\":' WHERE session_id = ? AND seq = 2",
        (sid,),
    )
    paths = resolve_store_paths(state, "main")
    assert not paths.sessions_dir.exists()  # schema 14: no cold archives, no sessions dir
    before = {str(p) for p in state.rglob("*")}
    with pytest.raises(CorruptSourceError, match="event 2 is not JSON") as caught:
        migrate_openclaw_db(paths, built.path)
    assert caught.value.session_id == sid
    assert {str(p) for p in state.rglob("*")} == before


@pytest.mark.parametrize("version", [13, 26, 8])
def test_unknown_version_is_refused(state: Path, version: int) -> None:
    nodes, orphans = scenario(14)
    path = openclaw_db_path(state, "main")
    build(path, version, nodes, orphans=orphans)
    paths = resolve_store_paths(state, "main")
    with pytest.raises(UnsupportedSourceError) as caught:
        migrate_openclaw_db(paths, path)
    assert caught.value.version == version
    assert f"schema version {version}" in str(caught.value)
    assert "14 to 25" in str(caught.value)
    assert not paths.sqlite_path.exists()

    result = cli("migrate", "--from", "openclaw-db", "--state-dir", state)
    assert result.exit_code == 1
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and f"schema version {version}" in failed[0]
    doc = cli_json("migrate", "--from", "openclaw-db", "--state-dir", state, code=1)
    assert doc["success"] is False
    row = doc["results"][0]
    assert row["status"] == "failed" and f"schema version {version}" in row["message"]
    assert "\n" not in row["message"]


def test_versions_that_disagree_are_refused(state: Path) -> None:
    nodes, _ = scenario(14)
    path = openclaw_db_path(state, "main")
    build(path, 20, nodes, meta_version=19)
    with pytest.raises(CorruptSourceError, match="disagree"):
        migrate_openclaw_db(resolve_store_paths(state, "main"), path)


def test_existing_transcript_that_differs_is_never_overwritten(state: Path) -> None:
    built = make_db(state, 24)
    paths = resolve_store_paths(state, "main")
    paths.sessions_dir.mkdir(parents=True, exist_ok=True)
    sid = built.nodes[2].generations[0].session_id
    mine = paths.sessions_dir / f"{sid}.jsonl"
    mine.write_text('{"type":"session","version":3,"id":"x"}\n')
    before = {str(p): sha256(p) for p in state.rglob("*") if p.is_file()}
    with pytest.raises(TranscriptConflictError) as caught:
        migrate_openclaw_db(paths, built.path)
    assert caught.value.path == str(mine)
    assert {str(p): sha256(p) for p in state.rglob("*") if p.is_file()} == before

    # the same bytes as the import would write are fine
    mine.unlink()
    assert migrate_openclaw_db(paths, built.path, dry_run=True).status == "would_migrate"
    assert migrate_openclaw_db(paths, built.path).status == "migrated"


def test_failed_database_write_takes_the_transcripts_back(state: Path) -> None:
    built = make_db(state, 24)
    paths = resolve_store_paths(state, "main")
    with sessionstore.open_store(agent="main", state_dir=state, store_type="sqlite") as store:
        store.put("agent:main:mine", {"sessionId": "mine-1", "updatedAt": NOW})
    conn = apsw.Connection(str(paths.sqlite_path))
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    before = {str(p): sha256(p) for p in state.rglob("*") if p.is_file()}
    with pytest.raises(MigrationError, match="schema version 99"):
        migrate_openclaw_db(paths, built.path, force=True)
    assert {str(p): sha256(p) for p in state.rglob("*") if p.is_file()} == before
    assert transcript_names(paths.sessions_dir) == set()
    assert not any(p.name.startswith(".openclaw-import") for p in paths.sessions_dir.iterdir())


def test_import_into_a_store_with_sessions_needs_force(state: Path) -> None:
    built = make_db(state, 20)
    paths = resolve_store_paths(state, "main")
    with sessionstore.open_store(agent="main", state_dir=state, store_type="sqlite") as store:
        store.put("agent:main:main", {"sessionId": "fresh", "updatedAt": NOW + 1})
    skipped = migrate_openclaw_db(paths, built.path)
    assert skipped.status == "skipped" and "--force" in skipped.message
    forced = migrate_openclaw_db(paths, built.path, force=True)
    assert forced.status == "migrated" and forced.migratedCount == 3
    with sessionstore.open_store(agent="main", state_dir=state) as store:
        assert store.get("agent:main:main")["sessionId"] == "fresh"  # the newer entry kept
        assert store.count() == 4


# --- a running gateway ------------------------------------------------------------------------

GATEWAY = r"""
import sys, apsw
db = apsw.Connection(sys.argv[1])
db.set_busy_timeout(5000)
db.execute("PRAGMA journal_mode = WAL").fetchall()
db.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
def add(key, sid, text):
    db.execute(
        "INSERT INTO session_nodes (session_key, current_session_id, entry_json, entry_valid,"
        " updated_at, created_at) VALUES (?, ?, ?, 1, 1, 1)",
        (key, sid, '{"sessionId":"%s","updatedAt":1780000000001}' % sid),
    )
    db.execute(
        "INSERT INTO transcript_events (session_id, seq, event_json, created_at)"
        " VALUES (?, 1, ?, 1780000000001)",
        (sid, text),
    )
db.execute("BEGIN IMMEDIATE")
add("agent:main:committed", "committed-1", '{"type":"message","id":"c1"}')
db.execute("COMMIT")
db.execute("BEGIN IMMEDIATE")
add("agent:main:uncommitted", "uncommitted-1", '{"type":"message","id":"u1"}')
print("ready", flush=True)
sys.stdin.readline()           # hold the write transaction while the import runs
db.execute("ROLLBACK")
db.execute("BEGIN IMMEDIATE")  # the gateway goes on writing after the import
add("agent:main:later", "later-1", '{"type":"message","id":"l1"}')
db.execute("COMMIT")
print(db.execute("SELECT count(*) FROM session_nodes WHERE entry_valid = 1").fetchall()[0][0],
      flush=True)
db.close()
"""


def test_gateway_holding_the_database_open_does_not_stop_the_import(state: Path) -> None:
    built = make_db(state, 20)
    paths = resolve_store_paths(state, "main")
    gateway = subprocess.Popen(
        [sys.executable, "-c", GATEWAY, str(built.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gateway.stdout is not None and gateway.stdin is not None
        assert gateway.stdout.readline().strip() == "ready"
        assert Path(f"{built.path}-wal").stat().st_size > 0  # committed rows live in the WAL

        result = migrate_openclaw_db(paths, built.path, lock_timeout_ms=2000)

        assert result.status == "migrated", result.message
        with sessionstore.open_store(agent="main", state_dir=state) as store:
            assert store.get("agent:main:committed") is not None
            assert store.get("agent:main:uncommitted") is None
            assert store.count() == 5
        assert (paths.sessions_dir / "committed-1.jsonl").read_text().splitlines()[1] == (
            '{"type":"message","id":"c1"}'
        )
        assert not (paths.sessions_dir / "uncommitted-1.jsonl").exists()
        # the gateway's files were left to it: it goes on writing
        assert Path(f"{built.path}-shm").exists()
        gateway.stdin.write("go\n")
        gateway.stdin.flush()
        assert gateway.stdout.readline().strip() == "6"  # 4 built + committed + later
        assert gateway.wait(timeout=30) == 0
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    # the gateway's own later changes are noticed
    with sessionstore.open_store(agent="main", state_dir=state) as store:
        assert store.info().openclawDb["changedSinceImport"] is True


LATE_GATEWAY = r"""
import sys, apsw
db = apsw.Connection(sys.argv[1])
db.set_busy_timeout(5000)
db.execute("PRAGMA journal_mode = WAL").fetchall()
db.execute("SELECT count(*) FROM session_nodes").fetchall()  # open and reading: a live gateway
print("ready", flush=True)
sys.stdin.readline()
db.execute(
    "INSERT INTO session_nodes (session_key, current_session_id, entry_json, entry_valid,"
    " updated_at, created_at) VALUES ('agent:main:late', 'late-1', '{}', 1, 1, 1)"
)
print("committed", flush=True)
sys.stdin.readline()
db.close()
"""


def test_gateway_starting_during_the_import_keeps_its_wal(state: Path) -> None:
    """The -wal/-shm the reader created are the gateway's once it opened the database."""
    built = make_db(state, 24)
    assert not Path(f"{built.path}-wal").exists()
    started: list[subprocess.Popen[str]] = []

    def start_gateway(done: int, total: int) -> None:
        # Called while the source is still open: the gateway opens it now.
        if not started:
            gateway = subprocess.Popen(
                [sys.executable, "-c", LATE_GATEWAY, str(built.path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            started.append(gateway)
            assert gateway.stdout is not None and gateway.stdout.readline().strip() == "ready"

    try:
        paths = resolve_store_paths(state, "main")
        assert migrate_openclaw_db(paths, built.path, progress=start_gateway).status == "migrated"
        gateway = started[0]
        assert gateway.stdin is not None and gateway.stdout is not None
        assert Path(f"{built.path}-wal").exists() and Path(f"{built.path}-shm").exists()
        gateway.stdin.write("go\n")
        gateway.stdin.flush()
        assert gateway.stdout.readline().strip() == "committed"
        # a new reader sees the gateway's commit: its WAL is the one on disk
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, apsw; c = apsw.Connection(sys.argv[1]);"
                ' print(c.execute("SELECT count(*) FROM session_nodes'
                " WHERE session_key = 'agent:main:late'\").fetchall()[0][0])",
                str(built.path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.strip() == "1"
        gateway.stdin.write("bye\n")
        gateway.stdin.flush()
        assert gateway.wait(timeout=30) == 0
    finally:
        for gateway in started:
            if gateway.poll() is None:
                gateway.kill()
                gateway.wait()


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_dry_run_json_all_agents_and_rerun(state: Path) -> None:
    make_db(state, 24, agent="main")
    make_db(state, 14, agent="ops")
    (state / "agents" / "family" / "sessions").mkdir(parents=True)  # no database: not a target

    doc = cli_json(
        "migrate", "--from", "openclaw-db", "--all-agents", "--dry-run", "--state-dir", state
    )
    assert doc["success"] is True
    rows = {r["agentId"]: r for r in doc["results"]}
    assert set(rows) == {"main", "ops"}
    for row in rows.values():
        assert row["status"] == "would_migrate"
        assert row.keys() >= {
            "agentId",
            "jsonPath",
            "sqlitePath",
            "status",
            "migratedCount",
            "existingCount",
            "message",
            "openclawDbPath",
        }
    assert rows["ops"]["schemaVersion"] == 14
    assert not (state / "agents" / "main" / "sessions" / "sessions.sqlite").exists()

    doc = cli_json("migrate", "--from", "openclaw-db", "--all-agents", "--state-dir", state)
    assert [r["status"] for r in doc["results"]] == ["migrated", "migrated"]
    assert all(r["migratedCount"] == 4 for r in doc["results"])

    doc = cli_json("migrate", "--from", "openclaw-db", "--all-agents", "--state-dir", state)
    assert [r["status"] for r in doc["results"]] == ["skipped", "skipped"]

    text = cli("migrate", "--from", "openclaw-db", "--agent", "ops", "--state-dir", state)
    assert text.exit_code == 0
    assert "SKIPPED" in text.stdout and "openclaw-agent.sqlite" in text.stdout


def test_cli_openclaw_db_path_and_usage_errors(state: Path, tmp_path: Path) -> None:
    nodes, orphans = scenario(23)
    odd = tmp_path / "copy #1?" / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    build(odd, 23, nodes, orphans=orphans)
    doc = cli_json("migrate", "--from", "openclaw-db", "--openclaw-db", odd, "--state-dir", state)
    assert doc["results"][0]["status"] == "migrated"
    assert doc["results"][0]["openclawDbPath"] == str(odd)

    for args, pattern in [
        (["--to", "postgres"], "--to postgres needs a DSN"),
        (["--to", "postgres", "--from", "openclaw-db"], "--from must be json or sqlite"),
        (["--to", "mysql"], "--to must be sqlite"),
        (["--from", "yaml"], "--from must be json or openclaw-db"),
        (["--openclaw-db", odd], "--openclaw-db goes with --from openclaw-db"),
        (["--from", "openclaw-db", "--openclaw-db", odd, "--all-agents"], "not --all-agents"),
    ]:
        result = cli("migrate", *args, "--state-dir", state)
        assert result.exit_code == 2, args
        assert pattern in result.stderr, result.stderr


def test_cli_agent_with_only_a_database_is_known(state: Path) -> None:
    make_db(state, 20, agent="solo")
    doc = cli_json("migrate", "--agent", "solo", "--state-dir", state)  # --from json
    assert doc["results"][0]["status"] == "no_data"
    assert "migrate --from openclaw-db" in doc["results"][0]["message"]
    doc = cli_json("migrate", "--from", "openclaw-db", "--agent", "solo", "--state-dir", state)
    assert doc["results"][0]["status"] == "migrated"


# --- store-info and doctor ----------------------------------------------------------------------


def test_store_info_and_doctor_say_not_imported_then_changed(state: Path) -> None:
    built = make_db(state, 24)
    # a current OpenClaw user: no sessions.json, no sessions.sqlite
    info = cli_json("store-info", "--state-dir", state)
    assert info["openclawDb"] == {
        "path": str(built.path),
        "imported": False,
        "importedAt": None,
        "changedSinceImport": None,
    }
    doctor = cli_json("doctor", "--state-dir", state, code=1)
    kinds = {f["kind"]: f for f in doctor["findings"]}
    assert "migrate --from openclaw-db" in kinds["openclaw-db-not-imported"]["message"]
    assert "has not been imported" in kinds["openclaw-db-not-imported"]["message"]
    text = cli("store-info", "--state-dir", state)
    assert "OpenClaw DB" in text.stdout and "no - run" in text.stdout

    cli_json("migrate", "--from", "openclaw-db", "--state-dir", state)
    info = cli_json("store-info", "--state-dir", state)
    assert info["openclawDb"]["imported"] is True
    assert info["openclawDb"]["changedSinceImport"] is False
    doctor = cli_json("doctor", "--state-dir", state)
    assert "openclaw-db-not-imported" not in {f["kind"] for f in doctor["findings"]}

    # the gateway writes a new session after the import
    conn = apsw.Connection(str(built.path))
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute(
        "INSERT INTO session_nodes (session_key, current_session_id, entry_json, entry_valid,"
        " updated_at, created_at) VALUES ('agent:main:new', 'n1', '{\"sessionId\":\"n1\"}', 1,"
        " 2, 2)"
    )
    conn.close()
    info = cli_json("store-info", "--state-dir", state)
    assert info["openclawDb"]["changedSinceImport"] is True
    doctor = cli_json("doctor", "--state-dir", state, code=1)
    finding = next(f for f in doctor["findings"] if f["kind"] == "openclaw-db-not-imported")
    assert "changed after its import" in finding["message"] and "--force" in finding["message"]
    again = cli_json("migrate", "--from", "openclaw-db", "--state-dir", state)
    assert again["results"][0]["status"] == "skipped"
    assert again["results"][0]["sourceChanged"] is True
    forced = cli_json("migrate", "--from", "openclaw-db", "--force", "--state-dir", state)
    assert forced["results"][0]["migratedCount"] == 1
    assert cli_json("store-info", "--state-dir", state)["openclawDb"]["changedSinceImport"] is False


def test_checkpoint_alone_is_not_a_change(state: Path) -> None:
    built = make_db(state, 23)
    assert migrate_openclaw_db(resolve_store_paths(state, "main"), built.path).status == "migrated"
    conn = apsw.Connection(str(built.path))
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("VACUUM")  # rewrites every page, holds the same rows
    conn.close()
    with sessionstore.open_store(agent="main", state_dir=state) as store:
        assert store.info().openclawDb["changedSinceImport"] is False
