"""Whether a store is split: its ``sessions.json`` and ``sessions.sqlite`` disagreeing.

Every open of a sqlite store checks this (a ``stat`` of ``sessions.json`` against the
migration record), so it lives apart from the migration itself: opening a store must not
import what only ``migrate`` needs. ``migrate`` re-exports these names.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .args import as_number
from .clock import format_utc
from .errors import CorruptStoreError, SessionStoreError
from .files import sha256_hex, sqlite_uri

if TYPE_CHECKING:
    from .layout import StorePaths

__all__ = ["peek_database", "source_changed", "split_warning"]


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
    if st.st_mtime_ns // 1_000_000 == record.get("sourceMtimeMs"):
        return False  # same size and time: the bytes are taken to be the ones imported
    try:
        digest = sha256_hex(json_path.read_bytes())
    except OSError:
        return None
    return bool(digest != record.get("sha256"))


def _holds_sessions(path: Path, size: int) -> bool:
    """Whether a sessions.json of ``size`` bytes holds anything but an empty store."""
    if size > 64:
        return True
    try:
        return path.read_bytes().strip() not in (b"", b"{}", b"[]")
    except OSError:
        return False


def split_warning(
    paths: StorePaths, effective: str, record: dict[str, Any] | None = None
) -> str | None:
    """Why ``sessions.json`` and ``sessions.sqlite`` of one store may disagree, or None.

    A store is split when the file it does not use holds sessions it cannot see: for a
    sqlite store, a ``sessions.json`` that was never imported or changed after its import
    (an OpenClaw gateway still writing it); for a json store, a ``sessions.sqlite`` written
    after ``sessions.json``.

    Args:
        paths: The store's paths.
        effective: The backend in use (``sqlite`` or ``json``).
        record: For a sqlite store, its migration record.
    """
    json_path, sqlite_path = paths.json_path, paths.sqlite_path
    if effective == "sqlite":
        try:
            st = os.stat(json_path)
        except OSError:
            return None
        if record is None:
            if not _holds_sessions(json_path, st.st_size):
                return None
            return (
                f"{json_path} holds sessions that were never imported into {sqlite_path}; this"
                " store does not see them - run `sessionstore migrate --force` to merge them"
                " in (the newer updatedAt wins)"
            )
        if not source_changed(record, json_path):
            return None
        return (
            f"{json_path} changed after it was imported into {sqlite_path} (at"
            f" {format_utc(record.get('migratedAt'))}): something still writes it, e.g. an OpenClaw"
            " gateway, and this store does not see those changes - point every writer at one"
            " store, then run `sessionstore migrate --force` to merge (the newer updatedAt wins)"
        )
    if effective != "json":
        return None
    try:
        peek = peek_database(sqlite_path)
    except SessionStoreError as exc:
        return f"{sqlite_path} exists beside {json_path.name} but cannot be read ({exc})"
    if peek is None or peek[0] == 0:
        return None
    count, db_record = peek
    written = 0.0
    for name in (sqlite_path, Path(f"{sqlite_path}-wal")):
        with contextlib.suppress(OSError):
            written = max(written, name.stat().st_mtime)
    try:
        json_mtime = json_path.stat().st_mtime
    except OSError:
        json_mtime = 0.0
    if written <= json_mtime:
        return None
    # Imported from this very sessions.json: split only if the database changed since.
    if (
        db_record is not None
        and source_changed(db_record, json_path) is False
        and count == db_record.get("indexCount")
        and _latest_update(sqlite_path) == db_record.get("indexLatestUpdate")
    ):
        return None
    return (
        f"{sqlite_path} holds {count} sessions and was written after {json_path.name}; this"
        " store reads only sessions.json and does not see them - open the store as sqlite and"
        " run `sessionstore migrate --force` to merge sessions.json into it, or move"
        " sessions.sqlite away if it is stale"
    )


@contextlib.contextmanager
def _read_database(path: Path) -> Iterator[Any]:
    """A read-only connection to ``path`` that creates no file (no ``-wal``/``-shm``)."""
    import apsw  # only here: the rest of this module works without the SQLite driver

    live_wal = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    uri = sqlite_uri(path, "mode=ro" if live_wal else "immutable=1")
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    except apsw.Error as exc:
        raise SessionStoreError(f"cannot read {path}: {exc}") from exc
    try:
        yield conn
    except apsw.Error as exc:
        raise SessionStoreError(f"cannot read {path}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise CorruptStoreError(
            f"{path}: its migration record does not decode ({exc}); run `sessionstore doctor`",
            path=str(path),
        ) from exc
    finally:
        conn.close()


def peek_database(
    path: Path, record_key: str = "migration"
) -> tuple[int, dict[str, Any] | None] | None:
    """(entry count, migration record) of an existing database; None when there is none.

    Reads without writing anything (no ``-wal``/``-shm`` files are created).

    Args:
        path: The ``sessions.sqlite``.
        record_key: The ``meta`` key of the record to return.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    with _read_database(path) as conn:
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
                "SELECT value FROM meta WHERE key = ?", (record_key,)
            ).fetchall()
            record = orjson.loads(rows[0][0]) if rows else None
        return int(count), record


def _latest_update(path: Path) -> int | float | None:
    """The newest ``updatedAt`` in a database (through its index), read-only."""
    with _read_database(path) as conn:
        rows: list[Any] = conn.execute("SELECT max(updated_at) FROM sessions").fetchall()
    value = rows[0][0] if rows else None
    return as_number(value)
