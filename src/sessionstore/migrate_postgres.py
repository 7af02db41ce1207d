"""``migrate --to postgres``: sessions.json or sessions.sqlite into the PostgreSQL store.

The same promises as the SQLite migration: the whole source is read and validated before
anything is written, the agent's entries go in one transaction that verifies each entry
by reading it back, and a migration record is kept (``meta``). Transcript files are then
imported into the transcript table, one transaction per transcript (a transcript already
in the table is left as it is), unless the user keeps them as files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .clock import now_ms
from .errors import (
    InvalidArgumentError,
    MigrationError,
    SessionStoreError,
    TranscriptConflictError,
)
from .files import atomic_write, dumps_compact, sha256_hex
from .index.postgres import PostgresIndex
from .layout import StorePaths
from .migrate import MigrationResult, read_source
from .transcripts.naming import is_session_id, transcript_path
from .transcripts.postgres import PostgresTranscript
from .version import __version__

__all__ = ["export_transcripts", "migrate_to_postgres"]

Entry = dict[str, Any]


def _from_sqlite(path: Path) -> tuple[dict[str, Entry], dict[str, Any]] | None:
    from .index.sqlite import SqliteIndex

    if not path.exists():
        return None
    index = SqliteIndex(path, agent_id="", read_only=True)
    try:
        entries = index.load_all()
    finally:
        index.close()
    data = path.read_bytes()
    record = {
        "sourcePath": str(path),
        "sourceBytes": len(data),
        "sourceMtimeMs": os.stat(path).st_mtime_ns // 1_000_000,
        "sha256": sha256_hex(data),
        "entryCount": len(entries),
        "migratedAt": now_ms(),
        "tool": f"sessionstore {__version__}",
    }
    return entries, record


def _import_transcripts(
    index: PostgresIndex, sessions_dir: Path, entries: dict[str, Entry]
) -> tuple[int, int]:
    """Import each entry's ``<sessionId>.jsonl``; returns (imported, already there)."""
    imported = kept = 0
    seen: set[str] = set()
    for entry in entries.values():
        sid = entry.get("sessionId")
        if not is_session_id(sid) or sid in seen:
            continue
        assert isinstance(sid, str)
        seen.add(sid)
        path = transcript_path(sessions_dir, sid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise MigrationError(f"cannot read {path}: {exc.strerror}") from exc
        lines = []
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # a torn or malformed line: readers skip it too
            if isinstance(parsed, dict):
                lines.append(parsed)
        try:
            PostgresTranscript(index, sid).import_lines(lines)
            imported += 1
        except InvalidArgumentError:
            kept += 1
    return imported, kept


def migrate_to_postgres(
    paths: StorePaths,
    index: PostgresIndex,
    *,
    source: str = "json",
    dry_run: bool = False,
    force: bool = False,
    keep_transcript_files: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationResult:
    """Migrate one agent's sessions.json or sessions.sqlite into ``index``.

    Args:
        paths: The agent's store paths (the source files).
        index: The agent's PostgreSQL index.
        source: ``json`` or ``sqlite``.
        dry_run: Read and validate the source; write nothing.
        force: Import into an agent that already holds sessions or a migration record
            (entries newer in PostgreSQL are kept).
        keep_transcript_files: Leave the .jsonl transcripts as files.
        progress: Called as ``progress(done, total)`` while writing.

    Returns:
        What happened.

    Raises:
        MigrationError: The source cannot be read, or verification failed (nothing of
            the agent's entries was written).
    """
    source_path = paths.json_path if source == "json" else paths.sqlite_path
    result = MigrationResult(
        agentId=paths.agent_id,
        jsonPath=str(source_path),
        sqlitePath=index.location,
        status="no_data",
    )
    if source == "json":
        snapshot = read_source(paths.json_path)
        loaded = (snapshot.entries, snapshot.record()) if snapshot is not None else None
    else:
        try:
            loaded = _from_sqlite(paths.sqlite_path)
        except SessionStoreError as exc:
            raise MigrationError(f"cannot migrate {paths.sqlite_path}: {exc}") from exc
    if loaded is None:
        result.message = f"No {source_path.name} at {source_path}"
        return result
    entries, record = loaded
    result.sourceEntries = len(entries)
    result.existingCount = index.count()
    if not entries:
        result.message = "No sessions to migrate"
        return result
    if dry_run:
        result.status = "would_migrate"
        result.migratedCount = len(entries)
        result.message = f"Would migrate {len(entries)} sessions into {index.location}"
        return result
    total = len(entries)
    try:
        written = index.import_entries(
            entries,
            record=record,
            keep_fresher=force,
            only_if_new=not force,
            progress=(lambda done: progress(done, total)) if progress else None,
        )
    except SessionStoreError as exc:
        if isinstance(exc, MigrationError):
            raise
        raise MigrationError(f"migration of {source_path} failed: {exc}") from exc
    if written is None:
        result.status = "skipped"
        result.message = (
            f"the PostgreSQL store already holds sessions of {paths.agent_id} (or a migration);"
            " run `migrate --force` to import into it (newer entries there are kept)"
        )
        return result
    result.status = "migrated"
    result.migratedCount = written
    result.message = f"Migrated {written} sessions"
    if not keep_transcript_files:
        imported, kept = _import_transcripts(index, paths.sessions_dir, entries)
        result.message += f"; {imported} transcripts imported"
        if kept:
            result.message += f" ({kept} already in the table, left as they were)"
    else:
        result.message += (
            "; transcripts left as files: set postgres.transcripts to files"
            " (SESSIONSTORE_PG_TRANSCRIPTS=files) for the store to use them"
        )
    return result


def export_transcripts(
    index: PostgresIndex, entries: Mapping[str, Mapping[str, Any]], directory: Path
) -> int:
    """Write the transcripts of ``entries`` held in the table as ``<sessionId>.jsonl``.

    A file that exists with the same lines is left alone; one with other contents is
    kept and reported.

    Returns:
        The number of transcript files written.

    Raises:
        TranscriptConflictError: A file to write exists with other contents.
    """
    written = 0
    for entry in entries.values():
        sid = entry.get("sessionId")
        if not is_session_id(sid):
            continue
        assert isinstance(sid, str)
        lines = PostgresTranscript(index, sid).entries()
        if not lines:
            continue
        data = b"".join(dumps_compact(line) + b"\n" for line in lines)
        path = transcript_path(directory, sid)
        if path.exists():
            if path.read_bytes() != data:
                raise TranscriptConflictError(
                    f"{path} exists with other contents; it was kept (move it away and export"
                    " again)",
                    path=str(path),
                )
            continue
        atomic_write(path, data)
        written += 1
    return written
