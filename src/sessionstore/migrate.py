"""Migration: ``sessions.json`` -> SQLite hot index, and export back to ``sessions.json``.

The source is never modified. The source is read and validated completely before the
database is touched; every entry is written in one transaction, read back and compared
with the source before the commit, and the migration record (path, size, mtime, sha256,
counts, time) is committed in the same transaction. A crash or error leaves the database
as it was, and a re-run starts over.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .clock import format_utc, now_ms
from .entry import load_normalize, sort_time
from .errors import CorruptStoreError, MigrationError, SessionStoreError
from .files import atomic_write, dumps_pretty, os_error, sha256_hex
from .index.json import parse_store_bytes
from .keys import fold_key
from .layout import StorePaths
from .lockfile import LockFile
from .split import peek_database, source_changed, split_warning
from .version import __version__

__all__ = [
    "MigrationResult",
    "SourceSnapshot",
    "export_entries",
    "import_entries",
    "import_on_create",
    "migrate_agent",
    "peek_database",
    "read_source",
    "source_changed",
    "split_warning",
]

if TYPE_CHECKING:
    from .index.sqlite import SqliteIndex

log = logging.getLogger("sessionstore")

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


def import_on_create(json_path: Path) -> Callable[[SqliteIndex, Any], None]:
    """An ``on_create`` for a new ``sessions.sqlite``: import ``json_path`` if it exists.

    The import runs inside the transaction that builds the new database (see
    ``SqliteIndex.create``), so the database never exists without it.
    """

    def create(index: SqliteIndex, conn: Any) -> None:
        source = read_source(json_path)
        if source is None:
            return
        written = index.import_into(conn, source.entries, record=source.record())
        log.info("sessionstore: imported %d sessions from %s", written, json_path)

    return create


def migrate_agent(
    paths: StorePaths,
    *,
    dry_run: bool = False,
    force: bool = False,
    durability: str = "normal",
    progress: Callable[[int, int], None] | None = None,
    lock_timeout_ms: int = 10_000,
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
        lock_timeout_ms: How long to wait for another writer of the database.

    A new database is built under a temporary name and linked into place, so processes
    that create it at once never import over each other and a failure removes only its
    own temporary file; an existing database is imported into inside one write
    transaction, which (without ``force``) first checks that it still holds nothing.

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
                f" {format_utc(record.get('migratedAt'))}; run `migrate --force` to re-import it"
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
        count = len(source.entries)
        result.message = f"Would migrate {count} session{'' if count == 1 else 's'}" + notes
        return result

    total = len(source.entries)
    try:
        written = import_entries(
            paths,
            source.entries,
            record=source.record(),
            force=force,
            durability=durability,
            lock_timeout_ms=lock_timeout_ms,
            progress=(lambda done: progress(done, total)) if progress else None,
        )
    except SessionStoreError as exc:
        if isinstance(exc, MigrationError):
            raise
        raise MigrationError(f"migration of {paths.json_path} failed: {exc}") from exc
    if written is None and not source.entries:
        result.message = "No sessions to migrate" + notes
        return result
    if written is None:
        # Another process wrote sessions (or imported) between our look and our write.
        result.status = "skipped"
        result.message = (
            "another process wrote to the SQLite store meanwhile; nothing was imported (run"
            " `migrate --force` to import sessions.json into it, newer entries are kept)"
        )
        return result
    result.sourceChanged = False
    if not source.entries:
        result.message = "No sessions to migrate" + notes
        return result
    result.status = "migrated"
    result.migratedCount = written
    result.message = f"Migrated {written} session{'' if written == 1 else 's'}" + notes
    if written < total:
        # a --force re-import writes only what differs; say why the count is lower
        result.message += (
            f"; {total - written} of {total} were already up to date (or newer) in the database"
        )
    return result


def import_entries(
    paths: StorePaths,
    entries: dict[str, Entry],
    *,
    record: dict[str, Any],
    force: bool,
    durability: str,
    lock_timeout_ms: int,
    progress: Callable[[int], None] | None,
    record_key: str = "migration",
) -> int | None:
    """Import ``entries`` into the store's ``sessions.sqlite``, all or nothing, verified.

    A database that does not exist yet is built with them (under a temporary name, then
    linked into place, so concurrent first imports never import over each other); an
    existing one takes them in one transaction.

    Args:
        paths: The store's files.
        entries: Canonical key -> normalised entry.
        record: What is kept in the database's meta table under ``record_key``.
        force: Import into a database that already holds sessions (newer entries there
            are kept); without it, such a database is left alone.
        durability: ``normal`` or ``power``.
        lock_timeout_ms: How long to wait for the database's writers.
        progress: Called with the number of entries written so far.
        record_key: The meta key of the record.

    Returns:
        The number of entries written; None when the database already held sessions (or
        an import) and ``force`` was not given.
    """
    from .index.sqlite import SqliteIndex

    imported: list[int] = []

    def import_new(index: SqliteIndex, conn: Any) -> None:
        imported.append(
            index.import_into(
                conn, entries, record=record, progress=progress, record_key=record_key
            )
        )

    index = SqliteIndex(
        paths.sqlite_path,
        agent_id=paths.agent_id,
        durability=durability,
        busy_timeout_ms=lock_timeout_ms,
        on_create=import_new,
    )
    try:
        if index.create():
            return imported[0]
        return index.import_entries(
            entries,
            record=record,
            keep_fresher=force,
            only_if_new=not force,
            progress=progress,
            record_key=record_key,
        )
    finally:
        index.close()


def _notes(source: SourceSnapshot) -> str:
    notes = []
    if source.folded:
        notes.append(f"{source.folded} mixed-case duplicate keys folded")
    if source.skipped:
        notes.append(
            f"{len(source.skipped)} non-object entries left out: {', '.join(source.skipped[:5])}"
        )
    return f" ({'; '.join(notes)})" if notes else ""


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
    data = dumps_pretty(entries, what="entry", keyed=True)
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
