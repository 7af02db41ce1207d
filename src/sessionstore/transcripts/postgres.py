"""Transcripts in PostgreSQL: one row per line, keyed by (agent, session id, seq).

The cold tier of a postgres store shared by many hosts: appends from any host get
gap-free sequence numbers per session (a per-session head row is locked for the length of
the append's transaction, so seq n+1 is written only after seq n committed), and an append
with an ``idempotency_key`` already in the session's transcript writes nothing and returns
the existing entry's id (a unique index makes that hold under concurrency too).

Lines are pi v3 records, as in the .jsonl files: seq 0 is the ``session`` header, messages
start at seq 1. A line is kept as ``jsonb`` (queryable); one holding an escaped NUL, which
``jsonb`` cannot hold, is kept verbatim as text instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from ..clock import iso_now, now_ms
from ..errors import InvalidArgumentError, InvalidEntryError
from ..files import dumps_compact
from ..index.postgres import PostgresIndex, _NoSchema

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresTranscript"]

Line = dict[str, Any]


class PostgresTranscript:
    """One session's transcript in the store's ``transcripts`` table.

    Args:
        index: The store's PostgreSQL index (its pool, schema, agent, retries).
        session_id: The session whose transcript this is.
    """

    def __init__(self, index: PostgresIndex, session_id: str) -> None:
        self._index = index
        self.session_id = session_id
        self._s = index.schema
        self._a = index.agent_id

    def __repr__(self) -> str:
        return f"PostgresTranscript({self.session_id!r}, {self._index.location!r})"

    # --- writes -----------------------------------------------------------------------------

    def _header(self) -> bytes:
        return dumps_compact(
            {"type": "session", "version": 3, "id": self.session_id, "timestamp": iso_now()}
        )

    def _insert(
        self,
        conn: psycopg.Connection[Any],
        seq: int,
        entry_id: str,
        text: bytes,
        key: str | None,
    ) -> None:
        # jsonb cannot hold U+0000: such a line is kept as it was written, as text.
        verbatim = b"\\u0000" in text
        conn.execute(
            f"INSERT INTO {self._s}.transcripts (agent_id, session_id, seq, entry_id, line,"
            " raw, idempotency_key, created_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)",
            (
                self._a,
                self.session_id,
                seq,
                entry_id,
                None if verbatim else text.decode(),
                text.decode() if verbatim else None,
                key,
                now_ms(),
            ),
        )

    def _head(self, conn: psycopg.Connection[Any]) -> int:
        """Lock the session's head row (creating it with the header) and return its seq."""
        created = conn.execute(
            f"INSERT INTO {self._s}.transcript_heads (agent_id, session_id, last_seq)"
            " VALUES (%s, %s, 0) ON CONFLICT DO NOTHING",
            (self._a, self.session_id),
        ).rowcount
        row = conn.execute(
            f"SELECT last_seq FROM {self._s}.transcript_heads"
            " WHERE agent_id = %s AND session_id = %s FOR UPDATE",
            (self._a, self.session_id),
        ).fetchone()
        assert row is not None
        if created:
            self._insert(conn, 0, self.session_id, self._header(), None)
        return int(row[0])

    def append(self, message: dict[str, Any], *, idempotency_key: str | None = None) -> str:
        """Append a message as a pi v3 ``message`` line; returns its entry id.

        With an ``idempotency_key`` already used in this transcript nothing is written and
        the existing entry's id is returned (a retried append writes once).

        Raises:
            InvalidEntryError: ``message`` is not a JSON object or holds a non-JSON value.
            InvalidArgumentError: ``idempotency_key`` is not a string.
            RetryableError: The connection was lost or writers kept conflicting.
        """
        if not isinstance(message, dict):
            raise InvalidEntryError(
                f"a message must be a JSON object (a dict), got {type(message).__name__}"
            )
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise InvalidArgumentError(
                f"idempotency_key must be a string, got {type(idempotency_key).__name__}"
            )
        msg = dict(message)
        if idempotency_key is not None:
            msg["idempotencyKey"] = idempotency_key
        msg.setdefault("timestamp", now_ms())
        body = dumps_compact(msg, what="transcript message")

        def write(conn: psycopg.Connection[Any]) -> str:
            last = self._head(conn)
            if idempotency_key is not None:
                found = conn.execute(
                    f"SELECT entry_id FROM {self._s}.transcripts WHERE agent_id = %s"
                    " AND session_id = %s AND idempotency_key = %s",
                    (self._a, self.session_id, idempotency_key),
                ).fetchone()
                if found is not None:
                    return str(found[0])
            parent = None
            if last > 0:
                row = conn.execute(
                    f"SELECT entry_id FROM {self._s}.transcripts WHERE agent_id = %s"
                    " AND session_id = %s AND seq = %s",
                    (self._a, self.session_id, last),
                ).fetchone()
                parent = str(row[0]) if row else None
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
            self._insert(conn, last + 1, entry_id, line, idempotency_key)
            conn.execute(
                f"UPDATE {self._s}.transcript_heads SET last_seq = %s"
                " WHERE agent_id = %s AND session_id = %s",
                (last + 1, self._a, self.session_id),
            )
            return entry_id

        return self._index.run(write)

    def import_lines(self, lines: Iterable[Line]) -> int:
        """Write ``lines`` (a .jsonl file's records, header first) as a new transcript.

        One transaction; a transcript already in the table is never replaced.

        Returns:
            The number of lines written.

        Raises:
            InvalidArgumentError: The session already has a transcript in the table.
        """
        records = list(lines)

        def write(conn: psycopg.Connection[Any]) -> int:
            created = conn.execute(
                f"INSERT INTO {self._s}.transcript_heads (agent_id, session_id, last_seq)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (self._a, self.session_id, max(len(records) - 1, 0)),
            ).rowcount
            if not created:
                raise InvalidArgumentError(
                    f"session {self.session_id!r} already has a transcript in"
                    f" {self._index.location}; nothing was imported"
                )
            for seq, record in enumerate(records):
                entry_id = record.get("id") if isinstance(record.get("id"), str) else None
                key = None
                inner = record.get("message")
                if isinstance(inner, dict) and isinstance(inner.get("idempotencyKey"), str):
                    key = inner["idempotencyKey"]
                self._insert(conn, seq, entry_id or f"line{seq}", dumps_compact(record), key)
            return len(records)

        return self._index.run(write)

    # --- reads ------------------------------------------------------------------------------

    def _lines(self, where: str = "", args: tuple[Any, ...] = ()) -> list[tuple[int, Line]]:
        def read(conn: psycopg.Connection[Any]) -> list[tuple[int, Line]]:
            rows = conn.execute(
                f"SELECT seq, coalesce(raw, line::text) FROM {self._s}.transcripts"
                f" WHERE agent_id = %s AND session_id = %s {where} ORDER BY seq",
                (self._a, self.session_id, *args),
            ).fetchall()
            return [(int(seq), orjson.loads(text)) for seq, text in rows]

        try:
            return self._index.run(read, write=False)
        except _NoSchema:
            return []

    def entries(self) -> list[Line]:
        """Every line, header included, in order."""
        return [line for _, line in self._lines()]

    def messages(self) -> list[Line]:
        """Every message in order, annotated ``__openclaw: {id, seq}`` (seq from 1)."""
        out = []
        for seq, line in self._lines("AND seq > 0"):
            if line.get("type") != "message" or not isinstance(line.get("message"), dict):
                continue
            msg = dict(line["message"])
            msg["__openclaw"] = {"id": line.get("id"), "seq": seq}
            out.append(msg)
        return out

    def tail(self, n: int) -> list[Line]:
        """The last ``n`` messages (annotated as by :meth:`messages`)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError(f"n must be a non-negative integer, got {n!r}")
        return self.messages()[-n:] if n else []

    def message_count(self) -> int:
        """How many lines follow the header (one query, no line read)."""

        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                f"SELECT last_seq FROM {self._s}.transcript_heads"
                " WHERE agent_id = %s AND session_id = %s",
                (self._a, self.session_id),
            ).fetchone()
            return int(row[0]) if row else 0

        try:
            return self._index.run(read, write=False)
        except _NoSchema:
            return 0
