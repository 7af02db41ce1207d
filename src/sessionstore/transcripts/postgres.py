"""Transcripts in PostgreSQL: one row per line, keyed by (agent, session id, seq).

The cold tier of a postgres store shared by many hosts (``postgres.transcripts: table``,
the default): ``SessionStore.transcript(key)`` returns a :class:`PostgresTranscript`, with
the public API of the ``.jsonl`` :class:`~.jsonl.Transcript`. Appends from any host get
gap-free sequence numbers per session (the session's head row is locked for the length of
the append's transaction, so seq n+1 is written only after seq n committed), and an append
with an ``idempotency_key`` already in the session's transcript writes nothing and returns
the existing entry's id (a unique index makes that hold under concurrency too).

An append through the store is one transaction with the index change: the key's lock,
the check that the entry still names this session, the line, and the entry's
``messageCount``, ``transcriptBytes`` and ``updatedAt``. The head row keeps the
transcript's message count and its bytes (its lines as reads return them, which is what
``transcriptBytes`` holds for a table transcript and what maintenance's disk budget
counts). A ``delete``/``reset`` archives the session's rows by renaming their session id
to ``<sessionId>.deleted.<ts>`` / ``.reset.<ts>`` (as the file engine renames files;
nothing is removed), and ``compact`` keeps the old rows as ``<sessionId>.bak.<ts>``.

Lines are pi v3 records, as in the .jsonl files: seq 0 is the ``session`` header, messages
start at seq 1. A line is kept as ``jsonb`` (queryable); one holding an escaped NUL, which
``jsonb`` cannot hold, is kept verbatim as text instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson

from ..clock import iso_now, now_ms
from ..errors import InvalidArgumentError, InvalidEntryError
from ..files import dumps_compact
from ..index.pgsteps import Op, Step, _NoSchema, run_op
from ..index.postgres import LINE_BYTES, PostgresIndex
from .jsonl import _check_count, _is_message, _record, numbered
from .naming import archive_timestamp

if TYPE_CHECKING:
    import psycopg

    from .link import IndexLink

__all__ = ["Head", "PostgresTranscript", "drop_transcript", "last_written_ms", "transcript_heads"]

Line = dict[str, Any]
T = TypeVar("T")
_Row = tuple[int, str, str, str | None, int]  # seq, entry id, text, idempotency key, created


class Head(NamedTuple):
    """A transcript's head row: its message count and the bytes of its lines."""

    messages: int
    bytes: int


class PostgresTranscript:
    """One session's transcript in the store's ``transcripts`` table.

    Obtain it from ``SessionStore.transcript(key)`` on a postgres store.

    Args:
        index: The store's PostgreSQL index (its pool, schema, agent, retries).
        session_id: The transcript's id in the table (``<sessionId>`` or
            ``<sessionId>-topic-<topic>``).
        link: Keeps the session's entry in step (None: the table alone, as for migrations).

    Attributes:
        path: None: the transcript is not a file (the ``.jsonl`` engine's is its path).
        session_id: The transcript's id in the table.
        skipped: Malformed lines met by the last read (always 0: every row is JSON).
        bytes_read: Bytes of lines read by the last read.
    """

    path = None

    def __init__(
        self, index: PostgresIndex, session_id: str, *, link: IndexLink | None = None
    ) -> None:
        self._index = index
        self.session_id = session_id
        self.skipped = 0
        self.bytes_read = 0
        self._link = link
        self._s = index.schema
        self._a = index.agent_id

    def __repr__(self) -> str:
        return f"PostgresTranscript({self.session_id!r}, {self._index.location!r})"

    # --- writes -----------------------------------------------------------------------------

    def _header(self) -> bytes:
        return dumps_compact(
            {"type": "session", "version": 3, "id": self.session_id, "timestamp": iso_now()}
        )

    def _insert_op(
        self,
        seq: int,
        entry_id: str,
        text: bytes,
        key: str | None,
        created: int | None = None,
        session_id: str | None = None,
    ) -> Op[int]:
        """Insert one line; returns its bytes as reads return it (the head's unit)."""
        # jsonb cannot hold U+0000: such a line is kept as it was written, as text.
        verbatim = b"\\u0000" in text
        row = yield Step(
            f"INSERT INTO {self._s}.transcripts AS t (agent_id, session_id, seq, entry_id, line,"
            " raw, idempotency_key, created_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
            f" RETURNING {LINE_BYTES}",
            (
                self._a,
                session_id or self.session_id,
                seq,
                entry_id,
                None if verbatim else text.decode(),
                text.decode() if verbatim else None,
                key,
                created if created is not None else now_ms(),
            ),
            "one",
        )
        assert row is not None
        return int(row[0])

    def _insert(self, conn: psycopg.Connection[Any], *args: Any) -> int:
        return run_op(conn, self._insert_op(*args))

    def _head_op(self) -> Op[tuple[int, int, int]]:
        """Lock the session's head row (creating it with the header).

        Returns:
            The last seq, the message count and the bytes of the lines.
        """
        created = yield Step(
            f"INSERT INTO {self._s}.transcript_heads (agent_id, session_id, last_seq)"
            " VALUES (%s, %s, 0) ON CONFLICT DO NOTHING",
            (self._a, self.session_id),
            "rowcount",
        )
        row = yield Step(
            f"SELECT last_seq, messages, bytes FROM {self._s}.transcript_heads"
            " WHERE agent_id = %s AND session_id = %s FOR UPDATE",
            (self._a, self.session_id),
            "one",
        )
        assert row is not None
        last, messages, size = int(row[0]), int(row[1]), int(row[2])
        if created:
            size = yield from self._insert_op(0, self.session_id, self._header(), None)
            yield from self._set_head_op(last, messages, size)
        return last, messages, size

    def _head(self, conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
        return run_op(conn, self._head_op())

    def _set_head_op(self, last: int, messages: int, size: int) -> Op[None]:
        yield Step(
            f"UPDATE {self._s}.transcript_heads SET last_seq = %s, messages = %s, bytes = %s"
            " WHERE agent_id = %s AND session_id = %s",
            (last, messages, size, self._a, self.session_id),
            "none",
        )

    def _set_head(self, conn: psycopg.Connection[Any], last: int, messages: int, size: int) -> None:
        run_op(conn, self._set_head_op(last, messages, size))

    def write_header(self) -> int:
        """Create the transcript with its ``session`` header (if missing); returns 0.

        The ``.jsonl`` engine returns the file's size; the store leaves a table
        transcript's ``transcriptBytes`` unset until the first append.
        """
        self._index.run(self._head)
        return 0

    def append(self, message: dict[str, Any], *, idempotency_key: str | None = None) -> str:
        """Append a message as a pi v3 ``message`` line; returns its entry id.

        With an ``idempotency_key`` already used in this transcript nothing is written and
        the existing entry's id is returned (a retried append writes once). Through the
        store, the session's ``messageCount`` and ``updatedAt`` change in the same
        transaction.

        Raises:
            InvalidEntryError: ``message`` is not a JSON object or holds a non-JSON value.
            InvalidArgumentError: ``idempotency_key`` is not a string.
            RetryableError: The connection was lost or writers kept conflicting (nothing
                was written).
            SessionStoreError: The session was reset or deleted since this transcript was
                opened (nothing was written).
        """
        body = self.message_body(message, idempotency_key)
        return self._index.run(lambda conn: run_op(conn, self.append_op(body, idempotency_key)))

    def message_body(self, message: dict[str, Any], idempotency_key: str | None) -> bytes:
        """The JSON of a message as :meth:`append` writes it, checked.

        Raises:
            InvalidEntryError: ``message`` is not a JSON object or holds a non-JSON value.
            InvalidArgumentError: ``idempotency_key`` is not a string.
        """
        if not isinstance(message, dict):
            raise InvalidEntryError(
                f"a message must be a JSON object (a dict), got {type(message).__name__}:"
                f" {message!r:.80}"
            )
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise InvalidArgumentError(
                f"idempotency_key must be a string, got {idempotency_key!r}"
                f" ({type(idempotency_key).__name__})"
            )
        msg = dict(message)
        if idempotency_key is not None:
            msg["idempotencyKey"] = idempotency_key
        msg.setdefault("timestamp", now_ms())
        return dumps_compact(msg, what="transcript message")

    def _write_op(
        self, body: bytes, idempotency_key: str | None
    ) -> Op[tuple[str, int | None, int]]:
        """The line of an append: (entry id, message count or None for a duplicate, bytes)."""
        last, messages, size = yield from self._head_op()
        if idempotency_key is not None:
            found = yield Step(
                f"SELECT entry_id FROM {self._s}.transcripts WHERE agent_id = %s"
                " AND session_id = %s AND idempotency_key = %s",
                (self._a, self.session_id, idempotency_key),
                "one",
            )
            if found is not None:
                return str(found[0]), None, size
        parent = None
        if last > 0:
            row = yield Step(
                f"SELECT entry_id FROM {self._s}.transcripts WHERE agent_id = %s"
                " AND session_id = %s AND seq = %s",
                (self._a, self.session_id, last),
                "one",
            )
            parent = str(row[0]) if row else None
        entry_id = uuid.uuid4().hex[:8]
        while entry_id == parent:
            entry_id = uuid.uuid4().hex[:8]
        line = (
            b'{"type":"message","id":"'
            + entry_id.encode()
            + b'","parentId":'
            + orjson.dumps(parent)
            + b',"timestamp":"'
            + iso_now().encode()
            + b'","message":'
            + body
            + b"}"
        )
        size += yield from self._insert_op(last + 1, entry_id, line, idempotency_key)
        yield from self._set_head_op(last + 1, messages + 1, size)
        return entry_id, messages + 1, size

    def append_op(self, body: bytes, idempotency_key: str | None) -> Op[str]:
        """The transaction of :meth:`append` (``body``: the message's JSON), both drivers."""
        link = self._link
        if link is None:
            entry_id, _, _ = yield from self._write_op(body, idempotency_key)
            return entry_id
        done: list[str] = []

        def record(existing: dict[str, Any] | None) -> Op[dict[str, Any] | None]:
            # The session is checked before the line is written: nothing is written to a
            # session that was reset or deleted.
            link.appended(existing, 0, None)
            entry_id, count, size = yield from self._write_op(body, idempotency_key)
            done.append(entry_id)
            return None if count is None else link.appended(existing, count, size)

        yield from self._index.modify_steps(link.key, record, needs_blobs=False, full_result=False)
        return done[0]

    def import_lines(self, lines: Iterable[Line]) -> int:
        """Write ``lines`` (a .jsonl file's records, header first) as a new transcript.

        One transaction; a transcript already in the table is never replaced.

        Returns:
            The number of lines written.

        Raises:
            InvalidArgumentError: The session already has a transcript in the table.
        """
        records = list(lines)
        messages = sum(1 for r in records if _is_message(r))

        def write(conn: psycopg.Connection[Any]) -> int:
            created = conn.execute(
                f"INSERT INTO {self._s}.transcript_heads (agent_id, session_id, last_seq,"
                " messages) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (self._a, self.session_id, max(len(records) - 1, 0), messages),
            ).rowcount
            if not created:
                raise InvalidArgumentError(
                    f"session {self.session_id!r} already has a transcript in"
                    f" {self._index.location}; nothing was imported"
                )
            size = 0
            for seq, record in enumerate(records):
                entry_id = record.get("id") if isinstance(record.get("id"), str) else None
                key = None
                inner = record.get("message")
                if isinstance(inner, dict) and isinstance(inner.get("idempotencyKey"), str):
                    key = inner["idempotencyKey"]
                size += self._insert(
                    conn, seq, entry_id or f"line{seq}", dumps_compact(record), key
                )
            self._set_head(conn, max(len(records) - 1, 0), messages, size)
            return len(records)

        return self._index.run(write)

    def archive(self, reason: str, *, stamp: str | None = None, unreferenced: bool = False) -> int:
        """Rename the session's rows (topics too) to ``<sessionId>.<reason>.<ts>``.

        What the file engine does by renaming ``<id>.jsonl`` to ``<id>.jsonl.<reason>.<ts>``:
        the lines stay in the table, out of the session's way.

        Args:
            reason: ``deleted``, ``reset`` or ``bak``.
            stamp: The archive time (default now).
            unreferenced: Only when no entry references the session (checked under the
                agent's lock: maintenance and the doctor, which decided on an earlier read).

        Returns:
            How many transcripts (the session's own and its topics') were archived.
        """
        stamp = stamp or archive_timestamp()
        sid = self.session_id
        topics = f"{sid}-topic-"

        def write(conn: psycopg.Connection[Any]) -> int:
            if unreferenced and _referenced(self._index, conn, sid):
                return 0
            names = [
                str(r[0])
                for r in conn.execute(
                    f"SELECT session_id FROM {self._s}.transcript_heads WHERE agent_id = %s"
                    " AND (session_id = %s OR starts_with(session_id, %s)) FOR UPDATE",
                    (self._a, sid, topics),
                )
            ]
            for name in names:
                archived = f"{name}.{reason}.{stamp}"
                for table in ("transcript_heads", "transcripts"):
                    conn.execute(
                        f"UPDATE {self._s}.{table} SET session_id = %s"
                        " WHERE agent_id = %s AND session_id = %s",
                        (archived, self._a, name),
                    )
            return len(names)

        return self._index.run(write)

    def compact(self, max_lines: int) -> str | None:
        """Cut the transcript to its header and last ``max_lines`` lines (``sessions.compact``).

        The old rows stay in the table as ``<sessionId>.bak.<ts>``. Through the store the
        entry loses its token counters and gets a fresh ``updatedAt``, in the same
        transaction.

        Returns:
            The backup's id in the table, or None when there were no more than
            ``max_lines`` lines.

        Raises:
            InvalidArgumentError: ``max_lines`` is not a positive integer.
        """
        if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
            raise InvalidArgumentError(f"max_lines must be a positive integer, got {max_lines!r}")

        def cut(conn: psycopg.Connection[Any]) -> tuple[str, int, int] | None:
            head = conn.execute(
                f"SELECT last_seq FROM {self._s}.transcript_heads"
                " WHERE agent_id = %s AND session_id = %s FOR UPDATE",
                (self._a, self.session_id),
            ).fetchone()
            if head is None:
                return None
            rows: list[_Row] = [
                (int(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]))
                for r in conn.execute(
                    f"SELECT seq, entry_id, coalesce(raw, line::text), idempotency_key,"
                    f" created_at FROM {self._s}.transcripts WHERE agent_id = %s"
                    " AND session_id = %s ORDER BY seq",
                    (self._a, self.session_id),
                )
            ]
            header = rows[0] if rows and orjson.loads(rows[0][2]).get("type") == "session" else None
            body = rows[1:] if header is not None else rows
            if len(body) <= max_lines:
                return None
            kept = ([header] if header is not None else []) + body[-max_lines:]
            backup = f"{self.session_id}.bak.{archive_timestamp()}"
            for table in ("transcript_heads", "transcripts"):
                conn.execute(
                    f"UPDATE {self._s}.{table} SET session_id = %s"
                    " WHERE agent_id = %s AND session_id = %s",
                    (backup, self._a, self.session_id),
                )
            messages = size = 0
            for seq, (_, entry_id, text, key, created) in enumerate(kept):
                size += self._insert(conn, seq, entry_id, text.encode(), key, created)
                messages += _is_message(orjson.loads(text))
            conn.execute(
                f"INSERT INTO {self._s}.transcript_heads (agent_id, session_id, last_seq,"
                " messages, bytes) VALUES (%s, %s, %s, %s, %s)",
                (self._a, self.session_id, len(kept) - 1, messages, size),
            )
            return backup, messages, size

        link = self._link
        if link is None:
            done = self._index.run(cut)
            return done[0] if done else None

        def linked(conn: psycopg.Connection[Any]) -> str | None:
            out: list[str] = []

            def record(existing: dict[str, Any] | None) -> dict[str, Any] | None:
                done = cut(conn)
                if done is None:
                    return None
                out.append(done[0])
                return link.compacted(existing, done[1], done[2])

            self._index.modify_in(conn, link.key, record, needs_blobs=False, full_result=False)
            return out[0] if out else None

        return self._index.run(linked)

    def torn_bytes(self) -> int:
        """0: a row is written whole or not at all (the ``.jsonl`` engine's torn tail)."""
        return 0

    def repair_tail(self) -> None:
        """Nothing to repair: a row is written whole or not at all."""
        return None

    # --- reads ------------------------------------------------------------------------------

    def _lines_op(self) -> Op[list[tuple[int, Line]]]:
        self.skipped = 0
        self.bytes_read = 0
        rows = yield Step(
            f"SELECT seq, coalesce(raw, line::text) FROM {self._s}.transcripts"
            " WHERE agent_id = %s AND session_id = %s ORDER BY seq",
            (self._a, self.session_id),
            "all",
        )
        self.bytes_read = sum(len(text) for _, text in rows)
        return [(int(seq), orjson.loads(text)) for seq, text in rows]

    def _read(self, make: Callable[[], Op[T]], empty: T) -> T:
        self.skipped = 0
        self.bytes_read = 0
        try:
            return self._index.run(lambda conn: run_op(conn, make()), write=False)
        except _NoSchema:
            return empty

    def entries(self) -> list[Line]:
        """Every line, header included, in order."""
        none: list[tuple[int, Line]] = []
        return [line for _, line in self._read(self._lines_op, none)]

    def messages_op(self) -> Op[list[Line]]:
        """The read of :meth:`messages` (both drivers)."""
        lines = yield from self._lines_op()
        return numbered([rec for _, line in lines if (rec := _record(line)) is not None])

    def messages(self) -> list[Line]:
        """Every message record in order, annotated ``__openclaw: {id, seq}`` (seq from 1).

        A ``compaction`` line becomes the gateway's synthetic system marker, annotated
        ``{id, kind: "compaction"}`` without a seq, as in the ``.jsonl`` engine.
        """
        return self._read(self.messages_op, [])

    def tail_reader(self, n: int) -> Callable[[], Op[list[Line]]]:
        """The read of :meth:`tail` (both drivers), ``n`` checked.

        Raises:
            InvalidArgumentError: ``n`` is not an integer.
        """
        n = _check_count(n)
        return lambda: self._tail_op(n)

    def _tail_op(self, n: int) -> Op[list[Line]]:
        self.bytes_read = 0
        if n <= 0:
            return []
        head = yield Step(
            f"SELECT last_seq, messages FROM {self._s}.transcript_heads"
            " WHERE agent_id = %s AND session_id = %s",
            (self._a, self.session_id),
            "one",
        )
        if head is None:
            return []
        # Rows up to the head's seq are committed and final: the count matches them.
        upper, total = int(head[0]) + 1, int(head[1])
        picked: list[Line] = []
        seen = 0
        batch = max(n, 16)
        while len(picked) < n and upper > 1:
            rows = yield Step(
                f"SELECT seq, coalesce(raw, line::text) FROM {self._s}.transcripts"
                " WHERE agent_id = %s AND session_id = %s AND seq > 0 AND seq < %s"
                " ORDER BY seq DESC LIMIT %s",
                (self._a, self.session_id, upper, batch),
                "all",
            )
            if not rows:
                break
            for seq, text in rows:
                upper = int(seq)
                self.bytes_read += len(text)
                rec = _record(orjson.loads(text))
                if rec is None:
                    continue
                if rec["__openclaw"].get("kind") is None:
                    seen += 1
                picked.append(rec)
                if len(picked) >= n:
                    break
            batch *= 2
        picked.reverse()
        return numbered(picked, total - seen)

    def tail(self, n: int) -> list[Line]:
        """The last ``n`` message records, oldest first, with their absolute seq numbers.

        Reads the last rows only (by seq, newest first) and the head's message count.

        Raises:
            InvalidArgumentError: ``n`` is not an integer.
        """
        return self._read(self.tail_reader(n), [])

    def message_count_op(self) -> Op[int]:
        """The read of :meth:`message_count` (both drivers)."""
        row = yield Step(
            f"SELECT messages FROM {self._s}.transcript_heads"
            " WHERE agent_id = %s AND session_id = %s",
            (self._a, self.session_id),
            "one",
        )
        return int(row[0]) if row else 0

    def message_count(self) -> int:
        """Number of message records (the head's count: one query, no line read)."""
        return self._read(self.message_count_op, 0)


def transcript_heads(
    index: PostgresIndex, conn: psycopg.Connection[Any] | None = None
) -> dict[str, Head]:
    """Every transcript of the store's agent in the table (archives too): id -> its head.

    One read of the head rows, no line read: what maintenance (``--fix-missing``, archive
    retention, the disk budget) and the doctor check entries against. ``conn``: read in
    that transaction (maintenance's planning snapshot).
    """

    def read(c: psycopg.Connection[Any]) -> dict[str, Head]:
        rows = c.execute(
            f"SELECT session_id, messages, bytes FROM {index.schema}.transcript_heads"
            " WHERE agent_id = %s",
            (index.agent_id,),
        ).fetchall()
        return {str(sid): Head(int(n), int(b)) for sid, n, b in rows}

    if conn is not None:
        return read(conn)
    try:
        return index.run(read, write=False)
    except _NoSchema:
        return {}


def last_written_ms(
    index: PostgresIndex, conn: psycopg.Connection[Any], names: list[str]
) -> dict[str, int]:
    """When the last line of each of these transcripts was written (ms since the epoch).

    One indexed row per transcript (its head's last seq), in ``conn``'s transaction.
    """
    rows = conn.execute(
        f"SELECT h.session_id, t.created_at FROM {index.schema}.transcript_heads h"
        f" JOIN {index.schema}.transcripts t ON t.agent_id = h.agent_id"
        " AND t.session_id = h.session_id AND t.seq = h.last_seq"
        " WHERE h.agent_id = %s AND h.session_id = ANY(%s)",
        (index.agent_id, names),
    ).fetchall()
    return {str(sid): int(at) for sid, at in rows}


def _referenced(index: PostgresIndex, conn: psycopg.Connection[Any], session_id: str) -> bool:
    """Whether an entry references ``session_id``, asked under the agent's lock.

    The exclusive agent lock waits for writers of single keys (they hold it shared), so no
    entry starts referencing the session before the caller's transaction ends.
    """
    index._lock_agent(conn)
    row = conn.execute(
        f"SELECT 1 FROM {index.schema}.sessions WHERE agent_id = %s AND session_id = %s LIMIT 1",
        (index.agent_id, session_id),
    ).fetchone()
    return row is not None


def drop_transcript(index: PostgresIndex, name: str, owner: str) -> int | None:
    """Delete one transcript's rows (an aged-out archive, a budget eviction) for maintenance.

    One transaction of its own; when an entry references ``owner`` (the session the
    transcript belongs to: a writer reused the session id since maintenance planned) the
    rows are kept.

    Returns:
        The bytes freed, or None when the transcript was gone or is referenced again.
    """
    s, a = index.schema, index.agent_id

    def write(conn: psycopg.Connection[Any]) -> int | None:
        if _referenced(index, conn, owner):
            return None
        row = conn.execute(
            f"DELETE FROM {s}.transcript_heads WHERE agent_id = %s AND session_id = %s"
            " RETURNING bytes",
            (a, name),
        ).fetchone()
        conn.execute(
            f"DELETE FROM {s}.transcripts WHERE agent_id = %s AND session_id = %s", (a, name)
        )
        return int(row[0]) if row is not None else None

    return index.run(write)
