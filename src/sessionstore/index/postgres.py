"""The PostgreSQL hot index: one store shared by gateways on many hosts.

Every table lives in one PostgreSQL schema (default ``sessionstore``) and is keyed by
``agent_id`` first; every statement filters by it, so the tables can be sharded by agent
(Citus ``create_distributed_table(..., 'agent_id')``) or hash-partitioned without code
changes (see docs/scaling.md). A row holds the hot columns ``list`` filters and sorts on,
the list row itself, and the entry as PostgreSQL ``json`` (kept verbatim: key order,
number spelling and NUL escapes survive, which ``jsonb`` would not keep); the large fields
are stored once per content in ``blobs``.

Writes are read-modify-write transactions under advisory locks: a key lock (exclusive)
plus the agent lock (shared) for one key, the agent lock (exclusive) for ``mutate``,
maintenance and imports, so an absent key is locked as well as a present one. A deadlock
or serialization failure is retried a bounded number of times, then surfaces as
:class:`~sessionstore.errors.WriteConflictError`; a broken connection as
:class:`~sessionstore.errors.ConnectionLostError`, after which the next call works.

psycopg is imported only here (and in ``transcripts/postgres.py``): without the
``postgres`` extra, choosing this backend raises ``ConfigError`` naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from ..clock import now_ms
from ..entry import json_equal, settle_entry, sort_time
from ..errors import (
    ConfigError,
    ConnectionLostError,
    CorruptStoreError,
    MigrationError,
    ReadOnlyStoreError,
    SchemaVersionError,
    SessionStoreError,
    StorageFullError,
    StoreClosedError,
    WriteConflictError,
)
from ..files import dumps_compact, sha256_hex
from ..keys import fold_key
from .base import (
    DELETE,
    LARGE_FIELDS,
    AsyncIndexBackend,
    BlobCache,
    BlobRef,
    IndexBackend,
    ListQuery,
    MaintenanceTxn,
    ModifyFn,
    RowRef,
    SessionRow,
    _Delete,
    derive_row,
    mutated_entry,
    search_text,
    visibility,
    writes_when_absent,
)
from .pgsteps import Op, Step, _BlobGone, _given, _NoSchema, run_op

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = [
    "SCHEMA_VERSION",
    "PostgresIndex",
    "load_driver",
    "redact_dsn",
]

Entry = dict[str, Any]
Rows = list[tuple[Any, ...]]
T = TypeVar("T")


SCHEMA_VERSION: Final = 4
EXTRA_HINT: Final = "pip install 'sessionstore[postgres]'"
# Attempts of a transaction that hit a deadlock or serialization failure, or that lost its
# connection before doing anything (a pooled connection the server had closed).
ATTEMPTS: Final = 6
COMPRESSED_FIELDS: Final = frozenset({"systemPromptReport"})
CODEC_JSON: Final = 0
CODEC_ZLIB: Final = 1
# Maintenance deletes its planned rows in transactions of at most this many rows, so a
# writer waits for one batch, not the whole run (as on SQLite).
MAINTENANCE_BATCH_ROWS: Final = 500
# Maintenance's reference counts asked one query each before all are read at once.
REFERENCE_QUERIES: Final = 32
# Blob JSON kept in process, least recently used out first: a miss is a round trip to the
# server (a local page read for sqlite, which keeps far less). 256 sessions rotating their
# own ~5 KB prompt reports beside a shared 40 KB skills snapshot fit well within it.
BLOB_CACHE_BYTES: Final = 8 << 20


def load_driver() -> tuple[ModuleType, ModuleType]:
    """Psycopg and psycopg_pool, or a ``ConfigError`` naming the extra to install.

    Raises:
        ConfigError: psycopg 3 or psycopg-pool is not installed.
    """
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise ConfigError(
            f"store type 'postgres' needs psycopg 3 and psycopg-pool ({exc.name} is missing);"
            f" install the postgres extra: {EXTRA_HINT}"
        ) from None
    return psycopg, psycopg_pool


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (for messages, ``repr`` and info)."""
    psycopg, _ = load_driver()
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparsable DSN)"
    if "password" in params:
        params["password"] = "***"
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def _password(dsn: str) -> str | None:
    psycopg, _ = load_driver()
    try:
        value = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return str(value) if value else None


def _schema_sql(schema: str, partitions: int) -> list[str]:
    """Version 1: the tables. With ``partitions``, each is ``PARTITION BY HASH (agent_id)``."""

    def table(name: str, body: str) -> list[str]:
        if not partitions:
            return [f"CREATE TABLE IF NOT EXISTS {schema}.{name} ({body})"]
        out = [f"CREATE TABLE IF NOT EXISTS {schema}.{name} ({body}) PARTITION BY HASH (agent_id)"]
        out += [
            f"CREATE TABLE IF NOT EXISTS {schema}.{name}_p{i} PARTITION OF {schema}.{name}"
            f" FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})"
            for i in range(partitions)
        ]
        return out

    s = schema
    return [
        *table(
            "sessions",
            "agent_id text NOT NULL, session_key text NOT NULL, key_fold text NOT NULL,"
            " ins_order bigint NOT NULL, session_id text NOT NULL,"
            " updated_at numeric NOT NULL, has_updated boolean NOT NULL,"
            " created_at bigint NOT NULL, vis smallint NOT NULL, row_agent text,"
            " row_channel text, label text, spawned_by text, parent_session_key text,"
            " model text, session_file text, message_count bigint,"
            " search_text text NOT NULL, list_row json NOT NULL, entry json NOT NULL,"
            " blob_refs json, PRIMARY KEY (agent_id, session_key)",
        ),
        f"CREATE INDEX IF NOT EXISTS sessions_fold ON {s}.sessions (agent_id, key_fold)",
        f"CREATE INDEX IF NOT EXISTS sessions_list ON {s}.sessions"
        " (agent_id, vis, updated_at DESC, session_key DESC)",
        f"CREATE INDEX IF NOT EXISTS sessions_by_agent ON {s}.sessions"
        " (agent_id, row_agent, vis, updated_at DESC, session_key DESC)",
        f"CREATE INDEX IF NOT EXISTS sessions_by_channel ON {s}.sessions"
        " (agent_id, row_channel, vis, updated_at DESC, session_key DESC)",
        f"CREATE INDEX IF NOT EXISTS sessions_by_label ON {s}.sessions"
        " (agent_id, label, updated_at DESC) WHERE label IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS sessions_by_spawner ON {s}.sessions"
        " (agent_id, spawned_by, updated_at DESC) WHERE spawned_by IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS sessions_by_parent ON {s}.sessions"
        " (agent_id, parent_session_key, updated_at DESC) WHERE parent_session_key IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS sessions_order ON {s}.sessions (agent_id, ins_order)",
        *table(
            "blobs",
            "agent_id text NOT NULL, digest text NOT NULL, data bytea NOT NULL,"
            " codec smallint NOT NULL, refcount bigint NOT NULL,"
            " PRIMARY KEY (agent_id, digest)",
        ),
        *table(
            "meta",
            "agent_id text NOT NULL, key text NOT NULL, value text NOT NULL,"
            " PRIMARY KEY (agent_id, key)",
        ),
        *table(
            "transcript_heads",
            "agent_id text NOT NULL, session_id text NOT NULL, last_seq bigint NOT NULL,"
            " PRIMARY KEY (agent_id, session_id)",
        ),
        *table(
            "transcripts",
            "agent_id text NOT NULL, session_id text NOT NULL, seq bigint NOT NULL,"
            " entry_id text NOT NULL, line jsonb, raw text, idempotency_key text,"
            " created_at bigint NOT NULL,"
            " PRIMARY KEY (agent_id, session_id, seq)",
        ),
        f"CREATE UNIQUE INDEX IF NOT EXISTS transcripts_idempotency ON {s}.transcripts"
        " (agent_id, session_id, idempotency_key)",
    ]


@dataclass(frozen=True)
class _Upgrade:
    """One schema version: statements run in a transaction, then index builds outside one."""

    version: int
    in_transaction: Callable[[str, int], list[str]]
    concurrent: Callable[[str, int], list[str]]


def _v2_concurrent(schema: str, partitions: int) -> list[str]:
    # Built without blocking writers on a live store; a partitioned table cannot build its
    # indexes CONCURRENTLY (PostgreSQL builds them per partition), so those are plain.
    how = "" if partitions else " CONCURRENTLY"
    return [
        f"CREATE INDEX{how} IF NOT EXISTS sessions_session_id ON {schema}.sessions"
        " (agent_id, session_id)"
    ]


def _head_column(schema: str, column: str, value: str) -> list[str]:
    """Add a bigint ``column`` to ``transcript_heads``, set to ``value`` for existing heads.

    ``value`` is a scalar over the head's lines (``transcripts t``). Only when the column is
    missing: a step applied but not yet recorded is run again by the next process, and
    ALTER TABLE's exclusive lock would queue behind live appends.
    """
    return [
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns"
        f" WHERE table_schema = '{schema}' AND table_name = 'transcript_heads'"
        f" AND column_name = '{column}') THEN"
        f" ALTER TABLE {schema}.transcript_heads ADD COLUMN {column} bigint NOT NULL DEFAULT 0;"
        f" UPDATE {schema}.transcript_heads h SET {column} = (SELECT {value} FROM"
        f" {schema}.transcripts t WHERE t.agent_id = h.agent_id AND t.session_id = h.session_id);"
        " END IF; END $$",
    ]


def _v3_message_counts(schema: str, partitions: int) -> list[str]:
    # The message count of each transcript, kept by appends (tail's seq numbers and the
    # entry's messageCount without counting rows); existing transcripts are counted once.
    return _head_column(schema, "messages", f"count(*) FILTER (WHERE t.seq > 0 AND {IS_MESSAGE})")


def _v4_transcript_bytes(schema: str, partitions: int) -> list[str]:
    # The bytes of each transcript's lines as the table returns them (what maintenance's
    # disk budget counts and ``transcriptBytes`` holds), kept by every write of lines;
    # existing transcripts are measured once.
    return _head_column(schema, "bytes", f"coalesce(sum({LINE_BYTES}), 0)")


# The bytes of one transcript row: its line as reads return it.
LINE_BYTES: Final = "octet_length(coalesce(t.raw, t.line::text))"

# A transcript row that is a message record (the verbatim text of a NUL line parses as json).
IS_MESSAGE: Final = (
    "coalesce(t.line::json, t.raw::json) ->> 'type' = 'message'"
    " AND json_typeof(coalesce(t.line::json, t.raw::json) -> 'message') = 'object'"
)

_UPGRADES: Final = (
    _Upgrade(1, _schema_sql, lambda s, p: []),
    _Upgrade(2, lambda s, p: [], _v2_concurrent),
    _Upgrade(3, _v3_message_counts, lambda s, p: []),
    _Upgrade(4, _v4_transcript_bytes, lambda s, p: []),
)


def _number(value: Any) -> int | float:
    """A ``numeric`` read back as the JSON number it was written from."""
    if isinstance(value, Decimal):
        text = str(value)
        return float(value) if "." in text or "E" in text else int(value)
    assert isinstance(value, (int, float))
    return value


def _text(value: str | None) -> str | None:
    """A string as a ``text`` column holds it.

    NUL, which PostgreSQL text cannot hold, becomes U+FFFF (a noncharacter), in the filter
    columns and in the query values alike.
    """
    return value.replace("\x00", "\uffff") if value is not None else None


def _bind_number(value: int | float) -> int | Decimal:
    # float8 -> numeric keeps only 15 digits: bind the shortest repr, which is exact.
    return Decimal(repr(value)) if isinstance(value, float) else value


@dataclass
class _Encoded:
    key: str
    params: dict[str, Any]
    entry_json: str
    refs: dict[str, str]
    blobs: dict[str, tuple[str, bytes]]


def _encode(key: str, entry: Entry, *, agent: str, now: int) -> _Encoded:
    light: Entry = dict(entry)
    refs: dict[str, str] = {}
    blobs: dict[str, tuple[str, bytes]] = {}
    for field in LARGE_FIELDS:
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
    entry_json = dumps_compact(light, what="entry", prefix=(key,), keyed=True).decode()
    row = derive_row(key, entry, default_agent="")
    sfile = entry.get("sessionFile")
    count = row["messageCount"]
    params = {
        "agent": agent,
        "key": key,
        "fold": fold_key(key),
        "sid": _text(row["sessionId"]),
        "upd": _bind_number(sort_time(entry)),
        "has_upd": row["updatedAt"] is not None,
        "created": now,
        "vis": visibility(key),
        "row_agent": _text(row["agentId"] or None),
        "channel": _text(row["channel"]),
        "label": _text(row["label"]),
        "spawned": _text(row["spawnedBy"]),
        "parent": _text(row["parentSessionKey"]),
        "model": _text(row["model"]),
        "sfile": _text(sfile) if isinstance(sfile, str) else None,
        "mcount": count if count is not None and -(2**63) <= count < 2**63 else None,
        "search": _text(search_text(key, entry)),
        "list_row": dumps_compact(row).decode(),
        "entry": entry_json,
        "refs": dumps_compact(refs).decode() if refs else None,
    }
    return _Encoded(key, params, entry_json, refs, blobs)


class _Statements:
    """The SQL of one schema (the name is validated; it is interpolated once, here)."""

    def __init__(self, s: str) -> None:
        self.candidates = (
            "SELECT session_key, updated_at, entry::text, blob_refs::text"
            f" FROM {s}.sessions WHERE agent_id = %s AND key_fold = %s"
        )
        self.blobs = (
            f"SELECT digest, data, codec FROM {s}.blobs WHERE agent_id = %s AND digest = ANY(%s)"
        )
        self.insert = (
            f"INSERT INTO {s}.sessions (agent_id, session_key, key_fold, ins_order, session_id,"
            " updated_at, has_updated, created_at, vis, row_agent, row_channel, label,"
            " spawned_by, parent_session_key, model, session_file, message_count, search_text,"
            " list_row, entry, blob_refs) VALUES (%(agent)s, %(key)s, %(fold)s,"
            f" (SELECT coalesce(max(ins_order), 0) + 1 FROM {s}.sessions"
            " WHERE agent_id = %(agent)s), %(sid)s, %(upd)s, %(has_upd)s, %(created)s,"
            " %(vis)s, %(row_agent)s, %(channel)s, %(label)s, %(spawned)s, %(parent)s,"
            " %(model)s, %(sfile)s, %(mcount)s, %(search)s, %(list_row)s::json,"
            " %(entry)s::json, %(refs)s::json)"
        )
        self.update = (
            f"UPDATE {s}.sessions SET key_fold = %(fold)s, session_id = %(sid)s,"
            " updated_at = %(upd)s, has_updated = %(has_upd)s, vis = %(vis)s,"
            " row_agent = %(row_agent)s, row_channel = %(channel)s, label = %(label)s,"
            " spawned_by = %(spawned)s, parent_session_key = %(parent)s, model = %(model)s,"
            " session_file = %(sfile)s, message_count = %(mcount)s, search_text = %(search)s,"
            " list_row = %(list_row)s::json, entry = %(entry)s::json,"
            " blob_refs = %(refs)s::json WHERE agent_id = %(agent)s AND session_key = %(key)s"
        )
        self.delete = (
            f"DELETE FROM {s}.sessions WHERE agent_id = %s AND session_key = %s"
            " RETURNING blob_refs::text"
        )
        self.count = f"SELECT count(*) FROM {s}.sessions WHERE agent_id = %s"
        self.ref_columns = (
            "session_key, session_id, session_file, CASE WHEN has_updated THEN updated_at END,"
            " model, octet_length(entry::text) + octet_length(search_text)"
            " + 3 * octet_length(session_key) + 96, message_count"
        )
        self.retain = (
            f"UPDATE {s}.blobs SET refcount = refcount + %s WHERE agent_id = %s AND digest = %s"
        )
        self.insert_blob = (
            f"INSERT INTO {s}.blobs (agent_id, digest, data, codec, refcount)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agent_id, digest)"
            " DO UPDATE SET refcount = blobs.refcount + EXCLUDED.refcount"
        )
        self.release = (
            f"UPDATE {s}.blobs SET refcount = refcount - %s WHERE agent_id = %s AND digest = %s"
            " RETURNING refcount"
        )
        self.drop_blob = (
            f"DELETE FROM {s}.blobs WHERE agent_id = %s AND digest = %s AND refcount <= 0"
        )
        self.meta = f"SELECT value FROM {s}.meta WHERE agent_id = %s AND key = %s"
        self.set_meta = (
            f"INSERT INTO {s}.meta (agent_id, key, value) VALUES (%s, %s, %s)"
            " ON CONFLICT (agent_id, key) DO UPDATE SET value = EXCLUDED.value"
        )


def _lock_id(*parts: str) -> int:
    """A signed 64-bit advisory lock id for ``parts``."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _PgMaintenance(MaintenanceTxn):
    """Maintenance planned in one read-only snapshot: removals are recorded, not made.

    Every question is SQL on indexed columns of the snapshot, answered as if the rows
    removed so far were gone (their keys are left out, their sizes and the blobs only
    they referenced subtracted), so the plan is the one a single write transaction would
    make. Each removed row is recorded with its version as the batched apply compares it:
    its session id, ``updated_at``, the stored entry's length and its blob references.
    """

    def __init__(self, index: PostgresIndex, conn: psycopg.Connection[Any]) -> None:
        self._index = index
        self._conn = conn
        self._s = index.schema
        self._a = index.agent_id
        # key -> (session id, updated_at, has_updated, entry length, blob refs as text)
        self.removed: dict[str, tuple[Any, ...]] = {}
        self.kept_keys: frozenset[str] = frozenset()
        self._base: int | None = None
        self._freed = 0
        self._released: Counter[str] = Counter()
        self._blobs: dict[str, tuple[int, int]] = {}  # digest -> (refcount, bytes)
        self._asked = 0
        self._by_sid: dict[str, list[str]] | None = None  # session id -> keys, all rows

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The planning snapshot's connection (read-only, no lock held)."""
        return self._conn

    def _refs(self, where: str = "", args: Iterable[Any] = (), order: str = "") -> list[RowRef]:
        rows = self._conn.execute(
            f"SELECT {self._index._sql.ref_columns}, key_fold FROM {self._s}.sessions"
            f" WHERE agent_id = %s {where} {order}",
            (self._a, *args),
        ).fetchall()
        return [_ref(r) for r in rows if r[0] not in self.removed]

    def count(self) -> int:
        row = self._conn.execute(self._index._sql.count, (self._a,)).fetchone()
        return (int(row[0]) if row else 0) - len(self.removed)

    def rows(self) -> Iterator[RowRef]:
        return iter(self._refs())

    def stale(self, cutoff: int | float, protect: frozenset[str]) -> list[RowRef]:
        refs = self._refs("AND has_updated AND updated_at < %s", (_bind_number(cutoff),))
        return [r for r in refs if fold_key(r.key) not in protect]

    def overflow(self, max_entries: int, protect: frozenset[str]) -> list[RowRef]:
        if self.count() <= max_entries:
            return []
        folds = list(protect)
        shielded = 0
        if folds:
            row = self._conn.execute(
                f"SELECT count(*) FROM {self._s}.sessions WHERE agent_id = %s"
                " AND key_fold = ANY(%s)",
                (self._a, folds),
            ).fetchone()
            shielded = int(row[0]) if row else 0
        refs = self._refs(
            "AND NOT (key_fold = ANY(%s))",
            (folds,),
            "ORDER BY updated_at DESC, session_key DESC",
        )
        return refs[max(max_entries - shielded, 0) :]

    def oldest(self, protect: frozenset[str]) -> Iterator[RowRef]:
        refs = self._refs(order="ORDER BY updated_at, session_key")
        return (r for r in refs if fold_key(r.key) not in protect and r.key not in self.removed)

    def remove(self, keys: Iterable[str]) -> None:
        wanted = [k for k in keys if k not in self.removed]
        if not wanted:
            return
        self.index_bytes()  # the base is measured before the first removal
        rows = self._conn.execute(
            "SELECT session_key, session_id, updated_at, has_updated,"
            " octet_length(entry::text), blob_refs::text, octet_length(entry::text)"
            " + octet_length(search_text) + 3 * octet_length(session_key) + 96"
            f" FROM {self._s}.sessions WHERE agent_id = %s AND session_key = ANY(%s)",
            (self._a, wanted),
        ).fetchall()
        released: Counter[str] = Counter()
        for key, sid, updated, has_updated, length, refs, size in rows:
            self.removed[key] = (sid, updated, has_updated, length, refs)
            self._freed += int(size)
            if refs:
                released.update(orjson.loads(refs).values())
        new = [d for d in released if d not in self._blobs]
        if new:
            for digest, refcount, size in self._conn.execute(
                f"SELECT digest, refcount, octet_length(data) FROM {self._s}.blobs"
                " WHERE agent_id = %s AND digest = ANY(%s)",
                (self._a, new),
            ).fetchall():
                self._blobs[digest] = (int(refcount), int(size))
        for digest, n in released.items():
            before = self._released[digest]
            self._released[digest] += n
            refcount, size = self._blobs.get(digest, (0, 0))
            if before < refcount <= before + n:
                self._freed += size  # the last reference went: the blob is dropped

    def reference_count(self, session_id: str) -> int:
        # A few questions are asked one by one; past REFERENCE_QUERIES (archiving after a
        # large prune) one read of every row's session id answers the rest (the snapshot
        # does not change), instead of one round trip per session.
        if self._by_sid is None and self._asked < REFERENCE_QUERIES:
            self._asked += 1
            rows = self._conn.execute(
                f"SELECT session_key FROM {self._s}.sessions WHERE agent_id = %s"
                " AND session_id = %s",
                (self._a, session_id),
            ).fetchall()
            return sum(1 for (key,) in rows if key not in self.removed)
        if self._by_sid is None:
            self._by_sid = {}
            for key, sid in self._conn.execute(
                f"SELECT session_key, session_id FROM {self._s}.sessions WHERE agent_id = %s",
                (self._a,),
            ):
                self._by_sid.setdefault(sid, []).append(key)
        return sum(1 for key in self._by_sid.get(session_id, ()) if key not in self.removed)

    def index_bytes(self) -> int:
        # The disk budget on PostgreSQL is a budget of this agent's rows: their entries and
        # the blobs they reference (the server's files are shared and not ours to measure).
        if self._base is None:
            row = self._conn.execute(
                f"SELECT coalesce(sum(octet_length(entry::text) + octet_length(search_text)"
                f" + 3 * octet_length(session_key) + 96), 0), (SELECT"
                f" coalesce(sum(octet_length(data)), 0) FROM {self._s}.blobs WHERE agent_id"
                f" = %s) FROM {self._s}.sessions WHERE agent_id = %s",
                (self._a, self._a),
            ).fetchone()
            self._base = int(row[0]) + int(row[1]) if row else 0
        return self._base - self._freed


def _ref(r: tuple[Any, ...]) -> RowRef:
    return RowRef(
        key=r[0],
        session_id=r[1] or "",
        session_file=r[2],
        updated_at=_number(r[3]) if r[3] is not None else None,
        model=r[4],
        size=int(r[5]),
        message_count=int(r[6]) if r[6] is not None else None,
    )


class PostgresIndex(IndexBackend):
    """One agent's hot index in PostgreSQL.

    Args:
        dsn: PostgreSQL conninfo or URL (its password never appears in messages).
        agent_id: The agent whose rows this store reads and writes.
        schema: The PostgreSQL schema holding the tables.
        pool_size: Connections kept at most.
        partitions: Create new tables ``PARTITION BY HASH (agent_id)`` with this many
            partitions (0: plain tables).
        lock_timeout_ms: How long to wait for a connection from the pool or a lock.
        read_only: Never write (no schema created either).
    """

    store_type = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        agent_id: str,
        schema: str = "sessionstore",
        pool_size: int = 4,
        partitions: int = 0,
        lock_timeout_ms: int = 10_000,
        read_only: bool = False,
    ) -> None:
        self._psycopg, self._pool_mod = load_driver()
        self._dsn = dsn
        self._secret = _password(dsn)
        self.agent_id = agent_id
        self.schema = schema
        self.pool_size = pool_size
        self.partitions = partitions
        self._timeout = lock_timeout_ms / 1000
        self._read_only = read_only
        self._sql = _Statements(schema)
        self.location = f"postgres:{redact_dsn(dsn)} schema={schema} agent={agent_id}"
        self._guard = threading.Lock()
        self._pool_obj: psycopg_pool.ConnectionPool[Any] | None = None
        self._pool_pid = 0
        self._closed = False
        self._ready = False  # the schema is at SCHEMA_VERSION
        self._seen = False  # the tables exist (reads need no more look)
        self._blob_cache = BlobCache(BLOB_CACHE_BYTES)
        self._local = threading.local()
        self._agent_lock = _lock_id(schema, agent_id)
        self.maintenance_batch_rows = MAINTENANCE_BATCH_ROWS
        # Called between two batches of maintenance's apply (tests force interleavings).
        self.maintenance_batch_hook: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"PostgresIndex({self.location!r})"

    # --- connections and errors -------------------------------------------------------------

    def _pool(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._closed:
            raise StoreClosedError(f"the store at {self.location} was closed")
        pid = os.getpid()
        if self._pool_obj is not None and self._pool_pid == pid:
            return self._pool_obj
        with self._guard:
            if self._pool_obj is None or self._pool_pid != pid:
                # After fork the parent's pool (and its threads) is not ours: leave it alone.
                self._pool_obj = self._pool_mod.ConnectionPool(
                    self._dsn,
                    open=True,
                    name=f"sessionstore-{self.agent_id}",
                    **self.pool_options(),
                )
                self._pool_pid = pid
            return self._pool_obj

    def pool_options(self) -> dict[str, Any]:
        """Sizes, timeout and connection settings of this store's pools (sync and asyncio)."""
        return {
            "min_size": 1,
            "max_size": self.pool_size,
            "kwargs": {"autocommit": True, "application_name": self.application_name()},
            "timeout": self._timeout,
        }

    def application_name(self) -> str:
        """What this process's connections show in ``pg_stat_activity.application_name``."""
        return f"sessionstore:{self.agent_id}:{os.getpid()}"[:63]

    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text.replace(self._dsn, redact_dsn(self._dsn))

    def _lost(self, exc: BaseException) -> bool:
        pg = self._psycopg
        if isinstance(exc, (pg.errors.AdminShutdown, pg.errors.ConnectionException)):
            return True
        return isinstance(exc, pg.OperationalError) and (
            getattr(exc, "sqlstate", None) is None or str(exc.sqlstate).startswith("08")
        )

    def _wrap(self, exc: BaseException) -> SessionStoreError:
        pg = self._psycopg
        where = f"PostgreSQL ({self.location})"
        detail = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        if isinstance(exc, self._pool_mod.PoolTimeout):
            return ConnectionLostError(
                f"no connection to {where} within {self._timeout:g}s ({detail}); check that"
                " the server is up and the DSN is right, then retry"
            )
        if self._lost(exc):
            return ConnectionLostError(
                f"the connection to {where} was lost ({detail}); the transaction was rolled"
                " back unless it was committing - retry (the next call opens a new connection)"
            )
        if isinstance(exc, (pg.errors.SerializationFailure, pg.errors.DeadlockDetected)):
            return WriteConflictError(
                f"{where}: concurrent writers kept conflicting ({detail}) after {ATTEMPTS}"
                " attempts; nothing was written - retry"
            )
        if isinstance(exc, pg.errors.DiskFull):
            return StorageFullError(
                f"{where}: the server's disk is full ({detail}); nothing was written"
            )
        if isinstance(exc, pg.errors.ReadOnlySqlTransaction):
            return ReadOnlyStoreError(f"{where} accepts no writes ({detail})")
        if isinstance(exc, pg.errors.InsufficientPrivilege):
            return SessionStoreError(
                f"{where}: permission denied ({detail}); grant the role access"
            )
        return SessionStoreError(f"{where}: {detail}")

    def retry_pause(self, exc: BaseException, attempt: int, *, began: bool, write: bool) -> float:
        """The retry policy of both drivers: the pause before the next attempt, in seconds.

        Deadlocks and serialization failures are retried ``ATTEMPTS`` times (the whole
        transaction, callback included); a connection found broken before the transaction
        did anything is replaced and retried at once.

        Raises:
            SessionStoreError: The typed error, when ``exc`` is not to be retried.
        """
        pg = self._psycopg
        if isinstance(exc, (pg.errors.SerializationFailure, pg.errors.DeadlockDetected)):
            if attempt >= ATTEMPTS:
                raise self._wrap(exc) from exc
            return random.uniform(0, 0.002 * (2**attempt))
        if self._lost(exc) and not began and attempt < ATTEMPTS:
            return 0.0
        if isinstance(exc, pg.errors.UndefinedTable) and not write:
            raise _NoSchema from exc
        raise self._wrap(exc) from exc

    def check_write(self, write: bool) -> None:
        """Refuse a write on a read-only store (both drivers, before anything runs)."""
        if write and self._read_only:
            raise ReadOnlyStoreError(f"{self.location} was opened read-only; nothing was written")

    def _run(
        self, body: Callable[[psycopg.Connection[Any]], T], *, write: bool, txn: bool = True
    ) -> T:
        """Run ``body`` in one transaction, retrying what :meth:`retry_pause` allows.

        Any other failure is raised typed.
        """
        pg = self._psycopg
        self.check_write(write)
        if write:
            if getattr(self._local, "in_write", False):
                raise SessionStoreError(
                    "a write was started from inside another write's callback on the same"
                    " store; do all changes inside the one callback"
                )
            self._ensure_schema()
        attempt = 0
        while True:
            attempt += 1
            began = [False]
            try:
                with self._pool().connection() as conn:
                    if not txn:  # a read of single statements: autocommit, no BEGIN/COMMIT
                        return body(_Tracked(conn, began))  # type: ignore[arg-type]
                    with conn.transaction():
                        self._local.in_write = write
                        try:
                            return body(_Tracked(conn, began))  # type: ignore[arg-type]
                        finally:
                            self._local.in_write = False
            except (pg.Error, self._pool_mod.PoolTimeout) as exc:
                if self._lost(exc):
                    self._discard_broken()
                time.sleep(self.retry_pause(exc, attempt, began=began[0], write=write))

    def _read(
        self, body: Callable[[psycopg.Connection[Any]], T], empty: T, *, snapshot: bool = False
    ) -> T:
        """A read; a store whose tables do not exist reads as empty.

        Autocommit statements, or with ``snapshot`` one transaction (for the statements
        that must see one state, or ``SET TRANSACTION``).
        """
        if not (self._ready or self._seen) and not self._schema_exists():
            return empty
        self._seen = True
        try:
            return self._run(body, write=False, txn=snapshot)
        except _NoSchema:
            return empty

    def _discard_broken(self) -> None:
        # The server closed every connection of this pool at once (restart, failover,
        # pg_terminate_backend): drop the idle ones too, so that the next call works.
        with contextlib.suppress(Exception):
            if self._pool_obj is not None and self._pool_pid == os.getpid():
                self._pool_obj.check()

    # --- schema -----------------------------------------------------------------------------

    def schema_exists_op(self) -> Op[bool]:
        """Whether the store's tables exist (for both drivers)."""
        row = yield Step(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.schema_version",), "one"
        )
        return bool(row and row[0])

    def _schema_exists(self) -> bool:
        return self._run(lambda c: run_op(c, self.schema_exists_op()), write=False, txn=False)

    def schema_version(self) -> int | None:
        """The schema version of the tables, or None when they do not exist."""
        if not self._schema_exists():
            return None

        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(f"SELECT max(version) FROM {self.schema}.schema_version").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return self._run(read, write=False, txn=False)

    def _ensure_schema(self) -> None:
        """Create or upgrade the tables (in place, in order) once per process."""
        if self._ready:
            return
        version = self.schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.location} has schema version {version}, newer than this sessionstore"
                f" ({SCHEMA_VERSION}); upgrade sessionstore"
            )
        if version == SCHEMA_VERSION:
            self._ready = True
            return
        if self._read_only:
            raise ReadOnlyStoreError(
                f"{self.location} needs a schema upgrade; it was opened read-only"
            )
        s = self.schema
        lock = _lock_id(s, "schema")
        for step in _UPGRADES:

            def apply(conn: psycopg.Connection[Any], step: _Upgrade = step) -> bool:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer PRIMARY"
                    " KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                row = conn.execute(
                    f"SELECT 1 FROM {s}.schema_version WHERE version = %s", (step.version,)
                ).fetchone()
                if row:
                    return False
                for statement in step.in_transaction(s, self.partitions):
                    conn.execute(statement)
                return True

            self._ready = True  # _run must not recurse into _ensure_schema
            try:
                if not self._run(apply, write=False):
                    continue  # recorded by another process
                concurrent = step.concurrent(s, self.partitions)
                if concurrent:
                    self._build_concurrently(step.version, concurrent)

                def record(conn: psycopg.Connection[Any], v: int = step.version) -> None:
                    conn.execute(
                        f"INSERT INTO {s}.schema_version (version) VALUES (%s)"
                        " ON CONFLICT DO NOTHING",
                        (v,),
                    )

                self._run(record, write=False)
            except self._psycopg.Error as exc:
                self._ready = False
                raise self._wrap(exc) from exc
            except BaseException:
                self._ready = False
                raise

    def _build_concurrently(self, version: int, statements: list[str]) -> None:
        """Run one version's ``CREATE INDEX CONCURRENTLY`` statements in one process only.

        Two concurrent builds of one index wait for each other's transaction (a deadlock),
        and so would a build and a process blocked on a lock in a statement: the others
        poll a try-lock, in statements that end at once, and skip a version recorded
        meanwhile.
        """
        s = self.schema
        lock = _lock_id(s, "schema-concurrent")
        with self._pool().connection() as conn:
            try_lock = f"SELECT pg_try_advisory_lock({lock})"
            while not conn.execute(try_lock).fetchone()[0]:
                time.sleep(0.02)
            try:
                done = conn.execute(
                    f"SELECT 1 FROM {s}.schema_version WHERE version = %s", (version,)
                ).fetchone()
                if done is None:
                    for statement in statements:
                        conn.execute(statement)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))

    def create(self) -> None:
        """Create the schema and tables now (writes create them too)."""
        self._ensure_schema()

    # --- locks ------------------------------------------------------------------------------

    def _lock_key_op(self, key: str) -> Op[None]:
        yield Step(
            "SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s, %s)",
            (self._agent_lock, *_two_ints(self.schema, self.agent_id, fold_key(key))),
            "none",
        )

    def _lock_agent_op(self) -> Op[None]:
        yield Step("SELECT pg_advisory_xact_lock(%s)", (self._agent_lock,), "none")

    def _lock_agent(self, conn: psycopg.Connection[Any]) -> None:
        run_op(conn, self._lock_agent_op())

    # --- blobs ------------------------------------------------------------------------------

    def _blob_json_op(self, digests: list[str]) -> Op[dict[str, bytes]]:
        out: dict[str, bytes] = {}
        missing = []
        for d in digests:
            cached = self._blob_cache.get(d)
            if cached is not None:
                out[d] = cached
            else:
                missing.append(d)
        if missing:
            rows: Rows = yield Step(self._sql.blobs, (self.agent_id, missing), "all")
            for digest, data, codec in rows:
                raw = bytes(data)
                if codec == CODEC_ZLIB:
                    raw = zlib.decompress(raw)
                out[digest] = raw
                self._blob_cache.put(digest, raw)
        for d in digests:
            if d not in out:
                raise _BlobGone(d, self.location)
        return out

    def _decode_op(self, entry_json: str, refs_json: str | None, *, blobs: bool) -> Op[Entry]:
        entry = orjson.loads(entry_json)
        if not isinstance(entry, dict):
            raise CorruptStoreError(
                f"{self.location}: a stored entry is not a JSON object", path=self.location
            )
        if refs_json:
            refs: dict[str, str] = orjson.loads(refs_json)
            if blobs:
                data = yield from self._blob_json_op(sorted(set(refs.values())))
                for field, digest in refs.items():
                    entry[field] = orjson.loads(data[digest])
            else:
                for field, digest in refs.items():
                    entry[field] = BlobRef(digest)
        return entry

    def _materialize_op(self, entry: Entry) -> Op[Entry]:
        fields = [f for f in LARGE_FIELDS if isinstance(entry.get(f), BlobRef)]
        if not fields:
            return entry
        out = dict(entry)
        data = yield from self._blob_json_op(sorted({out[f].digest for f in fields}))
        for f in fields:
            out[f] = orjson.loads(data[out[f].digest])
        return out

    def _swap_blobs_op(self, old: dict[str, str], enc: _Encoded | None) -> Op[None]:
        new_refs = enc.refs if enc is not None else {}
        if old == new_refs:
            return
        add = Counter(new_refs.values()) - Counter(old.values())
        drop = Counter(old.values()) - Counter(new_refs.values())
        # Digests in one order in every transaction: two writers never wait on each other
        # in a cycle over blob rows.
        for digest in sorted(add):
            n = add[digest]
            if (yield Step(self._sql.retain, (n, self.agent_id, digest), "rowcount")):
                continue
            assert enc is not None
            field, data = enc.blobs[digest]
            codec = CODEC_JSON
            if field in COMPRESSED_FIELDS and len(data) > 1024:
                packed = zlib.compress(data, 6)
                if len(packed) < len(data) * 3 // 4:
                    data, codec = packed, CODEC_ZLIB
            yield Step(self._sql.insert_blob, (self.agent_id, digest, data, codec, n), "none")
        for digest in sorted(drop):
            yield Step(self._sql.release, (drop[digest], self.agent_id, digest), "none")
            yield Step(self._sql.drop_blob, (self.agent_id, digest), "none")

    # --- reads ------------------------------------------------------------------------------

    def _candidates_op(self, key: str) -> Op[Rows]:
        rows: Rows = yield Step(self._sql.candidates, (self.agent_id, fold_key(key)), "all")
        if len(rows) > 1:
            rows.sort(key=lambda r: (r[1], r[0] == key), reverse=True)
        return rows

    def get_op(self, key: str, *, blobs: bool, snapshot: bool) -> Op[Entry | None]:
        """The read of :meth:`get`, in one snapshot with ``snapshot`` (both drivers)."""
        if snapshot:
            yield Step("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", None, "none")
        rows = yield from self._candidates_op(key)
        if not rows:
            return None
        return (yield from self._decode_op(rows[0][2], rows[0][3], blobs=blobs))

    def blob_gone(self, key: str) -> CorruptStoreError:
        """A blob missing even within one snapshot: real damage."""
        return CorruptStoreError(
            f"{self.location}: the entry {key!r} references a blob that is missing;"
            " run `sessionstore doctor`",
            path=self.location,
        )

    def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """The entry for ``key`` or its freshest case variant."""
        try:
            return self._read(
                lambda c: run_op(c, self.get_op(key, blobs=blobs, snapshot=False)), None
            )
        except _BlobGone:
            # A writer replaced the entry between the two statements: read again in one
            # snapshot, where a missing blob is real damage.
            try:
                return self._read(
                    lambda c: run_op(c, self.get_op(key, blobs=blobs, snapshot=True)),
                    None,
                    snapshot=True,
                )
            except _BlobGone as exc:
                raise self.blob_gone(key) from exc

    def count_op(self) -> Op[int]:
        """The read of :meth:`count` (both drivers)."""
        row = yield Step(self._sql.count, (self.agent_id,), "one")
        return int(row[0]) if row else 0

    def count(self) -> int:
        """Number of this agent's entries."""
        return self._read(lambda c: run_op(c, self.count_op()), 0)

    def _where(self, query: ListQuery) -> tuple[list[str], list[Any]]:
        where = ["agent_id = %s", "vis = 0"]
        args: list[Any] = [self.agent_id]
        if query.agent_id is not None:
            where.append("row_agent = %s")
            args.append(_text(query.agent_id))
        if query.channel is not None:
            where.append("row_channel = %s")
            args.append(_text(query.channel))
        if query.label is not None:
            where.append("label = %s")
            args.append(_text(query.label))
        if query.spawned_by is not None:
            where.append("(spawned_by = %s OR parent_session_key = %s)")
            args += [_text(query.spawned_by)] * 2
        if query.active_since is not None:
            where.append("updated_at >= %s")
            args.append(_bind_number(query.active_since))
        if query.search is not None:
            where.append("strpos(search_text, %s) > 0")
            args.append(_text(query.search))
        if query.after is not None:
            where.append("(updated_at, session_key) < (%s, %s)")
            args += [_bind_number(query.after[0]), query.after[1]]
        return where, args

    def _sentinels_op(self, query: ListQuery) -> Op[Rows]:
        if not (query.include_global or query.include_unknown) or (
            query.agent_id is not None or query.spawned_by is not None
        ):
            return []
        rows: Rows = yield Step(
            "SELECT session_key, list_row::text, updated_at, entry::text"
            f" FROM {self.schema}.sessions WHERE agent_id = %s AND vis = 1",
            (self.agent_id,),
            "all",
        )
        return [r[:3] for r in rows if query.matches(r[0], orjson.loads(r[3]), 1)]

    def list_op(self, query: ListQuery) -> Op[Rows]:
        """The read of :meth:`list`: the raw rows for :meth:`list_rows` (both drivers)."""
        where, args = self._where(query)
        sql = (
            f"SELECT session_key, list_row::text, updated_at FROM {self.schema}.sessions"
            f" WHERE {' AND '.join(where)} ORDER BY updated_at DESC, session_key DESC"
        )
        if query.limit is not None:
            # A literal, not a parameter: a generic plan of a prepared statement does not
            # know the limit and may sort the whole range instead of walking the index.
            sql += f" LIMIT {int(query.limit) + 1}"
        raw: Rows = yield Step(sql, args, "all")
        extra = yield from self._sentinels_op(query)
        if extra:
            raw = sorted(raw + extra, key=lambda r: (r[2], r[0]), reverse=True)
        return raw

    def list_rows(
        self, query: ListQuery, raw: Rows
    ) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """The page ``list(query)`` returns, made of the rows its SQL read."""
        more = None
        if query.limit is not None and len(raw) > query.limit:
            raw = raw[: query.limit]
            more = (_number(raw[-1][2]), raw[-1][0])
        rows: list[SessionRow] = []
        for key, row_json, _ in raw:
            row = orjson.loads(row_json)
            if not row.get("agentId"):
                row["agentId"] = self.agent_id
            row["key"] = key
            rows.append(row)
        return rows, more

    def list(self, query: ListQuery) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """Rows matching ``query`` through the list indexes, newest first."""
        empty: Rows = []
        return self.list_rows(query, self._read(lambda c: run_op(c, self.list_op(query)), empty))

    def count_matching_op(self, query: ListQuery) -> Op[int]:
        """The read of :meth:`count_matching` (both drivers)."""
        where, args = self._where(query)
        row = yield Step(
            f"SELECT count(*) FROM {self.schema}.sessions WHERE {' AND '.join(where)}", args, "one"
        )
        extra = yield from self._sentinels_op(query)
        return (int(row[0]) if row else 0) + len(extra)

    def count_matching(self, query: ListQuery) -> int:
        """How many rows ``list(query)`` would return without a limit (counted in SQL)."""
        return self._read(lambda c: run_op(c, self.count_matching_op(query)), 0)

    def load_all_op(self) -> Op[dict[str, Entry]]:
        """The snapshot read of :meth:`load_all` (both drivers)."""
        yield Step("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", None, "none")
        rows: Rows = yield Step(
            f"SELECT session_key, entry::text, blob_refs::text FROM {self.schema}.sessions"
            " WHERE agent_id = %s ORDER BY ins_order, session_key",
            (self.agent_id,),
            "all",
        )
        out: dict[str, Entry] = {}
        for k, ej, refs in rows:
            out[k] = yield from self._decode_op(ej, refs, blobs=True)
        return out

    def load_all(self) -> dict[str, Entry]:
        """Every entry of the agent, in insertion order (one snapshot)."""
        return self._read(lambda c: run_op(c, self.load_all_op()), {}, snapshot=True)

    # --- writes -----------------------------------------------------------------------------

    def _delete_row_op(self, key: str) -> Op[bool]:
        row = yield Step(self._sql.delete, (self.agent_id, key), "one")
        if row is None:
            return False
        if row[0]:
            yield from self._swap_blobs_op(orjson.loads(row[0]), None)
        return True

    def _delete_row(self, conn: psycopg.Connection[Any], key: str) -> bool:
        return run_op(conn, self._delete_row_op(key))

    def _store_op(self, key: str, entry: Entry, rows: Rows) -> Op[bool]:
        """Write ``entry`` under ``key``, folding away the case variants in ``rows``."""
        own = next((r for r in rows if r[0] == key), None)
        enc = _encode(key, entry, agent=self.agent_id, now=now_ms())
        old_refs: dict[str, str] = orjson.loads(own[3]) if own is not None and own[3] else {}
        if own is not None and len(rows) == 1 and own[2] == enc.entry_json and old_refs == enc.refs:
            return False
        yield from self._swap_blobs_op(old_refs, enc)
        for r in rows:
            if r[0] != key:
                yield from self._delete_row_op(r[0])
        yield Step(self._sql.update if own is not None else self._sql.insert, enc.params, "none")
        return True

    def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """Read-modify-write one key in one transaction under its advisory lock."""
        todo: ModifyFn = fn
        if not self._ready and not self._schema_exists():
            # A store whose tables do not exist yet is created only by a call that writes.
            again = writes_when_absent(fn)
            if again is None:
                return None, False
            todo = again
        return self._run(
            lambda c: self.modify_in(
                c, key, todo, needs_blobs=needs_blobs, full_result=full_result
            ),
            write=True,
        )

    def modify_op(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool, full_result: bool
    ) -> Op[tuple[Entry | None, bool]]:
        """The transaction of :meth:`modify` (for both drivers)."""
        return self.modify_steps(
            key,
            lambda existing: _given(fn(existing)),
            needs_blobs=needs_blobs,
            full_result=full_result,
        )

    def modify_steps(
        self,
        key: str,
        fn: Callable[[Entry | None], Op[Entry | _Delete | None]],
        *,
        needs_blobs: bool,
        full_result: bool,
    ) -> Op[tuple[Entry | None, bool]]:
        """:meth:`modify_op` with a callback that runs statements of its own.

        For a transcript append that changes the entry in the same transaction.
        """
        yield from self._lock_key_op(key)
        rows = yield from self._candidates_op(key)
        existing = None
        if rows:
            existing = yield from self._decode_op(rows[0][2], rows[0][3], blobs=needs_blobs)
        result = yield from fn(existing)
        if result is None:
            out, written = existing, False
        elif result is DELETE:
            for r in rows:
                yield from self._delete_row_op(r[0])
            out, written = None, bool(rows)
        else:
            assert isinstance(result, dict)
            written = yield from self._store_op(key, result, rows)
            out = result
        if out is not None and full_result:
            out = yield from self._materialize_op(out)
        return out, written

    def modify_in(
        self,
        conn: psycopg.Connection[Any],
        key: str,
        fn: ModifyFn,
        *,
        needs_blobs: bool = True,
        full_result: bool = True,
    ) -> tuple[Entry | None, bool]:
        """:meth:`modify` inside a transaction of :meth:`run` (the transcript engine's).

        Takes the key's lock first, so a transcript write that joins it orders its own
        locks after the key's, as every writer of the key does.
        """
        return run_op(
            conn, self.modify_op(key, fn, needs_blobs=needs_blobs, full_result=full_result)
        )

    def mutate_op(self, fn: Callable[[dict[str, Any]], T]) -> Op[T]:
        """The transaction of :meth:`mutate` (for both drivers)."""
        yield from self._lock_agent_op()
        rows: Rows = yield Step(
            f"SELECT session_key, entry::text, blob_refs::text FROM {self.schema}.sessions"
            " WHERE agent_id = %s ORDER BY ins_order, session_key",
            (self.agent_id,),
            "all",
        )
        stored = {k: (ej, refs) for k, ej, refs in rows}
        working: dict[str, Any] = {}
        for k, ej, refs in rows:
            working[k] = yield from self._decode_op(ej, refs, blobs=True)
        acp = {k: orjson.loads(orjson.dumps(v["acp"])) for k, v in working.items() if "acp" in v}
        result = fn(working)
        for k in stored:
            if k not in working:
                yield from self._delete_row_op(k)
        now = now_ms()
        for k, value in working.items():
            enc = _encode(
                k, settle_entry(mutated_entry(k, value, acp)), agent=self.agent_id, now=now
            )
            old = stored.get(k)
            if old is None:
                yield from self._swap_blobs_op({}, enc)
                yield Step(self._sql.insert, enc.params, "none")
                continue
            old_refs = orjson.loads(old[1]) if old[1] else {}
            if old[0] != enc.entry_json or old_refs != enc.refs:
                yield from self._swap_blobs_op(old_refs, enc)
                yield Step(self._sql.update, enc.params, "none")
        return result

    def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Whole-agent mutator in one transaction under the agent lock; changed rows only."""
        return self._run(lambda c: run_op(c, self.mutate_op(fn)), write=True)

    def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """Plan with ``fn`` in one read-only snapshot, then apply its removals in batches.

        The plan (and so the report) is made exactly as in one transaction (see
        :class:`_PgMaintenance`), in a ``REPEATABLE READ READ ONLY`` transaction that takes
        no lock: a dry run writes nothing and blocks no writer. When ``commit``, the rows the
        plan removed are deleted in batches of at most ``maintenance_batch_rows`` rows, each
        its own transaction under the agent's lock, so writers get in between batches. A
        row is deleted only if it is still the version the plan saw; one a writer changed
        (or re-created) since is kept, and its key is listed in the planning object's
        ``kept_keys`` for the caller to take out of its report and file plan.
        """
        if commit and self._read_only:
            raise ReadOnlyStoreError(f"cannot maintain {self.location}: it was opened read-only")
        if not self._ready and not self._schema_exists():
            from .base import EmptyMaintenance

            return fn(EmptyMaintenance())
        if not self._read_only:
            self._ensure_schema()  # the plan reads columns of the current version

        def plan(conn: psycopg.Connection[Any]) -> tuple[_PgMaintenance, T]:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            planning = _PgMaintenance(self, conn)
            return planning, fn(planning)

        planning, outcome = self._run(plan, write=False)
        if commit and planning.removed:
            planning.kept_keys = self._apply_removals(planning.removed)
        return outcome

    def _apply_removals(self, removed: Mapping[str, tuple[Any, ...]]) -> frozenset[str]:
        """Delete the planned rows in short transactions; the keys kept instead."""
        kept: set[str] = set()
        items = list(removed.items())
        limit = max(1, self.maintenance_batch_rows)
        for at in range(0, len(items), limit):
            if at and self.maintenance_batch_hook is not None:
                self.maintenance_batch_hook()
            batch = items[at : at + limit]

            def delete(conn: psycopg.Connection[Any], batch: Rows = batch) -> set[str]:
                self._lock_agent(conn)
                keys = [key for key, _ in batch]
                # One statement per row, by primary key, sent in one pipeline: an index
                # lookup each, whatever the table's statistics (a join with the batch as an
                # array can plan a scan of every row of the agent).
                gone: list[tuple[Any, ...]] = []
                with conn.cursor() as cur:
                    cur.executemany(
                        f"DELETE FROM {self.schema}.sessions WHERE agent_id = %s"
                        " AND session_key = %s AND session_id = %s AND updated_at = %s"
                        " AND has_updated = %s AND octet_length(entry::text) = %s"
                        " AND blob_refs::text IS NOT DISTINCT FROM %s"
                        " RETURNING session_key, blob_refs::text",
                        [(self.agent_id, key, *version) for key, version in batch],
                        returning=True,
                    )
                    while True:
                        gone += cur.fetchall()
                        if not cur.nextset():
                            break
                for _, refs in gone:
                    if refs:
                        run_op(conn, self._swap_blobs_op(orjson.loads(refs), None))
                deleted = {key for key, _ in gone}
                # A planned row not deleted and still there was changed by a writer: kept.
                rest = [key for key in keys if key not in deleted]
                if not rest:
                    return set()
                found = conn.execute(
                    f"SELECT session_key FROM {self.schema}.sessions WHERE agent_id = %s"
                    " AND session_key = ANY(%s)",
                    (self.agent_id, rest),
                ).fetchall()
                return {str(key) for (key,) in found}

            kept |= self._run(delete, write=True)
        return frozenset(kept)

    def vacuum(self) -> dict[str, Any]:
        """``VACUUM (ANALYZE)`` the store's tables; sizes are of the tables (all agents)."""
        if self._read_only:
            raise ReadOnlyStoreError(f"cannot vacuum {self.location}: it was opened read-only")
        if not self._schema_exists():
            return {"bytesBefore": 0, "bytesAfter": 0, "checkpointed": True}
        tables = ("sessions", "blobs", "meta", "transcripts", "transcript_heads")
        size_sql = "SELECT " + " + ".join(
            f"pg_total_relation_size('{self.schema}.{t}')" for t in tables
        )
        try:
            with self._pool().connection() as conn:
                before = conn.execute(size_sql).fetchone()
                for t in tables:
                    conn.execute(f"VACUUM (ANALYZE) {self.schema}.{t}")
                after = conn.execute(size_sql).fetchone()
        except (self._psycopg.Error, self._pool_mod.PoolTimeout) as exc:
            if self._lost(exc):
                self._discard_broken()
            raise self._wrap(exc) from exc
        return {
            "bytesBefore": int(before[0]) if before else 0,
            "bytesAfter": int(after[0]) if after else 0,
            "checkpointed": True,
        }

    # --- migration records and imports ------------------------------------------------------

    def migration_record(self, record_key: str = "migration") -> dict[str, Any] | None:
        """The record of the last import into this agent's rows, if any."""

        def read(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
            row = conn.execute(self._sql.meta, (self.agent_id, record_key)).fetchone()
            value = orjson.loads(row[0]) if row else None
            return value if isinstance(value, dict) else None

        return self._read(read, None)

    def import_entries(
        self,
        entries: Mapping[str, Entry],
        *,
        record: dict[str, Any] | None,
        keep_fresher: bool = False,
        only_if_new: bool = False,
        progress: Callable[[int], None] | None = None,
        record_key: str = "migration",
    ) -> int | None:
        """Write ``entries`` in one transaction, verify each, and store ``record``.

        All or nothing (see ``SqliteIndex.import_entries``; the same arguments).

        Returns:
            The number of entries written, or None when ``only_if_new`` found data.
        """

        def body(conn: psycopg.Connection[Any]) -> int | None:
            self._lock_agent(conn)
            if only_if_new:
                row = conn.execute(self._sql.count, (self.agent_id,)).fetchone()
                has = conn.execute(self._sql.meta, (self.agent_id, record_key)).fetchone()
                if (row and row[0]) or has:
                    return None
            written = 0
            kept: set[str] = set()
            for i, (key, entry) in enumerate(entries.items(), 1):
                rows = run_op(conn, self._candidates_op(key))
                if keep_fresher and rows and _number(rows[0][1]) > sort_time(entry):
                    kept.add(key)
                elif run_op(conn, self._store_op(key, entry, rows)):
                    written += 1
                if progress is not None and (i % 500 == 0 or i == len(entries)):
                    progress(i)
            for key, entry in entries.items():
                if key in kept:
                    continue
                rows = run_op(conn, self._candidates_op(key))
                stored = None
                if rows:
                    stored = run_op(conn, self._decode_op(rows[0][2], rows[0][3], blobs=True))
                if stored is None or not json_equal(stored, entry):
                    raise MigrationError(
                        f"verification failed for {key!r}: the entry read back from"
                        f" {self.location} differs from the source; nothing was imported"
                    )
            if record is not None:
                row = conn.execute(
                    f"SELECT count(*), max(updated_at) FROM {self.schema}.sessions"
                    " WHERE agent_id = %s",
                    (self.agent_id,),
                ).fetchone()
                assert row is not None
                done = {
                    **record,
                    "migratedCount": written,
                    "indexCount": int(row[0]),
                    "indexLatestUpdate": _number(row[1]) if row[1] is not None else None,
                }
                conn.execute(
                    self._sql.set_meta, (self.agent_id, record_key, dumps_compact(done).decode())
                )
            return written

        return self._run(body, write=True)

    # --- the rest of the contract -----------------------------------------------------------

    def async_twin(self) -> AsyncIndexBackend:
        """This store on psycopg's asyncio pool (``postgres_aio.PostgresAsyncIndex``).

        A new twin per call, sharing this index's SQL, schema state and blob cache; its
        pool opens on first use and is closed by ``await twin.close()``.
        """
        from .postgres_aio import PostgresAsyncIndex

        return PostgresAsyncIndex(self)

    def close(self) -> None:
        """Close the pool (in the process that opened it). Idempotent."""
        with self._guard:
            pool, self._pool_obj = self._pool_obj, None
            self._closed = True
        if pool is not None and self._pool_pid == os.getpid():
            with contextlib.suppress(Exception):
                pool.close()
        self._blob_cache.clear()

    def server_version(self) -> str | None:
        """The server's version string (``SHOW server_version``)."""

        def read(conn: psycopg.Connection[Any]) -> str | None:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None

        return self._run(read, write=False, txn=False)

    def describe(self) -> dict[str, Any]:
        """Facts for ``info()``: driver, server version, schema, pool, DSN without password."""
        return {
            "driver": f"psycopg {self._psycopg.__version__}",
            "serverVersion": self.server_version(),
            "schema": self.schema,
            "schemaVersion": self.schema_version(),
            "poolSize": self.pool_size,
            "partitions": self.partitions,
            "dsn": redact_dsn(self._dsn),
            "transcriptCount": self._transcript_count(),
        }

    def _transcript_count(self) -> int:
        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                f"SELECT count(*) FROM {self.schema}.transcript_heads WHERE agent_id = %s",
                (self.agent_id,),
            ).fetchone()
            return int(row[0]) if row else 0

        return self._read(read, 0)

    def blob_drift(self) -> tuple[dict[str, int], dict[str, int]]:
        """For the doctor, in SQL: blobs referenced but missing, and refcounts that drifted.

        Returns:
            ``(missing, drift)``: digest -> sessions referencing it, for missing blobs; and
            digest -> the true reference count, for stored blobs whose count is wrong.
        """
        refs = (
            f"SELECT r.value #>> '{{}}' AS digest, count(*) AS n FROM {self.schema}.sessions s,"
            " json_each(s.blob_refs) r WHERE s.agent_id = %s AND s.blob_refs IS NOT NULL"
            " GROUP BY 1"
        )

        def read(conn: psycopg.Connection[Any]) -> tuple[dict[str, int], dict[str, int]]:
            missing = conn.execute(
                f"SELECT r.digest, r.n FROM ({refs}) r LEFT JOIN {self.schema}.blobs b"
                " ON b.agent_id = %s AND b.digest = r.digest WHERE b.digest IS NULL",
                (self.agent_id, self.agent_id),
            ).fetchall()
            drift = conn.execute(
                f"SELECT b.digest, coalesce(r.n, 0) FROM {self.schema}.blobs b LEFT JOIN"
                f" ({refs}) r ON r.digest = b.digest WHERE b.agent_id = %s"
                " AND b.refcount <> coalesce(r.n, 0)",
                (self.agent_id, self.agent_id),
            ).fetchall()
            return {d: int(n) for d, n in missing}, {d: int(n) for d, n in drift}

        none: tuple[dict[str, int], dict[str, int]] = ({}, {})
        return self._read(read, none)

    def fix_blob_refcounts(self, drift: Mapping[str, int]) -> None:
        """Set the reference counts found by :meth:`blob_drift` (0: delete the blob)."""

        def write(conn: psycopg.Connection[Any]) -> None:
            self._lock_agent(conn)
            for digest, n in sorted(drift.items()):
                if n == 0:
                    conn.execute(
                        f"DELETE FROM {self.schema}.blobs WHERE agent_id = %s AND digest = %s",
                        (self.agent_id, digest),
                    )
                else:
                    conn.execute(
                        f"UPDATE {self.schema}.blobs SET refcount = %s"
                        " WHERE agent_id = %s AND digest = %s",
                        (n, self.agent_id, digest),
                    )

        self._run(write, write=True)

    def run(self, body: Callable[[psycopg.Connection[Any]], T], *, write: bool = True) -> T:
        """Run ``body(conn)`` in one transaction with this store's retries and typed errors.

        For the transcript engine, the doctor and tests; ``write`` creates the schema first.
        """
        if not write and not (self._ready or self._seen) and not self._schema_exists():
            raise _NoSchema
        return self._run(body, write=write, txn=write)


class _Tracked:
    """A connection that notes when the transaction first did something.

    Until then a broken connection is replaced and the transaction retried; afterwards the
    caller's callback may have run, so the failure is raised instead.
    """

    __slots__ = ("_began", "_conn")

    def __init__(self, conn: psycopg.Connection[Any], began: list[bool]) -> None:
        self._conn = conn
        self._began = began

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        cur = self._conn.execute(*args, **kwargs)
        self._began[0] = True
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _two_ints(*parts: str) -> tuple[int, int]:
    """Two signed 32-bit advisory lock keys for ``parts`` (the key-lock space)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big", signed=True), int.from_bytes(
        digest[4:], "big", signed=True
    )
