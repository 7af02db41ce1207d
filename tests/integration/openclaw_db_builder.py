"""Builds ``openclaw-agent.sqlite`` files as OpenClaw 2026.8+ lays them out.

Only the facts of spec section 15 are used: ``STRICT`` tables, ``PRAGMA user_version`` and
the ``schema_meta`` 'primary' row carrying the same number, ``session_nodes`` with
``entry_valid`` (placeholders ``'{}'`` with 0/-1), ``session_windows`` (one row per
generation, ``previous_session_id`` linking a reset), ``transcript_events`` (``event_json``
or, from 23, ``event_zstd`` + ``event_utf8_bytes``), cold archives (from 20; a ``.jsonl.zst``
file under ``sessions/cold`` or an ``archive_blob``; JSON lines with a header record, event
records and other kinds), ``session_entry_snapshots`` (from 24; three fields out of the
entry), validation triggers (dropped in 25), WAL mode. Columns are laid out differently per
version (and with extra ones) so that a reader must go by name.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import apsw
import orjson

SNAPSHOT_FIELDS = ("sessionDiffBaseline", "skillsSnapshot", "systemPromptReport")
Entry = dict[str, Any]

zstd: Any = None
for _name in ("compression.zstd", "backports.zstd"):
    try:
        zstd = importlib.import_module(_name)
        break
    except ImportError:
        continue


@dataclass
class Generation:
    """One session id of a key (or an orphan): its transcript lines.

    Attributes:
        session_id: The session id.
        lines: The transcript lines (each one former ``.jsonl`` line), in seq order.
        started_at: When the generation began (ms); events follow one second apart.
        reason: ``session_windows.reason``.
        compress: Store live rows as zstd (schema 23+): ``"all"``, ``"odd"`` seqs, or None.
        cold: Move the first ``cold_count`` events to a cold archive: ``"file"`` or
            ``"sqlite"`` (schema 20+).
        cold_count: How many events the archive holds.
        cold_sha: What ``archive_sha256`` hashes: the ``"stored"`` zstd bytes or the
            ``"decoded"`` JSON lines.
    """

    session_id: str
    lines: list[str]
    started_at: int
    reason: str | None = None
    compress: Literal["all", "odd"] | None = None
    cold: Literal["file", "sqlite"] | None = None
    cold_count: int = 0
    cold_sha: Literal["stored", "decoded"] = "stored"

    def created_at(self, seq: int) -> int:
        return self.started_at + seq * 1000


@dataclass
class Node:
    """One ``session_nodes`` row.

    Attributes:
        key: The session key.
        entry: The whole entry (large fields included); None for a placeholder row.
        valid: ``entry_valid`` (1, or 0/-1 for a placeholder).
        generations: Oldest first; the last one is the current session.
    """

    key: str
    entry: Entry | None
    valid: int = 1
    generations: list[Generation] = field(default_factory=list)


@dataclass
class Built:
    """What was put into the database."""

    path: Path
    version: int
    nodes: list[Node]
    orphans: list[Generation]
    cold_files: list[Path]


def _tables(version: int) -> list[str]:
    """DDL for ``version`` (14 <= version <= 25 as published; any number is accepted)."""
    ddl = [
        "CREATE TABLE schema_meta (meta_key TEXT PRIMARY KEY, schema_version INTEGER NOT NULL,"
        " role TEXT NOT NULL, agent_id TEXT NOT NULL, app_version TEXT,"
        " updated_at INTEGER) STRICT",
    ]
    if version >= 20:
        # entry_json last and an extra column: a reader must go by name
        nodes = (
            "session_key TEXT PRIMARY KEY, current_session_id TEXT, entry_valid INTEGER NOT NULL"
            " DEFAULT 0 CHECK (entry_valid IN (-1, 0, 1)), updated_at INTEGER NOT NULL,"
            " created_at INTEGER NOT NULL, status TEXT, label TEXT, display_name TEXT,"
            " parent_session_key TEXT, spawned_by TEXT, archived_at INTEGER, channel TEXT,"
            " model TEXT, origin_json TEXT, entry_json TEXT NOT NULL"
        )
    else:
        # no archived_at yet (columns added later may be missing)
        nodes = (
            "session_key TEXT PRIMARY KEY, entry_json TEXT NOT NULL, current_session_id TEXT,"
            " entry_valid INTEGER NOT NULL DEFAULT 0 CHECK (entry_valid IN (-1, 0, 1)),"
            " updated_at INTEGER NOT NULL, created_at INTEGER NOT NULL, status TEXT,"
            " label TEXT, display_name TEXT, parent_session_key TEXT, spawned_by TEXT"
        )
    ddl.append(f"CREATE TABLE session_nodes ({nodes}) STRICT")
    ddl.append(
        "CREATE TABLE session_windows (session_id TEXT PRIMARY KEY, session_key TEXT NOT NULL,"
        " previous_session_id TEXT, reason TEXT, created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL, ended_at INTEGER, channel TEXT, last_channel TEXT,"
        " model TEXT, model_provider TEXT) STRICT"
    )
    if version >= 23:
        ddl.append(
            "CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " created_at INTEGER NOT NULL, event_zstd BLOB, event_utf8_bytes INTEGER"
            " CHECK (event_utf8_bytes IS NULL OR event_utf8_bytes BETWEEN 1 AND 4194304),"
            " event_json TEXT, kind TEXT,"
            " CHECK ((event_json IS NULL) <> (event_zstd IS NULL)),"
            " PRIMARY KEY (session_id, seq)) STRICT"
        )
    else:
        ddl.append(
            "CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " event_json TEXT NOT NULL, created_at INTEGER NOT NULL,"
            " PRIMARY KEY (session_id, seq)) STRICT"
        )
    if version >= 20:
        ddl.append(
            "CREATE TABLE session_transcript_cold_archives (session_id TEXT NOT NULL,"
            " archive_name TEXT NOT NULL, archive_sha256 TEXT NOT NULL,"
            " event_count INTEGER NOT NULL, last_seq INTEGER NOT NULL, storage TEXT NOT NULL"
            " CHECK (storage IN ('file', 'sqlite')), archive_blob BLOB,"
            " created_at INTEGER NOT NULL, PRIMARY KEY (session_id, archive_name)) STRICT"
        )
    if version >= 24:
        ddl.append(
            "CREATE TABLE session_entry_snapshots (session_key TEXT NOT NULL, field TEXT NOT NULL"
            " CHECK (field IN ('sessionDiffBaseline', 'skillsSnapshot', 'systemPromptReport')),"
            " value_json TEXT NOT NULL, updated_at INTEGER, PRIMARY KEY (session_key, field))"
            " STRICT"
        )
    if version < 25:
        ddl.append(
            "CREATE TRIGGER session_nodes_validate BEFORE INSERT ON session_nodes"
            " WHEN NEW.entry_valid = 1 AND json_valid(NEW.entry_json) = 0"
            " BEGIN SELECT RAISE(ABORT, 'session_nodes.entry_json must be JSON'); END"
        )
    return ddl


def archive_bytes(gen: Generation, generation_number: int) -> tuple[bytes, bytes]:
    """(decoded JSON lines, zstd bytes) of the cold archive of ``gen``'s first events."""
    records: list[Entry] = [
        {
            "kind": "header",
            "version": 1,
            "sessionId": gen.session_id,
            "generation": generation_number,
        },
        {"kind": "identity", "sessionKey": "x", "agentId": "main"},
    ]
    for seq in range(1, gen.cold_count + 1):
        row = {"seq": seq, "event_json": gen.lines[seq - 1], "created_at": gen.created_at(seq)}
        records.append({"kind": "event", "row": row})
        if seq == 1:
            records.append({"kind": "fts", "seq": seq, "text": "indexed words"})
    records.append({"kind": "active", "lastSeq": gen.cold_count})
    records.append({"kind": "index", "entries": gen.cold_count})
    decoded = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return decoded, zstd.compress(decoded)


def build(
    path: Path,
    version: int,
    nodes: list[Node],
    *,
    orphans: list[Generation] | None = None,
    agent_id: str = "main",
    app_version: str = "2026.9.7",
    meta_version: int | None = None,
) -> Built:
    """Write ``path`` (``agents/<id>/agent/openclaw-agent.sqlite``) with ``nodes``.

    Args:
        path: The database file (its directory is created).
        version: The schema version (``user_version``; the layout follows it).
        nodes: The session rows with their generations.
        orphans: Generations with events but no node or window (deleted sessions).
        agent_id: ``schema_meta.agent_id``.
        app_version: ``schema_meta.app_version``.
        meta_version: ``schema_meta.schema_version`` if it should differ from ``version``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    cold_dir = path.parent.parent / "sessions" / "cold"
    conn = apsw.Connection(str(path))
    cold_files: list[Path] = []
    try:
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("BEGIN")
        for statement in _tables(version):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_meta VALUES ('primary', ?, 'agent', ?, ?, ?)",
            (meta_version if meta_version is not None else version, agent_id, app_version, 1),
        )
        for node in nodes:
            _insert_node(conn, version, node)
            previous: str | None = None
            for number, gen in enumerate(node.generations, 1):
                conn.execute(
                    "INSERT INTO session_windows (session_id, session_key, previous_session_id,"
                    " reason, created_at, updated_at, channel, model) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        gen.session_id,
                        node.key,
                        previous,
                        gen.reason,
                        gen.started_at,
                        gen.created_at(len(gen.lines)),
                        "telegram",
                        "gpt-5",
                    ),
                )
                cold_files += _insert_events(conn, version, gen, number, cold_dir)
                previous = gen.session_id
        for gen in orphans or []:
            cold_files += _insert_events(conn, version, gen, 1, cold_dir)
        conn.execute("COMMIT")
        conn.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        conn.close()
    return Built(path, version, nodes, list(orphans or []), cold_files)


def _insert_node(conn: apsw.Connection, version: int, node: Node) -> None:
    if node.entry is None:
        entry_json, current, updated = "{}", None, 0
    else:
        stored = dict(node.entry)
        snapshots = {}
        if version >= 24:
            snapshots = {f: stored.pop(f) for f in SNAPSHOT_FIELDS if f in stored}
        entry_json = orjson.dumps(stored).decode()
        current = (
            node.generations[-1].session_id if node.generations else node.entry.get("sessionId")
        )
        updated = int(node.entry.get("updatedAt", 0))
        for name, value in snapshots.items():
            conn.execute(
                "INSERT INTO session_entry_snapshots (session_key, field, value_json, updated_at)"
                " VALUES (?, ?, ?, ?)",
                (node.key, name, orjson.dumps(value).decode(), updated),
            )
    conn.execute(
        "INSERT INTO session_nodes (session_key, current_session_id, entry_json, entry_valid,"
        " updated_at, created_at, label) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (node.key, current, entry_json, node.valid, updated, updated, None),
    )


def _insert_events(
    conn: apsw.Connection, version: int, gen: Generation, number: int, cold_dir: Path
) -> list[Path]:
    files: list[Path] = []
    if gen.cold is not None:
        assert version >= 20, "cold archives appear in schema 20"
        decoded, stored = archive_bytes(gen, number)
        digest = hashlib.sha256(stored if gen.cold_sha == "stored" else decoded).hexdigest()
        name = f"{gen.session_id}-g{number}.jsonl.zst"
        blob = None
        if gen.cold == "file":
            cold_dir.mkdir(parents=True, exist_ok=True)
            (cold_dir / name).write_bytes(stored)
            files.append(cold_dir / name)
        else:
            blob = stored
        conn.execute(
            "INSERT INTO session_transcript_cold_archives (session_id, archive_name,"
            " archive_sha256, event_count, last_seq, storage, archive_blob, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                gen.session_id,
                name,
                digest,
                gen.cold_count,
                gen.cold_count,
                gen.cold,
                blob,
                gen.created_at(gen.cold_count),
            ),
        )
    for seq in range(gen.cold_count + 1, len(gen.lines) + 1):
        line = gen.lines[seq - 1]
        zipped = gen.compress == "all" or (gen.compress == "odd" and seq % 2 == 1)
        if zipped:
            assert version >= 23, "compressed rows appear in schema 23"
            data = line.encode()
            conn.execute(
                "INSERT INTO transcript_events (session_id, seq, created_at, event_zstd,"
                " event_utf8_bytes) VALUES (?, ?, ?, ?, ?)",
                (gen.session_id, seq, gen.created_at(seq), zstd.compress(data), len(data)),
            )
        else:
            conn.execute(
                "INSERT INTO transcript_events (session_id, seq, event_json, created_at)"
                " VALUES (?, ?, ?, ?)",
                (gen.session_id, seq, line, gen.created_at(seq)),
            )
    return files
