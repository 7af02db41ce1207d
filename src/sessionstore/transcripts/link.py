"""The tie between a transcript file and its session's entry in the hot index.

``SessionStore.transcript`` hands a :class:`IndexLink` to the :class:`Transcript` it
returns. After a transcript write, the link commits it: it checks that the entry still
names the session the transcript belongs to (a handle opened before a reset or delete must
not append to a session that is gone) and saves the transcript's checkpoint.

Where the index keeps checkpoints itself (SQLite), that is one short write transaction
which also sets the entry's ``messageCount``, ``transcriptBytes`` (the session's own
transcript only, not a topic) and ``updatedAt``. Otherwise (``sessions.json``) an append
leaves the index alone: rewriting the whole file for every message is the cost this
library exists to avoid, so there ``messageCount`` is not kept by appends and readers take
counts from the transcript itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..clock import now_ms
from ..entry import sort_time
from ..errors import SessionStoreError
from ..index.base import IndexBackend

__all__ = ["IndexLink"]

Entry = dict[str, Any]
TOKEN_FIELDS: Final = ("inputTokens", "outputTokens", "totalTokens")


class IndexLink:
    """Keeps one session's entry in step with one of its transcripts.

    Args:
        index: The store's hot index.
        key: The canonical session key.
        session_id: The session the transcript belongs to.
        primary: The session's own transcript (True) or a topic transcript (False); only
            the own transcript sets ``messageCount`` and ``transcriptBytes``.
    """

    def __init__(self, index: IndexBackend, key: str, session_id: str, *, primary: bool) -> None:
        self._index = index
        self.key = key
        self.session_id = session_id
        self.primary = primary
        self.checkpoints = index.transcript_checkpoints()

    def __repr__(self) -> str:
        return f"IndexLink({self.key!r}, {self.session_id!r}, primary={self.primary})"

    def _gone(self) -> SessionStoreError:
        return SessionStoreError(
            f"session {self.key!r} was reset or deleted since this transcript was opened; call"
            " store.transcript(key) again"
        )

    def _ours(self, entry: Entry | None) -> bool:
        return entry is not None and entry.get("sessionId") == self.session_id

    def commit_append(self, save: Callable[[], object], count: int, size: int) -> None:
        """Acknowledge an append: check the session, save the checkpoint, update the entry.

        Args:
            save: Saves the transcript's new checkpoint (joins the index transaction).
            count: Messages in the transcript after the append.
            size: Bytes of the transcript after the append.

        Raises:
            SessionStoreError: The session was reset or deleted (the caller undoes the
                write), or the index failed.
        """
        if not self.checkpoints.in_index:
            if not self._ours(self._index.get(self.key, blobs=False)):
                raise self._gone()
            save()
            return

        def record(existing: Entry | None) -> Entry:
            out = self.appended(existing, count, size)
            save()
            return out

        self._index.modify_counters(self.key, record)

    def appended(self, existing: Entry | None, count: int, size: int | None) -> Entry:
        """The entry after an append to its transcript (inside the index transaction).

        Args:
            existing: The entry as stored now.
            count: Messages in the transcript after the append.
            size: Bytes of the transcript after the append (a file's size, or the bytes
                of a table transcript's lines); None leaves ``transcriptBytes`` alone.

        Raises:
            SessionStoreError: The entry no longer names this session (reset or deleted).
        """
        if existing is None or not self._ours(existing):
            raise self._gone()
        out = dict(existing)
        if self.primary:
            out["messageCount"] = count
            if size is not None:
                out["transcriptBytes"] = size
        out["updatedAt"] = max(sort_time(existing), now_ms())
        return out

    def compacted(self, existing: Entry | None, count: int, size: int | None) -> Entry | None:
        """The entry after a ``compact`` of its transcript; None when it is not ours."""
        if existing is None or not self._ours(existing):
            return None
        out = {k: v for k, v in existing.items() if k not in TOKEN_FIELDS}
        if self.primary:
            out["messageCount"] = count
            if size is not None:
                out["transcriptBytes"] = size
        out["updatedAt"] = now_ms()
        return out

    def commit_compact(self, save: Callable[[], object], count: int, size: int) -> None:
        """Record a ``compact``: token counters dropped, ``updatedAt`` now, new checkpoint.

        A session reset or deleted meanwhile is left alone.
        """
        in_index = self.checkpoints.in_index

        def record(existing: Entry | None) -> Entry | None:
            if existing is None or not self._ours(existing):
                return None
            out = {k: v for k, v in existing.items() if k not in TOKEN_FIELDS}
            if in_index:
                save()
                if self.primary:
                    out["messageCount"] = count
                    out["transcriptBytes"] = size
            out["updatedAt"] = now_ms()
            return out

        self._index.modify(self.key, record, needs_blobs=False, full_result=False)
        if not in_index:
            save()
