"""The hot-index contract every backend implements, and the pieces they share.

A backend stores entries under keys exactly as given (canonicalisation happens in
``SessionStore``), resolves legacy mixed-case variants of a key, and runs each write
under its own write lock: a read-modify-write of one key (``modify``) or of the whole
store (``mutate``). Rows for ``list`` are derived from an entry by :func:`derive_row`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypedDict, TypeVar

import orjson

from ..args import as_number, show
from ..entry import normalize_channel, sort_time
from ..errors import InvalidArgumentError, InvalidEntryError, InvalidKeyError
from ..keys import (
    channel_from_key,
    fold_key,
    is_cron_run_key,
    is_sentinel_key,
    normalize_agent_id,
    parse_agent_session_key,
    session_kind,
)
from ..transcripts.checkpoint import MEMORY, CheckpointStore

__all__ = [
    "COUNTER_FIELDS",
    "DELETE",
    "AsyncIndexBackend",
    "BlobCache",
    "BlobRef",
    "EmptyMaintenance",
    "IndexBackend",
    "LARGE_FIELDS",
    "ListQuery",
    "MaintenanceTxn",
    "RowRef",
    "SessionPage",
    "SessionRow",
    "decode_cursor",
    "derive_row",
    "encode_cursor",
    "mutated_entry",
    "writes_when_absent",
]

Entry = dict[str, Any]
T = TypeVar("T")

# The large nested fields a backend may keep apart from the entry (stored once per content
# and read only when asked for: ``get(..., blobs=False)`` may leave placeholders for them).
LARGE_FIELDS: Final = ("skillsSnapshot", "systemPromptReport")


class BlobRef:
    """Placeholder for a large field whose blob a backend did not read (its digest only)."""

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlobRef) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"BlobRef({self.digest[:12]})"


class _Delete:
    """Sentinel returned by a ``modify`` callback to delete the key (and its variants)."""

    _instance: _Delete | None = None

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = _Delete()
# The fields an append to a session's transcript changes (``IndexLink.appended``).
COUNTER_FIELDS: Final = frozenset({"messageCount", "transcriptBytes", "updatedAt"})

ModifyFn = Callable[["Entry | None"], "Entry | _Delete | None"]


def mutated_entry(key: object, value: object, acp: Mapping[str, Any]) -> Entry:
    """What a ``mutate`` callback left under ``key``, checked, with a dropped ``acp`` put back.

    Args:
        key: A key of the mutated store.
        value: Its value after the callback.
        acp: The ``acp`` blocks of the entries before the callback (copies), by key.

    Raises:
        InvalidKeyError: The key is not a string.
        InvalidEntryError: The value is not a JSON object.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"session keys must be strings, got {key!r}")
    if not isinstance(value, dict):
        raise InvalidEntryError(f"entry {key!r} must be a JSON object, got {type(value).__name__}")
    if key in acp and "acp" not in value:
        value["acp"] = acp[key]
    return value


def writes_when_absent(fn: ModifyFn) -> ModifyFn | None:
    """For a store that has no file yet: whether ``fn`` writes anything for an absent entry.

    Returns None when it would not (so no file needs to be created); otherwise a
    ``ModifyFn`` that reuses ``fn``'s answer for an absent entry and calls ``fn`` again only
    if another writer created the entry meanwhile.
    """
    first = fn(None)
    if first is None or first is DELETE:
        return None
    return lambda existing: first if existing is None else fn(existing)


class SessionRow(TypedDict, total=False):
    """One row of ``list()``: the hot fields of an entry, without its large blobs."""

    key: str
    agentId: str
    kind: str
    sessionId: str
    updatedAt: int | float | None
    channel: str | None
    lastChannel: str | None
    lastTo: str | None
    lastAccountId: str | None
    lastThreadId: str | int | float | None
    label: str | None
    displayName: str | None
    status: str | None
    model: str | None
    modelProvider: str | None
    totalTokens: int | float | None
    inputTokens: int | float | None
    outputTokens: int | float | None
    messageCount: int | None
    spawnedBy: str | None
    parentSessionKey: str | None


ROW_STRING_FIELDS: Final = (
    "lastChannel",
    "lastTo",
    "lastAccountId",
    "label",
    "displayName",
    "status",
    "model",
    "modelProvider",
    "spawnedBy",
    "parentSessionKey",
)
ROW_NUMBER_FIELDS: Final = ("totalTokens", "inputTokens", "outputTokens")


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def message_count_of(value: object) -> int | None:
    """``value`` when it is a ``messageCount`` a row keeps (an int, not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def row_channel(key: str, entry: Mapping[str, Any]) -> str | None:
    """The channel a row is filtered by: ``channel``, else ``lastChannel``, else the key's."""
    for candidate in (entry.get("channel"), entry.get("lastChannel")):
        channel = normalize_channel(candidate)
        if channel is not None:
            return channel
    return normalize_channel(channel_from_key(key))


@functools.lru_cache(maxsize=4096)
def visibility(key: str) -> int:
    """0 = listed, 1 = sentinel (``global``/``unknown``), 2 = cron run key (never listed)."""
    folded = fold_key(key)
    if is_sentinel_key(folded):
        return 1
    if is_cron_run_key(folded):
        return 2
    return 0


def search_text(key: str, entry: Mapping[str, Any]) -> str:
    """Lowercased haystack for ``search``: displayName, label, subject, sessionId, key."""
    parts = [entry.get(f) for f in ("displayName", "label", "subject", "sessionId")]
    texts = [p.lower() for p in parts if isinstance(p, str)]
    texts.append(key.lower())
    return "\x00".join(texts)


def derive_row(
    key: str,
    entry: Mapping[str, Any],
    default_agent: str,
    message_count: int | None = None,
) -> SessionRow:
    """Build the list row of an entry (the same on every backend).

    Hot fields keep their JSON types; a field of an unexpected type shows as None.
    """
    parsed = parse_agent_session_key(key)
    row: SessionRow = {
        "key": key,
        "agentId": parsed.agent_id if parsed else default_agent,
        "kind": session_kind(fold_key(key), entry),
        "sessionId": _str(entry.get("sessionId")) or "",
        "updatedAt": as_number(entry.get("updatedAt")),
        "channel": row_channel(key, entry),
    }
    values: dict[str, Any] = row  # type: ignore[assignment]
    for name in ROW_STRING_FIELDS:
        values[name] = _str(entry.get(name))
    thread = entry.get("lastThreadId")
    values["lastThreadId"] = thread if isinstance(thread, str) else as_number(thread)
    for name in ROW_NUMBER_FIELDS:
        values[name] = as_number(entry.get(name))
    if message_count is None:
        message_count = message_count_of(entry.get("messageCount"))
    row["messageCount"] = message_count
    return row


# --- list queries --------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """Normalised ``list()`` filters.

    Attributes mirror ``SessionStore.list``; ``active_since`` is the absolute cutoff in ms
    derived from ``active_minutes``, ``after`` the decoded cursor position.
    """

    agent_id: str | None = None
    channel: str | None = None
    label: str | None = None
    search: str | None = None
    spawned_by: str | None = None
    active_since: int | float | None = None
    include_global: bool = False
    include_unknown: bool = False
    limit: int | None = None
    after: tuple[int | float, str] | None = None

    def matches(self, key: str, entry: Mapping[str, Any], vis: int) -> bool:
        """Whether a row passes every filter (used by backends that filter in Python)."""
        if vis == 2:
            return False
        folded = fold_key(key)
        if vis == 1:
            allowed = (folded == "global" and self.include_global) or (
                folded == "unknown" and self.include_unknown
            )
            if not allowed or self.agent_id is not None or self.spawned_by is not None:
                return False
        if self.agent_id is not None:
            parsed = parse_agent_session_key(key)
            if parsed is None or normalize_agent_id(parsed.agent_id) != self.agent_id:
                return False
        if self.channel is not None and row_channel(key, entry) != self.channel:
            return False
        if self.label is not None and entry.get("label") != self.label:
            return False
        if self.spawned_by is not None and self.spawned_by not in (
            entry.get("spawnedBy"),
            entry.get("parentSessionKey"),
        ):
            return False
        ts = sort_time(entry)
        if self.active_since is not None and ts < self.active_since:
            return False
        if self.search is not None and self.search not in search_text(key, entry):
            return False
        return not (self.after is not None and (ts, key) >= self.after)


@dataclass
class SessionPage:
    """A page of ``list()`` rows, newest first.

    Attributes:
        rows: The rows of this page.
        next_cursor: Pass as ``cursor=`` to get the next page; None on the last page.
        total: With ``list(..., with_total=True)``: the rows matching the filters from the
            cursor on, this page's included (None otherwise).
    """

    rows: list[SessionRow] = field(default_factory=list)
    next_cursor: str | None = None
    total: int | None = None

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def encode_cursor(updated_at: int | float, key: str) -> str:
    """An opaque keyset cursor for the row after which the next page starts."""
    return base64.urlsafe_b64encode(orjson.dumps([updated_at, key])).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[int | float, str]:
    """Decode a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidArgumentError: If the cursor was not made by this library.
    """
    invalid = (
        f"invalid list cursor {show(cursor)}; pass the next_cursor of a previous page unchanged"
    )
    if not isinstance(cursor, str):
        raise InvalidArgumentError(invalid)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, orjson.JSONDecodeError) as exc:
        raise InvalidArgumentError(invalid) from exc
    if (
        not isinstance(value, list)
        or len(value) != 2
        or as_number(value[0]) is None
        or (isinstance(value[0], int) and not -(2**63) <= value[0] < 2**63)  # SQLite's range
        or not isinstance(value[1], str)
    ):
        raise InvalidArgumentError(invalid)
    return value[0], value[1]


# --- maintenance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRef:
    """What maintenance needs of a row, without its entry.

    Attributes:
        key: The stored key.
        session_id: The entry's ``sessionId`` ("" when it has none).
        session_file: The entry's ``sessionFile``, when it is a string.
        updated_at: The entry's ``updatedAt``; None when missing or not a number.
        model: The entry's ``model`` (for reports).
        size: Bytes the entry takes in the index (an estimate, for the disk budget).
        message_count: The entry's ``messageCount`` when it is an integer (whether the
            entry claims a transcript).
    """

    key: str
    session_id: str
    session_file: str | None
    updated_at: int | float | None
    model: str | None
    size: int
    message_count: int | None = None


def row_ref(key: str, entry: Mapping[str, Any], size: int) -> RowRef:
    """The :class:`RowRef` of an entry held in memory."""
    sid, sfile, model = entry.get("sessionId"), entry.get("sessionFile"), entry.get("model")
    count = entry.get("messageCount")
    return RowRef(
        key=key,
        session_id=sid if isinstance(sid, str) else "",
        session_file=sfile if isinstance(sfile, str) else None,
        updated_at=as_number(entry.get("updatedAt")),
        model=model if isinstance(model, str) else None,
        size=size,
        message_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
    )


class MaintenanceTxn(ABC):
    """The store as maintenance sees it: inside one write transaction, rows without entries.

    Removals are visible to later calls at once; whether they are kept is decided when the
    transaction ends (``IndexBackend.maintenance``). ``protect`` holds folded keys that are
    never returned as candidates.
    """

    @abstractmethod
    def count(self) -> int:
        """Entries now."""

    @abstractmethod
    def rows(self) -> Iterator[RowRef]:
        """Every row, in no particular order."""

    @abstractmethod
    def stale(self, cutoff: int | float, protect: frozenset[str]) -> list[RowRef]:
        """Rows whose ``updatedAt`` is older than ``cutoff`` (rows without one are kept)."""

    @abstractmethod
    def overflow(self, max_entries: int, protect: frozenset[str]) -> list[RowRef]:
        """Rows beyond the ``max_entries`` newest (missing ``updatedAt`` counts as oldest).

        A protected row always counts among the kept ones.
        """

    @abstractmethod
    def oldest(self, protect: frozenset[str]) -> Iterator[RowRef]:
        """Rows oldest first (missing ``updatedAt`` first)."""

    @abstractmethod
    def remove(self, keys: Iterable[str]) -> None:
        """Delete these rows."""

    @abstractmethod
    def reference_count(self, session_id: str) -> int:
        """How many remaining rows reference ``session_id``."""

    @abstractmethod
    def index_bytes(self) -> int:
        """Projected size of the index as it stands now (used by the disk budget)."""


class EmptyMaintenance(MaintenanceTxn):
    """Maintenance of a store that has no file yet: nothing to find, nothing to remove."""

    def count(self) -> int:
        """No entries."""
        return 0

    def rows(self) -> Iterator[RowRef]:
        """No rows."""
        return iter(())

    def stale(self, cutoff: int | float, protect: frozenset[str]) -> list[RowRef]:
        """Nothing is stale."""
        return []

    def overflow(self, max_entries: int, protect: frozenset[str]) -> list[RowRef]:
        """Nothing overflows."""
        return []

    def oldest(self, protect: frozenset[str]) -> Iterator[RowRef]:
        """No rows."""
        return iter(())

    def remove(self, keys: Iterable[str]) -> None:
        """Nothing to remove."""
        return None

    def reference_count(self, session_id: str) -> int:
        """Nothing references anything."""
        return 0

    def index_bytes(self) -> int:
        """No index file."""
        return 0


# --- the contract --------------------------------------------------------------------------


class IndexBackend(ABC):
    """One agent's hot index.

    Keys passed in are already canonical. Every method raises only ``SessionStoreError``.
    """

    store_type: str
    location: str

    @abstractmethod
    def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """The entry for ``key``, or its freshest case variant; None when absent.

        With ``blobs=False`` large blob fields may come back as opaque placeholders (for
        internal reads of small fields only).
        """

    def get_fields(self, key: str, names: tuple[str, ...]) -> Entry | None:
        """The named fields of the entry for ``key`` that exist (``fields=``); None when absent.

        The default reads the entry (its large fields only when named) and picks the
        fields; a backend may answer from its columns instead when they hold every named
        field's exact value.
        """
        entry = self.get(key, blobs=any(name in LARGE_FIELDS for name in names))
        return None if entry is None else {name: entry[name] for name in names if name in entry}

    @abstractmethod
    def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """Read-modify-write one key under the write lock.

        ``fn`` gets the current entry (freshest of the key and its case variants) or None,
        and returns the new entry, ``DELETE``, or None to change nothing. A new entry is
        stored under ``key`` and the variants are removed. With ``needs_blobs=False`` the
        backend may hand ``fn`` an entry whose large blob fields are opaque placeholders;
        ``fn`` must then pass them through unchanged. With ``full_result=False`` the
        returned entry may hold such placeholders too (for callers that ignore it).

        Returns:
            The entry after the call (None when deleted or absent) and whether a write
            happened.
        """

    def modify_counters(self, key: str, fn: Callable[[Entry | None], Entry]) -> None:
        """``modify`` for a change of ``COUNTER_FIELDS`` only (a transcript append's).

        ``fn`` gets the current entry (blob fields may be opaque placeholders, passed
        through) or None, and returns the new entry or raises. A backend may take a shorter
        path when the key has no case variants and ``fn`` changed nothing else; the
        result is the one ``modify(key, fn, needs_blobs=False, full_result=False)`` gives.
        """
        self.modify(key, fn, needs_blobs=False, full_result=False)

    @abstractmethod
    def list(self, query: ListQuery) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """Rows matching ``query``, newest first.

        Returns:
            The rows, and the (updatedAt, key) position of the last one when more may follow.
        """

    @abstractmethod
    def count(self) -> int:
        """Number of entries."""

    def count_matching(self, query: ListQuery) -> int:
        """How many rows ``list(query)`` would return without a limit (from its cursor on).

        The default lists them; backends count without building rows where they can.
        """
        rows, _ = self.list(dataclasses.replace(query, limit=None))
        return len(rows)

    @abstractmethod
    def load_all(self) -> dict[str, Entry]:
        """Every entry (the whole store; for compatibility only)."""

    @abstractmethod
    def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Run ``fn`` on the whole store under the write lock and persist what it changed."""

    @abstractmethod
    def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """Run ``fn`` under the write lock; keep its removals only when ``commit``.

        With ``commit=False`` every removal ``fn`` made is undone (dry runs and warn mode
        see exactly what enforcing would do).
        """

    def index_files(self) -> tuple[str, ...]:
        """Names of the files in the sessions dir that make up the index."""
        return ()

    def vacuum(self) -> dict[str, Any]:
        """Compact the index file; returns ``{"bytesBefore", "bytesAfter"}``.

        Raises:
            InvalidArgumentError: The backend has no file to compact.
        """
        raise InvalidArgumentError(
            f"vacuum applies to sqlite stores; this store is {self.store_type}"
        )

    @abstractmethod
    def close(self) -> None:
        """Release connections and caches. Idempotent."""

    def describe(self) -> dict[str, Any]:
        """Backend facts for ``info()`` (driver, version, paths, sizes)."""
        return {}

    def migration_record(self) -> dict[str, Any] | None:
        """The record of the last import from ``sessions.json`` (None for json stores)."""
        return None

    def transcript_checkpoints(self) -> CheckpointStore:
        """Where this store keeps transcript checkpoints (default: the in-process cache).

        A backend whose store returns ``in_index=True`` keeps them in the index, saved in
        the same transaction as the entry's ``messageCount``.
        """
        return MEMORY

    @property
    def path(self) -> Path | None:
        """The index file, for file-based backends."""
        return None

    def async_twin(self) -> AsyncIndexBackend | None:
        """The same store through a native asyncio driver, when the backend has one.

        ``AsyncSessionStore`` uses it instead of running this backend's calls in a worker
        thread (PostgreSQL: psycopg's async pool). None (the default): no native driver.
        """
        return None


class AsyncIndexBackend(ABC):
    """:class:`IndexBackend` as coroutines, for backends with a native asyncio driver.

    The same contract, method by method (keys are canonical; only ``SessionStoreError``
    escapes); ``modify``/``mutate``/``maintenance`` callbacks are plain functions run while
    the backend holds its write lock. A call cancelled while awaiting either completed
    (committed) or did nothing (rolled back).
    """

    store_type: str
    location: str

    @abstractmethod
    async def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """See :meth:`IndexBackend.get`."""

    @abstractmethod
    async def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """See :meth:`IndexBackend.modify`."""

    @abstractmethod
    async def list(
        self, query: ListQuery
    ) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """See :meth:`IndexBackend.list`."""

    @abstractmethod
    async def count(self) -> int:
        """See :meth:`IndexBackend.count`."""

    @abstractmethod
    async def count_matching(self, query: ListQuery) -> int:
        """See :meth:`IndexBackend.count_matching`."""

    @abstractmethod
    async def load_all(self) -> dict[str, Entry]:
        """See :meth:`IndexBackend.load_all`."""

    @abstractmethod
    async def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """See :meth:`IndexBackend.mutate`."""

    @abstractmethod
    async def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """See :meth:`IndexBackend.maintenance` (``fn`` runs in a worker thread)."""

    @abstractmethod
    async def close(self) -> None:
        """See :meth:`IndexBackend.close`."""


class BlobCache:
    """The JSON of recently read blobs, by digest, least recently used out first.

    Blobs are content-addressed, so a cached one is never stale. It holds bytes, not parsed
    objects: every read parses its own copy, which callers may change freely.

    Args:
        budget: Bytes to hold at most; a blob larger than a quarter of it is not kept.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        """The cached JSON of ``digest``, or None."""
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
            return data

    def put(self, digest: str, data: bytes) -> None:
        """Keep ``data`` as the JSON of ``digest``, evicting the least recently used."""
        if len(data) * 4 > self.budget:
            return
        with self._lock:
            if digest in self._items:
                return
            self._items[digest] = data
            self.size += len(data)
            while self.size > self.budget:
                _, old = self._items.popitem(last=False)
                self.size -= len(old)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self.size = 0
