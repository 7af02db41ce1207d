"""Recovery of a damaged ``sessions.sqlite``: salvage, merge ``sessions.json``, rebuild.

A database that SQLite cannot read whole (a truncated file, damaged pages, rows that no
longer decode) would otherwise be a dead end: every command fails on it, the doctor
included. :func:`recover_store` moves the damaged files aside (they are never deleted),
reads every row that can still be read, merges ``sessions.json`` where it exists (the
newer ``updatedAt`` wins, as ``migrate --force`` does), and builds a new database from the
result (verified entry by entry, like a migration). The report says how many sessions came
from the damaged database, how many from ``sessions.json``, and how many rows could not
be read. Stop other writers of the store first: a process that still has the damaged
database open keeps writing to the moved-aside file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from .entry import load_normalize, sort_time
from .errors import MigrationError, SessionStoreError
from .files import fsync_dir, os_error
from .index.rowcodec import unpack
from .layout import StorePaths
from .migrate import SourceSnapshot, read_source
from .transcripts.naming import archive_timestamp

__all__ = ["RecoveryReport", "recover_store"]

Entry = dict[str, Any]
Status = Literal["recovered", "healthy", "no_database", "would_recover"]


@dataclass
class RecoveryReport:
    """What :func:`recover_store` did (or, for a dry run, would do).

    Attributes:
        agentId: The agent.
        sqlitePath: The database.
        status: ``recovered``, ``would_recover``, ``healthy`` (nothing to do) or
            ``no_database``.
        damagedPath: Where the damaged database was moved (None for a dry run).
        problem: What was wrong with the database.
        salvaged: Sessions read intact from the damaged database and kept.
        fromJson: Sessions taken from ``sessions.json`` (missing from the salvage, or
            newer there).
        lost: Rows of the damaged database that could not be read (some may be among
            those restored from ``sessions.json``).
        lostKeys: The keys of lost rows, where an index still names them.
        partial: Salvaged sessions whose large blob fields (``skillsSnapshot``,
            ``systemPromptReport``) could not be read and were left out.
        sessionCount: Sessions in the rebuilt database.
        notes: Anything else worth knowing (e.g. a sessions.json that did not parse).
    """

    agentId: str
    sqlitePath: str
    status: Status
    damagedPath: str | None = None
    problem: str = ""
    salvaged: int = 0
    fromJson: int = 0
    lost: int = 0
    lostKeys: list[str] = field(default_factory=list)
    partial: int = 0
    sessionCount: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


@dataclass
class _Salvage:
    entries: dict[str, Entry] = field(default_factory=dict)
    unreadable: int = 0
    partial: int = 0
    problems: list[str] = field(default_factory=list)
    lost_keys: list[str] = field(default_factory=list)


def _damage(path: Path) -> str | None:
    """What is wrong with the database at ``path`` (None when it reads whole)."""
    import apsw

    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    except apsw.Error as exc:
        return f"cannot be opened ({exc})"
    try:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            return "integrity check failed: " + "; ".join(problems)
        for key, entry_json, refs in conn.execute(
            "SELECT session_key, entry_json, blob_refs FROM sessions"
        ):
            entry = orjson.loads(unpack(entry_json))
            if not isinstance(entry, dict):
                return f"the entry of {key!r} is not a JSON object"
            if refs:
                for digest in orjson.loads(refs).values():
                    if not conn.execute(
                        "SELECT 1 FROM blobs WHERE digest = ?", (digest,)
                    ).fetchall():
                        return f"a blob of {key!r} is missing"
        return None
    except (apsw.Error, ValueError, zlib.error) as exc:
        return f"cannot be read ({exc})"
    finally:
        conn.close()


_ROW = "SELECT rowid, session_key, entry_json, blob_refs FROM sessions"
# Indexes that hold every row (rowid and key): where the table's own b-tree is damaged,
# they still tell which rows existed and under which keys.
# (Schema 7 made the folded-key index partial; the primary key's index names every key.)
_FULL_INDEXES = ("sqlite_autoindex_sessions_1", "idx_sessions_list", "idx_sessions_session_id")


def _each(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` until the first error (damage stops a scan part-way)."""
    import apsw

    try:
        yield from conn.execute(sql, args)
    except apsw.Error:
        return


def _known_rows(conn: Any) -> dict[int, str | None]:
    """Rowid -> key (when known) of every row any readable b-tree still names."""
    known: dict[int, str | None] = {}
    for index in _FULL_INDEXES:
        column = "NULL" if index == "idx_sessions_session_id" else "session_key"
        for rowid, key in _each(conn, f"SELECT rowid, {column} FROM sessions INDEXED BY {index}"):
            if known.get(rowid) is None:
                known[rowid] = key
    return known


def _blob(conn: Any, digest: str) -> Any:
    import zlib

    rows = conn.execute("SELECT data, codec FROM blobs WHERE digest = ?", (digest,)).fetchall()
    data, codec = rows[0]
    return orjson.loads(zlib.decompress(data) if codec == 1 else data)


def _take(conn: Any, row: tuple[Any, ...], out: _Salvage) -> bool:
    """Decode one row into ``out``; False when it does not decode."""
    import apsw

    _, key, entry_json, refs = row
    try:
        entry = orjson.loads(unpack(entry_json))
        if not isinstance(entry, dict) or not isinstance(key, str):
            return False
        blob_refs = orjson.loads(refs) if refs else {}
    except (ValueError, zlib.error):
        return False
    broken = False
    for name, digest in blob_refs.items():
        try:
            entry[name] = _blob(conn, digest)
        except (apsw.Error, IndexError, ValueError):
            entry.pop(name, None)
            broken = True
    out.partial += broken
    current = out.entries.get(key)
    if current is None or sort_time(entry) >= sort_time(current):
        out.entries[key] = load_normalize(entry)
    return True


def _salvage(path: Path) -> _Salvage:
    """Every row of the (moved-aside) database that can still be read.

    A scan of the table runs until the damage stops it; the rows that every-row indexes
    name are then read one by one, so rows behind a damaged page are still found, and the
    rows named by an index but unreadable are counted (and named) as lost.
    """
    import apsw

    out = _Salvage()
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    except apsw.Error as exc:
        out.problems.append(f"cannot be opened: {exc}")
        return out
    try:
        # A truncated file holds fewer pages than its header says, which SQLite refuses
        # as corrupt unless asked to read on; this copy is never written.
        with contextlib.suppress(apsw.Error):
            conn.execute("PRAGMA writable_schema = ON")
        seen: set[int] = set()
        bad: dict[int, str | None] = {}
        for row in _each(conn, f"{_ROW} NOT INDEXED ORDER BY rowid"):
            seen.add(row[0])
            if not _take(conn, row, out):
                bad[row[0]] = row[1] if isinstance(row[1], str) else None
        known = _known_rows(conn)
        for rowid in sorted(set(known) - seen):
            try:
                rows = conn.execute(f"{_ROW} WHERE rowid = ?", (rowid,)).fetchall()
            except apsw.Error:
                bad[rowid] = known[rowid]
                continue
            if rows and not _take(conn, rows[0], out):
                bad[rowid] = known[rowid]
        expected = len(seen | set(known))
        for (count,) in _each(conn, "SELECT row_count FROM stats WHERE id = 1"):
            expected = max(expected, int(count))
        out.unreadable = max(len(bad), expected - (len(seen | set(known)) - len(bad)))
        out.lost_keys = sorted(k for k in bad.values() if k is not None)
        if expected == 0 and not seen:
            out.problems.append("no row of the sessions table could be read")
        return out
    finally:
        conn.close()


def _move_aside(path: Path) -> Path:
    target = path.with_name(f"{path.name}.damaged.{archive_timestamp()}")
    for suffix in ("-wal", "-shm", ""):  # the database last: its WAL goes with it
        source = Path(f"{path}{suffix}")
        try:
            os.rename(source, f"{target}{suffix}")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise os_error(exc, "move aside", source) from exc
    fsync_dir(path.parent)
    return target


def recover_store(
    paths: StorePaths,
    *,
    dry_run: bool = False,
    durability: str = "normal",
    lock_timeout_ms: int = 10_000,
) -> RecoveryReport:
    """Rebuild a damaged ``sessions.sqlite`` from what is readable plus ``sessions.json``.

    Args:
        paths: The agent's store paths.
        dry_run: Salvage from a copy and report; change nothing.
        durability: ``normal`` or ``power`` for the new database.
        lock_timeout_ms: How long to wait for another writer of the new database.

    Returns:
        The report; ``healthy`` when the database reads whole (nothing is changed).

    Raises:
        SessionStoreError: The damaged files cannot be moved aside, or the new database
            cannot be written (the damaged files stay where they were moved).
    """
    from .index.sqlite import SqliteIndex

    path = paths.sqlite_path
    report = RecoveryReport(agentId=paths.agent_id, sqlitePath=str(path), status="no_database")
    if not path.exists():
        return report
    problem = _damage(path)
    if problem is None:
        report.status = "healthy"
        return report
    report.problem = " ".join(problem.split())
    with contextlib.ExitStack() as stack:
        if dry_run:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(f"{path}{suffix}", scratch / f"copy{suffix}")
            salvage = _salvage(scratch / "copy")
        else:
            damaged = _move_aside(path)
            report.damagedPath = str(damaged)
            salvage = _salvage(damaged)
    report.notes += salvage.problems
    merged = dict(salvage.entries)
    source: SourceSnapshot | None = None
    try:
        source = read_source(paths.json_path)
    except MigrationError as exc:
        report.notes.append(f"sessions.json was not used: {exc}")
    from_json = 0
    if source is not None:
        for key, entry in source.entries.items():
            current = merged.get(key)
            if current is None or sort_time(entry) > sort_time(current):
                merged[key] = entry
                from_json += 1
    report.salvaged = len(merged) - from_json
    report.fromJson = from_json
    report.lost = salvage.unreadable
    report.lostKeys = salvage.lost_keys
    report.partial = salvage.partial
    report.sessionCount = len(merged)
    if dry_run:
        report.status = "would_recover"
        return report

    def rebuild(index: SqliteIndex, conn: Any) -> None:
        record = source.record() if source is not None else None
        index.import_into(conn, merged, record=record)

    index = SqliteIndex(
        path,
        agent_id=paths.agent_id,
        durability=durability,
        busy_timeout_ms=lock_timeout_ms,
        on_create=rebuild,
    )
    try:
        if not index.create():
            # Another process created a new database meanwhile: merge into it.
            index.import_entries(merged, record=None, keep_fresher=True)
            report.sessionCount = index.count()
    except SessionStoreError as exc:
        raise SessionStoreError(
            f"cannot rebuild {path}: {exc}; the damaged database is kept at {report.damagedPath}"
        ) from exc
    finally:
        index.close()
    report.status = "recovered"
    return report
