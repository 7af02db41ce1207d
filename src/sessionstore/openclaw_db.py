"""Reading OpenClaw's per-agent database, ``openclaw-agent.sqlite`` (OpenClaw 2026.8+).

From 2026.8 OpenClaw keeps an agent's sessions and transcripts in one SQLite file,
``<stateDir>/agents/<agentId>/agent/openclaw-agent.sqlite`` (spec section 15). This module
turns such a file into what this store holds: session entries (the valid
``session_nodes`` rows, with the large fields schema 24 moved to
``session_entry_snapshots`` put back) and pi-format transcript lines (the events of cold
archives, then ``transcript_events`` in ``seq`` order, plain or zstd-compressed).

The file belongs to a gateway that may be running. It is opened read-only (``mode=ro``;
never ``immutable``, which would read pages a checkpoint is rewriting) with a busy
timeout, read in short transactions (the entries in one, each transcript in one) and never
written. Columns are read by name, so missing or extra columns do not matter. A read-only
connection to a WAL database creates ``-wal``/``-shm`` files when there are none; they
are removed again at close the way SQLite removes its own, under SQLite's exclusive lock
on the database file and only while no other connection has it open.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .clock import iso_ms, now_ms
from .errors import (
    BackendUnavailableError,
    CorruptSourceError,
    InvalidKeyError,
    SessionStoreError,
    UnsupportedSourceError,
)
from .files import sqlite_uri
from .keys import normalize_agent_id
from .layout import OPENCLAW_DB, openclaw_db_path, resolve_home
from .transcripts.naming import archive_timestamp, validate_session_id

__all__ = [
    "MAX_SCHEMA",
    "MIN_SCHEMA",
    "OPENCLAW_DB_NAME",
    "DbSnapshot",
    "OpenClawDb",
    "TranscriptCounts",
    "TranscriptPlan",
    "cold_dir_for",
    "db_changed_since",
    "discover_openclaw_agents",
    "file_facts",
    "openclaw_db_path",
]

OPENCLAW_DB_NAME: Final = OPENCLAW_DB
MIN_SCHEMA: Final = 14
MAX_SCHEMA: Final = 25
MAX_EVENT_BYTES: Final = 4 * 1024 * 1024
HASH_BLOCK: Final = 1024 * 1024

# SQLite's unix VFS locks (os_unix.c): a connection in WAL mode holds a read lock on the
# SHARED range of the database file for as long as it is open; a write lock on the range
# means no other connection has the database open and none can open it meanwhile.
_PENDING_BYTE: Final = 0x40000000
_SHARED_FIRST: Final = _PENDING_BYTE + 2
_SHARED_SIZE: Final = 510

Entry = dict[str, Any]
Kind = Literal["live", "reset", "deleted"]

_readers_guard = threading.Lock()
_open_readers: dict[str, int] = {}


def cold_dir_for(db_path: Path) -> Path:
    """Where the file cold archives of ``agents/<id>/agent/<db>`` are: ``…/sessions/cold``."""
    return db_path.absolute().parent.parent / "sessions" / "cold"


def discover_openclaw_agents(state_dir: Path) -> list[str]:
    """Agent ids whose directory holds an ``openclaw-agent.sqlite``, sorted."""
    agents = state_dir / "agents"
    try:
        children = sorted(agents.iterdir())
    except OSError:
        return []
    found: dict[str, None] = {}
    for child in children:
        if (child / "agent" / OPENCLAW_DB_NAME).is_file():
            found[normalize_agent_id(child.name)] = None
    return list(found)


def _zstd() -> Any:
    """``compression.zstd`` (Python 3.14+), else its backport ``backports.zstd``."""
    for name in ("compression.zstd", "backports.zstd"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise BackendUnavailableError(
        "reading compressed transcript rows needs zstd: install the `backports.zstd` package"
        " (a dependency of sessionstore on Python < 3.14: `pip install backports.zstd`)"
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _loads(text: str | bytes) -> Any:
    """Parse JSON; orjson first, the standard library for what it refuses (huge integers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_facts(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns // 1_000_000


def file_facts(path: Path, *, digest: bool = True) -> dict[str, Any]:
    """Size, mtime (ms) and sha256 of the database file, and the size and mtime of its WAL.

    Raises:
        SessionStoreError: The file cannot be read.
    """
    main = _stat_facts(path)
    if main is None:
        raise SessionStoreError(f"cannot read {path}: it does not exist or is not readable")
    wal = _stat_facts(Path(f"{path}-wal"))
    facts: dict[str, Any] = {
        "sourceBytes": main[0],
        "sourceMtimeMs": main[1],
        "walBytes": wal[0] if wal else None,
        "walMtimeMs": wal[1] if wal else None,
    }
    if digest:
        try:
            facts["sha256"] = _sha256_file(path)
        except OSError as exc:
            raise SessionStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return facts


def db_changed_since(record: dict[str, Any] | None, path: Path) -> bool | None:
    """Whether the database changed after the import ``record`` describes.

    Unchanged files (database and WAL of the same size and time) are taken as unchanged;
    otherwise the content's fingerprint decides (a checkpoint rewrites the file without
    changing what it holds). None when there is no record or the file cannot be read.
    """
    if not record:
        return None
    try:
        facts = file_facts(path, digest=False)
    except SessionStoreError:
        return None
    if all(facts[k] == record.get(k) for k in facts):
        return False
    try:
        with OpenClawDb(path) as db:
            return db.fingerprint() != record.get("fingerprint")
    except SessionStoreError:
        return None


@dataclass(frozen=True)
class TranscriptPlan:
    """One transcript file the database's events make.

    Attributes:
        session_id: The session (generation) whose events these are.
        file_name: ``<sessionId>.jsonl`` for a live session; an older generation of a key
            becomes ``<sessionId>.jsonl.reset.<ts>`` and events no entry or window claims
            ``<sessionId>.jsonl.deleted.<ts>``, the archives OpenClaw made before 2026.8.
        kind: ``live``, ``reset`` or ``deleted``.
        keys: The session keys whose entry names this session (live only).
        cwd: The ``cwd`` of a header written for it.
        fallback_ms: The header's time when the first event has none.
    """

    session_id: str
    file_name: str
    kind: Kind
    keys: tuple[str, ...]
    cwd: str
    fallback_ms: int


@dataclass
class DbSnapshot:
    """What the database holds, read in one transaction (transcripts are read later).

    Attributes:
        path: The database file.
        version: Its schema version.
        meta: The ``schema_meta`` row (``role``, ``agent_id``, ``app_version``).
        entries: Session key -> entry, large fields put back, in key order.
        placeholders: Rows of ``session_nodes`` that are not valid entries (left out).
        transcripts: The transcript files to write, live sessions first.
        fingerprint: A digest of what the database holds (see :meth:`OpenClawDb.fingerprint`).
    """

    path: Path
    version: int
    meta: dict[str, Any]
    entries: dict[str, Entry]
    placeholders: int
    transcripts: list[TranscriptPlan] = field(default_factory=list)
    fingerprint: str = ""


@dataclass
class TranscriptCounts:
    """What reading one transcript produced.

    Attributes:
        events: Event lines (the written header not counted).
        archived: How many of them came from cold archives.
        bytes: Bytes of the whole file.
        header_added: Whether a ``session`` header was written before the events.
    """

    events: int = 0
    archived: int = 0
    bytes: int = 0
    header_added: bool = False


def _pick(columns: frozenset[str], names: Sequence[str]) -> str:
    """A select list of ``names`` in that order; a missing column reads as NULL."""
    return ", ".join(f'"{n}"' if n in columns else f'NULL AS "{n}"' for n in names)


class OpenClawDb:
    """A read-only view of one ``openclaw-agent.sqlite``; use it as a context manager.

    Args:
        path: The database file.
        cold_dir: Where ``file`` cold archives are (default: ``cold_dir_for(path)``).
        busy_timeout_ms: How long a read waits for the gateway (WAL recovery, checkpoints).
        home: The ``cwd`` of written headers when an entry names no workspace (default:
            the home dir, by OpenClaw's rules).

    Raises:
        UnsupportedSourceError: The file is not an OpenClaw agent database of schema 14-25.
        SessionStoreError: The file cannot be opened.
    """

    def __init__(
        self,
        path: Path,
        *,
        cold_dir: Path | None = None,
        busy_timeout_ms: int = 10_000,
        home: Path | None = None,
    ) -> None:
        self.path = path
        self.cold_dir = cold_dir if cold_dir is not None else cold_dir_for(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._home = str(home if home is not None else resolve_home())
        self._conn: Any = None
        self._key = os.path.realpath(path)
        self._had: dict[str, bool] = {}
        self._columns: dict[str, frozenset[str] | None] = {}
        self.version = 0
        self.meta: dict[str, Any] = {}

    # --- opening and closing ---------------------------------------------------------------

    def __enter__(self) -> OpenClawDb:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the file read-only and check its schema version."""
        import apsw

        if not self.path.is_file():
            raise SessionStoreError(f"cannot read {self.path}: no such file")
        self._had = {s: Path(f"{self.path}{s}").exists() for s in ("-wal", "-shm")}
        with _readers_guard:
            _open_readers[self._key] = _open_readers.get(self._key, 0) + 1
        try:
            self._conn = apsw.Connection(
                sqlite_uri(self.path, "mode=ro"),
                flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
            )
            self._conn.set_busy_timeout(self._busy_timeout_ms)
            with self._errors():
                self._read_version()
        except BaseException as exc:
            self.close()
            if isinstance(exc, apsw.Error):
                raise SessionStoreError(f"cannot read {self.path}: {exc}") from exc
            raise

    def close(self) -> None:
        """Close the connection and remove the ``-wal``/``-shm`` files it created."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        with _readers_guard:
            left = _open_readers.get(self._key, 0) - 1
            if left > 0:
                _open_readers[self._key] = left
                return
            _open_readers.pop(self._key, None)
            self._remove_created_files()

    def _remove_created_files(self) -> None:
        created = [s for s, existed in self._had.items() if not existed]
        if not created:
            return
        import apsw

        # Another connection of this process to the file would lose its locks when this
        # process closes any descriptor of the file (POSIX): leave the files to it.
        for other in apsw.connections():
            with contextlib.suppress(Exception):
                if other.filename and os.path.realpath(other.filename) == self._key:
                    return
        try:
            # A write lock needs a descriptor open for writing; nothing is written.
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return  # the files stay; SQLite reuses or removes them itself
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SHARED_SIZE, _SHARED_FIRST)
            except OSError:
                return  # a gateway opened the database meanwhile: the files are its now
            wal = Path(f"{self.path}-wal")
            if "-wal" in created:
                with contextlib.suppress(FileNotFoundError):
                    if wal.stat().st_size > 0:
                        return  # frames someone else wrote: never discard them
                    wal.unlink()
            if "-shm" in created:
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.path}-shm").unlink()
        except OSError:
            return
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import apsw

        try:
            yield
        except apsw.Error as exc:
            raise SessionStoreError(f"cannot read {self.path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise CorruptSourceError(
                f"{self.path}: a text column is not valid UTF-8 ({exc}); nothing was imported",
                path=str(self.path),
            ) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        """One short read transaction (one consistent snapshot of the database)."""
        if self._conn is None:
            raise SessionStoreError(f"{self.path} is not open")
        with self._errors():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                with contextlib.suppress(Exception):
                    self._conn.execute("COMMIT")

    def _cols(self, table: str) -> frozenset[str] | None:
        if table not in self._columns:
            rows = self._conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            self._columns[table] = frozenset(str(r[1]) for r in rows) if rows else None
        return self._columns[table]

    def _read_version(self) -> None:
        where = self.path
        user_version = int(self._conn.execute("PRAGMA user_version").fetchall()[0][0])
        cols = self._cols("schema_meta")
        names = ("schema_version", "role", "agent_id", "app_version")
        if cols is not None and "meta_key" in cols:
            rows = self._conn.execute(
                f"SELECT {_pick(cols, names)} FROM schema_meta WHERE meta_key = 'primary'"
            ).fetchall()
            if rows:
                self.meta = dict(zip(names, rows[0], strict=True))
        meta_version = _int(self.meta.get("schema_version"))
        version = user_version or meta_version
        if not version:
            raise UnsupportedSourceError(
                f"{where} is not an OpenClaw agent database: it has no schema version"
                " (PRAGMA user_version is 0 and schema_meta has no 'primary' row)",
                path=str(where),
            )
        if meta_version is not None and user_version and meta_version != user_version:
            raise CorruptSourceError(
                f"{where}: PRAGMA user_version ({user_version}) and schema_meta"
                f" ({meta_version}) disagree about the schema version; nothing was imported",
                path=str(where),
            )
        if not MIN_SCHEMA <= version <= MAX_SCHEMA:
            advice = (
                "it predates OpenClaw 2026.8 (start a current OpenClaw once to upgrade it)"
                if version < MIN_SCHEMA
                else "it is newer than this sessionstore knows (upgrade sessionstore)"
            )
            raise UnsupportedSourceError(
                f"{where} has OpenClaw database schema version {version}; this sessionstore"
                f" reads versions {MIN_SCHEMA} to {MAX_SCHEMA}: {advice}",
                path=str(where),
                version=version,
            )
        self.version = version

    # --- entries ---------------------------------------------------------------------------

    def snapshot(self) -> DbSnapshot:
        """Entries, the transcripts to write and the fingerprint, in one read transaction.

        Raises:
            CorruptSourceError: An entry or snapshot field is not JSON, a session id with
                events cannot name a file, or the tables are missing.
        """
        with self._read():
            entries, current, placeholders = self._entries()
            windows = self._windows()
            with_events = self._sessions_with_events()
            snap = DbSnapshot(
                path=self.path,
                version=self.version,
                meta=dict(self.meta),
                entries=entries,
                placeholders=placeholders,
                fingerprint=self._fingerprint(),
            )
            snap.transcripts = self._plan(entries, current, windows, with_events)
        return snap

    def _entries(self) -> tuple[dict[str, Entry], dict[str, str], int]:
        cols = self._cols("session_nodes")
        if cols is None or not {"session_key", "entry_json"} <= cols:
            raise CorruptSourceError(
                f"{self.path} has no session_nodes table with session_key and entry_json;"
                " it is not an OpenClaw agent database this sessionstore can read",
                path=str(self.path),
            )
        names = ("session_key", "current_session_id", "entry_json", "entry_valid")
        entries: dict[str, Entry] = {}
        current: dict[str, str] = {}
        placeholders = 0
        sql = f"SELECT {_pick(cols, names)} FROM session_nodes ORDER BY session_key"
        for key, session_id, entry_json, valid in self._conn.execute(sql):
            # Without the column (not seen in a release) every row is taken as a real entry.
            if "entry_valid" in cols and valid != 1:
                placeholders += 1
                continue
            key = str(key)
            try:
                entry = _loads(entry_json) if isinstance(entry_json, (str, bytes)) else None
            except ValueError as exc:
                raise CorruptSourceError(
                    f"{self.path}: the entry of session {key!r} is not JSON ({exc});"
                    " nothing was imported",
                    path=str(self.path),
                    key=key,
                ) from exc
            if not isinstance(entry, dict):
                raise CorruptSourceError(
                    f"{self.path}: the entry of session {key!r} is not a JSON object;"
                    " nothing was imported",
                    path=str(self.path),
                    key=key,
                )
            entries[key] = entry
            if isinstance(session_id, str) and session_id:
                current[key] = session_id
        snap_cols = self._cols("session_entry_snapshots")
        if snap_cols is not None and {"session_key", "field", "value_json"} <= snap_cols:
            sql = (
                "SELECT session_key, field, value_json FROM session_entry_snapshots"
                " ORDER BY session_key, field"
            )
            for key, name, value_json in self._conn.execute(sql):
                entry = entries.get(str(key))
                if entry is None:
                    continue  # a snapshot of a placeholder row
                try:
                    entry[str(name)] = _loads(value_json)
                except (ValueError, TypeError) as exc:
                    raise CorruptSourceError(
                        f"{self.path}: the {name} of session {key!r} is not JSON ({exc});"
                        " nothing was imported",
                        path=str(self.path),
                        key=str(key),
                    ) from exc
        return entries, current, placeholders

    def _windows(self) -> dict[str, dict[str, Any]]:
        cols = self._cols("session_windows")
        if cols is None or "session_id" not in cols:
            return {}
        names = (
            "session_id",
            "session_key",
            "previous_session_id",
            "reason",
            "created_at",
            "started_at",
            "updated_at",
            "ended_at",
        )
        rows = self._conn.execute(f"SELECT {_pick(cols, names)} FROM session_windows")
        return {str(r[0]): dict(zip(names, r, strict=True)) for r in rows}

    def _sessions_with_events(self) -> list[str]:
        ids: dict[str, None] = {}
        cols = self._cols("transcript_events")
        if cols is not None and "session_id" in cols:
            for (sid,) in self._conn.execute(
                "SELECT DISTINCT session_id FROM transcript_events ORDER BY session_id"
            ):
                ids[str(sid)] = None
        cols = self._cols("session_transcript_cold_archives")
        if cols is not None and "session_id" in cols:
            for (sid,) in self._conn.execute(
                "SELECT DISTINCT session_id FROM session_transcript_cold_archives"
                " ORDER BY session_id"
            ):
                ids[str(sid)] = None
        return list(ids)

    def _last_event_ms(self, session_id: str) -> int | None:
        cols = self._cols("transcript_events")
        if cols is None or "created_at" not in cols:
            return None
        rows = self._conn.execute(
            "SELECT max(created_at) FROM transcript_events WHERE session_id = ?", (session_id,)
        ).fetchall()
        return _int(rows[0][0]) if rows else None

    def _cwd(self, entry: Entry | None) -> str:
        report = entry.get("systemPromptReport") if entry else None
        workspace = report.get("workspaceDir") if isinstance(report, dict) else None
        return workspace if isinstance(workspace, str) and workspace else self._home

    def _plan(
        self,
        entries: dict[str, Entry],
        current: dict[str, str],
        windows: dict[str, dict[str, Any]],
        with_events: list[str],
    ) -> list[TranscriptPlan]:
        live: dict[str, list[str]] = {}
        for key, entry in entries.items():
            named = entry.get("sessionId")
            sid = named if isinstance(named, str) and named else current.get(key)
            if sid:
                live.setdefault(sid, []).append(key)
        has_events = set(with_events)
        plans: list[TranscriptPlan] = []
        for sid, keys in live.items():
            if sid not in has_events:
                continue
            self._check_id(sid)
            entry = entries[keys[0]]
            fallback = _int(entry.get("updatedAt")) or 0
            plans.append(
                TranscriptPlan(sid, f"{sid}.jsonl", "live", tuple(keys), self._cwd(entry), fallback)
            )
        successor = {
            str(w["previous_session_id"]): w for w in windows.values() if w["previous_session_id"]
        }
        for sid in with_events:
            if sid in live:
                continue
            self._check_id(sid)
            window = windows.get(sid)
            owner = str(window["session_key"]) if window and window["session_key"] else None
            # Before 2026.8 OpenClaw renamed the transcript of a reset session to
            # <file>.reset.<ts> (a deleted one's to .deleted.<ts>), at the reset: the
            # start of the next generation.
            kind: Kind = "reset" if owner is not None and owner in entries else "deleted"
            after = successor.get(sid) or {}
            own = window or {}
            when = next(
                (
                    v
                    for v in (
                        _int(after.get("created_at")),
                        _int(after.get("started_at")),
                        _int(own.get("ended_at")),
                        _int(own.get("updated_at")),
                        self._last_event_ms(sid),
                        _int(own.get("created_at")),
                    )
                    if v is not None
                ),
                None,
            )
            if when is None:
                # Only in cold archives and no window: the import's time (not repeatable).
                when = now_ms()
            stamp = archive_timestamp(when)
            plans.append(
                TranscriptPlan(
                    sid,
                    f"{sid}.jsonl.{kind}.{stamp}",
                    kind,
                    (),
                    self._cwd(entries.get(owner) if owner else None),
                    when,
                )
            )
        return plans

    def _check_id(self, session_id: str) -> None:
        try:
            validate_session_id(session_id)
        except InvalidKeyError as exc:
            raise CorruptSourceError(
                f"{self.path}: session {session_id!r} has transcript events but its id cannot"
                " name a transcript file; nothing was imported",
                path=str(self.path),
                session_id=session_id,
            ) from exc

    # --- fingerprint -----------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A digest of what the database holds, in one read transaction."""
        with self._read():
            return self._fingerprint()

    def _fingerprint(self) -> str:
        """Digest of entries (key, validity, time, size), snapshots and event counts.

        Cheap enough for ``store-info``: no entry or event is read whole.
        """
        import hashlib

        digest = hashlib.sha256(f"openclaw-db v{self.version}\n".encode())
        queries = (
            (
                "session_nodes",
                ("session_key", "entry_valid", "updated_at", "current_session_id"),
                "length(entry_json)",
                "",
                "session_key",
            ),
            (
                "session_entry_snapshots",
                ("session_key", "field"),
                "length(value_json)",
                "",
                "session_key, field",
            ),
            (
                "transcript_events",
                ("session_id",),
                "count(*), max(seq)",
                " GROUP BY session_id",
                "session_id",
            ),
            (
                "session_transcript_cold_archives",
                ("session_id", "archive_name", "archive_sha256", "last_seq"),
                "1",
                "",
                "session_id, 4, 2",
            ),
        )
        for table, names, extra, group, order in queries:
            cols = self._cols(table)
            if cols is None or names[0] not in cols:
                digest.update(f"-{table}\n".encode())
                continue
            sql = f"SELECT {_pick(cols, names)}, {extra} FROM {table}{group} ORDER BY {order}"
            digest.update(f"+{table}\n".encode())
            for row in self._conn.execute(sql):
                digest.update(orjson.dumps(list(row), default=str))
                digest.update(b"\n")
        return digest.hexdigest()

    # --- transcripts -----------------------------------------------------------------------

    def read_transcript(
        self, plan: TranscriptPlan, write: Callable[[bytes], None]
    ) -> TranscriptCounts:
        """Produce the lines of one transcript file, in one read transaction.

        The events of cold archives come first, then the live rows, in ``seq`` order (an
        event both archived and live must be the same). A ``session`` header is written
        first unless the first event is one.

        Args:
            plan: The transcript.
            write: Called with each line, newline included.

        Raises:
            CorruptSourceError: A row or archive of the session does not decode, a
                checksum does not match, or an event is not one JSON object.
        """
        counts = TranscriptCounts()
        with self._read():
            archived = self._archived(plan.session_id)
            counts.archived = len(archived)
            for seq, text, created in self._merged(plan.session_id, archived):
                line, value = self._check_event(plan.session_id, seq, text)
                is_header = value.get("type") == "session" and isinstance(value.get("id"), str)
                if counts.events == 0 and not is_header:
                    header = self._header(plan, created)
                    write(header)
                    counts.bytes += len(header)
                    counts.header_added = True
                write(line)
                counts.events += 1
                counts.bytes += len(line)
        return counts

    def _header(self, plan: TranscriptPlan, created: int | None) -> bytes:
        """The header OpenClaw wrote for a transcript (``SessionManager``, version 3)."""
        header = {
            "type": "session",
            "version": 3,
            "id": plan.session_id,
            "timestamp": iso_ms(created if created is not None else plan.fallback_ms),
            "cwd": plan.cwd,
        }
        return orjson.dumps(header) + b"\n"

    def _damaged(self, session_id: str, what: str, exc: BaseException | None = None) -> Exception:
        err = CorruptSourceError(
            f"{self.path}: {what} (session {session_id}); nothing was imported - the source"
            " was left as it is",
            path=str(self.path),
            session_id=session_id,
        )
        if exc is not None:
            err.__cause__ = exc
        return err

    def _check_event(self, session_id: str, seq: int, text: str) -> tuple[bytes, Entry]:
        if "\n" in text:
            raise self._damaged(session_id, f"event {seq} holds a line break")
        try:
            value = _loads(text)
        except ValueError as exc:
            raise self._damaged(session_id, f"event {seq} is not JSON ({exc})", exc) from exc
        if not isinstance(value, dict):
            raise self._damaged(session_id, f"event {seq} is not a JSON object")
        return text.encode("utf-8") + b"\n", value

    def _merged(
        self, session_id: str, archived: list[tuple[int, str, int | None]]
    ) -> Iterator[tuple[int, str, int | None]]:
        i = 0
        for seq, text, created in self._live(session_id):
            while i < len(archived) and archived[i][0] < seq:
                yield archived[i]
                i += 1
            if i < len(archived) and archived[i][0] == seq:
                if archived[i][1] != text:
                    raise self._damaged(
                        session_id, f"event {seq} differs between a cold archive and the live rows"
                    )
                i += 1
            yield seq, text, created
        yield from archived[i:]

    def _live(self, session_id: str) -> Iterator[tuple[int, str, int | None]]:
        cols = self._cols("transcript_events")
        if cols is None or not {"session_id", "seq"} <= cols:
            return
        names = ("seq", "event_json", "event_zstd", "event_utf8_bytes", "created_at")
        sql = (
            f"SELECT {_pick(cols, names)} FROM transcript_events WHERE session_id = ? ORDER BY seq"
        )
        zstd: Any = None
        for seq, event_json, event_zstd, size, created in self._conn.execute(sql, (session_id,)):
            if _int(seq) is None:
                raise self._damaged(session_id, f"an event has the seq {seq!r}")
            if (event_json is None) == (event_zstd is None):
                both = "both" if event_json is not None else "neither"
                raise self._damaged(
                    session_id, f"event {seq} has {both} of event_json and event_zstd"
                )
            if event_zstd is not None:
                if zstd is None:
                    zstd = _zstd()
                text = self._decode_row(zstd, session_id, seq, event_zstd, size)
            elif isinstance(event_json, str):
                text = event_json
            else:
                raise self._damaged(session_id, f"event {seq}'s event_json is not text")
            yield seq, text, _int(created)

    def _decode_row(self, zstd: Any, session_id: str, seq: int, blob: object, size: object) -> str:
        """One ``event_zstd`` frame, decoded to at most ``event_utf8_bytes``, strict UTF-8."""
        length = _int(size)
        if length is None or not 1 <= length <= MAX_EVENT_BYTES:
            raise self._damaged(
                session_id, f"event {seq} has event_utf8_bytes {size!r} (expected 1 to 4 MiB)"
            )
        if not isinstance(blob, bytes):
            raise self._damaged(session_id, f"event {seq}'s event_zstd is not a blob")
        decompressor = zstd.ZstdDecompressor()
        try:
            data = decompressor.decompress(blob, max_length=length)
            if not decompressor.eof and decompressor.decompress(b"", max_length=1):
                raise self._damaged(
                    session_id, f"event {seq} decodes to more than its {length} bytes"
                )
        except (zstd.ZstdError, EOFError, ValueError) as exc:
            raise self._damaged(
                session_id, f"event {seq}'s zstd data does not decode ({exc})", exc
            ) from exc
        if not decompressor.eof or decompressor.unused_data or len(data) != length:
            raise self._damaged(
                session_id,
                f"event {seq}'s zstd data is not one whole frame of {length} bytes"
                f" (got {len(data)}{', truncated' if not decompressor.eof else ''})",
            )
        try:
            return str(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise self._damaged(session_id, f"event {seq} is not valid UTF-8", exc) from exc

    # --- cold archives ---------------------------------------------------------------------

    def _archived(self, session_id: str) -> list[tuple[int, str, int | None]]:
        """Events of the session's cold archives, by seq (schema 20+)."""
        cols = self._cols("session_transcript_cold_archives")
        if cols is None or "session_id" not in cols:
            return []
        names = ("archive_name", "archive_sha256", "event_count", "last_seq", "storage")
        blob = '"archive_blob"' if "archive_blob" in cols else "NULL"
        sql = (
            f"SELECT {_pick(cols, names)}, {blob} FROM session_transcript_cold_archives"
            " WHERE session_id = ?"
        )
        events: dict[int, tuple[str, int | None]] = {}
        for name, sha, count, last_seq, storage, data in self._conn.execute(sql, (session_id,)):
            where = f"cold archive {name!r}"
            raw = self._archive_bytes(session_id, name, storage, data)
            text = self._checked(session_id, where, raw, sha)
            found, top = self._archive_events(session_id, where, text, events)
            if _int(count) is not None and found != count:
                raise self._damaged(
                    session_id, f"{where} holds {found} events, its row says {count}"
                )
            if _int(last_seq) is not None and found and top != last_seq:
                raise self._damaged(
                    session_id, f"{where} ends at event {top}, its row says {last_seq}"
                )
        return [(seq, text, created) for seq, (text, created) in sorted(events.items())]

    def _archive_bytes(self, session_id: str, name: object, storage: object, data: object) -> bytes:
        if storage == "sqlite" or (storage is None and data is not None):
            if not isinstance(data, bytes):
                raise self._damaged(session_id, f"cold archive {name!r} has no archive_blob")
            return data
        if storage not in ("file", None):
            raise self._damaged(session_id, f"cold archive {name!r} has storage {storage!r}")
        if (
            not isinstance(name, str)
            or not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or "\0" in name
        ):
            raise self._damaged(session_id, f"cold archive name {name!r} is not a file name")
        path = self.cold_dir / name
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise self._damaged(session_id, f"its cold archive {path} is missing", exc) from exc
        except OSError as exc:
            raise self._damaged(
                session_id, f"its cold archive {path} cannot be read ({exc.strerror})", exc
            ) from exc

    def _checked(self, session_id: str, where: str, raw: bytes, sha: object) -> str:
        """The archive's text after its checksum matched the stored or the decoded bytes."""
        import hashlib

        if not isinstance(sha, str) or not sha.strip():
            raise self._damaged(session_id, f"{where} has no archive_sha256 to check it with")
        expected = sha.strip().lower()
        zstd = _zstd()
        stored_ok = hashlib.sha256(raw).hexdigest() == expected
        try:
            data = zstd.decompress(raw)
        except (zstd.ZstdError, EOFError, ValueError) as exc:
            what = "does not decode" if stored_ok else "does not match its archive_sha256"
            raise self._damaged(session_id, f"{where} {what} ({exc})", exc) from exc
        # Public sources do not say which bytes the checksum covers: either will do.
        if not stored_ok and hashlib.sha256(data).hexdigest() != expected:
            raise self._damaged(
                session_id,
                f"{where} does not match its archive_sha256 (neither the stored nor the"
                " decoded bytes)",
            )
        try:
            return str(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise self._damaged(session_id, f"{where} is not valid UTF-8", exc) from exc

    def _archive_events(
        self,
        session_id: str,
        where: str,
        text: str,
        events: dict[int, tuple[str, int | None]],
    ) -> tuple[int, int]:
        """Add the archive's events to ``events``; returns (how many, highest seq)."""
        found = top = 0
        header_seen = False
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = _loads(line)
            except ValueError as exc:
                raise self._damaged(
                    session_id, f"line {number} of {where} is not JSON", exc
                ) from exc
            kind = record.get("kind") if isinstance(record, dict) else None
            if not header_seen:
                if kind != "header" or record.get("version") != 1:
                    raise self._damaged(
                        session_id, f"{where} does not start with a version 1 header record"
                    )
                owner = record.get("sessionId")
                if isinstance(owner, str) and owner != session_id:
                    raise self._damaged(session_id, f"{where} belongs to session {owner}")
                header_seen = True
                continue
            if kind != "event":
                continue  # identity, active, index, fts: not transcript lines
            row = record.get("row")
            seq = _int(row.get("seq")) if isinstance(row, dict) else None
            event_json = row.get("event_json") if isinstance(row, dict) else None
            if seq is None or not isinstance(event_json, str) or not isinstance(row, dict):
                raise self._damaged(session_id, f"line {number} of {where} is not an event row")
            known = events.get(seq)
            if known is not None and known[0] != event_json:
                raise self._damaged(session_id, f"event {seq} differs between two cold archives")
            events[seq] = (event_json, _int(row.get("created_at")))
            found += 1
            top = max(top, seq) if found > 1 else seq
        if not header_seen:
            raise self._damaged(session_id, f"{where} is empty")
        return found, top
