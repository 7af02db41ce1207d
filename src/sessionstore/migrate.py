"""Migration: ``sessions.json`` -> SQLite hot index, and export back to ``sessions.json``.

The source is never modified. The source is read and validated completely before the
database is touched; every entry is written in one transaction, read back and compared
with the source before the commit, and the migration record (path, size, mtime, sha256,
counts, time) is committed in the same transaction. A crash or error leaves the database
as it was, and a re-run starts over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from . import __version__
from .entry import load_normalize, now_ms, sort_time
from .errors import CorruptStoreError, MigrationError, SessionStoreError
from .files import atomic_write, dumps_pretty, os_error, sha256_hex
from .index.json import parse_store_bytes
from .keys import fold_key
from .layout import StorePaths
from .lockfile import LockFile

__all__ = [
    "MigrationResult",
    "SourceSnapshot",
    "export_entries",
    "migrate_agent",
    "read_source",
    "source_changed",
]

Status = Literal["migrated", "skipped", "no_data", "would_migrate", "failed"]
Entry = dict[str, Any]


@dataclass
class MigrationResult:
    """The outcome of migrating one agent (the PR's ``migrate --json`` row shape).

    Attributes:
        agentId: The agent.
        jsonPath: The source ``sessions.json``.
        sqlitePath: The target database.
        status: ``migrated``, ``skipped``, ``no_data``, ``would_migrate`` or ``failed``.
        migratedCount: Entries written (or that would be written, for a dry run).
        existingCount: Entries in the database before the run.
        message: A sentence for people.
        sourceEntries: Entries in the source after folding case variants.
        sourceChanged: For a database with a migration record: whether sessions.json
            changed since.
    """

    agentId: str
    jsonPath: str
    sqlitePath: str
    status: Status
    migratedCount: int = 0
    existingCount: int = 0
    message: str = ""
    sourceEntries: int = 0
    sourceChanged: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class SourceSnapshot:
    """A parsed, normalised ``sessions.json``.

    Attributes:
        path: The file.
        size: Its size in bytes.
        mtime_ms: Its modification time (ms).
        sha256: Hex digest of its bytes.
        entries: Canonical key -> normalised entry, case variants folded (freshest wins).
        folded: How many variant keys were folded into another.
        skipped: Keys whose value was not a JSON object (left out, reported).
    """

    path: Path
    size: int
    mtime_ms: int
    sha256: str
    entries: dict[str, Entry]
    folded: int
    skipped: list[str]

    def record(self) -> dict[str, Any]:
        """The migration record kept in the database's meta table."""
        return {
            "sourcePath": str(self.path),
            "sourceBytes": self.size,
            "sourceMtimeMs": self.mtime_ms,
            "sha256": self.sha256,
            "entryCount": len(self.entries),
            "migratedAt": now_ms(),
            "tool": f"sessionstore {__version__}",
        }


def fold_entries(raw: dict[str, Any]) -> tuple[dict[str, Entry], int, list[str]]:
    """Normalise entries and fold mixed-case key variants.

    The freshest ``updatedAt`` wins; on a tie the already-canonical key, then the first seen.
    """
    out: dict[str, Entry] = {}
    origin: dict[str, str] = {}
    folded = 0
    skipped: list[str] = []
    for key, value in raw.items():
        if not isinstance(value, dict):
            skipped.append(key)
            continue
        entry = load_normalize(value)
        canonical = fold_key(key)
        if canonical not in out:
            out[canonical] = entry
            origin[canonical] = key
            continue
        folded += 1
        current = out[canonical]
        newer = sort_time(entry) > sort_time(current)
        tie_to_canonical = sort_time(entry) == sort_time(current) and key == canonical
        if newer or (tie_to_canonical and origin[canonical] != canonical):
            out[canonical] = entry
            origin[canonical] = key
    return out, folded, skipped


def read_source(path: Path) -> SourceSnapshot | None:
    """Read and validate ``sessions.json`` (JSON or JSON5); None when it does not exist.

    Raises:
        MigrationError: The file cannot be read or parsed (with file, position, reason).
    """
    try:
        raw = path.read_bytes()
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MigrationError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = parse_store_bytes(raw, path)
    except CorruptStoreError as exc:
        raise MigrationError(f"cannot migrate: {exc}") from exc
    entries, folded, skipped = fold_entries(data)
    return SourceSnapshot(
        path=path,
        size=len(raw),
        mtime_ms=st.st_mtime_ns // 1_000_000,
        sha256=sha256_hex(raw),
        entries=entries,
        folded=folded,
        skipped=skipped,
    )


def source_changed(record: dict[str, Any] | None, json_path: Path) -> bool | None:
    """Whether ``sessions.json`` differs from what a migration record describes.

    None when there is no record or the file no longer exists.
    """
    if not record:
        return None
    try:
        st = os.stat(json_path)
    except OSError:
        return None
    if st.st_size != record.get("sourceBytes"):
        return True
    try:
        digest = sha256_hex(json_path.read_bytes())
    except OSError:
        return None
    return bool(digest != record.get("sha256"))


def peek_database(path: Path) -> tuple[int, dict[str, Any] | None] | None:
    """(entry count, migration record) of an existing database; None when there is none.

    Reads without writing anything (no ``-wal``/``-shm`` files are created).
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    import apsw  # only here: the rest of this module works without the SQLite driver

    live_wal = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    uri = f"file:{path}?{'mode=ro' if live_wal else 'immutable=1'}"
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    except apsw.Error as exc:
        raise SessionStoreError(f"cannot read {path}: {exc}") from exc
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "sessions" not in tables:
            return 0, None
        sql = (
            "SELECT row_count FROM stats" if "stats" in tables else "SELECT count(*) FROM sessions"
        )
        count: Any = conn.execute(sql).fetchall()[0][0]
        record = None
        if "meta" in tables:
            rows: list[Any] = conn.execute(
                "SELECT value FROM meta WHERE key = 'migration'"
            ).fetchall()
            record = orjson.loads(rows[0][0]) if rows else None
        return int(count), record
    except apsw.Error as exc:
        raise SessionStoreError(f"cannot read {path}: {exc}") from exc
    finally:
        conn.close()


def migrate_agent(
    paths: StorePaths,
    *,
    dry_run: bool = False,
    force: bool = False,
    durability: str = "normal",
    progress: Callable[[int, int], None] | None = None,
) -> MigrationResult:
    """Migrate one agent's ``sessions.json`` into ``sessions.sqlite``.

    Args:
        paths: The agent's store paths.
        dry_run: Read and validate everything, report what would happen, write nothing.
        force: Re-import even when the database already holds sessions or a migration
            of an older sessions.json; a stored entry with a newer ``updatedAt`` than the
            source's is kept.
        durability: ``normal`` or ``power`` for the database.
        progress: Called as ``progress(done, total)`` while writing.

    Returns:
        What happened; ``status`` is never ``failed`` here (failures raise).

    Raises:
        MigrationError: The source cannot be read or parsed, or verification failed.
            Nothing was written.
    """
    result = MigrationResult(
        agentId=paths.agent_id,
        jsonPath=str(paths.json_path),
        sqlitePath=str(paths.sqlite_path),
        status="no_data",
    )
    source = read_source(paths.json_path)
    peek = peek_database(paths.sqlite_path)
    existing, record = peek if peek is not None else (0, None)
    result.existingCount = existing
    result.sourceChanged = source_changed(record, paths.json_path)
    if source is None:
        result.message = f"No sessions.json at {paths.json_path}"
        return result
    result.sourceEntries = len(source.entries)
    notes = _notes(source)
    if not source.entries:
        result.message = "No sessions to migrate" + notes
        if dry_run or (record is not None and record.get("sha256") == source.sha256):
            return result
    elif record is not None and not force:
        result.status = "skipped"
        if record.get("sha256") == source.sha256:
            result.message = (
                f"Already migrated ({record.get('entryCount')} sessions); sessions.json is"
                " unchanged since"
            )
        else:
            result.message = (
                "sessions.json changed since the migration at"
                f" {_when(record.get('migratedAt'))}; run `migrate --force` to re-import it"
            )
        return result
    elif existing > 0 and not force:
        result.status = "skipped"
        result.message = (
            f"SQLite store already has {existing} sessions; run `migrate --force` to import"
            " sessions.json into it (newer entries in the database are kept)"
        )
        return result
    if dry_run:
        result.status = "would_migrate"
        result.migratedCount = len(source.entries)
        result.message = (
            f"Would migrate {len(source.entries)} sessions from {paths.json_path} to"
            f" {paths.sqlite_path}" + notes
        )
        return result

    from .index.sqlite import SqliteIndex

    index = SqliteIndex(paths.sqlite_path, agent_id=paths.agent_id, durability=durability)
    try:
        total = len(source.entries)
        written = index.import_entries(
            source.entries,
            record=source.record(),
            keep_fresher=force,
            progress=(lambda done: progress(done, total)) if progress else None,
        )
    except SessionStoreError as exc:
        if isinstance(exc, MigrationError):
            raise
        raise MigrationError(f"migration of {paths.json_path} failed: {exc}") from exc
    finally:
        index.close()
    result.sourceChanged = False
    if not source.entries:
        result.message = "No sessions to migrate" + notes
        return result
    result.status = "migrated"
    result.migratedCount = written
    result.message = f"Migrated {written} sessions" + notes
    if written < total:
        # a --force re-import writes only what differs; say why the count is lower
        result.message += (
            f"; {total - written} of {total} were already up to date (or newer) in the database"
        )
    return result


def _notes(source: SourceSnapshot) -> str:
    notes = []
    if source.folded:
        notes.append(f"{source.folded} mixed-case duplicate keys folded")
    if source.skipped:
        notes.append(
            f"{len(source.skipped)} non-object entries left out: {', '.join(source.skipped[:5])}"
        )
    return f" ({'; '.join(notes)})" if notes else ""


def _when(ms: object) -> str:
    if not isinstance(ms, (int, float)):
        return "an unknown time"
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def export_entries(
    entries: dict[str, Any], out: Path, *, overwrite: bool = False, lock_timeout_ms: int = 10_000
) -> int:
    """Write entries as a ``sessions.json`` (OpenClaw's exact layout, mode 0600).

    The write takes ``<out>.lock`` as every ``sessions.json`` writer does (a gateway may be
    using that file) and replaces the file atomically.

    Args:
        entries: The entries by key.
        out: The file to write.
        overwrite: Replace ``out`` if it exists.
        lock_timeout_ms: How long to wait for ``<out>.lock``.

    Raises:
        LockTimeoutError: Another process held ``<out>.lock`` for the whole timeout.
        SessionStoreError: ``out`` exists and ``overwrite`` is False, it is being written
            by a callback of this thread, or the write failed.
    """
    data = dumps_pretty(entries)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "create directory", out.parent) from exc
    lock = LockFile(out, timeout_ms=lock_timeout_ms, queue=True)
    if lock.held_here():
        raise SessionStoreError(
            f"{out} is being written by a callback of this thread; export it after that write"
        )
    with lock.hold():
        if out.exists() and not overwrite:
            raise SessionStoreError(f"{out} already exists; pass --force to overwrite it")
        atomic_write(out, data, mode=0o600, before_replace=lock.check_held)
    return len(entries)
