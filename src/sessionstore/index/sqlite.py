"""The SQLite hot index (``sessions.sqlite``), through apsw.

One row per session: the hot fields as indexed columns for ``list``, the entry itself in
``entry_json`` (without its large blobs), and ``skillsSnapshot``/``systemPromptReport``
stored once per content hash in ``blobs``. Every operation touches only the rows it needs:
``get`` and ``modify`` look up one key (and its case variants) through an index, ``list``
walks a composite index in ``updated_at`` order, ``count`` reads a counter kept by
triggers. Only ``load_all`` and ``mutate`` read every row.

Connections are per thread and re-opened after ``fork``; every write is a ``BEGIN
IMMEDIATE`` transaction. The schema is versioned in ``meta`` and upgraded in place; version
1 is exactly the table PR #58550 created, so its databases open and are upgraded too.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import threading
import time
import uuid
import weakref
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import apsw
import orjson

from ..args import as_number
from ..clock import now_ms
from ..entry import json_equal, load_normalize, settle_entry, sort_time
from ..errors import (
    BackendUnavailableError,
    CorruptStoreError,
    InvalidEntryError,
    LockTimeoutError,
    MigrationError,
    OutcomeUnknownError,
    ReadOnlyStoreError,
    SchemaVersionError,
    SessionStoreError,
    StorageFullError,
    StoreClosedError,
)
from ..files import (
    FULL_ERRNOS,
    abandoned_build,
    dumps_compact,
    ensure_private_dir,
    fsync_dir,
    move_into_place,
    os_error,
    sha256_hex,
    sqlite_uri,
)
from ..keys import fold_key
from ..transcripts.checkpoint import Checkpoint, CheckpointStore
from .base import (
    COUNTER_FIELDS,
    DELETE,
    LARGE_FIELDS,
    ROW_STRING_FIELDS,
    BlobCache,
    BlobRef,
    EmptyMaintenance,
    IndexBackend,
    ListQuery,
    MaintenanceTxn,
    ModifyFn,
    RowRef,
    SessionRow,
    derive_row,
    message_count_of,
    mutated_entry,
    search_text,
    visibility,
    writes_when_absent,
)
from .rowcodec import pack, unpack

__all__ = ["BLOB_FIELDS", "SCHEMA_VERSION", "SqliteIndex"]

Entry = dict[str, Any]
Rows = list[tuple[Any, ...]]
T = TypeVar("T")

SCHEMA_VERSION: Final = 7
BLOB_FIELDS: Final = LARGE_FIELDS
# Per-session diagnostics, rarely read and rarely shared: stored zlib-compressed. The
# skills snapshot is read on every run and shared by many sessions: stored as plain JSON.
COMPRESSED_FIELDS: Final = frozenset({"systemPromptReport"})
CODEC_JSON: Final = 0
CODEC_ZLIB: Final = 1
DURABILITY_SYNC: Final = {"normal": "NORMAL", "power": "FULL"}
# In-process cache of blob JSON (shared skill snapshots are read by every session), and
# SQLite's page cache per connection: together they bound what a store keeps in memory.
BLOB_CACHE_BYTES: Final = 1 << 19
PAGE_CACHE_KIB: Final = 2048
SQLITE_MAGIC: Final = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
# An empty, unlocked temporary database older than this was left by a creator that died
# between creating it and locking it (a non-empty unlocked one is abandoned at once).
STALE_BUILD_SECONDS: Final = 60
# Connections of ended threads kept open for the next new thread (warm statement and page
# caches); any more are closed.
IDLE_CONNECTIONS: Final = 2
# The WAL file is cut back to this size when a checkpoint resets it (a long-lived store's
# WAL would otherwise keep the size of its largest transaction).
WAL_LIMIT_BYTES: Final = 64 << 20
# An import of this many rows or more (migration) is followed by PRAGMA optimize and a
# checkpoint, so a large batch leaves statistics current and no large WAL behind.
LARGE_BATCH_ROWS: Final = 1_000
# Maintenance applies its plan in write transactions of at most this many rows or this
# long, so a concurrent writer waits for one batch, not the whole run (issue 15).
MAINTENANCE_BATCH_ROWS: Final = 500
MAINTENANCE_BATCH_SECONDS: Final = 0.02
# SQLite's default busy handler (sqlite3_busy_timeout, what every connection here uses)
# retries a waiting writer after these delays, the last repeating. The next batch begins
# microseconds after one commits: a waiting writer asleep in its busy handler misses every
# such gap and waits out many batches (one wait of 831 ms in the issue's scenario). So
# maintenance pauses after each batch for the retry interval the batch ended in.
BUSY_HANDLER_DELAYS_MS: Final = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
# Added to the pause: a woken writer needs a moment to take the lock.
WRITER_PAUSE_MARGIN_MS: Final = 2


def writer_pause(held_s: float) -> float:
    """Seconds maintenance pauses after a batch that held the write lock for ``held_s``.

    A writer that began waiting while the batch held the lock has waited at most
    ``held_s`` when it ends; its busy handler's next retry comes within the retry
    interval that contains that wait (intervals only grow), so a pause of that interval
    (plus a margin) lets it in before the next batch.

    Args:
        held_s: How long the batch held the write lock.

    Returns:
        The pause in seconds.
    """
    waited = 0
    for delay in BUSY_HANDLER_DELAYS_MS:
        waited += delay
        if waited >= held_s * 1000:
            return (delay + WRITER_PAUSE_MARGIN_MS) / 1000
    return (BUSY_HANDLER_DELAYS_MS[-1] + WRITER_PAUSE_MARGIN_MS) / 1000


_fork_generation = 0
_abandoned: list[apsw.Connection] = []  # connections inherited through fork: never touched


_live: weakref.WeakSet[SqliteIndex] = weakref.WeakSet()


class _WritesInFlight:
    """The SQLite write transactions in progress in this process, by database file.

    SQLite keeps its lock state per process, in memory: a child forked while a thread of
    its parent is inside a write inherits the state of a write that, in the child, never
    ends, and can never write to that database. So a fork waits (briefly) for the writes
    of other threads to finish, and a child that still inherited one refuses to write to
    that file with an error saying why, instead of timing out.
    """

    WAIT_S: Final = 2.0

    def __init__(self) -> None:
        # Taken as the lock itself where nothing waits: every write enters and leaves.
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.paths: Counter[str] = Counter()
        self.forking = False
        self.mine = threading.local()
        self.inherited: frozenset[str] = frozenset()  # in a child: files it may not write

    def enter(self, path: str) -> None:
        with self.lock:
            while self.forking:
                self.cond.wait()
            self.paths[path] += 1
        mine = self.mine
        try:
            mine.paths[path] += 1
        except AttributeError:
            mine.paths = Counter({path: 1})

    def leave(self, path: str) -> None:
        self.mine.paths[path] -= 1
        with self.lock:
            self.paths[path] -= 1
            if self.forking:  # only a fork waits for a write to leave (set under the lock)
                self.cond.notify_all()

    def before_fork(self) -> None:
        self.cond.acquire()
        self.forking = True
        own: Counter[str] = getattr(self.mine, "paths", None) or Counter()
        deadline = time.monotonic() + self.WAIT_S
        while +(self.paths - own) and time.monotonic() < deadline:
            self.cond.wait(max(0.0, deadline - time.monotonic()))

    def after_in_parent(self) -> None:
        self.forking = False
        self.cond.notify_all()
        self.cond.release()

    def after_in_child(self) -> None:
        inherited = frozenset(path for path, n in self.paths.items() if n > 0)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.paths = Counter()
        self.forking = False
        self.mine = threading.local()
        self.inherited = self.inherited | inherited


_writes = _WritesInFlight()
os.register_at_fork(
    before=_writes.before_fork,
    after_in_parent=_writes.after_in_parent,
    after_in_child=_writes.after_in_child,
)


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1
    # Another thread of the parent may have held a lock at the fork: the child gets it
    # locked forever. Give every open index fresh locks (and an empty blob cache).
    for index in list(_live):
        index._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork)


class _Lease:
    """A thread's hold on its connection, given back when the thread ends.

    CPython drops a thread's ``threading.local`` values when the thread ends, so this
    object dies with its thread (or with the index's ``threading.local``, which ``close``
    replaces), and ``__del__`` gives the connection back to the index. So a connection is
    used by one thread at a time, a long-lived thread keeps its warm statement and page
    caches, and a gateway that runs each request on a new thread holds connections for the
    threads alive now, not one (two descriptors) for every thread it ever ran.
    """

    __slots__ = ("conn", "index", "pid")

    def __init__(self, index: SqliteIndex, conn: apsw.Connection) -> None:
        # A weak reference: a lease must not keep a store alive that nobody uses.
        self.index = weakref.ref(index)
        self.conn = conn
        self.pid = os.getpid()

    def __del__(self) -> None:
        if os.getpid() != self.pid:
            # Inherited through fork (CPython may drop the parent's other threads' values
            # in the child): the parent still uses the connection, never touch it here.
            _abandoned.append(self.conn)
            return
        index = self.index()
        if index is not None:
            index._release_connection(self.conn)


class _BlobGone(Exception):
    """A referenced blob is not in the ``blobs`` table (at the snapshot read)."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


class _BadRow(Exception):
    """A stored value that decodes, but not to what this module writes there."""


def _load_entry(entry_json: bytes | str) -> Entry:
    try:
        entry = orjson.loads(unpack(entry_json))
    except (zlib.error, ValueError) as exc:
        if isinstance(exc, orjson.JSONDecodeError):
            raise
        raise _BadRow(f"a stored entry does not inflate: {exc}") from exc
    if not isinstance(entry, dict):
        raise _BadRow(f"a stored entry is a JSON {type(entry).__name__}, not an object")
    return entry


def _entry_field(*args: Any) -> Any:
    """SQL ``entry_field(entry_json, name)``: one top-level string field of a stored entry.

    Maintenance reads ``sessionFile`` of every row it plans for: the entry is inflated and
    the field's value decoded alone, never the whole entry (as ``json_extract`` did while
    entries were stored as plain JSON).
    """
    entry_json, name = args
    if not isinstance(entry_json, (bytes, str)) or not isinstance(name, str):
        return None
    try:
        raw = unpack(entry_json)
        text = raw if isinstance(raw, str) else raw.decode()
        marker = f'"{name}":'
        at = text.find(marker)
        if at < 0:
            return None
        if text.find(marker, at + 1) >= 0:  # may be nested too: read the entry's own
            value = orjson.loads(text).get(name)
        else:
            value, _ = _JSON_VALUE.raw_decode(text, at + len(marker))
    except (zlib.error, ValueError, AttributeError):
        return None  # damaged: maintenance takes it for a row without that field
    return value if isinstance(value, str) else None


_JSON_VALUE: Final = json.JSONDecoder()


def _prepare(conn: apsw.Connection) -> apsw.Connection:
    """Register what this module's SQL uses on a new connection."""
    conn.create_scalar_function("entry_field", _entry_field, 2, deterministic=True)
    return conn


def _load_refs(refs_json: str | None) -> dict[str, str]:
    """A row's ``blob_refs``: field -> digest."""
    if not refs_json:
        return {}
    refs = orjson.loads(refs_json)
    if not isinstance(refs, dict) or not all(isinstance(d, str) for d in refs.values()):
        raise _BadRow(f"a row's blob references are not an object of digests: {refs_json!r:.80}")
    return refs


def _check_updated_at(row: tuple[Any, ...]) -> None:
    """Refuse a list row (``updated_at`` last) whose sort time is not a number."""
    value = row[-1]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRow(f"session {row[0]!r:.80} has a sort time of {value!r:.40}, not a number")


def _row_count(conn: apsw.Connection) -> int:
    """The session counter kept by triggers in ``stats``."""
    rows: Rows = conn.execute("SELECT row_count FROM stats WHERE id = 1").fetchall()
    if not rows:
        return 0
    if not isinstance(rows[0][0], int):
        raise _BadRow(
            f"the session counter in stats is {rows[0][0]!r:.40}, not a number"
            " (`sessionstore doctor --fix` recounts)"
        )
    return rows[0][0]


class _ErrorGuard:
    """``with index._errors():`` turns apsw and decoding errors into typed store errors."""

    __slots__ = ("_index",)

    def __init__(self, index: SqliteIndex) -> None:
        self._index = index

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._index._raise_typed(exc)


# --- schema --------------------------------------------------------------------------------

_PR_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  session_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, updated_at INTEGER NOT NULL,
  created_at INTEGER, channel TEXT, last_channel TEXT, last_to TEXT, last_account_id TEXT,
  last_thread_id TEXT, label TEXT, display_name TEXT, status TEXT, model TEXT,
  model_provider TEXT, total_tokens INTEGER, input_tokens INTEGER, output_tokens INTEGER,
  message_count INTEGER, archived INTEGER DEFAULT 0, entry_json TEXT NOT NULL);
"""

# Numeric and thread-id columns have no declared type, so values keep their JSON type
# (1.0 stays a float, "123" stays a string, 42 stays an integer).
_V2_TABLE = """
CREATE TABLE sessions_v2 (
  session_key TEXT PRIMARY KEY NOT NULL,
  session_id TEXT NOT NULL,
  updated_at NOT NULL DEFAULT 0,
  created_at,
  channel TEXT, last_channel TEXT, last_to TEXT, last_account_id TEXT, last_thread_id,
  label TEXT, display_name TEXT, status TEXT, model TEXT, model_provider TEXT,
  total_tokens, input_tokens, output_tokens, message_count,
  archived INTEGER NOT NULL DEFAULT 0,
  key_fold TEXT NOT NULL,
  agent_id TEXT,
  kind TEXT NOT NULL,
  vis INTEGER NOT NULL DEFAULT 0,
  row_channel TEXT,
  row_updated_at,
  spawned_by TEXT,
  parent_session_key TEXT,
  search_text TEXT NOT NULL DEFAULT '',
  entry_json BLOB NOT NULL,
  blob_refs TEXT
);
"""

_V2_INDEXES = """
CREATE INDEX idx_sessions_list ON sessions(vis, updated_at, session_key);
CREATE INDEX idx_sessions_fold ON sessions(key_fold);
CREATE INDEX idx_sessions_agent ON sessions(agent_id, vis, updated_at, session_key);
CREATE INDEX idx_sessions_channel ON sessions(row_channel, vis, updated_at, session_key);
CREATE INDEX idx_sessions_label ON sessions(label, updated_at) WHERE label IS NOT NULL;
CREATE INDEX idx_sessions_spawned_by ON sessions(spawned_by, updated_at)
  WHERE spawned_by IS NOT NULL;
CREATE INDEX idx_sessions_parent ON sessions(parent_session_key, updated_at)
  WHERE parent_session_key IS NOT NULL;
CREATE INDEX idx_sessions_session_id ON sessions(session_id);
CREATE TABLE IF NOT EXISTS blobs (
  digest TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, refcount INTEGER NOT NULL,
  codec INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (
  id INTEGER PRIMARY KEY CHECK (id = 1), row_count INTEGER NOT NULL
);
INSERT OR REPLACE INTO stats(id, row_count) VALUES (1, (SELECT count(*) FROM sessions));
CREATE TRIGGER sessions_count_insert AFTER INSERT ON sessions
  BEGIN UPDATE stats SET row_count = row_count + 1 WHERE id = 1; END;
CREATE TRIGGER sessions_count_delete AFTER DELETE ON sessions
  BEGIN UPDATE stats SET row_count = row_count - 1 WHERE id = 1; END;
"""

_V3_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_sessions_updated ON sessions(updated_at, session_key);
"""

_V4_INDEXES = """
DROP INDEX IF EXISTS idx_sessions_list;
CREATE INDEX idx_sessions_list ON sessions(vis, updated_at, session_key, agent_id, kind,
  session_id, row_updated_at, row_channel, last_channel, last_to, last_account_id, label,
  display_name, status, model, model_provider, spawned_by, parent_session_key, last_thread_id,
  total_tokens, input_tokens, output_tokens, message_count);
"""

# v5: transcript checkpoints (see transcripts/checkpoint.py). dev/ino are stored as signed
# 64-bit integers; keys belong to the generation (one full scan) of their transcript, and a
# replaced generation's keys are kept until the next replacement (an appender may be using
# them right now).
_V5_TABLES = """
CREATE TABLE IF NOT EXISTS transcripts (
  path TEXT PRIMARY KEY NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
  size INTEGER NOT NULL, count INTEGER NOT NULL, leaf TEXT, mark_at INTEGER NOT NULL,
  mark BLOB NOT NULL, gen TEXT NOT NULL, updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transcript_keys (
  path TEXT NOT NULL, gen TEXT NOT NULL, key TEXT NOT NULL, entry_id TEXT NOT NULL,
  PRIMARY KEY (path, gen, key)
) WITHOUT ROWID;
"""

# v6: entries stored deflated (rowcodec.py) and a list index of the sort key only: list
# columns are read from the table row, which is now small (docs/storage-format.md).
_V6_INDEXES = """
DROP INDEX IF EXISTS idx_sessions_list;
CREATE INDEX idx_sessions_list ON sessions(vis, updated_at, session_key);
"""
# Rows packed per statement batch by the v6 upgrade (and re-encoded by the v7 one).
_PACK_BATCH: Final = 500

# v7: a smaller file (docs/storage-format.md, "Schema 7"). The folded key is stored only
# where it differs from the key (legacy mixed-case rows), in a partial index; the search
# haystack leaves out the key and the session id (see _haystack); idx_sessions_updated is
# replaced by the list index (visible rows) and a partial index of the hidden ones; the
# agent and channel indexes end in updated_at (ties are sorted by key as they are read).
_V7_DROP: Final = """
DROP INDEX IF EXISTS idx_sessions_fold;
DROP INDEX IF EXISTS idx_sessions_updated;
DROP INDEX IF EXISTS idx_sessions_agent;
DROP INDEX IF EXISTS idx_sessions_channel;
ALTER TABLE sessions DROP COLUMN key_fold;
ALTER TABLE sessions ADD COLUMN key_fold TEXT;
"""
_V7_INDEXES: Final = """
CREATE INDEX idx_sessions_fold ON sessions(key_fold) WHERE key_fold IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_sessions_hidden ON sessions(updated_at, session_key)
  WHERE vis <> 0;
CREATE INDEX idx_sessions_agent ON sessions(agent_id, vis, updated_at);
CREATE INDEX idx_sessions_channel ON sessions(row_channel, vis, updated_at);
"""
# The search haystack of a row as ``search_text`` (base.py) builds it: a TEXT value is the
# part before the session id, which with the key completes it; a BLOB is the whole of it.
_HAYSTACK: Final = (
    "CASE typeof(search_text) WHEN 'text'"
    " THEN search_text || session_id || char(0) || session_key"
    " ELSE CAST(search_text AS TEXT) END"
)

# What maintenance reads of a row: never the entry itself, one field of it (entry_json may
# be deflated: see rowcodec.py). The folded key follows, then the sort key.
_REF_COLUMNS: Final = (
    "session_key, session_id, entry_field(entry_json, 'sessionFile'),"
    " row_updated_at, model,"
    " length(entry_json) + length(search_text) + 3 * length(session_key) + 96, message_count"
)

_MAINT_COLUMNS: Final = (
    f"{_REF_COLUMNS}, coalesce(key_fold, session_key) AS fold, updated_at AS t, session_key AS k"
)
_FOLD_AT: Final = 7  # `fold` in _MAINT_COLUMNS: after the seven columns of _REF_COLUMNS


def _by_time(where: str = "", *, descending: bool = False) -> str:
    """Rows in (updated_at, session_key) order through two indexes, merged (no sort).

    The visible rows (vis = 0) are walked in idx_sessions_list, the others in
    idx_sessions_hidden; ``where`` (AND-ed terms, with ? parameters) applies to both, so
    its parameters are passed twice.
    """
    order = " DESC" if descending else ""
    more = f" AND {where}" if where else ""
    return (
        f"SELECT {_MAINT_COLUMNS} FROM sessions WHERE vis = 0{more} UNION ALL"
        f" SELECT {_MAINT_COLUMNS} FROM sessions WHERE vis <> 0{more}"
        f" ORDER BY t{order}, k{order}"
    )


_ROW_COLUMNS: Final = (
    "session_key, session_id, updated_at, created_at, channel, last_channel, last_to,"
    " last_account_id, last_thread_id, label, display_name, status, model, model_provider,"
    " total_tokens, input_tokens, output_tokens, message_count, archived, key_fold, agent_id,"
    " kind, vis, row_channel, row_updated_at, spawned_by, parent_session_key, search_text,"
    " entry_json, blob_refs"
)
_UPSERT: Final = (
    f"INSERT INTO sessions ({_ROW_COLUMNS}) VALUES ("
    + ", ".join("?" * 30)
    + ") ON CONFLICT(session_key) DO UPDATE SET "
    + ", ".join(
        f"{c.strip()} = excluded.{c.strip()}"
        for c in _ROW_COLUMNS.split(",")
        if c.strip() not in ("session_key", "created_at", "archived")
    )
)


def _by_fold(columns: str) -> str:
    """The rows whose folded key is ?1: key_fold, or the key where key_fold is NULL (v7).

    Two lookups, the primary key and the partial fold index, as a UNION ALL: about half
    the cost of the same condition written with OR (a MULTI-INDEX OR builds a rowid set).
    """
    return (
        f"SELECT {columns} FROM sessions WHERE session_key = ?1 AND key_fold IS NULL"
        f" UNION ALL SELECT {columns} FROM sessions WHERE key_fold = ?1"
    )


# What reads of one key select: the columns the read path uses first, then (for writes)
# every column of the row, so that an update can set only the columns that change.
_CANDIDATES: Final = _by_fold("session_key, updated_at, entry_json, blob_refs, message_count")
_CANDIDATES_FULL: Final = _by_fold(
    f"session_key, updated_at, entry_json, blob_refs, message_count, {_ROW_COLUMNS}"
)
# The fields `fields=` can take from a row's columns. A column holds its field's exact value
# whenever it is not NULL (derive_row keeps strings and finite numbers as they are, and
# anything else becomes NULL, as does a missing field), so a NULL sends the read to the
# entry itself. session_id is '' (not NULL) for a non-string id: '' goes to the entry too.
_FIELD_COLUMNS: Final = {
    "sessionId": "session_id",
    "updatedAt": "row_updated_at",
    "channel": "channel",
    "lastChannel": "last_channel",
    "lastTo": "last_to",
    "lastAccountId": "last_account_id",
    "lastThreadId": "last_thread_id",
    "label": "label",
    "displayName": "display_name",
    "status": "status",
    "model": "model",
    "modelProvider": "model_provider",
    "totalTokens": "total_tokens",
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "messageCount": "message_count",
    "spawnedBy": "spawned_by",
    "parentSessionKey": "parent_session_key",
}


@functools.lru_cache(maxsize=256)
def _fields_sql(names: tuple[str, ...]) -> str:
    """A candidates read (see ``_CANDIDATES``) that also selects the columns of ``names``."""
    columns = "".join(f", {_FIELD_COLUMNS[name]}" for name in names)
    return _by_fold(f"session_key, updated_at, entry_json, blob_refs, message_count{columns}")


_ROW_NAMES: Final = tuple(c.strip() for c in _ROW_COLUMNS.split(","))
# Columns an update never changes (as in the upsert): the key, the creation time, archived.
_UPDATABLE: Final = tuple(
    i for i, c in enumerate(_ROW_NAMES) if c not in ("session_key", "created_at", "archived")
)
_LIST_COLUMNS: Final = (
    "session_key, agent_id, kind, session_id, row_updated_at, row_channel, last_channel,"
    " last_to, last_account_id, label, display_name, status, model, model_provider,"
    " spawned_by, parent_session_key, last_thread_id, total_tokens, input_tokens,"
    " output_tokens, message_count, updated_at"
)


@dataclass
class _Encoded:
    params: tuple[Any, ...]
    entry_json: bytes
    refs: dict[str, str]
    blobs: dict[str, tuple[str, bytes]]  # digest -> (field, compact JSON)


def _haystack(key: str, entry: Entry) -> str | bytes:
    """What ``search_text`` stores: see ``_HAYSTACK``.

    Usually the lowercased displayName, label and subject, each followed by NUL: the
    session id and the key are columns already, and complete the haystack in SQL. Where
    they are not already lowercase (legacy keys, uppercase ids) or the id is not a
    string, the whole haystack is stored, as UTF-8 bytes.
    """
    full = search_text(key, entry)
    session_id = entry.get("sessionId")
    if isinstance(session_id, str) and session_id.lower() == session_id and key.lower() == key:
        cut = len(full) - len(session_id) - len(key) - 1
        return full[:cut]
    return full.encode()


def _fold_column(key: str) -> str | None:
    folded = fold_key(key)
    return None if folded == key else folded


def _encode(key: str, entry: Entry, *, now: int) -> _Encoded:
    light: Entry = dict(entry)
    refs: dict[str, str] = {}
    blobs: dict[str, tuple[str, bytes]] = {}
    for field in BLOB_FIELDS:
        # A placeholder keeps the field's position; 0 rather than null, because a null in
        # the output makes dumps_compact walk the entry looking for NaN.
        value = light.get(field)
        if isinstance(value, BlobRef):
            refs[field] = value.digest
            light[field] = 0
        elif isinstance(value, (dict, list)):
            data = dumps_compact(value, what="entry", prefix=(key, field), keyed=True)
            digest = sha256_hex(data)
            refs[field] = digest
            blobs[digest] = (field, data)
            light[field] = 0
    entry_json = pack(dumps_compact(light, what="entry", prefix=(key,), keyed=True))
    row = derive_row(key, entry, default_agent="")
    session_id = entry.get("sessionId")
    params = (
        key,
        session_id if isinstance(session_id, str) else "",
        sort_time(entry),
        now,
        entry.get("channel") if isinstance(entry.get("channel"), str) else None,
        row["lastChannel"],
        row["lastTo"],
        row["lastAccountId"],
        row["lastThreadId"],
        row["label"],
        row["displayName"],
        row["status"],
        row["model"],
        row["modelProvider"],
        row["totalTokens"],
        row["inputTokens"],
        row["outputTokens"],
        row["messageCount"],
        0,
        _fold_column(key),
        row["agentId"] or None,
        row["kind"],
        visibility(key),
        row["channel"],
        row["updatedAt"],
        row["spawnedBy"],
        row["parentSessionKey"],
        _haystack(key, entry),
        entry_json,
        dumps_compact(refs).decode() if refs else None,
    )
    return _Encoded(params, entry_json, refs, blobs)


def _changed_columns(old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[int, ...]:
    """Positions in ``_ROW_COLUMNS`` whose value differs (1 and 1.0 differ: JSON types)."""
    if old == new and list(map(type, old)) == list(map(type, new)):
        return ()
    return tuple(i for i in _UPDATABLE if old[i] != new[i] or type(old[i]) is not type(new[i]))


# The entry fields that columns other than ``entry_json`` are derived from (``_encode``:
# ``derive_row``, ``row_channel``, ``session_kind``, ``search_text``, the blob references),
# besides the ones ``_SCALAR_COLUMNS`` recomputes. A change to any of them takes the full
# path; a change to any other field changes ``entry_json`` alone. Keep this in step with
# ``_encode`` (tests/unit/test_scalar_update.py checks the two agree).
_COLUMN_FIELDS: Final = frozenset(
    {"sessionId", "channel", "lastChannel", "lastThreadId", "chatType", "subject"}
    | set(ROW_STRING_FIELDS)
    | set(BLOB_FIELDS)
)
# Fields whose own columns are cheap to recompute: (position in _ROW_COLUMNS, value of it).
_SCALAR_COLUMNS: Final[dict[str, tuple[tuple[int, Callable[[Entry], Any]], ...]]] = {
    "updatedAt": (
        (_ROW_NAMES.index("updated_at"), sort_time),
        (_ROW_NAMES.index("row_updated_at"), lambda e: as_number(e.get("updatedAt"))),
    ),
    "totalTokens": ((_ROW_NAMES.index("total_tokens"), lambda e: as_number(e.get("totalTokens"))),),
    "inputTokens": ((_ROW_NAMES.index("input_tokens"), lambda e: as_number(e.get("inputTokens"))),),
    "outputTokens": (
        (_ROW_NAMES.index("output_tokens"), lambda e: as_number(e.get("outputTokens"))),
    ),
    "messageCount": (
        (_ROW_NAMES.index("message_count"), lambda e: message_count_of(e.get("messageCount"))),
    ),
}
_ENTRY_JSON: Final = _ROW_NAMES.index("entry_json")
# What an update reads of its key's rows: the candidates' columns, then the columns
# ``_scalar_update`` compares (in this order). Only when it cannot decide are the rows
# read again whole (``_CANDIDATES_FULL``): two fifths of the cost of that read saved.
_SCALAR_POSITIONS: Final = tuple(
    sorted({p for columns in _SCALAR_COLUMNS.values() for p, _ in columns} | {_ENTRY_JSON})
)
_SCALAR_AT: Final = {p: i for i, p in enumerate(_SCALAR_POSITIONS)}
_CANDIDATES_SCALAR: Final = _by_fold(
    "session_key, updated_at, entry_json, blob_refs, message_count, "
    + ", ".join(_ROW_NAMES[p] for p in _SCALAR_POSITIONS)
)
_SCALAR_ROW: Final = 5 + len(_SCALAR_POSITIONS)
_FULL_ROW: Final = 5 + len(_ROW_NAMES)
_ABSENT: Final = object()


def _scalar_columns(
    changed: Iterable[str], new: Entry, row: Sequence[Any], at: Mapping[int, int]
) -> tuple[list[int], list[Any]]:
    """The columns derived from the ``changed`` fields whose values differ from ``row``'s.

    Args:
        changed: The entry fields that changed.
        new: The entry to write.
        row: The row as read.
        at: Where each column (a position in ``_ROW_COLUMNS``) is in ``row``.

    Returns:
        Their positions in ``_ROW_COLUMNS`` and their new values (a value of another type,
        ``1`` for ``1.0`` say, counts as different).
    """
    positions: list[int] = []
    values: list[Any] = []
    for field in changed:
        for position, derive in _SCALAR_COLUMNS.get(field, ()):
            value = derive(new)
            stored = row[at[position]]
            if value != stored or type(value) is not type(stored):
                positions.append(position)
                values.append(value)
    return positions, values


def _scalar_update(
    key: str, old: Entry, new: Entry, row: tuple[Any, ...]
) -> tuple[tuple[int, ...], list[Any]] | None:
    """The columns to set when ``new`` differs from ``old`` in no field a derived column reads.

    An update that sets token counts and ``updatedAt`` (the usual one after a turn)
    re-encodes ``entry_json`` and recomputes only those fields' own columns, instead of
    every column of the row (``_encode``). Fields are compared by identity: the merge
    keeps the objects it did not change, and whatever else differs takes the full path.

    Args:
        key: The row's key.
        old: The stored entry as read (blob fields as ``BlobRef``).
        new: The entry to write.
        row: The row's ``_SCALAR_POSITIONS`` columns as stored.

    Returns:
        Positions in ``_ROW_COLUMNS`` that change and their new values (none: nothing to
        write), or None when the full path must decide.
    """
    changed = [f for f, v in new.items() if old.get(f, _ABSENT) is not v]
    if len(old) + sum(1 for f in changed if f not in old) != len(new):
        return None  # a field was deleted
    if not _COLUMN_FIELDS.isdisjoint(changed):
        return None
    light = new
    for field in BLOB_FIELDS:
        value = new.get(field)
        if isinstance(value, BlobRef):
            if light is new:
                light = dict(new)
            light[field] = 0  # the placeholder _encode writes; the references stay as stored
        elif value is not None:
            return None  # a materialised or new large value: the full path stores its blob
    positions, values = _scalar_columns(changed, new, row, _SCALAR_AT)
    entry_json = pack(dumps_compact(light, what="entry", prefix=(key,), keyed=True))
    if entry_json != row[_SCALAR_AT[_ENTRY_JSON]]:
        positions.append(_ENTRY_JSON)
        values.append(entry_json)
    return tuple(positions), values


# What an append's update reads of the row: the key, the stored entry and the columns
# that the counters derive (``_COUNTER_AT``: position in _ROW_COLUMNS -> in this row).
_COUNTERS_READ: Final = _by_fold(
    "session_key, entry_json, updated_at, row_updated_at, message_count"
)
_COUNTER_AT: Final = {
    _ROW_NAMES.index("updated_at"): 2,
    _ROW_NAMES.index("row_updated_at"): 3,
    _ROW_NAMES.index("message_count"): 4,
}


class _GeneralPath(Exception):
    """``modify_counters`` cannot take its short path: ``modify`` decides instead."""


@functools.lru_cache(maxsize=512)
def _update_sql(columns: tuple[int, ...]) -> str:
    assignments = ", ".join(f"{_ROW_NAMES[i]} = ?" for i in columns)
    return f"UPDATE sessions SET {assignments} WHERE session_key = ?"


_IOERR_WRITE = apsw.mapping_extended_result_codes["SQLITE_IOERR_WRITE"]


def _unwritten(exc: apsw.Error) -> bool:
    """Whether a failed commit certainly left no transaction to recover.

    A write to the WAL failed: SQLite writes the frame that marks the commit last and,
    with powersafe overwrite (the unix default), nothing after it, so that frame is
    missing or torn and recovery stops before it.
    """
    return getattr(exc, "extendedresult", None) == _IOERR_WRITE


def _wrap(exc: apsw.Error, path: Path, system_errno: int = 0) -> SessionStoreError:
    """The typed error of an apsw error; ``system_errno`` is the connection's last OS error."""
    if isinstance(exc, apsw.IOError) and system_errno in FULL_ERRNOS:
        # A file size limit or quota (EFBIG, EDQUOT) comes back as SQLITE_IOERR_WRITE.
        return StorageFullError(
            f"cannot write {path}: {os.strerror(system_errno)} (the disk or a file size limit"
            " is full); free space and retry - the transaction was rolled back, nothing was"
            " half-written"
        )
    if isinstance(exc, apsw.BusyError):
        return LockTimeoutError(
            f"{path} is locked by another writer (busy timeout); retry, or find the process"
            " holding a long write transaction"
        )
    if isinstance(exc, apsw.FullError):
        return StorageFullError(
            f"cannot write {path}: the disk is full; free space and retry (the transaction"
            " was rolled back, nothing was half-written)"
        )
    if isinstance(exc, (apsw.CorruptError, apsw.NotADBError)):
        return CorruptStoreError(
            f"{path} is not a valid SQLite database ({exc}); it was left untouched - run"
            " `sessionstore recover` to rebuild it from what is readable plus sessions.json",
            path=str(path),
        )
    if isinstance(exc, (apsw.CantOpenError, apsw.PermissionsError, apsw.ReadOnlyError)):
        return SessionStoreError(f"cannot open {path} for writing: {exc}; check its permissions")
    return SessionStoreError(f"SQLite error on {path}: {exc}")


def _ref(r: tuple[Any, ...]) -> RowRef:
    sfile = r[2]
    return RowRef(
        key=r[0],
        session_id=r[1] or "",
        session_file=sfile if isinstance(sfile, str) else None,
        updated_at=r[3],
        model=r[4],
        size=int(r[5]),
        message_count=r[6] if isinstance(r[6], int) else None,
    )


class _SqliteMaintenance(MaintenanceTxn):
    """Maintenance as SQL on indexed columns, inside the caller's write transaction."""

    def __init__(self, index: SqliteIndex, conn: apsw.Connection) -> None:
        self._index = index
        self._conn = conn

    def count(self) -> int:
        return _row_count(self._conn)

    def rows(self) -> Iterator[RowRef]:
        return (_ref(r) for r in self._conn.execute(f"SELECT {_REF_COLUMNS} FROM sessions"))

    def stale(self, cutoff: int | float, protect: frozenset[str]) -> list[RowRef]:
        # updated_at is 0 for entries without a numeric updatedAt: those are kept.
        rows: Rows = self._conn.execute(
            _by_time("updated_at < ? AND row_updated_at IS NOT NULL"), (cutoff, cutoff)
        ).fetchall()
        return [_ref(r) for r in rows if r[_FOLD_AT] not in protect]

    def overflow(self, max_entries: int, protect: frozenset[str]) -> list[RowRef]:
        if self.count() <= max_entries:
            return []
        marks = ", ".join("?" * len(protect))
        shielded = 0
        if protect:
            rows: Rows = self._conn.execute(
                "SELECT count(*) FROM sessions WHERE"
                f" (session_key IN ({marks}) AND key_fold IS NULL) OR key_fold IN ({marks})",
                (*protect, *protect),
            ).fetchall()
            shielded = int(rows[0][0])
        where = f"coalesce(key_fold, session_key) NOT IN ({marks})" if protect else ""
        rows = self._conn.execute(
            _by_time(where, descending=True) + " LIMIT -1 OFFSET ?",
            (*protect, *protect, max(max_entries - shielded, 0)),
        ).fetchall()
        return [_ref(r) for r in rows]

    def oldest(self, protect: frozenset[str]) -> Iterator[RowRef]:
        cursor = self._conn.execute(_by_time())
        return (_ref(r) for r in cursor if r[_FOLD_AT] not in protect)

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            gone: Rows = self._conn.execute(
                "DELETE FROM sessions WHERE session_key = ? RETURNING blob_refs", (key,)
            ).fetchall()
            for (refs,) in gone:
                if refs:
                    self._index._drop_blobs(self._conn, _load_refs(refs))

    def reference_count(self, session_id: str) -> int:
        rows: Rows = self._conn.execute(
            "SELECT count(*) FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchall()
        return int(rows[0][0])

    def index_bytes(self) -> int:
        # Live pages of the database (free pages are reused, so they do not count); the
        # WAL is transient and recycled by checkpoints.
        values: list[int] = []
        for name in ("page_size", "page_count", "freelist_count"):
            rows: Rows = self._conn.execute(f"PRAGMA {name}").fetchall()
            values.append(int(rows[0][0]))
        return values[0] * (values[1] - values[2])


class _PlanningMaintenance(_SqliteMaintenance):
    """Maintenance planned on a snapshot copy: removals are recorded for the live store.

    Each removed row is recorded with its version as the batched apply compares it:
    ``updatedAt``, the row's ``updated_at`` column, the stored entry's length and its blob
    references (maintenance never reads an entry; a write that changes none of them, such
    as one field rewritten to a value of the same length with ``updatedAt`` untouched, is
    not told apart).
    """

    def __init__(self, index: SqliteIndex, conn: apsw.Connection) -> None:
        super().__init__(index, conn)
        self.removed: list[tuple[Any, ...]] = []
        self.kept_keys: frozenset[str] = frozenset()

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            gone: Rows = self._conn.execute(
                "DELETE FROM sessions WHERE session_key = ?"
                " RETURNING session_key, updated_at, row_updated_at, length(entry_json),"
                " blob_refs",
                (key,),
            ).fetchall()
            for r in gone:
                self.removed.append(tuple(r))
                if r[4]:
                    self._index._drop_blobs(self._conn, _load_refs(r[4]))


class SqliteIndex(IndexBackend):
    """``sessions.sqlite`` backend.

    Args:
        path: The database file (created 0600, its directory 0700).
        agent_id: The agent this store belongs to (for rows of non-agent keys).
        durability: ``"normal"`` (``synchronous=NORMAL``; survives process crashes) or
            ``"power"`` (``synchronous=FULL``; survives power loss).
        busy_timeout_ms: How long a writer waits for another writer.
    """

    store_type = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        agent_id: str,
        durability: str = "normal",
        busy_timeout_ms: int = 10_000,
        read_only: bool = False,
        on_create: Callable[[SqliteIndex, apsw.Connection], None] | None = None,
    ) -> None:
        if durability not in DURABILITY_SYNC:
            raise SessionStoreError(
                f"durability must be one of {sorted(DURABILITY_SYNC)}, got {durability!r}"
            )
        self._path = path
        self.location = str(path)
        self._agent_id = agent_id
        self._sync = DURABILITY_SYNC[durability]
        self._busy_timeout_ms = busy_timeout_ms
        self._read_only = read_only
        self._on_create = on_create
        self._not_writable: str | None = "opened read-only" if read_only else None
        self._open_record: tuple[bool, str | None] = (False, None)
        self._local = threading.local()
        self._conns: list[apsw.Connection] = []  # every open one of this process
        self._idle: list[apsw.Connection] = []  # those of ended threads, not yet reused
        # Reentrant: a lease can die (and give its connection back) in a garbage
        # collection that runs while this thread holds the guard.
        self._conns_guard = threading.RLock()
        self._closed = False
        self._blob_cache = BlobCache(BLOB_CACHE_BYTES)
        self._error_guard = _ErrorGuard(self)
        self._checkpoints = SqliteCheckpoints(self)
        self.maintenance_batch_rows = MAINTENANCE_BATCH_ROWS
        # Called between two batches of maintenance's apply (tests force interleavings).
        self.maintenance_batch_hook: Callable[[], None] | None = None
        _live.add(self)
        # Nothing is created here: a store that does not exist yet is read as empty, and
        # the database appears with the first write (``create``).
        if self.exists():
            with self._errors():
                self._conn()

    def exists(self) -> bool:
        """Whether the database file exists (a store never written has none)."""
        try:
            return self._path.stat().st_size > 0
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise os_error(exc, "read", self._path) from exc

    @property
    def writable(self) -> bool:
        """Whether writes are possible (not opened read-only, files not read-only)."""
        if self._not_writable is None and self.exists():
            with self._errors():
                self._conn()
        return self._not_writable is None

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _reset_after_fork(self) -> None:
        # Every connection so far is the parent's, in use there: the child never closes
        # or reuses one (close() must not reach them, a new thread must not get one).
        _abandoned.extend(self._conns)
        self._conns, self._idle = [], []
        self._conns_guard = threading.RLock()
        self._blob_cache = BlobCache(BLOB_CACHE_BYTES)

    # --- connections ------------------------------------------------------------------------

    def _errors(self) -> _ErrorGuard:
        # A class, not a generator context manager: it wraps every read, and entering a
        # generator costs about as much as the row counter read it guards.
        return self._error_guard

    def _raise_typed(self, exc: BaseException) -> None:
        """Raise the typed store error for ``exc``; return for an error not ours to map."""
        if isinstance(exc, apsw.Error):
            raise _wrap(exc, self._path, self._last_errno()) from exc
        if isinstance(exc, UnicodeDecodeError):  # a text column holding bytes that are not UTF-8
            raise CorruptStoreError(
                f"{self._path}: a stored value is not UTF-8 text ({exc.reason}); the file was"
                " left untouched - run `sessionstore doctor`, or `sessionstore recover`",
                path=str(self._path),
            ) from exc
        if isinstance(exc, OverflowError):  # apsw binds integers as signed 64-bit only
            raise InvalidEntryError(
                f"a number in the entry is outside SQLite's 64-bit integer range ({exc})"
            ) from exc
        if isinstance(exc, _BlobGone):
            raise CorruptStoreError(
                f"{self._path}: blob {exc.digest} referenced by a session is missing; run"
                " `sessionstore doctor`",
                path=str(self._path),
            ) from None
        if isinstance(exc, _BadRow):
            raise CorruptStoreError(
                f"{self._path}: {exc}; the file was left untouched - run `sessionstore doctor`,"
                " or restore it from a backup",
                path=str(self._path),
            ) from exc
        if isinstance(exc, (orjson.JSONDecodeError, zlib.error)):
            raise CorruptStoreError(
                f"{self._path}: a stored entry or blob does not decode ({exc}); the file was"
                " left untouched - run `sessionstore doctor`, or restore it from a backup",
                path=str(self._path),
            ) from exc

    def _last_errno(self) -> int:
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        try:
            return int(conn.system_errno) if conn is not None else 0
        except apsw.Error:
            return 0

    def _thread_conn(self) -> apsw.Connection | None:
        local = self._local
        conn: apsw.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.generation == _fork_generation:
            return conn
        if self._closed:
            raise StoreClosedError("the store is closed; open a new one with open_store()")
        if conn is not None:
            _abandoned.append(conn)  # inherited from the parent process: never close it here
            local.conn = None
        return None

    def _reader(self) -> apsw.Connection | None:
        """This thread's connection for a read; None while the database does not exist."""
        conn = self._thread_conn()
        if conn is not None:
            return conn
        if not self.exists():
            return None
        return self._conn()

    def _conn(self) -> apsw.Connection:
        """This thread's connection to the (existing) database, opened on first use."""
        conn = self._thread_conn()
        if conn is not None:
            return conn
        idle = self._take_idle()
        if idle is not None:
            return self._lease(idle)
        return self._lease(self._open())

    def _open(self) -> apsw.Connection:
        self._check_header()
        problem = self._read_only_reason()
        if problem is None:
            conn = apsw.Connection(str(self._path), flags=apsw.SQLITE_OPEN_READWRITE)
        else:
            conn = self._open_read_only()
        try:
            _prepare(conn)
            conn.set_busy_timeout(self._busy_timeout_ms)
            settings = (
                f"PRAGMA synchronous = {self._sync}; PRAGMA temp_store = MEMORY;"
                f" PRAGMA cache_size = -{PAGE_CACHE_KIB}; PRAGMA foreign_keys = OFF;"
            )
            if problem is None:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
                if str(mode).lower() != "wal":
                    raise BackendUnavailableError(
                        f"the file system of {self._path} refuses SQLite WAL mode"
                        f" (journal_mode={mode}); use a local disk, or store_type='json'"
                    )
                # One batch of statements: the settings, then the schema version, which is
                # all that an open of a current store has to read.
                limit = f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES};"
                if not self._current_schema(conn, f"{limit} {settings}"):
                    self._ensure_schema(conn)
            else:
                conn.execute(settings)
                self._check_readable_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._not_writable = problem
        return conn

    def _check_header(self) -> None:
        # SQLite takes a file shorter than one page for an empty database and writes a new
        # one over it: refuse whatever does not start as a database does, before it opens.
        # Read through SQLite's own VFS, not os.open: closing any descriptor of a file drops
        # every POSIX lock this process holds on it, including the locks of this process's
        # other connections to the database; SQLite's VFS defers that close while they hold
        # locks.
        path = str(self._path)
        try:
            # the size from stat: SQLite's VFS reports a 1-byte file as empty
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise SessionStoreError(
                f"{self._path} does not exist: nothing has been written to this store yet"
            ) from None
        except OSError as exc:
            raise os_error(exc, "read", self._path) from exc
        try:
            file = apsw.VFSFile("", path, [apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_READONLY, 0])
            try:
                head = file.xRead(min(size, len(SQLITE_MAGIC)), 0) if size else b""
            finally:
                file.xClose()
        except apsw.Error as exc:
            raise _wrap(exc, self._path) from exc
        if head and head != SQLITE_MAGIC:
            raise CorruptStoreError(
                f"{self._path} is not a valid SQLite database (it does not start with the"
                " SQLite header); it was left untouched - run `sessionstore recover` to"
                " rebuild it from sessions.json (the damaged file is moved aside, never"
                " deleted)",
                path=str(self._path),
            )

    def _take_idle(self) -> apsw.Connection | None:
        with self._conns_guard:
            return self._idle.pop() if self._idle else None

    def _lease(self, conn: apsw.Connection) -> apsw.Connection:
        """Make ``conn`` this thread's connection until the thread ends."""
        with self._conns_guard:
            closed = self._closed
            if not closed and conn not in self._conns:
                self._conns.append(conn)
        if closed:  # close() ran while this thread was opening it
            with contextlib.suppress(apsw.Error):
                conn.close()
            raise StoreClosedError("the store is closed; open a new one with open_store()")
        local = self._local
        local.conn = conn
        local.lease = _Lease(self, conn)
        local.generation = _fork_generation
        local.in_write = False
        return conn

    def _release_connection(self, conn: apsw.Connection) -> None:
        """Take back the connection of a thread that ended: keep it idle, or close it."""
        with self._conns_guard:
            if conn not in self._conns or conn in self._idle:
                return  # closed by close(), or the parent's (abandoned at a fork)
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
            self._conns.remove(conn)
        with contextlib.suppress(apsw.Error):
            conn.close()

    def _read_only_reason(self) -> str | None:
        """Why this process cannot write the database (None when it can)."""
        if self._read_only:
            return "it was opened read-only"
        directory = self._path.parent
        if not os.access(directory, os.W_OK):
            return f"its directory {directory} is not writable by this process"
        if not os.access(self._path, os.W_OK):
            return "the file is not writable by this process"
        return None

    def _open_read_only(self) -> apsw.Connection:
        # A writable location is read through a normal connection that never writes
        # (SQLite removes its -wal/-shm files again at close). Where this process may not
        # create files, WAL needs the -shm file a writer left behind; without one (no writer
        # has the database open) the file is read as immutable.
        wal = Path(f"{self._path}-wal")
        shm = Path(f"{self._path}-shm")
        if os.access(self._path.parent, os.W_OK) and os.access(self._path, os.W_OK):
            conn = apsw.Connection(str(self._path), flags=apsw.SQLITE_OPEN_READWRITE)
            conn.execute("PRAGMA query_only = 1")
            return conn
        if shm.exists():
            mode = "mode=ro"
        elif wal.exists() and wal.stat().st_size > 0:
            raise ReadOnlyStoreError(
                f"{self._path} cannot be read: its write-ahead log holds changes but there is no"
                f" {shm.name} and this process may not create one; open it once as a user who"
                " can write the directory"
            )
        else:
            mode = "immutable=1"
        return apsw.Connection(
            sqlite_uri(self._path, mode), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        )

    def _check_readable_schema(self, conn: apsw.Connection) -> None:
        version = self._schema_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self._path} has schema version {version}, newer than this sessionstore"
                f" understands ({SCHEMA_VERSION}); upgrade sessionstore"
            )
        if version not in (0, SCHEMA_VERSION):
            raise ReadOnlyStoreError(
                f"{self._path} has schema version {version} and needs an upgrade to"
                f" {SCHEMA_VERSION}, which this read-only open cannot write; open it once for"
                " writing"
            )

    def create(self) -> bool:
        """Create the database file if it does not exist; returns whether this call did.

        The database is built under a temporary name (schema, then ``on_create``, e.g. the
        import of sessions.json, in one transaction), synced, and linked into place, which
        fails if another process got there first: then its database is used and ours is
        thrown away. A failure removes only the temporary files of this call, so whatever
        another process created is never touched. Several processes may create at once.

        Raises:
            ReadOnlyStoreError: The store was opened read-only or its directory is not
                writable.
        """
        if self.exists():
            return False
        if self._read_only:
            raise ReadOnlyStoreError(f"cannot create {self._path}: the store was opened read-only")
        directory = self._path.parent
        ensure_private_dir(directory)
        self._remove_dead_builds()
        tmp = directory / f"{self._path.name}.{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except PermissionError as exc:
            raise ReadOnlyStoreError(
                f"cannot create {self._path}: {directory} is not writable by this process"
                " (check its permissions)"
            ) from exc
        except OSError as exc:
            raise os_error(exc, "create", self._path) from exc
        try:
            # The flock tells the doctor that this temporary file is being built.
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._errors():
                self._build(tmp)
            try:
                os.fsync(fd)  # the whole database is on disk before it has its name
            except OSError as exc:
                raise os_error(exc, "sync", self._path) from exc
            try:
                move_into_place(tmp, self._path)
            except FileExistsError:
                return False  # another process created it first: use theirs
            except OSError as exc:
                raise os_error(exc, "create", self._path) from exc
            fsync_dir(directory)
            return True
        finally:
            os.close(fd)
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{tmp}{suffix}")

    def _remove_dead_builds(self) -> None:
        """Remove databases left half-built by a creator that died (kill -9).

        A builder holds an flock on its temporary file from before its first byte until it
        is done (:func:`abandoned_build`), so a dead builder's file goes at once.
        """
        prefix = f"{self._path.name}."
        try:
            names = [e.name for e in os.scandir(self._path.parent) if e.name.startswith(prefix)]
        except OSError:
            return
        for name in names:
            path = self._path.parent / name
            if not name.endswith(".tmp") or not abandoned_build(path, STALE_BUILD_SECONDS):
                continue
            for suffix in ("-journal", "-wal", "-shm", ""):
                with contextlib.suppress(OSError):
                    os.unlink(f"{path}{suffix}")

    def _build(self, tmp: Path) -> None:
        conn = _prepare(apsw.Connection(str(tmp), flags=apsw.SQLITE_OPEN_READWRITE))
        try:
            conn.set_busy_timeout(self._busy_timeout_ms)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
            if str(mode).lower() != "wal":
                raise BackendUnavailableError(
                    f"the file system of {self._path} refuses SQLite WAL mode"
                    f" (journal_mode={mode}); use a local disk, or store_type='json'"
                )
            # Nobody else sees this file before it is linked into place, and it is synced
            # before that: no need to sync each step.
            conn.execute("PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY")
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._upgrade(conn, 0)
                if self._on_create is not None:
                    self._on_create(self, conn)
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except apsw.IOError as exc:
            raise _wrap(exc, self._path, int(conn.system_errno)) from exc
        finally:
            conn.close()

    @staticmethod
    @contextlib.contextmanager
    def _read_txn(conn: apsw.Connection) -> Iterator[None]:
        # One snapshot for a row and its blobs: between two autocommit reads a writer may
        # replace the entry and drop the blob it referenced. A savepoint nests inside a
        # write transaction of this thread.
        conn.execute("SAVEPOINT sessionstore_read")
        try:
            yield
        except BaseException:
            # An I/O error may have rolled the snapshot back already: ending it must not
            # replace the error that says what went wrong.
            with contextlib.suppress(apsw.Error):
                conn.execute("RELEASE sessionstore_read")
            raise
        conn.execute("RELEASE sessionstore_read")

    @contextlib.contextmanager
    def _write_txn(self, *, wait: bool = True) -> Iterator[apsw.Connection]:
        conn = self._writer()
        key = str(self._path)
        _writes.enter(key)
        try:
            self._begin(conn, wait)
            try:
                yield conn
            except BaseException:
                self._abort(conn)
                raise
            self._commit(conn)
        finally:
            _writes.leave(key)

    def _writer(self) -> apsw.Connection:
        """This thread's connection for a write, once the guards of a write let it begin."""
        conn = self._thread_conn()
        if conn is None:
            if not self.exists():
                self.create()
            conn = self._conn()
        if self._not_writable is not None:
            raise ReadOnlyStoreError(
                f"cannot write {self._path}: {self._not_writable}; reads work, writes need"
                " write access to the file and its directory"
            )
        if self._local.in_write:
            raise SessionStoreError(
                "a write was started from inside another write's callback on the same store;"
                " do all changes inside the one callback"
            )
        if str(self._path) in _writes.inherited:
            raise SessionStoreError(
                f"cannot write {self._path} in this process: it was forked while another"
                " thread of its parent was writing to this database, and SQLite's lock state"
                " of that unfinished write was copied into it; fork where no thread writes,"
                " or start the process fresh (multiprocessing's 'spawn')"
            )
        return conn

    # A write transaction in three calls: ``modify``, the hot path, runs them without the
    # cost of ``_write_txn``'s generator.

    def _begin(self, conn: apsw.Connection, wait: bool) -> None:
        try:
            if not wait:
                conn.set_busy_timeout(0)
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            raise _wrap(exc, self._path) from exc
        finally:
            if not wait:
                conn.set_busy_timeout(self._busy_timeout_ms)
        self._local.in_write = True

    def _abort(self, conn: apsw.Connection) -> None:
        self._local.in_write = False
        with contextlib.suppress(apsw.Error):
            conn.execute("ROLLBACK")

    def _commit(self, conn: apsw.Connection) -> None:
        self._local.in_write = False
        try:
            conn.execute("COMMIT")
        except apsw.Error as exc:
            errno_ = self._last_errno()
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, apsw.IOError) and not _unwritten(exc) and not self._settle(conn):
                # The commit's frames may be in the WAL already (a failed sync, say) and the
                # write that would void them failed too: a restart can bring the transaction
                # back. Say so; never claim nothing was written.
                raise OutcomeUnknownError(
                    f"the commit to {self._path} failed ({_wrap(exc, self._path, errno_)}); it"
                    " may or may not have been applied - read the state back before retrying"
                ) from exc
            raise _wrap(exc, self._path, errno_) from exc

    def _settle(self, conn: apsw.Connection) -> bool:
        """Make a failed commit's outcome definite: not applied. True when that worked.

        A commit whose WAL write or sync failed is rolled back in memory, but its frames
        can sit in the WAL with a valid commit mark, and a crash before the next write
        would recover them. The next write starts at the same WAL position and breaks
        their checksum chain: do one tiny write now, while the caller still waits.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('failed_commits', '1')"
                    " ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
                raise
        except apsw.Error:
            return False
        return True

    # --- schema -----------------------------------------------------------------------------

    def _current_schema(self, conn: apsw.Connection, before: str) -> bool:
        """Run the statements ``before``, then tell whether the schema is the current one.

        False means "not known to be current" (no ``meta`` table yet, an older or newer
        version, a damaged value): :meth:`_ensure_schema` then decides, as it always did.
        The migration record is read in the same statement, for :meth:`take_open_record`.
        """
        try:
            rows = conn.execute(
                f"{before} SELECT key, value FROM meta WHERE key IN ('schema_version', 'migration')"
            ).fetchall()
        except apsw.SQLError:
            # No meta table (a PR #58550 file, schema 1): the statements before it ran.
            return False
        values = {r[0]: r[1] for r in rows if len(r) == 2}  # the pragmas' rows have one
        record = values.get("migration", _ABSENT)
        self._open_record = (True, None if record is _ABSENT else str(record))  # as _meta reads it
        return values.get("schema_version") == str(SCHEMA_VERSION)

    def take_open_record(self) -> tuple[bool, dict[str, Any] | None]:
        """The migration record as the open just done read it, once.

        ``open_store`` checks it right after opening (first-open import, split store):
        this spares it a statement. Later callers use :meth:`migration_record`.

        Returns:
            ``(True, record)`` the first time after an open that read it, else
            ``(False, None)``.
        """
        found, value = self._open_record
        if not found:
            return False, None
        self._open_record = (False, None)
        with self._errors():
            return True, self._parse_record("migration", value)

    @staticmethod
    def _parse_record(record_key: str, value: str | None) -> dict[str, Any] | None:
        record = orjson.loads(value) if value else None
        if record is not None and not isinstance(record, dict):
            raise _BadRow(f"the {record_key} record in meta is not an object: {value!r:.80}")
        return record

    def _ensure_schema(self, conn: apsw.Connection) -> None:
        version = self._schema_version(conn)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self._path} has schema version {version}, newer than this sessionstore"
                f" understands ({SCHEMA_VERSION}); upgrade sessionstore"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have upgraded it meanwhile.
            self._upgrade(conn, self._schema_version(conn))
        except BaseException:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _upgrade(self, txn: apsw.Connection, version: int) -> None:
        """Bring the schema from ``version`` to the current one, inside ``txn``'s write."""
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            txn.execute(_PR_SCHEMA).fetchall()
            version = 1
        if version == 1:
            self._migrate_v1_to_v2(txn)
            version = 2
        if version == 2:
            # v3: prune, cap and the disk budget walk rows in updatedAt order; blobs
            # may be stored compressed.
            txn.execute(_V3_INDEXES)
            columns = {r[1] for r in txn.execute("PRAGMA table_info(blobs)")}
            if "codec" not in columns:
                txn.execute("ALTER TABLE blobs ADD COLUMN codec INTEGER NOT NULL DEFAULT 0")
            version = 3
        if version == 3:
            # v4: the list index covers every column of a list row, so a list reads no
            # table row (each carries its entry, a bloated one a page of its own).
            txn.execute(_V4_INDEXES)
            version = 4
        if version == 4:
            # v5: transcript checkpoints, so tails and appends read only new bytes.
            txn.execute(_V5_TABLES)
            version = 5
        if version == 5:
            # v6: deflated entries, a narrow list index (a quarter of the file, see
            # docs/storage-format.md).
            self._pack_entries(txn)
            txn.execute(_V6_INDEXES)
            version = 6
        if version == 6:
            # v7: a smaller table and fewer, narrower indexes (docs/storage-format.md).
            txn.execute(_V7_DROP)
            self._reencode_v7(txn)
            txn.execute(_V7_INDEXES)
            version = 7
        txn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        applied = self._meta(txn, "migrations_applied")
        history = orjson.loads(applied) if applied else []
        history.append({"version": version, "at": now_ms()})
        self._set_meta(txn, "schema_version", str(version))
        self._set_meta(txn, "migrations_applied", dumps_compact(history).decode())

    @staticmethod
    def _pack_entries(conn: apsw.Connection) -> None:
        """Store every entry still kept as plain JSON deflated (v6), by rowid ranges."""
        last = -1
        while True:
            rows: Rows = conn.execute(
                "SELECT rowid, entry_json FROM sessions WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, _PACK_BATCH),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            packed = []
            for rowid, stored in rows:
                data = stored.encode() if isinstance(stored, str) else bytes(stored)
                if data[:1] == b"{":  # plain JSON (what else is there is left as it is)
                    packed.append((pack(data), rowid))
            conn.executemany("UPDATE sessions SET entry_json = ? WHERE rowid = ?", packed)

    @staticmethod
    def _reencode_v7(conn: apsw.Connection) -> None:
        """Set every row's schema 7 ``key_fold`` and ``search_text``, by rowid ranges."""
        last = -1
        while True:
            rows: Rows = conn.execute(
                "SELECT rowid, session_key, entry_json, search_text FROM sessions"
                " WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, _PACK_BATCH),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            changes = []
            for rowid, key, stored, old in rows:
                try:
                    haystack: str | bytes = _haystack(key, _load_entry(stored))
                except (_BadRow, ValueError):
                    # A damaged entry keeps its old haystack, whole (doctor reports it).
                    haystack = old.encode() if isinstance(old, str) else old
                changes.append((_fold_column(key), haystack, rowid))
            conn.executemany(
                "UPDATE sessions SET key_fold = ?, search_text = ? WHERE rowid = ?", changes
            )

    def _schema_version(self, conn: apsw.Connection) -> int:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            value = self._meta(conn, "schema_version")
            if value is not None:
                if not value.isdigit():
                    raise _BadRow(f"the schema version in meta is {value!r:.40}, not a number")
                return int(value)
        return 1 if "sessions" in tables else 0

    @staticmethod
    def _meta(conn: apsw.Connection, key: str) -> str | None:
        rows = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall()
        return str(rows[0][0]) if rows else None

    @staticmethod
    def _set_meta(conn: apsw.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _migrate_v1_to_v2(self, conn: apsw.Connection) -> None:
        """Rebuild PR #58550's table: derived columns, blobs, exact types, counters."""
        conn.execute(_V2_TABLE)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY NOT NULL,"
            " data BLOB NOT NULL, refcount INTEGER NOT NULL, codec INTEGER NOT NULL DEFAULT 0)"
            " WITHOUT ROWID"
        )
        now = now_ms()
        old: Rows = conn.execute(
            "SELECT session_key, session_id, updated_at, entry_json, message_count"
            " FROM sessions ORDER BY rowid"
        ).fetchall()
        for key, session_id, updated_at, entry_json, _count in old:
            try:
                entry = orjson.loads(entry_json)
            except orjson.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict):
                entry = {"sessionId": session_id, "updatedAt": updated_at}
            enc = _encode(key, load_normalize(entry), now=now)
            self._add_blobs(conn, enc.refs, enc.blobs)
            params = list(enc.params)
            params[_ROW_NAMES.index("key_fold")] = fold_key(key)  # NOT NULL until v7
            conn.execute(
                f"INSERT INTO sessions_v2 ({_ROW_COLUMNS}) VALUES (" + ", ".join("?" * 30) + ")",
                params,
            )
        conn.execute("DROP TABLE sessions")
        conn.execute("ALTER TABLE sessions_v2 RENAME TO sessions")
        conn.execute(_V2_INDEXES).fetchall()

    # --- blobs ------------------------------------------------------------------------------

    @staticmethod
    def _retain(
        conn: apsw.Connection, counts: Counter[str], blobs: dict[str, tuple[str, bytes]]
    ) -> None:
        """Add references to blobs, inserting those that are new (with their data)."""
        for digest, n in counts.items():
            conn.execute("UPDATE blobs SET refcount = refcount + ? WHERE digest = ?", (n, digest))
            if conn.changes() or digest not in blobs:
                continue
            field, data = blobs[digest]
            codec = CODEC_JSON
            if field in COMPRESSED_FIELDS and len(data) > 1024:
                packed = zlib.compress(data, 6)
                if len(packed) < len(data) * 3 // 4:
                    data, codec = packed, CODEC_ZLIB
            conn.execute(
                "INSERT INTO blobs(digest, data, refcount, codec) VALUES (?, ?, ?, ?)",
                (digest, data, n, codec),
            )

    @staticmethod
    def _release(conn: apsw.Connection, counts: Counter[str]) -> None:
        """Drop references to blobs, deleting those no row references any more."""
        for digest, n in counts.items():
            conn.execute("UPDATE blobs SET refcount = refcount - ? WHERE digest = ?", (n, digest))
            conn.execute("DELETE FROM blobs WHERE digest = ? AND refcount <= 0", (digest,))

    @classmethod
    def _add_blobs(
        cls, conn: apsw.Connection, refs: dict[str, str], blobs: dict[str, tuple[str, bytes]]
    ) -> None:
        cls._retain(conn, Counter(refs.values()), blobs)

    @classmethod
    def _drop_blobs(cls, conn: apsw.Connection, refs: dict[str, str]) -> None:
        cls._release(conn, Counter(refs.values()))

    def _swap_blobs(
        self,
        conn: apsw.Connection,
        old_refs: dict[str, str],
        enc: _Encoded,
        between: Callable[[], None] | None = None,
    ) -> None:
        """Move a row's blob references from ``old_refs`` to ``enc.refs``.

        Only blobs whose reference count changes are touched; ``between`` runs after the
        additions and before the removals.
        """
        if old_refs == enc.refs:  # the common case: an update that leaves the blobs alone
            if between is not None:
                between()
            return
        old, new = Counter(old_refs.values()), Counter(enc.refs.values())
        self._retain(conn, new - old, enc.blobs)
        if between is not None:
            between()
        self._release(conn, old - new)

    def _blob_json(self, conn: apsw.Connection, digest: str) -> bytes:
        """The JSON of a blob, from the cache or the ``blobs`` table.

        Raises:
            _BlobGone: No such blob.
        """
        data = self._blob_cache.get(digest)
        if data is not None:
            return data
        rows: Rows = conn.execute(
            "SELECT data, codec FROM blobs WHERE digest = ?", (digest,)
        ).fetchall()
        if not rows:
            raise _BlobGone(digest)
        data, codec = rows[0]
        if codec == CODEC_ZLIB:
            data = zlib.decompress(data)
        self._blob_cache.put(digest, data)
        return data

    def _decode(
        self, conn: apsw.Connection, entry_json: bytes | str, refs_json: str | None, *, blobs: bool
    ) -> Entry:
        entry = _load_entry(entry_json)
        if refs_json:
            for field, digest in _load_refs(refs_json).items():
                entry[field] = (
                    orjson.loads(self._blob_json(conn, digest)) if blobs else BlobRef(digest)
                )
        return entry

    def materialize(self, entry: Entry) -> Entry:
        """Replace blob placeholders in ``entry`` by their values (in a copy)."""
        fields = [f for f in BLOB_FIELDS if isinstance(entry.get(f), BlobRef)]
        if not fields:
            return entry
        out = dict(entry)
        with self._errors():
            conn = self._conn()
            for field in fields:
                out[field] = orjson.loads(self._blob_json(conn, out[field].digest))
        return out

    # --- reads ------------------------------------------------------------------------------

    @staticmethod
    def _candidates(
        conn: apsw.Connection, key: str, *, full: bool = False, sql: str | None = None
    ) -> Rows:
        """The rows of ``key`` and its case variants, freshest first.

        Each row starts with ``session_key, updated_at, entry_json, blob_refs,
        message_count``; with ``full``, every column of ``_ROW_COLUMNS`` follows (``sql``:
        another read of the same rows and first columns).
        """
        if sql is None:
            sql = _CANDIDATES_FULL if full else _CANDIDATES
        rows: Rows = conn.execute(sql, (key,)).fetchall()
        if len(rows) > 1:
            rows.sort(key=lambda r: (r[1], r[0] == key), reverse=True)
        return rows

    def _read(self, conn: apsw.Connection, key: str, *, blobs: bool) -> Entry | None:
        rows = self._candidates(conn, key)
        return self._decode(conn, rows[0][2], rows[0][3], blobs=blobs) if rows else None

    def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """The entry for ``key`` or its freshest case variant (one indexed lookup)."""
        with self._errors():
            conn = self._reader()
            if conn is None:
                return None
            # Row and blobs are two statements, each its own snapshot: cheaper than a
            # transaction, and most blobs come from the cache. A blob gone between them
            # means a writer replaced the entry: read again inside one snapshot, where a
            # missing blob is real damage.
            try:
                return self._read(conn, key, blobs=blobs)
            except _BlobGone:
                pass
            with self._read_txn(conn):
                return self._read(conn, key, blobs=blobs)

    def get_fields(self, key: str, names: tuple[str, ...]) -> Entry | None:
        """The named fields that exist: from the row's columns when they hold them all.

        Only when a named field is not a column, or its column is NULL (or '' for
        ``sessionId``), is the entry decoded (its blobs only when named).
        """
        if not all(name in _FIELD_COLUMNS for name in names):
            return super().get_fields(key, names)
        with self._errors():
            conn = self._reader()
            if conn is None:
                return None
            rows = self._candidates(conn, key, sql=_fields_sql(names))
        if not rows:
            return None
        values = rows[0][5:]
        if all(v is not None and v != "" for v in values):
            return dict(zip(names, values, strict=True))
        with self._errors():
            entry = self._decode(conn, rows[0][2], rows[0][3], blobs=False)
        return {name: entry[name] for name in names if name in entry}

    def count(self) -> int:
        """Number of entries (a counter kept by triggers, not a scan)."""
        # try/except rather than `with self._errors()`: the guard's three calls cost a
        # tenth of this read.
        try:
            conn = self._reader()
            return _row_count(conn) if conn is not None else 0
        except BaseException as exc:
            self._raise_typed(exc)
            raise

    @staticmethod
    def _list_where(query: ListQuery) -> tuple[str, list[str], list[Any]]:
        """The index hint, WHERE terms and arguments of a list query (sentinels aside)."""
        # Without statistics SQLite prefers walking idx_sessions_list (vis = ?) in ORDER BY
        # order over the label/spawned_by indexes, reading every row to find a few; `+vis`
        # keeps that index out of the race when such a filter is given.
        selective = query.label is not None or query.spawned_by is not None
        # The list index covers every column, so without statistics SQLite would also walk
        # it for an agent or channel filter, reading every row to find a few: name the
        # filter's own index.
        hint = ""
        if not selective and query.channel is not None:
            hint = " INDEXED BY idx_sessions_channel"
        elif not selective and query.agent_id is not None:
            hint = " INDEXED BY idx_sessions_agent"
        where = ["+vis = 0" if selective else "vis = 0"]
        args: list[Any] = []
        if query.agent_id is not None:
            where.append("agent_id = ?")
            args.append(query.agent_id)
        if query.channel is not None:
            where.append("row_channel = ?")
            args.append(query.channel)
        if query.label is not None:
            where.append("label = ?")
            args.append(query.label)
        if query.spawned_by is not None:
            where.append("(spawned_by = ? OR parent_session_key = ?)")
            args += [query.spawned_by, query.spawned_by]
        if query.active_since is not None:
            where.append("updated_at >= ?")
            args.append(query.active_since)
        if query.search is not None:
            if "\x00" in query.search:
                where.append(f"instr({_HAYSTACK}, ?) > 0")
                args.append(query.search)
            else:
                # Without a NUL the needle cannot span two parts of the haystack: match
                # them one by one (no string built per row). A whole haystack (BLOB) holds
                # the lowercased id and key, so the extra terms add no match to it.
                where.append(
                    "(instr(search_text, ?) > 0 OR instr(session_id, ?) > 0"
                    " OR instr(session_key, ?) > 0)"
                )
                args += [query.search] * 3
        if query.after is not None:
            # updated_at <= ? is implied; it bounds the walk of an index ending in
            # updated_at (agent, channel), which the row value alone does not.
            where.append("updated_at <= ? AND (updated_at, session_key) < (?, ?)")
            args += [query.after[0], *query.after]
        return hint, where, args

    def list(self, query: ListQuery) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """Rows matching ``query`` through the composite indexes, newest first."""
        hint, where, args = self._list_where(query)
        sql = (
            f"SELECT {_LIST_COLUMNS} FROM sessions{hint} WHERE {' AND '.join(where)}"
            " ORDER BY updated_at DESC, session_key DESC"
        )
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(query.limit + 1)
        with self._errors():
            conn = self._reader()
            if conn is None:
                return [], None
            raw: Rows = conn.execute(sql, args).fetchall()
            if (query.include_global or query.include_unknown) and (
                query.agent_id is None and query.spawned_by is None
            ):
                raw = self._merge_sentinels(conn, query, raw)
        more = None
        if query.limit is not None and len(raw) > query.limit:
            raw = raw[: query.limit]
            with self._errors():
                _check_updated_at(raw[-1])
            more = (raw[-1][-1], raw[-1][0])
        agent = self._agent_id
        # One dict display per row: dict(zip(names, r)) measured 20-30% slower, and a
        # whole-store listing builds 100,000 of them.
        rows: list[SessionRow] = [
            {
                "key": r[0],
                "agentId": agent if r[1] is None else r[1],
                "kind": r[2],
                "sessionId": r[3],
                "updatedAt": r[4],
                "channel": r[5],
                "lastChannel": r[6],
                "lastTo": r[7],
                "lastAccountId": r[8],
                "label": r[9],
                "displayName": r[10],
                "status": r[11],
                "model": r[12],
                "modelProvider": r[13],
                "spawnedBy": r[14],
                "parentSessionKey": r[15],
                "lastThreadId": r[16],
                "totalTokens": r[17],
                "inputTokens": r[18],
                "outputTokens": r[19],
                "messageCount": r[20],
            }
            for r in raw
        ]
        return rows, more

    def count_matching(self, query: ListQuery) -> int:
        """How many rows ``list(query)`` would return without a limit.

        Counted in SQL: without filters from the row counter, less the hidden rows and the
        rows before the cursor (so early pages of a large store cost little); with filters
        over the filter's index.
        """
        with self._errors():
            conn = self._reader()
            if conn is None:
                return 0
            sentinels = 0
            if (query.include_global or query.include_unknown) and (
                query.agent_id is None and query.spawned_by is None
            ):
                sentinels = len(self._merge_sentinels(conn, query, []))
            filtered = any(
                v is not None
                for v in (
                    query.agent_id,
                    query.channel,
                    query.label,
                    query.spawned_by,
                    query.active_since,
                    query.search,
                )
            )
            if filtered:
                hint, where, args = self._list_where(query)
                rows: Rows = conn.execute(
                    f"SELECT count(*) FROM sessions{hint} WHERE {' AND '.join(where)}", args
                ).fetchall()
                return int(rows[0][0]) + sentinels
            hidden: Rows = conn.execute("SELECT count(*) FROM sessions WHERE vis > 0").fetchall()
            visible = _row_count(conn) - int(hidden[0][0])
            if query.after is not None:
                seen: Rows = conn.execute(
                    "SELECT count(*) FROM sessions WHERE vis = 0"
                    " AND (updated_at, session_key) >= (?, ?)",
                    list(query.after),
                ).fetchall()
                visible -= int(seen[0][0])
            return max(visible, 0) + sentinels

    def _merge_sentinels(self, conn: apsw.Connection, query: ListQuery, raw: Rows) -> Rows:
        # `global`/`unknown` are a handful of rows: filter them in Python, merge in order.
        extra = []
        sentinels: Rows = conn.execute(
            f"SELECT {_LIST_COLUMNS}, entry_json FROM sessions WHERE vis = 1"
        ).fetchall()
        for row in sentinels:
            entry = _load_entry(row[-1])
            if query.matches(row[0], entry, 1):
                extra.append(row[:-1])
        if not extra:
            return raw
        merged = raw + extra
        for r in merged:
            _check_updated_at(r)
        merged.sort(key=lambda r: (r[-1], r[0]), reverse=True)
        return merged

    def load_all(self) -> dict[str, Entry]:
        """Every entry, in insertion order (the one operation that reads every row)."""
        with self._errors():
            conn = self._reader()
            if conn is None:
                return {}
            with self._read_txn(conn):
                rows: Rows = conn.execute(
                    "SELECT session_key, entry_json, blob_refs FROM sessions ORDER BY rowid"
                ).fetchall()
                return {key: self._decode(conn, ej, refs, blobs=True) for key, ej, refs in rows}

    # --- writes -----------------------------------------------------------------------------

    def _upsert(self, conn: apsw.Connection, enc: _Encoded, old_refs: dict[str, str]) -> None:
        self._swap_blobs(conn, old_refs, enc)
        conn.execute(_UPSERT, enc.params)

    def _delete_row(self, conn: apsw.Connection, key: str, refs_json: str | None) -> None:
        conn.execute("DELETE FROM sessions WHERE session_key = ?", (key,))
        if refs_json:
            self._drop_blobs(conn, _load_refs(refs_json))

    def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """Read-modify-write one key in a ``BEGIN IMMEDIATE`` transaction."""
        if self._thread_conn() is None and not self.exists():
            # No database yet: create it only for a change that writes something.
            again = writes_when_absent(fn)
            if again is None:
                return None, False
            fn = again
        with self._errors():
            # what _write_txn does, without the cost of its generator
            conn = self._writer()
            path = str(self._path)
            _writes.enter(path)
            try:
                self._begin(conn, True)
                try:
                    out = self._modify_in(conn, key, fn, needs_blobs, full_result)
                except BaseException:
                    self._abort(conn)
                    raise
                self._commit(conn)
            finally:
                _writes.leave(path)
            return out

    def _modify_in(
        self, conn: apsw.Connection, key: str, fn: ModifyFn, needs_blobs: bool, full_result: bool
    ) -> tuple[Entry | None, bool]:
        """``modify``'s read, change and write, inside the write transaction."""
        rows = self._candidates(conn, key, sql=_CANDIDATES_SCALAR)
        existing = None
        if rows:
            existing = self._decode(conn, rows[0][2], rows[0][3], blobs=needs_blobs)
        # What the row held, field by field: ``fn`` may change ``existing`` in place.
        before = dict(existing) if existing is not None else None
        result = fn(existing)
        if result is None:
            written = False
            out = existing
        elif result is DELETE:
            for r in rows:
                self._delete_row(conn, r[0], r[3])
            written, out = bool(rows), None
        else:
            assert isinstance(result, dict)
            written = self._store(conn, key, result, rows, before)
            out = result
        # Blobs are read in the same transaction: once it commits, another writer may
        # replace this entry and drop the blobs it referenced.
        if out is not None and full_result:
            out = self.materialize(out)
        return out, written

    def _store(
        self,
        conn: apsw.Connection,
        key: str,
        entry: Entry,
        rows: Rows,
        existing: Entry | None = None,
    ) -> bool:
        """Write ``entry`` under ``key``, folding away the case variants in ``rows``.

        ``rows`` come from ``_candidates``; with ``full`` rows, an update of an existing row
        sets only the columns that change, so indexes over unchanged columns are left alone.
        ``existing`` (the entry decoded from the row) with rows read by
        ``_CANDIDATES_SCALAR`` lets an update that changes no field a derived column reads
        skip deriving the row (``_scalar_update``); any other such update reads the rows
        again whole.

        Returns:
            Whether anything was written.
        """
        own = None
        for r in rows:
            if r[0] == key:
                own = r
        if existing is not None and own is not None and len(rows) == 1 and len(own) == _SCALAR_ROW:
            scalar = _scalar_update(key, existing, entry, own[5:])
            if scalar is not None:
                positions, values = scalar
                if not positions:
                    return False
                conn.execute(_update_sql(positions), [*values, key])
                return True
            rows = self._candidates(conn, key, full=True)  # the same rows: this transaction's
            own = rows[0]
        enc = _encode(key, entry, now=now_ms())
        old_refs: dict[str, str] = {}
        if own is not None:
            old_refs = _load_refs(own[3])
            if len(rows) == 1 and len(own) == _FULL_ROW:
                changed = _changed_columns(own[5:], enc.params)
                if not changed:
                    return False
                self._swap_blobs(conn, old_refs, enc)
                conn.execute(_update_sql(changed), [enc.params[i] for i in changed] + [key])
                return True
            if len(rows) == 1 and bytes(own[2]) == enc.entry_json and old_refs == enc.refs:
                return False  # nothing changed: no write

        # Take the new blob references before dropping the variants' rows: an entry folded
        # from a variant may hold its blobs only as references (BlobRef), so dropping the
        # variant first could delete blobs the new row still needs.
        def drop_variants() -> None:
            for r in rows:
                if r[0] != key:
                    self._delete_row(conn, r[0], r[3])

        self._swap_blobs(conn, old_refs, enc, drop_variants)
        conn.execute(_UPSERT, enc.params)
        return True

    def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Whole-store mutator in one transaction; only changed rows are written."""
        with self._errors(), self._write_txn() as conn:
            all_rows: Rows = conn.execute(
                "SELECT session_key, entry_json, blob_refs, message_count FROM sessions"
                " ORDER BY rowid"
            ).fetchall()
            stored = {key: (ej, refs, mc) for key, ej, refs, mc in all_rows}
            working: dict[str, Any] = {
                k: self._decode(conn, ej, refs, blobs=True) for k, ej, refs, _ in all_rows
            }
            acp_before = {k: v["acp"] for k, v in working.items() if "acp" in v}
            acp_copies = {k: orjson.loads(orjson.dumps(v)) for k, v in acp_before.items()}
            result = fn(working)
            now = now_ms()
            for k in stored:
                if k not in working:
                    self._delete_row(conn, k, stored[k][1])
            for k, value in working.items():
                mutated_entry(k, value, acp_copies)
                old = stored.get(k)
                enc = _encode(k, settle_entry(value), now=now)
                if old is None:
                    self._upsert(conn, enc, {})
                    continue
                old_refs = _load_refs(old[1])
                if bytes(old[0]) != enc.entry_json or old_refs != enc.refs:
                    self._upsert(conn, enc, old_refs)
            return result

    def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """Plan with ``fn`` on a snapshot copy, then apply its removals in short batches.

        The plan (and so the report) is made exactly as in one transaction, but on an
        in-memory copy taken inside a read snapshot, which in WAL mode never blocks a
        writer: a dry run takes no write lock at all. When ``commit``, the rows the plan
        removed are deleted from the live database in batches of at most
        ``maintenance_batch_rows`` rows or ``MAINTENANCE_BATCH_SECONDS``, each its own
        ``BEGIN IMMEDIATE`` transaction followed by a pause (``writer_pause``), so other
        writers get in between batches rather than wait out several of them. A row is
        deleted only if it is still the version the plan saw (see
        ``_PlanningMaintenance``): one a writer changed (or re-created) since is kept, and
        its key is listed in the planning transaction's ``kept_keys`` for the caller to
        take out of its report and file plan.
        """
        if commit and self._read_only:
            raise ReadOnlyStoreError(f"cannot maintain {self._path}: it was opened read-only")
        if self._thread_conn() is None and not self.exists():
            return fn(EmptyMaintenance())  # nothing to maintain, and nothing to create
        if commit and self._not_writable is not None:
            raise ReadOnlyStoreError(
                f"cannot write {self._path}: {self._not_writable}; reads work, writes need"
                " write access to the file and its directory"
            )
        with self._errors():
            copy = _prepare(apsw.Connection(":memory:"))
            try:
                with self._errors():
                    source = self._conn()
                    # One step: the copy is one read snapshot of the live database.
                    with copy.backup("main", source, "main") as backup:
                        backup.step(-1)
                copy.execute("BEGIN")
                try:
                    planning = _PlanningMaintenance(self, copy)
                    outcome = fn(planning)
                finally:
                    copy.execute("ROLLBACK")
            finally:
                copy.close()
        if commit and planning.removed:
            planning.kept_keys = self._apply_removals(planning.removed)
        return outcome

    def _apply_removals(self, removed: Sequence[tuple[Any, ...]]) -> frozenset[str]:
        """Delete the planned rows in short write transactions; the keys kept instead."""
        kept: set[str] = set()
        limit = max(1, self.maintenance_batch_rows)
        at = 0
        held = 0.0
        while at < len(removed):
            if at:
                self._pause_for_writers(held)
                if self.maintenance_batch_hook is not None:
                    self.maintenance_batch_hook()
            with self._errors(), self._write_txn() as conn:
                started = time.monotonic()
                stop = min(at + limit, len(removed))
                while at < stop:
                    key, updated, row_updated, length, refs_json = removed[at]
                    at += 1
                    gone: Rows = conn.execute(
                        "DELETE FROM sessions WHERE session_key = ? AND updated_at IS ?"
                        " AND row_updated_at IS ? AND length(entry_json) IS ?"
                        " AND blob_refs IS ? RETURNING blob_refs",
                        (key, updated, row_updated, length, refs_json),
                    ).fetchall()
                    if gone:
                        if refs_json:
                            self._drop_blobs(conn, _load_refs(refs_json))
                    elif conn.execute(
                        "SELECT 1 FROM sessions WHERE session_key = ?", (key,)
                    ).fetchall():
                        kept.add(key)
                    if time.monotonic() - started >= MAINTENANCE_BATCH_SECONDS:
                        break
            held = time.monotonic() - started  # the commit included
        if len(removed) >= LARGE_BATCH_ROWS:
            # A checkpoint only: PRAGMA optimize could add statistics pages, and the
            # report's disk figures are the database as the plan projected it.
            with contextlib.suppress(apsw.Error):
                self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return frozenset(kept)

    def _pause_for_writers(self, held_s: float) -> None:
        """Let a writer that waited for the last maintenance batch in (see ``writer_pause``)."""
        time.sleep(writer_pause(held_s))

    def _after_large_write(self, *, checkpoint: bool = True) -> None:
        """``PRAGMA optimize`` and a passive checkpoint, after a large batch committed.

        Never waits for other writers and never fails the write it follows: what it could
        not do now is done after the next large batch, or at close.
        """
        conn = self._thread_conn()
        if conn is None or self._not_writable is not None:
            return
        conn.set_busy_timeout(0)
        try:
            with contextlib.suppress(apsw.Error):
                conn.execute("PRAGMA analysis_limit = 1000; PRAGMA optimize").fetchall()
            if checkpoint:
                with contextlib.suppress(apsw.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.set_busy_timeout(self._busy_timeout_ms)

    def index_files(self) -> tuple[str, ...]:
        """The database, its WAL and its shared-memory file."""
        name = self._path.name
        return (name, f"{name}-wal", f"{name}-shm")

    def vacuum(self) -> dict[str, Any]:
        """Checkpoint the WAL (truncating it) and ``VACUUM`` the database.

        Returns:
            ``bytesBefore`` and ``bytesAfter`` (database plus WAL), and whether the
            checkpoint completed (``checkpointed``; a long-running reader can prevent it).
        """

        def total() -> int:
            size = 0
            for name in self.index_files()[:2]:
                with contextlib.suppress(OSError):
                    size += (self._path.parent / name).stat().st_size
            return size

        before = total()
        with self._errors():
            conn = self._reader()
            if conn is None:
                return {"bytesBefore": 0, "bytesAfter": 0, "checkpointed": True}
            if self._not_writable is not None:
                raise ReadOnlyStoreError(f"cannot vacuum {self._path}: {self._not_writable}")
            conn.execute("VACUUM")
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
        return {"bytesBefore": before, "bytesAfter": total(), "checkpointed": busy == 0}

    def migration_record(self, record_key: str = "migration") -> dict[str, Any] | None:
        """The record of the last import from ``sessions.json``, if any.

        Args:
            record_key: The ``meta`` key of the record (``migration`` for sessions.json,
                ``openclaw_db_import`` for OpenClaw's database).
        """
        with self._errors():
            conn = self._reader()
            if conn is None:
                return None
            return self._parse_record(record_key, self._meta(conn, record_key))

    def import_entries(
        self,
        entries: dict[str, Entry],
        *,
        record: dict[str, Any] | None,
        keep_fresher: bool = False,
        only_if_new: bool = False,
        progress: Callable[[int], None] | None = None,
        record_key: str = "migration",
    ) -> int | None:
        """Write ``entries`` in one transaction, verify each, and store ``record``.

        All or nothing: a failed verification or any error rolls everything back.

        Args:
            entries: Canonical key -> normalised entry, in the order to keep.
            record: The migration record to keep in ``meta`` (``migratedCount`` is added);
                None leaves the record as it is (entries that do not come from a
                sessions.json).
            keep_fresher: Keep a stored entry whose ``updatedAt`` is newer than the
                imported one (re-imports with ``--force``).
            only_if_new: Import only into a database that holds no session and no
                migration record, judged inside the write transaction (so a concurrent
                writer's sessions are never imported over); None is returned otherwise.
            progress: Called with the number of entries handled so far.
            record_key: The ``meta`` key the record is kept under (one per kind of source).

        Returns:
            The number of entries written, or None when ``only_if_new`` found data.
        """
        with self._errors(), self._write_txn() as conn:
            if only_if_new:
                rows: Rows = conn.execute("SELECT row_count FROM stats WHERE id = 1").fetchall()
                if (rows and rows[0][0]) or self._meta(conn, record_key) is not None:
                    return None
            written = self.import_into(
                conn,
                entries,
                record=record,
                keep_fresher=keep_fresher,
                progress=progress,
                record_key=record_key,
            )
        if len(entries) >= LARGE_BATCH_ROWS:
            self._after_large_write()
        return written

    def import_into(
        self,
        conn: apsw.Connection,
        entries: dict[str, Entry],
        *,
        record: dict[str, Any] | None,
        keep_fresher: bool = False,
        progress: Callable[[int], None] | None = None,
        record_key: str = "migration",
    ) -> int:
        """:meth:`import_entries` inside a write transaction the caller holds on ``conn``.

        Used by ``on_create`` callbacks, which import into a database being built.
        """
        written = 0
        kept: set[str] = set()
        for i, (key, entry) in enumerate(entries.items(), 1):
            rows = self._candidates(conn, key)
            if keep_fresher and rows and rows[0][1] > sort_time(entry):
                kept.add(key)
            elif self._store(conn, key, entry, rows):
                written += 1
            if progress is not None and (i % 500 == 0 or i == len(entries)):
                progress(i)
        for key, entry in entries.items():
            if key in kept:
                continue
            rows = self._candidates(conn, key)
            stored = self._decode(conn, rows[0][2], rows[0][3], blobs=True) if rows else None
            # Same bytes is the common, cheap proof; json_equal decides the rest (key order).
            if stored is None or (
                orjson.dumps(stored) != orjson.dumps(entry) and not json_equal(stored, entry)
            ):
                raise MigrationError(
                    f"verification failed for {key!r}: the entry read back from {self._path}"
                    " differs from the source; nothing was imported"
                )
        # What the database looked like right after the import: a later write changes the
        # count or the newest updatedAt (how a split from sessions.json is noticed).
        if record is None:
            return written
        count, latest = conn.execute(
            "SELECT (SELECT row_count FROM stats WHERE id = 1), max(updated_at) FROM sessions"
        ).fetchall()[0]
        done = {
            **record,
            "migratedCount": written,
            "indexCount": count,
            "indexLatestUpdate": latest,
        }
        self._set_meta(conn, record_key, dumps_compact(done).decode())
        return written

    def close(self) -> None:
        """Close every connection this store opened in this process.

        A writable store runs ``PRAGMA optimize`` first (as SQLite advises before closing a
        connection that ran queries): it analyses only what the queries showed to need it,
        and is skipped when another process is writing. SQLite checkpoints the WAL itself
        when the last connection closes.
        """
        if not self._closed:
            with contextlib.suppress(SessionStoreError, apsw.Error):
                self._after_large_write(checkpoint=False)
        with self._conns_guard:
            self._closed = True
            conns, self._conns, self._idle = self._conns, [], []
        self._blob_cache.clear()
        for conn in conns:
            with contextlib.suppress(apsw.Error):
                conn.close()
        self._local = threading.local()

    def describe(self) -> dict[str, Any]:
        """Facts for ``info()``: driver and SQLite versions, file sizes, schema version."""

        def size(p: Path) -> int | None:
            try:
                return p.stat().st_size
            except OSError:
                return None

        with self._errors():
            conn = self._reader()
            version = self._schema_version(conn) if conn is not None else None
        return {
            "driver": f"apsw {apsw.apsw_version()}",
            "sqliteVersion": apsw.sqlite_lib_version(),
            "schemaVersion": version,
            "indexPath": str(self._path),
            "indexBytes": size(self._path),
            "walBytes": size(Path(str(self._path) + "-wal")),
        }

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[apsw.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction on this thread's connection (for the doctor)."""
        with self._errors(), self._write_txn() as conn:
            yield conn

    def connection(self) -> apsw.Connection:
        """This thread's connection (for maintenance, doctor and tests)."""
        return self._conn()

    def transcript_checkpoints(self) -> CheckpointStore:
        """Transcript checkpoints in this database (tables ``transcripts``, ``transcript_keys``)."""
        return self._checkpoints

    def modify_counters(self, key: str, fn: Callable[[Entry | None], Entry]) -> None:
        """``modify`` of the counters an append changes: the entry as stored, changed in place.

        The entry is read as it is stored (blob fields as their placeholders, the
        references left alone), the columns those fields derive and ``entry_json`` are
        set, and no other column is read or derived. A key with case variants, or an
        ``fn`` that changes any other field, takes ``modify`` instead.
        """
        if self._thread_conn() is not None or self.exists():
            try:
                with self._errors(), self._write_txn() as conn:
                    self._counters_in(conn, key, fn)
                return
            except _GeneralPath:
                pass  # rolled back: nothing of it was written
        self.modify(key, fn, needs_blobs=False, full_result=False)

    @staticmethod
    def _counters_in(conn: apsw.Connection, key: str, fn: Callable[[Entry | None], Entry]) -> None:
        rows: Rows = conn.execute(_COUNTERS_READ, (key,)).fetchall()
        if len(rows) != 1 or rows[0][0] != key:
            raise _GeneralPath()
        row = rows[0]
        entry = _load_entry(row[1])
        before = dict(entry)  # ``fn`` may change ``entry`` in place
        new = fn(entry)
        if not isinstance(new, dict):
            raise _GeneralPath()
        changed = [f for f, v in new.items() if before.get(f, _ABSENT) is not v]
        if not COUNTER_FIELDS.issuperset(changed) or len(new) != len(before) + sum(
            1 for f in changed if f not in before
        ):
            raise _GeneralPath()
        positions, values = _scalar_columns(changed, new, row, _COUNTER_AT)
        # Decoded from stored JSON and changed only in numbers: orjson writes it as
        # ``dumps_compact`` would (nothing non-finite to refuse), placeholders included.
        entry_json = pack(orjson.dumps(new))
        if entry_json != row[1]:
            positions.append(_ENTRY_JSON)
            values.append(entry_json)
        if positions:
            conn.execute(_update_sql(tuple(positions)), [*values, key])


def _signed(value: int) -> int:
    """``st_dev``/``st_ino`` (unsigned 64-bit) as SQLite's signed 64-bit integer."""
    return value - (1 << 64) if value >= (1 << 63) else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


_INSERT_KEY: Final = (
    "INSERT OR IGNORE INTO transcript_keys(path, gen, key, entry_id) VALUES (?, ?, ?, ?)"
)


class SqliteCheckpoints(CheckpointStore):
    """Transcript checkpoints kept in ``sessions.sqlite``, shared by every process.

    A save inside a write transaction of the index on this thread joins it (an append saves
    its checkpoint in the transaction that sets the entry's ``messageCount``).
    """

    in_index = True

    def __init__(self, index: SqliteIndex) -> None:
        self._index = index

    def load(self, path: str, dev: int, ino: int) -> Checkpoint | None:
        """The checkpoint stored for ``path``, whatever file it was taken of."""
        index = self._index
        with index._errors():
            conn = index._reader()
            if conn is None:
                return None  # no database yet: nothing was ever checkpointed
            rows: Rows = conn.execute(
                "SELECT dev, ino, size, count, leaf, mark_at, mark, gen FROM transcripts"
                " WHERE path = ?",
                (path,),
            ).fetchall()
        if not rows:
            return None
        r = rows[0]
        return Checkpoint(
            _unsigned(r[0]), _unsigned(r[1]), r[2], r[3], r[4], r[5], bytes(r[6]), r[7]
        )

    def find_key(self, path: str, checkpoint: Checkpoint, key: str) -> str | None:
        """The entry id of idempotency ``key`` in the checkpoint's generation."""
        index = self._index
        with index._errors():
            conn = index._reader()
            if conn is None:
                return None
            rows: Rows = conn.execute(
                "SELECT entry_id FROM transcript_keys WHERE path = ? AND gen = ? AND key = ?",
                (path, checkpoint.gen, key),
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def save(
        self,
        path: str,
        checkpoint: Checkpoint,
        keys: Mapping[str, str],
        *,
        expect: str | None,
        wait: bool = True,
    ) -> bool:
        """Store ``checkpoint`` (compare-and-set on the generation), joining a transaction."""
        index = self._index
        with index._errors():
            conn = index._reader()
            if conn is None or not index.writable:
                return False  # never creates a database, nor writes a read-only one
            if index._local.in_write:
                return self._store(conn, path, checkpoint, keys, expect)
            try:
                with index._write_txn(wait=wait) as txn:
                    return self._store(txn, path, checkpoint, keys, expect)
            except LockTimeoutError:
                if wait:
                    raise
                return False

    @staticmethod
    def _store(
        conn: apsw.Connection,
        path: str,
        cp: Checkpoint,
        keys: Mapping[str, str],
        expect: str | None,
    ) -> bool:
        key_rows = [(path, cp.gen, k, v) for k, v in keys.items()]
        if cp.gen == expect:
            # The common case (an append extending its own generation) in one statement.
            conn.execute(
                "UPDATE transcripts SET size = ?, count = ?, leaf = ?, mark_at = ?,"
                " mark = ?, updated_at = ? WHERE path = ? AND gen = ? AND size < ?",
                (cp.size, cp.count, cp.leaf, cp.mark_at, cp.mark, now_ms(), path, expect, cp.size),
            )
            if not conn.changes():
                found: Rows = conn.execute(
                    "SELECT 1 FROM transcripts WHERE path = ? AND gen = ?", (path, expect)
                ).fetchall()
                if not found:
                    return False
            if key_rows:
                conn.executemany(_INSERT_KEY, key_rows)
            return True
        rows: Rows = conn.execute(
            "SELECT gen, size, dev, ino FROM transcripts WHERE path = ?", (path,)
        ).fetchall()
        dev, ino = _signed(cp.dev), _signed(cp.ino)
        stored = rows[0] if rows else None
        if stored is not None and stored[0] != expect and (stored[2], stored[3]) == (dev, ino):
            return False  # another scan of this file got there first
        conn.execute(
            "DELETE FROM transcript_keys WHERE path = ? AND gen NOT IN (?, ?)",
            (path, cp.gen, stored[0] if stored is not None else cp.gen),
        )
        conn.execute(
            "INSERT OR REPLACE INTO transcripts(path, dev, ino, size, count, leaf, mark_at,"
            " mark, gen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, dev, ino, cp.size, cp.count, cp.leaf, cp.mark_at, cp.mark, cp.gen, now_ms()),
        )
        if key_rows:
            conn.executemany(_INSERT_KEY, key_rows)
        return True
