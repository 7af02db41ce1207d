"""Reference models the benchmark measures this library against.

- :class:`LegacyJsonStore`: OpenClaw's ``sessions.json`` design as upstream runs it (every
  read clones the whole cached store, every write rewrites the whole file);
- :class:`WholeStoreSqlite`: PR #58550's SQLite table wired as the PR wired it (every
  operation loads every row, every write deletes and re-inserts every row);
- :class:`BareApsw`: the floor for ``get`` and ``update``: the same row I/O as the store,
  with no library around it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import apsw
import orjson

from ..clock import iso_now, now_ms
from ..entry import load_normalize, merge_entry, sort_time
from ..files import atomic_write, dumps_pretty
from ..index.base import BlobCache, derive_row, row_channel
from ..index.json import parse_store_bytes, resolve_key
from ..index.rowcodec import pack, unpack
from ..index.sqlite import (
    _LIST_COLUMNS,
    BLOB_CACHE_BYTES,
    PAGE_CACHE_KIB,
    SCHEMA_VERSION,
    _by_fold,
)
from ..lockfile import LockFile

__all__ = [
    "AGENT",
    "PR_SCHEMA",
    "BareApsw",
    "BarePsycopg",
    "Entry",
    "LegacyJsonStore",
    "WholeStoreSqlite",
]

Entry = dict[str, Any]

AGENT: Final = "main"
"""The agent of every benchmark dataset."""
TAIL_FLOOR_BYTES: Final = 64 * 1024
"""What the ``tail(20)`` floor reads from the end of a transcript."""

# --- the whole-store baseline (PR #58550 as wired) -------------------------------------------

PR_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sessions (
  session_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, updated_at INTEGER NOT NULL,
  created_at INTEGER, channel TEXT, last_channel TEXT, last_to TEXT, last_account_id TEXT,
  last_thread_id TEXT, label TEXT, display_name TEXT, status TEXT, model TEXT,
  model_provider TEXT, total_tokens INTEGER, input_tokens INTEGER, output_tokens INTEGER,
  message_count INTEGER, archived INTEGER DEFAULT 0, entry_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_sessions_updated_at   ON sessions(updated_at);
CREATE INDEX IF NOT EXISTS idx_sessions_channel      ON sessions(channel);
CREATE INDEX IF NOT EXISTS idx_sessions_status       ON sessions(status);
CREATE INDEX IF NOT EXISTS idx_sessions_last_channel ON sessions(last_channel);
CREATE INDEX IF NOT EXISTS idx_sessions_archived     ON sessions(archived);
"""
_PR_UPSERT: Final = (
    "INSERT INTO sessions (session_key, session_id, updated_at, created_at, channel,"
    " last_channel, last_to, last_account_id, last_thread_id, label, display_name, status,"
    " model, model_provider, total_tokens, input_tokens, output_tokens, message_count,"
    " archived, entry_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(session_key) DO UPDATE SET session_id = excluded.session_id,"
    " updated_at = excluded.updated_at, created_at = excluded.created_at,"
    " channel = excluded.channel, last_channel = excluded.last_channel,"
    " last_to = excluded.last_to, last_account_id = excluded.last_account_id,"
    " last_thread_id = excluded.last_thread_id, label = excluded.label,"
    " display_name = excluded.display_name, status = excluded.status, model = excluded.model,"
    " model_provider = excluded.model_provider, total_tokens = excluded.total_tokens,"
    " input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,"
    " message_count = excluded.message_count, archived = excluded.archived,"
    " entry_json = excluded.entry_json"
)
# (entry field, column index in SELECT below) of the string columns the PR overlays
_PR_STRING_COLUMNS: Final = (
    ("channel", 2),
    ("lastChannel", 3),
    ("lastTo", 4),
    ("lastAccountId", 5),
    ("lastThreadId", 6),
    ("label", 7),
    ("displayName", 8),
    ("status", 9),
    ("model", 10),
    ("modelProvider", 11),
)
_PR_NUMBER_COLUMNS: Final = (("totalTokens", 12), ("inputTokens", 13), ("outputTokens", 14))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _whole_store_rows(
    store: dict[str, Any], agent_id: str, channel: str | None, limit: int | None
) -> list[Any]:
    """List rows computed from a whole store held in memory: filter, sort, slice."""
    hits = [
        (sort_time(e), k, e)
        for k, e in store.items()
        if isinstance(e, dict) and (channel is None or row_channel(k, e) == channel)
    ]
    hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
    if limit is not None:
        hits = hits[:limit]
    return [derive_row(k, e, agent_id) for _, k, e in hits]


class WholeStoreSqlite:
    """PR #58550's SQLite store as the PR wired it into the store layer.

    The table, indexes and PRAGMAs of spec section 10.2 and the row mapping of 10.3; every
    read loads every row (``loadSessionStoreSqlite``: ``JSON.parse`` of each
    ``entry_json`` plus the column overlay, no cache) and every write saves the whole store
    (``BEGIN IMMEDIATE; DELETE FROM sessions; upsert every entry; COMMIT``), as section
    10.4 describes. Normalisation and maintenance, which the PR also ran on every save,
    are left out, so this baseline is, if anything, faster than the PR.

    Args:
        path: The database file.
        agent_id: The agent (for list rows of non-agent keys).
        synchronous: ``NORMAL`` (the PR's setting) or ``FULL``.
    """

    def __init__(self, path: Path, *, agent_id: str = AGENT, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.agent_id = agent_id
        self._conn = apsw.Connection(str(path))
        self._conn.set_busy_timeout(5000)
        self._conn.execute("PRAGMA journal_mode = WAL").fetchall()
        self._conn.execute(
            f"PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000;"
            " PRAGMA cache_size = -16000; PRAGMA temp_store = MEMORY;"
        )
        self._conn.execute(PR_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def load_all(self) -> dict[str, Entry]:
        """Every entry by key, newest first (``loadSessionStoreSqlite``)."""
        rows: list[tuple[Any, ...]] = self._conn.execute(
            "SELECT session_key, session_id, channel, last_channel, last_to, last_account_id,"
            " last_thread_id, label, display_name, status, model, model_provider, total_tokens,"
            " input_tokens, output_tokens, updated_at, entry_json FROM sessions"
            " ORDER BY updated_at DESC"
        ).fetchall()
        store: dict[str, Entry] = {}
        for row in rows:
            try:
                entry = orjson.loads(row[16])
            except orjson.JSONDecodeError:
                entry = {}
            if not isinstance(entry, dict):
                entry = {}
            entry["sessionId"] = row[1]
            entry["updatedAt"] = row[15] if row[15] is not None else now_ms()
            for name, index in _PR_STRING_COLUMNS:
                if row[index]:
                    entry[name] = row[index]
            for name, index in _PR_NUMBER_COLUMNS:
                if row[index] is not None:
                    entry[name] = row[index]
            store[row[0]] = entry
        return store

    @staticmethod
    def _bind(key: str, entry: Entry) -> tuple[Any, ...]:
        thread = entry.get("lastThreadId")
        updated = _int_or_none(entry.get("updatedAt"))
        return (
            key,
            _str_or_none(entry.get("sessionId")) or "",
            updated if updated is not None else now_ms(),
            _int_or_none(entry.get("startedAt")),
            _str_or_none(entry.get("channel")),
            _str_or_none(entry.get("lastChannel")),
            _str_or_none(entry.get("lastTo")),
            _str_or_none(entry.get("lastAccountId")),
            str(thread) if thread is not None else None,
            _str_or_none(entry.get("label")),
            _str_or_none(entry.get("displayName")),
            _str_or_none(entry.get("status")),
            _str_or_none(entry.get("model")),
            _str_or_none(entry.get("modelProvider")),
            _int_or_none(entry.get("totalTokens")),
            _int_or_none(entry.get("inputTokens")),
            _int_or_none(entry.get("outputTokens")),
            None,  # message_count: "reserved", always null in the PR
            0,  # archived: always 0 in the PR
            orjson.dumps(entry).decode(),
        )

    def _write(self, store: dict[str, Entry], *, clear: bool) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if clear:
                conn.execute("DELETE FROM sessions")
            conn.executemany(_PR_UPSERT, [self._bind(k, e) for k, e in store.items()])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def save_all(self, store: dict[str, Entry]) -> None:
        """Replace the table's content with ``store`` (``saveSessionStoreSqlite``)."""
        self._write(store, clear=True)

    def import_json(self, json_path: Path) -> int:
        """``migrateJsonToSqlite``: upsert every entry of ``sessions.json`` in one transaction.

        Returns:
            The number of entries written.
        """
        data = orjson.loads(json_path.read_bytes())
        store = {k: v for k, v in data.items() if isinstance(v, dict)}
        self._write(store, clear=False)
        return len(store)

    def get(self, key: str) -> Entry | None:
        """One entry, found in the whole store loaded for it."""
        return self.load_all().get(key)

    def update(self, key: str, patch: dict[str, Any]) -> Entry | None:
        """Load everything, merge ``patch`` into one entry, save everything."""
        store = self.load_all()
        entry = store.get(key)
        if entry is None:
            return None
        entry.update(patch)
        entry["updatedAt"] = max(sort_time(entry), now_ms())
        self.save_all(store)
        return entry

    def list(self, *, channel: str | None = None, limit: int | None = None) -> list[Any]:
        """Rows newest first, from the whole store loaded for them."""
        return _whole_store_rows(self.load_all(), self.agent_id, channel, limit)

    def count(self) -> int:
        """Number of entries of the whole store loaded for it."""
        return len(self.load_all())


# --- the legacy design: OpenClaw's sessions.json ---------------------------------------------


class LegacyJsonStore:
    """OpenClaw's ``sessions.json`` store as upstream runs it (spec sections 5.1-5.4).

    Reads go through the object cache (valid while the file's mtime and size are unchanged)
    and return a deep clone of the whole store, as ``loadSessionStore`` does; a miss reads,
    parses and normalises the whole file. Writes take ``sessions.json.lock``, re-read the
    file without the cache (``updateSessionStore``), change one entry, and write the whole
    store back atomically (skipped when the text is unchanged). Maintenance, which upstream
    also runs on every save in enforce mode, is left out, so this is if anything faster than
    upstream. This library's own json backend keeps the format and the lock but reads and
    clones only the entry asked for.

    Args:
        path: The ``sessions.json`` file.
        agent_id: The agent (for list rows of non-agent keys).
        durable: fsync the temp file and the directory on each write.
    """

    def __init__(self, path: Path, *, agent_id: str = AGENT, durable: bool = False) -> None:
        self.path = path
        self.agent_id = agent_id
        self.durable = durable
        self._cache: tuple[tuple[int, int], dict[str, Any], bytes] | None = None
        self._lock = LockFile(path)

    def _read(self) -> tuple[tuple[int, int], dict[str, Any], bytes]:
        st = self.path.stat()
        raw = self.path.read_bytes()
        store = parse_store_bytes(raw, self.path)
        for key, value in store.items():
            if isinstance(value, dict):
                store[key] = load_normalize(value)
        return (st.st_mtime_ns, st.st_size), store, raw

    def load(self, *, skip_cache: bool = False) -> dict[str, Any]:
        """The whole store, a deep clone (``loadSessionStore``)."""
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if skip_cache or self._cache is None or self._cache[0] != stamp:
            self._cache = self._read()
        # structuredClone of the whole store on every read, as upstream
        return orjson.loads(orjson.dumps(self._cache[1]))  # type: ignore[no-any-return]

    def _save(self, store: dict[str, Any]) -> None:
        data = dumps_pretty(store)
        if self._cache is not None and data == self._cache[2]:
            return
        atomic_write(self.path, data, mode=0o600, durable=self.durable)
        st = self.path.stat()
        self._cache = ((st.st_mtime_ns, st.st_size), store, data)

    def get(self, key: str) -> Entry | None:
        """One entry, resolved case-insensitively in the whole store loaded for it."""
        store = self.load()
        winner, _ = resolve_key(store, key)
        return None if winner is None else store[winner]

    def update(self, key: str, patch: dict[str, Any]) -> Entry | None:
        """``updateSessionStore``: lock, fresh load, merge one entry, save everything."""
        with self._lock.hold():
            store = self.load(skip_cache=True)
            winner, _ = resolve_key(store, key)
            if winner is None:
                return None
            store[winner] = merge_entry(store[winner], patch)
            self._save(store)
            return store[winner]  # type: ignore[no-any-return]

    def list(self, *, channel: str | None = None, limit: int | None = None) -> list[Any]:
        """``sessions.list``: rows for the whole store loaded for it, sorted, sliced."""
        return _whole_store_rows(self.load(), self.agent_id, channel, limit)

    def count(self) -> int:
        """Entries of the whole store loaded for it."""
        return len(self.load())


# --- the floor: bare apsw --------------------------------------------------------------------


# A key's row as the store finds it: by primary key, and its legacy case variants through
# the folded-key index (the store merges them: OpenClaw's resolution of mixed-case keys).
_ROW_BY_KEY: Final = _by_fold("entry_json, blob_refs")


class BareApsw:
    """The same row I/O as the sqlite store's operations, with nothing around it: the floor.

    Every target of issue 15 is a ratio against this class, measured in the same run. A
    floor does the work the store guarantees, and no more:

    - ``get``: the row by primary key and its case variants by folded key (the store's
      lookup statement: the store merges legacy mixed-case variants), then each of its
      blob rows by digest, and
      ``orjson.loads`` of the same bytes the store parses (compressed rows and blobs are
      inflated first, as the store does); inflated blobs are kept by digest in the
      store's blob cache (:class:`~sessionstore.index.base.BlobCache`, same budget);
    - ``update``: in a ``BEGIN IMMEDIATE`` transaction, read the row's ``entry_json``, set
      the token fields and ``updatedAt`` in it, write it back with the token and time
      columns, and return the whole entry (its blobs parsed, as ``get``), as the store's
      ``update`` returns it;
    - ``open_get``: what an open guarantees (a ``stat`` of each settings file, the file
      header checked, the schema version and migration record read in one statement with
      the store's pragmas, ``sessions.json`` compared with that record), ``get``, close;
    - ``list``: the store's list query (the list columns, newest first), each row made the
      dict of its 21 list fields that ``list()`` returns (one dict display per row, the
      cheapest way to build it; the store also fills in ``agentId`` for keys without one);
    - ``count``: the row counter the store keeps;
    - ``append``: what an append guarantees: the transcript's ``flock`` (concurrent
      appenders never interleave), OpenClaw's ``<transcript>.lock`` (never without its
      owner's pid: written to a temporary file, hard-linked into place, removed after),
      the id on the file's last line (the new entry's ``parentId``), one ``O_APPEND``
      write of a pi v3 line, and one transaction keeping the entry in step: its
      ``messageCount`` and ``updatedAt`` set inside ``entry_json`` (inflated, changed,
      deflated) and in their columns;
    - ``tail``: read the last 64 KB of a transcript, parse its last 20 lines (the store
      returns parsed records), and read the session's message count by primary key (the
      store returns absolute seq numbers).

    No key folding, merging, normalisation, row derivation or dict building. It mirrors
    the storage format and page cache of ``index/sqlite.py``.

    Args:
        path: A ``sessions.sqlite`` written by this library.
        synchronous: ``NORMAL`` or ``FULL`` (as durability normal / power).
    """

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        # What an open guarantees, minimally: the settings files looked at (their parse is
        # cached by stat), the file's first 16 bytes checked before SQLite may write over
        # a file that is not a database, the schema version (a newer one is refused) and
        # the migration record read, and sessions.json beside it compared with that record
        # (the split-store check).
        db = os.fspath(path)
        sessions_dir = os.path.dirname(db)
        state_dir = os.path.dirname(os.path.dirname(os.path.dirname(sessions_dir)))
        for settings in ("openclaw.json", "sessionstore.json"):
            with contextlib.suppress(FileNotFoundError):
                os.stat(os.path.join(state_dir, settings))
        # through SQLite's VFS, as the store reads it: a descriptor of our own, closed,
        # would drop this process's POSIX locks on the file
        header = apsw.VFSFile("", db, [apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_READONLY, 0])
        try:
            if header.xRead(16, 0) != b"SQLite format 3\x00":
                raise ValueError(f"{path} is not a SQLite database")
        finally:
            header.xClose()
        self._conn = apsw.Connection(db)
        self._conn.set_busy_timeout(10_000)
        self._conn.execute("PRAGMA journal_mode = WAL").fetchall()
        meta: dict[str, Any] = dict(
            self._conn.execute(  # type: ignore[arg-type]
                f"PRAGMA synchronous = {synchronous}; PRAGMA cache_size = -{PAGE_CACHE_KIB};"
                " SELECT key, value FROM meta WHERE key IN ('schema_version', 'migration')"
            ).fetchall()
        )
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise ValueError(f"{path} has a newer schema ({version})")
        record = orjson.loads(meta["migration"]) if meta.get("migration") else None
        self.split = False  # sessions.json changed after its import (the store warns)
        if record is not None:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(os.path.join(sessions_dir, "sessions.json"))
                self.split = st.st_size != record.get("sourceBytes")
        codec = "codec" if version >= 3 else "0"  # blobs.codec: schema 3 on
        self._blob = f"SELECT data, {codec} FROM blobs WHERE digest = ?"
        self._blobs = BlobCache(BLOB_CACHE_BYTES)  # the store's policy: same budget, LRU
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The store's list query: visible rows' list fields by name, newest first."""
        sql = (
            f"SELECT {_LIST_COLUMNS} FROM sessions WHERE vis = 0"
            " ORDER BY updated_at DESC, session_key DESC"
        )
        if limit is None:
            raw = self._conn.execute(sql).fetchall()
        else:
            # the store asks for one row more, to know whether there is a next page
            raw = self._conn.execute(sql + " LIMIT ?", (limit + 1,)).fetchall()[:limit]
        # `list()` returns dicts, not tuples: building them is work the store must do.
        return [
            {
                "key": r[0],
                "agentId": r[1],
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

    def count(self) -> int:
        """The row counter (kept by triggers)."""
        row: tuple[Any, ...] = self._conn.execute(  # type: ignore[assignment]
            "SELECT row_count FROM stats WHERE id = 1"
        ).fetchone()
        return int(row[0])

    def append(self, key: str, transcript: Path, message: bytes) -> None:
        """Append one pi v3 line (``message`` is its compact JSON) and keep the entry in step."""
        fd = os.open(transcript, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # the lock file never exists without its owner: written aside, then linked
            lock = f"{transcript}.lock"
            tmp = f"{lock}.{os.urandom(8).hex()}.tmp"
            lfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(lfd, b'{"pid":%d,"createdAt":"%s"}' % (self._pid, iso_now().encode()))
            finally:
                os.close(lfd)
            os.link(tmp, lock)
            os.unlink(tmp)
            try:
                # the parent of the new entry: the id on the last line
                end = os.fstat(fd).st_size
                start = max(0, end - 4096)
                last = os.pread(fd, end - start, start).rstrip(b"\n").rsplit(b"\n", 1)[-1]
                parent = orjson.loads(last).get("id") if last else None
                os.write(
                    fd,
                    b'{"type":"message","id":"'
                    + os.urandom(4).hex().encode()
                    + b'","parentId":'
                    + orjson.dumps(parent)
                    + b',"timestamp":"'
                    + iso_now().encode()
                    + b'","message":'
                    + message
                    + b"}\n",
                )
                self._count_message(key)
            finally:
                os.unlink(lock)
        finally:
            os.close(fd)

    def _count_message(self, key: str) -> None:
        def count(entry: Entry) -> dict[str, Any]:
            n = int(entry.get("messageCount") or 0) + 1
            now = now_ms()
            entry.update(messageCount=n, updatedAt=now)
            return {"message_count": n, "updated_at": now, "row_updated_at": now}

        self._rewrite(key, count, blobs=False)

    def _rewrite(
        self, key: str, change: Callable[[Entry], dict[str, Any]], *, blobs: bool
    ) -> Entry:
        """Read the row's entry, let ``change`` edit it, write both back: one transaction.

        ``change`` returns the columns to set beside ``entry_json``, which is written in the
        store's format; with ``blobs`` the entry comes back with its blobs parsed, read in
        the same transaction.
        """
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            found: tuple[Any, ...] = conn.execute(_ROW_BY_KEY, (key,)).fetchone()  # type: ignore[assignment]
            stored = found[0]
            entry: Entry = orjson.loads(unpack(stored))
            columns = change(entry)
            data = orjson.dumps(entry)
            if isinstance(stored, bytes) and stored[:1] != b"{":
                data = pack(data)  # as the store writes it (schema 6)
            sets = "".join(f"{name} = ?, " for name in columns)
            conn.execute(
                f"UPDATE sessions SET {sets}entry_json = ? WHERE session_key = ?",
                (*columns.values(), data, key),
            )
            if blobs:
                entry = self._with_blobs(entry, found[1])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return entry

    def tail(self, key: str, transcript: Path, n: int = 20) -> tuple[Any, ...]:
        """The last ``n`` lines of the last 64 KB of a transcript, parsed, and the count."""
        with open(transcript, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_FLOOR_BYTES))
            data = f.read()
        lines = [orjson.loads(line) for line in data.splitlines()[-n:] if line.strip()]
        row = self._conn.execute(
            "SELECT message_count FROM sessions WHERE session_key = ?", (key,)
        ).fetchone()
        return row, lines

    def get(self, key: str) -> Entry | None:
        """Read and parse one row and its blobs."""
        row: tuple[Any, ...] | None = self._conn.execute(_ROW_BY_KEY, (key,)).fetchone()
        if row is None:
            return None
        return self._with_blobs(orjson.loads(unpack(row[0])), row[1])

    def _with_blobs(self, entry: Entry, refs: str | None) -> Entry:
        """``entry`` with its blob fields parsed (inflated blobs kept by digest)."""
        if refs:
            for name, digest in orjson.loads(refs).items():
                data = self._blobs.get(digest)
                if data is None:
                    blob: tuple[Any, ...] = self._conn.execute(self._blob, (digest,)).fetchone()  # type: ignore[assignment]
                    data = zlib.decompress(blob[0]) if blob[1] == 1 else blob[0]
                    self._blobs.put(digest, data)
                entry[name] = orjson.loads(data)
        return entry

    def update(self, key: str, tokens: int) -> Entry:
        """Read, change and write back one row in a write transaction; the whole entry."""

        def tokens_now(entry: Entry) -> dict[str, Any]:
            now = now_ms()
            # the benchmark's patch sets the three token counts
            entry.update(totalTokens=tokens, inputTokens=tokens, outputTokens=tokens, updatedAt=now)
            return {
                "total_tokens": tokens,
                "input_tokens": tokens,
                "output_tokens": tokens,
                "updated_at": now,
                "row_updated_at": now,
            }

        # the store returns the entry with its blobs, read in the same transaction
        return self._rewrite(key, tokens_now, blobs=True)


class BarePsycopg:
    """The PostgreSQL floor: one psycopg connection doing the store's I/O, nothing else.

    Each call mirrors what :class:`~sessionstore.index.postgres.PostgresIndex` sends and
    reads the same columns, with prepared statements and no pool, retries, advisory locks or
    row encoding around it:

    - :meth:`get`: the entry and its blob references by key, then the large fields parsed
      from a client-side blob cache (the store keeps one too; a miss reads the ``blobs`` rows);
    - :meth:`update`: in one transaction, the row ``FOR UPDATE``, the patched entry and
      ``list_row`` with ``updatedAt`` moved to now (as ``merge_entry`` does), written back to
      every column the store's UPDATE writes (so the same indexes change), then the large
      fields parsed for the returned entry;
    - :meth:`list`: the top rows' ``list_row`` through the list index, parsed;
    - :meth:`count`: ``count(*)`` of the agent.

    Args:
        dsn: PostgreSQL conninfo or URL.
        schema: The schema of a store this library wrote.
        agent_id: The agent whose rows are read.
    """

    _COLUMNS: Final = (
        "key_fold, session_id, updated_at, has_updated, vis, row_agent, row_channel, label,"
        " spawned_by, parent_session_key, model, session_file, message_count, search_text,"
        " list_row, entry, blob_refs"
    )

    def __init__(self, dsn: str, schema: str, *, agent_id: str = AGENT) -> None:
        from ..index.postgres import CODEC_ZLIB, load_driver

        psycopg, _ = load_driver()  # psycopg is imported only through the postgres backend
        self._zlib = CODEC_ZLIB
        self.agent_id = agent_id
        self.conn = psycopg.connect(
            dsn, autocommit=True, application_name=f"sessionstore-bench-bare:{os.getpid()}"
        )
        s, where = schema, "WHERE agent_id = %s AND session_key = %s"
        read = self._COLUMNS.replace(
            "list_row, entry, blob_refs", "list_row::text, entry::text, blob_refs::text"
        )
        self._get = f"SELECT entry::text, blob_refs::text FROM {s}.sessions {where}"
        self._blobs = (
            f"SELECT digest, data, codec FROM {s}.blobs WHERE agent_id = %s AND digest = ANY(%s)"
        )
        self._lock = f"SELECT {read} FROM {s}.sessions {where} FOR UPDATE"
        self._put = (
            f"UPDATE {s}.sessions SET ({self._COLUMNS}) = ({', '.join(['%s'] * 14)},"
            f" %s::json, %s::json, %s::json) {where}"
        )
        self._list = (
            f"SELECT session_key, list_row::text, updated_at FROM {s}.sessions WHERE agent_id"
            " = %s AND vis = 0 ORDER BY updated_at DESC, session_key DESC LIMIT "
        )
        self._count = f"SELECT count(*) FROM {s}.sessions WHERE agent_id = %s"
        self._cache: dict[str, bytes] = {}

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def backend_pid(self) -> int:
        """The server process serving this connection."""
        return int(self.conn.info.backend_pid)

    def _large(self, refs_json: str | None, entry: Entry) -> Entry:
        if not refs_json:
            return entry
        refs: dict[str, str] = orjson.loads(refs_json)
        missing = [d for d in refs.values() if d not in self._cache]
        if missing:
            for digest, data, codec in self.conn.execute(
                self._blobs, (self.agent_id, missing)
            ).fetchall():
                raw = bytes(data)
                self._cache[digest] = zlib.decompress(raw) if codec == self._zlib else raw
        for name, digest in refs.items():
            entry[name] = orjson.loads(self._cache[digest])
        return entry

    def get(self, key: str) -> Entry | None:
        """The full entry of ``key``."""
        row = self.conn.execute(self._get, (self.agent_id, key), prepare=True).fetchone()
        return self._large(row[1], orjson.loads(row[0])) if row else None

    def update(self, key: str, patch: dict[str, Any]) -> Entry:
        """Read-modify-write ``key`` with ``patch``; the full entry after it.

        Raises:
            KeyError: ``key`` is not in the store.
        """
        with self.conn.transaction():
            found = self.conn.execute(self._lock, (self.agent_id, key), prepare=True).fetchone()
            if found is None:
                raise KeyError(key)
            row = list(found)
            entry, list_row = orjson.loads(row[15]), orjson.loads(row[14])
            entry.update(patch)
            now = max(now_ms(), int(entry.get("updatedAt") or 0))
            entry["updatedAt"] = list_row["updatedAt"] = now
            row[2] = now
            row[14], row[15] = orjson.dumps(list_row).decode(), orjson.dumps(entry).decode()
            self.conn.execute(self._put, (*row, self.agent_id, key), prepare=True)
        return self._large(row[16], entry)

    def list(self, limit: int = 50) -> list[Any]:
        """The newest ``limit`` rows (one more is read, as the store reads, to page on)."""
        sql = self._list + str(int(limit) + 1)
        rows = self.conn.execute(sql, (self.agent_id,), prepare=True).fetchall()
        return [orjson.loads(r[1]) for r in rows[:limit]]

    def count(self) -> int:
        """Number of the agent's rows."""
        row = self.conn.execute(self._count, (self.agent_id,), prepare=True).fetchone()
        return int(row[0]) if row else 0
