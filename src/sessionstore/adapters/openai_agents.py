"""This store as the session layer of the OpenAI Agents SDK (extra ``openai-agents``).

:class:`StoreSession` satisfies ``agents.memory.session.Session``. A session's items live in
the transcript of the hot-index entry ``agent:<agent>:openai:<session_id>`` (lowercased), so
SDK sessions are listed (``channel="openai"``), searched, pruned and checked with the rest
of the store; the entry's ``displayName`` is the session id as given.

Transcript records (the ``message`` of a pi ``message`` line), all with role
``openai-agents``:

- ``{"items": [...]}``: one ``add_items`` call, whole (a crash leaves all or none of it);
- ``{"pop": "<line id>:<n>", "nonce": ...}``: ``pop_item`` took item ``n`` of that line.

Readers fold the pop markers; ``clear_session`` resets the session (a new, empty transcript;
the old one is kept as ``*.jsonl.reset.<ts>``). The file is never rewritten: why is in
docs/adapters.md. ``get_items(limit=n)`` reads the file backwards from its end, so its cost
follows ``n`` and the pops among the newest records, not the file's size.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

try:
    from agents.memory.session_settings import SessionSettings, coerce_session_settings
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "sessionstore.adapters.openai_agents needs the OpenAI Agents SDK:"
        " pip install 'sessionstore[openai-agents]'"
    ) from exc

from ..aio import AsyncSessionStore, AsyncTranscript
from ..errors import InvalidArgumentError, SessionNotFoundError, SessionStoreError
from ..keys import canonical_key
from ..store import SessionStore

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["ROLE", "StoreSession", "session_key"]

ROLE: Final = "openai-agents"
# The entry's channel: SDK sessions are listed with ``store.list(channel="openai")``.
CHANNEL: Final = "openai"
_ATTEMPTS: Final = 8  # an append racing clear_session tries the new transcript this often


def session_key(agent_id: str, session_id: str) -> str:
    """The hot-index key of an SDK session: ``agent:<agent>:openai:<session_id>``."""
    return canonical_key(f"agent:{agent_id}:openai:{session_id}")


def _face(store: SessionStore | AsyncSessionStore) -> AsyncSessionStore:
    if isinstance(store, AsyncSessionStore):
        return store
    if isinstance(store, SessionStore):
        return AsyncSessionStore.borrow(store)
    raise InvalidArgumentError(
        f"store must be a SessionStore or an AsyncSessionStore, got {type(store).__name__}"
    )


def _fold_backwards(
    records: list[dict[str, Any]], want: int | None
) -> tuple[list[tuple[str, Any]], bool]:
    """The newest visible items of ``records`` (oldest first), as (identity, item).

    Returns:
        Up to ``want`` items (all when None), and whether ``want`` were found.
    """
    popped: set[str] = set()
    found: list[tuple[str, Any]] = []
    for rec in reversed(records):
        if rec.get("role") != ROLE:
            continue
        pop = rec.get("pop")
        if isinstance(pop, str):
            popped.add(pop)
            continue
        items = rec.get("items")
        if not isinstance(items, list):
            continue  # a record of ours that is not whole: skipped, not counted
        line_id = str(rec.get("__openclaw", {}).get("id"))
        for n in range(len(items) - 1, -1, -1):
            ident = f"{line_id}:{n}"
            if ident in popped or not isinstance(items[n], dict):
                continue  # popped, or not an item (corrupt): not counted
            found.append((ident, items[n]))
            if want is not None and len(found) >= want:
                found.reverse()
                return found, True
    found.reverse()
    return found, False


class StoreSession:
    """An OpenAI Agents SDK session kept in a sessionstore store.

    Args:
        session_id: The SDK's session id (any non-empty string; the key lowercases it).
        store: A ``SessionStore`` (its calls then run in a shared worker pool) or an
            ``AsyncSessionStore``.
        session_settings: The SDK's ``SessionSettings`` or its dict (``limit`` is the
            default of ``get_items``).

    Attributes:
        key: The session's hot-index key.
        bytes_read: Bytes the last read of items took from the transcript file.

    Raises:
        InvalidArgumentError: ``session_id`` is not a non-empty string, or ``store`` is
            neither kind of store.
    """

    def __init__(
        self,
        session_id: str,
        store: SessionStore | AsyncSessionStore,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id.strip():
            raise InvalidArgumentError(f"session_id must be a non-empty string, got {session_id!r}")
        self.session_id = session_id
        self.session_settings: SessionSettings | None = (
            None if session_settings is None else coerce_session_settings(session_settings)
        )
        self._store = _face(store)
        self.key = session_key(self._store.agent_id, session_id)
        self.bytes_read = 0

    def __repr__(self) -> str:
        return f"StoreSession({self.session_id!r}, key={self.key!r})"

    async def _transcript(self, *, create: bool) -> AsyncTranscript | None:
        try:
            return await self._store.transcript(self.key)
        except SessionNotFoundError:
            if not create:
                return None
        await self._store.update(
            self.key,
            {"displayName": self.session_id, "channel": CHANNEL},
            create=True,
            preserve_activity=True,
        )
        return await self._store.transcript(self.key)

    async def _newest(self, want: int | None) -> list[tuple[str, Any]]:
        """The newest ``want`` visible items (all when None), oldest first."""
        self.bytes_read = 0
        transcript = await self._transcript(create=False)
        if transcript is None:
            return []
        if want is None:
            records = await transcript.messages()
            self.bytes_read = transcript.bytes_read
            return _fold_backwards(records, None)[0]
        window = want
        while True:
            records = await transcript.tail(window)
            self.bytes_read += transcript.bytes_read
            found, enough = _fold_backwards(records, want)
            if enough or len(records) < window:
                return found
            window *= 2

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items in chronological order.

        Args:
            limit: The newest ``limit`` items (an explicit limit beats
                ``session_settings.limit``); None: ``session_settings.limit``, else all.
                0 gives none, a negative limit all (as the SDK's ``SQLiteSession``).

        Returns:
            The items; records that are not whole items are skipped and not counted.
        """
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidArgumentError(f"limit must be an integer or None, got {limit!r}")
        if limit == 0:
            return []
        found = await self._newest(None if limit is None or limit < 0 else limit)
        return [item for _, item in found]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items to the session, all in one transcript record (all or none)."""
        batch = list(items)
        if not batch:
            return
        for attempt in range(_ATTEMPTS):
            transcript = await self._transcript(create=True)
            assert transcript is not None
            try:
                await transcript.append({"role": ROLE, "items": batch})
                return
            except SessionNotFoundError:
                raise
            except SessionStoreError as exc:
                if "was reset or deleted" not in str(exc) or attempt == _ATTEMPTS - 1:
                    raise  # a clear_session raced this append: append to the new transcript

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item; None when the session has none.

        Two pops never return the same item: each marker names the item it takes and is
        appended with that name as its idempotency key, so only one of them lands. A pop
        that lost tries the next item: every retry follows another pop's success (or a
        clear), so it ends, at the latest when the session is empty.
        """
        while True:
            transcript = await self._transcript(create=False)
            if transcript is None:
                return None
            newest = await self._newest(1)
            if not newest:
                return None
            ident, item = newest[0]
            nonce = uuid.uuid4().hex
            try:
                line_id = await transcript.append(
                    {"role": ROLE, "pop": ident, "nonce": nonce}, idempotency_key=f"pop:{ident}"
                )
            except SessionStoreError as exc:
                if "was reset or deleted" in str(exc):
                    continue
                raise
            if await self._marker_nonce(transcript, line_id) == nonce:
                return item  # type: ignore[no-any-return]

    @staticmethod
    async def _marker_nonce(transcript: AsyncTranscript, line_id: str) -> object:
        window = 4
        while True:
            records = await transcript.tail(window)
            for rec in reversed(records):
                if rec.get("__openclaw", {}).get("id") == line_id:
                    return rec.get("nonce")
            if len(records) < window:
                return None
            window *= 4

    async def clear_session(self) -> None:
        """Remove every item: the session starts a new, empty transcript.

        The old transcript is kept as ``*.jsonl.reset.<ts>`` (maintenance ages it out with
        ``session.maintenance.resetArchiveRetention``).
        """
        try:
            await self._store.reset(self.key)
        except SessionNotFoundError:
            return
