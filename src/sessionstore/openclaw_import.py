"""Import of an OpenClaw 2026.8+ ``openclaw-agent.sqlite`` into this store.

The source is read through :class:`~sessionstore.openclaw_db.OpenClawDb` (read-only,
never written) and imported all or nothing:

1. every transcript is decoded, validated and written under a temporary name in a private
   staging directory inside the sessions dir (mode 0600, synced); a damaged row or archive
   stops the import here, before anything is visible;
2. each transcript is linked to its final name in the sessions dir: a name that already
   holds the same bytes is left as it is, one holding other bytes stops the import
   (:class:`~sessionstore.errors.TranscriptConflictError`); nothing is ever overwritten;
3. the entries, ``sessionFile`` pointing at their transcript, are written into
   ``sessions.sqlite`` in one transaction, each read back and compared before the commit,
   with the record of the import (the source's path, size, mtime, sha256, schema version,
   counts, fingerprint, time) in the database's ``meta`` table.

A failure in 2 or 3 removes the files 2 linked, the staging directory and any directory
the import created. A crash between 2 and 3 leaves transcripts no entry names (the doctor
reports them as orphans); a re-run finds them identical and goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import functools
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .clock import format_utc, now_ms
from .errors import MigrationError, SessionStoreError, TranscriptConflictError
from .files import ensure_private_dir, fsync_dir, os_error, write_all
from .layout import StorePaths
from .migrate import MigrationResult, fold_entries, import_entries, peek_database
from .openclaw_db import (
    DbSnapshot,
    OpenClawDb,
    TranscriptCounts,
    TranscriptPlan,
    db_changed_since,
    file_facts,
    openclaw_db_path,
)
from .version import __version__

if TYPE_CHECKING:
    from .index.base import IndexBackend

__all__ = [
    "RECORD_KEY",
    "OpenClawImportResult",
    "import_record",
    "migrate_openclaw_db",
    "openclaw_db_status",
    "openclaw_db_warning",
]

log = logging.getLogger("sessionstore")

RECORD_KEY: Final = "openclaw_db_import"
STAGING_PREFIX: Final = ".openclaw-import."
Entry = dict[str, Any]


@dataclass
class OpenClawImportResult(MigrationResult):
    """The outcome of importing one agent's OpenClaw database (``migrate --json`` row).

    The fields of :class:`~sessionstore.migrate.MigrationResult` (``jsonPath`` is the
    store's ``sessions.json`` path, as for every migration), plus:

    Attributes:
        openclawDbPath: The source database.
        schemaVersion: Its schema version, once read.
        transcriptCount: Transcripts of live sessions (written, or there already).
        archiveCount: Older generations and deleted sessions, written as ``.reset.``/
            ``.deleted.`` archives.
        eventCount: Transcript lines from the database (headers added not counted).
    """

    openclawDbPath: str = ""
    schemaVersion: int | None = None
    transcriptCount: int = 0
    archiveCount: int = 0
    eventCount: int = 0


def _record(snap: DbSnapshot, facts: dict[str, Any], entries: int, counts: dict[str, int]) -> Entry:
    return {
        "source": "openclaw-db",
        "sourcePath": str(snap.path),
        **facts,
        "schemaVersion": snap.version,
        "appVersion": snap.meta.get("app_version"),
        "sourceAgentId": snap.meta.get("agent_id"),
        "entryCount": entries,
        "placeholderRows": snap.placeholders,
        **counts,
        "fingerprint": snap.fingerprint,
        "migratedAt": now_ms(),
        "tool": f"sessionstore {__version__}",
    }


class _Staging:
    """A private directory in the sessions dir holding transcripts until they are linked."""

    def __init__(self, sessions_dir: Path) -> None:
        self.sessions_dir = sessions_dir
        self.created_dirs = _missing_dirs(sessions_dir)
        self.dir = sessions_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}.tmp"
        self.linked: list[tuple[Path, int]] = []
        self._lock_fd = -1
        try:
            ensure_private_dir(sessions_dir)
            _remove_stale_staging(sessions_dir)
            self.dir.mkdir(mode=0o700)
            # Held until the import ends: a staging dir whose lock is free is stale.
            self._lock_fd = os.open(
                self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except BaseException as exc:
            self.undo()
            if isinstance(exc, OSError):
                raise os_error(exc, "create", self.dir) from exc
            raise

    def write(
        self, name: str, produce: Callable[[Callable[[bytes], None]], TranscriptCounts]
    ) -> TranscriptCounts:
        """Create ``name`` in the staging dir (0600) from what ``produce`` writes; synced."""
        path = self.dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise os_error(exc, "create", path) from exc
        buffer: list[bytes] = []
        size = 0

        def sink(data: bytes) -> None:
            nonlocal size
            buffer.append(data)
            size += len(data)
            if size >= 1 << 20:
                flush()

        def flush() -> None:
            nonlocal size
            write_all(fd, b"".join(buffer))
            buffer.clear()
            size = 0

        try:
            result = produce(sink)
            flush()
            os.fsync(fd)
        except OSError as exc:
            raise os_error(exc, "write", path) from exc
        finally:
            os.close(fd)
        return result

    def link(self, name: str) -> bool:
        """Link a staged file to its final name; False when that name holds it already.

        Raises:
            TranscriptConflictError: The final name exists with other contents.
        """
        staged = self.dir / name
        final = self.sessions_dir / name
        for _ in range(2):
            if os.path.lexists(final):
                if _same_bytes(final, staged):
                    return False
                raise TranscriptConflictError(
                    f"{final} already exists and differs from the transcript in the OpenClaw"
                    " database; it was left as it is and nothing was imported - move it aside"
                    " (or remove it if it is not needed) and run the import again",
                    path=str(final),
                )
            try:
                os.link(staged, final)
            except FileExistsError:
                continue  # created meanwhile: compare with it
            except OSError as exc:
                raise os_error(exc, "create", final) from exc
            self.linked.append((final, os.stat(staged).st_ino))
            return True
        raise SessionStoreError(f"{final} keeps appearing and disappearing; retry the import")

    def undo(self) -> None:
        """Remove the linked files (those still ours) and every directory this created."""
        for final, inode in self.linked:
            with contextlib.suppress(OSError):
                if os.stat(final).st_ino == inode:
                    final.unlink()
        self.linked.clear()
        self.close()
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only while empty

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the sessions dir's import lock: one import links and commits at a time.

        Without it, an import that lost the race to another (and so imports nothing) could
        remove a transcript it linked first that the winner's entries now name.
        """
        try:
            fd = os.open(self.sessions_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise os_error(exc, "open", self.sessions_dir) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, outermost first."""
    missing: list[Path] = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return list(reversed(missing))


def _remove_stale_staging(sessions_dir: Path) -> None:
    """Remove staging dirs of imports that died (their lock is free)."""
    try:
        names = [n for n in os.listdir(sessions_dir) if n.startswith(STAGING_PREFIX)]
    except OSError:
        return
    for name in names:
        path = sessions_dir / name
        try:
            fd = os.open(path / ".lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            shutil.rmtree(path, ignore_errors=True)  # died before taking its lock
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a running import
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if not a.is_file() or a.is_symlink():
            return False
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _validate_all(db: OpenClawDb, snap: DbSnapshot) -> dict[str, int]:
    """Read and check every transcript without writing anything (a dry run)."""
    counts = {"transcriptCount": 0, "archiveCount": 0, "eventCount": 0}
    for plan in snap.transcripts:
        got = db.read_transcript(plan, lambda _line: None)
        _count(counts, plan, got)
    return counts


def _count(counts: dict[str, int], plan: TranscriptPlan, got: TranscriptCounts) -> None:
    counts["transcriptCount" if plan.kind == "live" else "archiveCount"] += 1
    counts["eventCount"] += got.events


def _notes(snap: DbSnapshot, counts: dict[str, int], folded: int) -> str:
    notes = []
    if counts["transcriptCount"] or counts["archiveCount"]:
        notes.append(
            f"{counts['transcriptCount']} transcripts, {counts['eventCount']} events"
            + (
                f", {counts['archiveCount']} older generations as archives"
                if counts["archiveCount"]
                else ""
            )
        )
    if snap.placeholders:
        notes.append(f"{snap.placeholders} placeholder rows left out")
    if folded:
        notes.append(f"{folded} mixed-case duplicate keys folded")
    return f" ({'; '.join(notes)})" if notes else ""


def migrate_openclaw_db(
    paths: StorePaths,
    db_path: Path,
    *,
    dry_run: bool = False,
    force: bool = False,
    durability: str = "normal",
    progress: Callable[[int, int], None] | None = None,
    lock_timeout_ms: int = 10_000,
    home: Path | None = None,
) -> OpenClawImportResult:
    """Import one agent's ``openclaw-agent.sqlite`` into its ``sessions.sqlite``.

    Args:
        paths: The agent's store paths (transcripts go to ``paths.sessions_dir``).
        db_path: The OpenClaw database.
        dry_run: Read and validate everything (every transcript decoded), write nothing.
        force: Import even when the store already holds sessions or an earlier import;
            a stored entry with a newer ``updatedAt`` is kept.
        durability: ``normal`` or ``power`` for the database.
        progress: Called as ``progress(done, total)`` over transcripts, then entries.
        lock_timeout_ms: How long to wait for the gateway (reading) and for another
            writer of ``sessions.sqlite``.
        home: The ``cwd`` of transcript headers written for sessions that name no
            workspace (default: the user's home).

    Returns:
        What happened; ``status`` is never ``failed`` here (failures raise).

    Raises:
        UnsupportedSourceError: The database's schema version is not 14 to 25.
        CorruptSourceError: A row or archive of a session is damaged (the session named).
        TranscriptConflictError: A transcript file exists with other contents.
        MigrationError: Any other failure; nothing was written.
    """
    result = OpenClawImportResult(
        agentId=paths.agent_id,
        jsonPath=str(paths.json_path),
        sqlitePath=str(paths.sqlite_path),
        status="no_data",
        openclawDbPath=str(db_path),
    )
    if not db_path.is_file():
        result.message = f"No {db_path.name} at {db_path}"
        return result
    peek = peek_database(paths.sqlite_path, RECORD_KEY)
    existing, record = peek if peek is not None else (0, None)
    result.existingCount = existing
    facts = file_facts(db_path, digest=False)
    with OpenClawDb(db_path, busy_timeout_ms=lock_timeout_ms, home=home) as db:
        snap = db.snapshot()
        result.schemaVersion = snap.version
        result.sourceEntries = len(snap.entries)
        result.sourceChanged = (
            None if record is None else record.get("fingerprint") != snap.fingerprint
        )
        empty = not snap.entries and not snap.transcripts
        unchanged = record is not None and record.get("fingerprint") == snap.fingerprint
        if empty:
            result.message = "No sessions to import" + (
                f" ({snap.placeholders} placeholder rows left out)" if snap.placeholders else ""
            )
            if dry_run or unchanged:
                return result
        elif record is not None and not force:
            result.status = "skipped"
            result.message = (
                f"Already imported ({record.get('entryCount')} sessions); {db_path.name} is"
                " unchanged since"
                if unchanged
                else f"{db_path.name} changed since the import at"
                f" {format_utc(record.get('migratedAt'))}; run `migrate --from openclaw-db --force`"
                " to import it again (newer entries in the store are kept)"
            )
            return result
        elif existing > 0 and not force:
            result.status = "skipped"
            result.message = (
                f"SQLite store already has {existing} sessions; run `migrate --from openclaw-db"
                " --force` to import into it (newer entries in the store are kept)"
            )
            return result
        if dry_run:
            counts = _validate_all(db, snap)
            _, folded, _ = fold_entries(snap.entries)
            result.status = "would_migrate"
            result.migratedCount = len(snap.entries)
            result.transcriptCount = counts["transcriptCount"]
            result.archiveCount = counts["archiveCount"]
            result.eventCount = counts["eventCount"]
            result.message = (
                f"Would import {len(snap.entries)} sessions from {db_path} to"
                f" {paths.sqlite_path}" + _notes(snap, counts, folded)
            )
            return result
        try:
            staging = _Staging(paths.sessions_dir)
        except SessionStoreError as exc:
            raise MigrationError(f"import of {db_path} failed: {exc}") from exc
        try:
            counts, files = _stage(db, snap, staging, progress)
        except BaseException:
            staging.undo()
            raise
    # The source is closed: from here on only this store's files are written.
    try:
        facts["sha256"] = file_facts(db_path)["sha256"]
        written = _link_and_import(
            paths,
            snap,
            staging,
            files,
            record=_record(snap, facts, len(snap.entries), counts),
            force=force,
            durability=durability,
            lock_timeout_ms=lock_timeout_ms,
            progress=progress,
            offset=len(snap.transcripts),
        )
    except BaseException as exc:
        staging.undo()
        if isinstance(exc, MigrationError) or not isinstance(exc, SessionStoreError):
            raise
        raise MigrationError(f"import of {db_path} failed: {exc}") from exc
    staging.close()
    result.transcriptCount = counts["transcriptCount"]
    result.archiveCount = counts["archiveCount"]
    result.eventCount = counts["eventCount"]
    if written is None:
        result.status = "skipped"
        result.message = (
            "another process wrote to the SQLite store meanwhile; nothing was imported (run"
            " `migrate --from openclaw-db --force` to import into it, newer entries are kept)"
        )
        return result
    result.sourceChanged = False
    _, folded, _ = fold_entries(snap.entries)
    if empty:
        return result
    result.status = "migrated"
    result.migratedCount = written
    total = len(snap.entries)
    result.message = f"Imported {written} session{'' if written == 1 else 's'}" + _notes(
        snap, counts, folded
    )
    if written < total:
        result.message += (
            f"; {total - written} of {total} were already up to date (or newer) in the store"
        )
    return result


def _stage(
    db: OpenClawDb,
    snap: DbSnapshot,
    staging: _Staging,
    progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, int], dict[str, Path]]:
    """Write every transcript into the staging dir; returns counts and key -> final path."""
    counts = {"transcriptCount": 0, "archiveCount": 0, "eventCount": 0}
    files: dict[str, Path] = {}
    total = len(snap.transcripts) + len(snap.entries)
    for done, plan in enumerate(snap.transcripts, 1):
        got = staging.write(plan.file_name, functools.partial(db.read_transcript, plan))
        _count(counts, plan, got)
        for key in plan.keys:
            files[key] = staging.sessions_dir / plan.file_name
        if progress is not None and (done % 100 == 0 or done == len(snap.transcripts)):
            progress(done, total)
    return counts, files


def _with_session_files(entries: dict[str, Entry], files: dict[str, Path]) -> dict[str, Entry]:
    """Entries whose ``sessionFile`` names the transcript the import wrote for them.

    An entry the database holds no transcript for loses its ``sessionFile``: from 2026.8
    the transcript lives in the database, so a path left in the entry names a file that
    was archived or never existed (and would read as a missing transcript, which
    ``cleanup --fix-missing`` prunes).
    """
    out: dict[str, Entry] = {}
    for key, entry in entries.items():
        final = files.get(key)
        if final is not None:
            out[key] = {**entry, "sessionFile": str(final)}
        else:
            out[key] = {k: v for k, v in entry.items() if k != "sessionFile"}
    return out


def _link_and_import(
    paths: StorePaths,
    snap: DbSnapshot,
    staging: _Staging,
    files: dict[str, Path],
    *,
    record: Entry,
    force: bool,
    durability: str,
    lock_timeout_ms: int,
    progress: Callable[[int, int], None] | None,
    offset: int,
) -> int | None:
    with staging.exclusive():
        for plan in snap.transcripts:
            staging.link(plan.file_name)
        fsync_dir(paths.sessions_dir)
        entries, _, _ = fold_entries(_with_session_files(snap.entries, files))
        total = offset + len(entries)
        written = import_entries(
            paths,
            entries,
            record=record,
            force=force,
            durability=durability,
            lock_timeout_ms=lock_timeout_ms,
            progress=(lambda done: progress(offset + done, total)) if progress else None,
            record_key=RECORD_KEY,
        )
        if written is None:
            staging.undo()  # nothing was imported: take the transcripts back out
        return written


# --- what store-info and the doctor say ------------------------------------------------------


def import_record(index: IndexBackend) -> dict[str, Any] | None:
    """The record of the last import of ``openclaw-agent.sqlite`` into ``index``, if any.

    Only a sqlite index can hold one (the import needs the SQLite driver).
    """
    if index.store_type != "sqlite":
        return None
    from .index.sqlite import SqliteIndex

    return index.migration_record(RECORD_KEY) if isinstance(index, SqliteIndex) else None


def openclaw_db_status(
    state_dir: Path, agent_id: str, record: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Whether the agent's ``openclaw-agent.sqlite`` was imported (None when there is none).

    Returns:
        ``{"path", "imported", "importedAt", "changedSinceImport"}``; ``changedSinceImport``
        is None when it was never imported or cannot be read.
    """
    path = openclaw_db_path(state_dir, agent_id)
    if not path.is_file():
        return None
    return {
        "path": str(path),
        "imported": record is not None,
        "importedAt": record.get("migratedAt") if record else None,
        "changedSinceImport": db_changed_since(record, path) if record else None,
    }


def openclaw_db_warning(status: dict[str, Any] | None) -> str | None:
    """A sentence for store-info and the doctor when the database needs an import."""
    if status is None:
        return None
    if not status["imported"]:
        return (
            f"{status['path']} (OpenClaw 2026.8+ keeps its sessions there) has not been imported"
            " into this store; run `sessionstore migrate --from openclaw-db`"
        )
    if status["changedSinceImport"]:
        return (
            f"{status['path']} changed after its import at {format_utc(status['importedAt'])}; this"
            " store does not see those changes - run `sessionstore migrate --from openclaw-db"
            " --force` to import it again (newer entries in the store are kept)"
        )
    return None
