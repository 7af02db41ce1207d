"""AsyncSessionStore: the store's API as coroutines, for asyncio programs.

Every method of :class:`~sessionstore.store.SessionStore` is a coroutine here, transcripts
included. The SQLite and ``sessions.json`` backends have no asyncio driver: their calls run
in a small thread pool owned by the store, so the event loop never waits on a lock, a file
or an fsync. A backend whose :meth:`~sessionstore.index.base.IndexBackend.async_twin`
returns a native asyncio twin (PostgreSQL: psycopg's async pool, ``index/postgres_aio.py``)
serves ``get``, ``list``, ``count``, ``load_all``, ``put``, ``update``, ``delete``,
``reset`` and ``mutate`` through it, without a thread hop: the merge rules are the
synchronous store's (``SessionStore._*_plan``), only the driver differs. Work after a
committed write that blocks (archiving a transcript, automatic maintenance when it is
due, a transcript header) and the remaining calls (opening a transcript, ``.jsonl``
transcripts, ``maintain``, ``check``, ``info``) still run in the thread pool; a
transcript in the PostgreSQL table appends and reads (``append``, ``tail``, ``messages``,
``message_count``) on the twin.

Cancellation: a call that is cancelled before its thread started does nothing; one that
has started runs to its end (a write to a file cannot be taken back half-way), and the
cancellation is raised once it has, so when ``CancelledError`` reaches the caller the call
either completed or did nothing, and the store stays usable. On a native twin the same
holds: cancelled before ``COMMIT`` was sent, the transaction is rolled back (the statement
in flight is cancelled on the server and the connection returns to the pool clean, or is
discarded); once ``COMMIT`` was sent, it and the work after it run to their end and the
cancellation is raised afterwards.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from .args import check_bool, check_fields
from .entry import SessionEntry
from .errors import InvalidArgumentError, StoreClosedError
from .index.base import AsyncIndexBackend, ListQuery, SessionPage, encode_cursor
from .keys import canonical_key
from .shielded import to_the_end
from .store import (
    Patch,
    SessionStore,
    StoreInfo,
    WritePlan,
    _project,
    _wants_large,
    open_store,
)
from .transcripts.jsonl import Transcript

if TYPE_CHECKING:
    from .doctor import Finding
    from .index.postgres_aio import PostgresAsyncIndex
    from .maintenance import MaintenanceReport
    from .transcripts.postgres import PostgresTranscript

__all__ = ["AsyncSessionStore", "AsyncTranscript", "open_async_store"]

T = TypeVar("T")
R = TypeVar("R")

# Calls of one store run on at most this many threads: enough that a call waiting for
# another process's lock does not hold up the rest, few enough to stay cheap.
DEFAULT_WORKERS = 4
# The pool shared by the faces that borrow a synchronous store (AsyncSessionStore.borrow).
SHARED_WORKERS = 8


class _Call:
    """One blocking call on its way through a worker thread."""

    __slots__ = ("after", "call", "finished", "future", "loop", "started")

    def __init__(self, call: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.call = call
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        # Taken by whoever comes first: the worker (the call runs) or a cancellation (it
        # never will); a Lock's non-blocking acquire decides atomically.
        self.started = threading.Lock()
        self.finished = False
        self.after: asyncio.Future[None] | None = None


def _finish(item: _Call, ok: bool, value: Any) -> None:
    """On the loop: hand the call's outcome to its caller (or to a cancelled one's wait)."""
    item.finished = True
    if not item.future.done():
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)
    if item.after is not None and not item.after.done():
        item.after.set_result(None)


def _work(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (item := calls.get()) is not None:
        if not item.started.acquire(blocking=False):
            continue  # cancelled before it started
        try:
            value, ok = item.call(), True
        except BaseException as exc:  # the caller gets it, whatever it is
            value, ok = exc, False
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            item.loop.call_soon_threadsafe(_finish, item, ok, value)


class _Offload:
    """Runs blocking calls on a few threads of its own, with the cancellation rule above.

    A queue and ``call_soon_threadsafe``, not ``ThreadPoolExecutor`` + ``wrap_future``: a
    quarter less time per call (``bench/adapters.py`` measures both).
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._closed:
                return
            for n in range(self._workers):
                thread = threading.Thread(
                    target=_work, args=(self._calls,), name=f"sessionstore-aio-{n}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise StoreClosedError("the store is closed; open a new one with open_async_store()")
        if not self._threads:
            self._start()
        item = _Call(functools.partial(fn, *args, **kwargs), asyncio.get_running_loop())
        self._calls.put(item)
        try:
            result: T = await item.future
            return result
        except asyncio.CancelledError:
            if item.started.acquire(blocking=False):
                raise  # it never started: it did nothing
            # It is running in its thread and cannot be stopped half-way: wait for its end
            # (through further cancellations), so the caller knows it completed.
            while not item.finished:
                item.after = item.loop.create_future()
                with contextlib.suppress(asyncio.CancelledError):
                    await item.after
            raise

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._calls.put(None)  # after the calls already queued


_SHARED: list[_Offload] = []
_SHARED_LOCK = threading.Lock()


def _shared_offload() -> _Offload:
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(_Offload(SHARED_WORKERS))
        return _SHARED[0]


class AsyncTranscript:
    """A session's transcript (:class:`~sessionstore.transcripts.jsonl.Transcript`), awaitable.

    ``async for message in transcript`` iterates over every message record in order.
    """

    def __init__(
        self,
        transcript: Transcript | PostgresTranscript,
        offload: _Offload,
        twin: AsyncIndexBackend | None = None,
    ) -> None:
        self._t = transcript
        self._offload = offload
        # A transcript in the PostgreSQL table, on a store with the native twin: append,
        # tail, messages and message_count run on psycopg's asyncio pool too.
        self._native: tuple[PostgresTranscript, PostgresAsyncIndex] | None = None
        if twin is not None and transcript.path is None:
            from .index.postgres_aio import PostgresAsyncIndex
            from .transcripts.postgres import PostgresTranscript

            if isinstance(transcript, PostgresTranscript) and isinstance(twin, PostgresAsyncIndex):
                self._native = (transcript, twin)

    @property
    def sync(self) -> Transcript | PostgresTranscript:
        """The underlying synchronous transcript."""
        return self._t

    @property
    def path(self) -> Path | None:
        """The ``.jsonl`` file (None for a transcript kept in a PostgreSQL table)."""
        return self._t.path

    @property
    def session_id(self) -> str:
        """The session the transcript belongs to."""
        return self._t.session_id

    @property
    def skipped(self) -> int:
        """Malformed lines met by the last read."""
        return self._t.skipped

    @property
    def bytes_read(self) -> int:
        """Bytes read from the file by the last read, append or compaction."""
        return self._t.bytes_read

    def __repr__(self) -> str:
        where = self._t.path if self._t.path is not None else f"table:{self._t.session_id}"
        return f"AsyncTranscript({str(where)!r})"

    async def append(self, message: dict[str, Any], *, idempotency_key: str | None = None) -> str:
        """See :meth:`Transcript.append`."""
        if self._native is None:
            return await self._offload.run(self._t.append, message, idempotency_key=idempotency_key)
        t, twin = self._native
        body = t.message_body(message, idempotency_key)
        return await twin.run(lambda: t.append_op(body, idempotency_key))

    async def tail(self, n: int) -> list[dict[str, Any]]:
        """See :meth:`Transcript.tail`."""
        if self._native is None:
            return await self._offload.run(self._t.tail, n)
        t, twin = self._native
        return await twin.read(t.tail_reader(n), [])

    async def messages(self) -> list[dict[str, Any]]:
        """See :meth:`Transcript.messages`."""
        if self._native is None:
            return await self._offload.run(self._t.messages)
        t, twin = self._native
        return await twin.read(t.messages_op, [])

    async def entries(self) -> list[dict[str, Any]]:
        """See :meth:`Transcript.entries`."""
        return await self._offload.run(self._t.entries)

    async def message_count(self) -> int:
        """See :meth:`Transcript.message_count`."""
        if self._native is None:
            return await self._offload.run(self._t.message_count)
        t, twin = self._native
        return await twin.read(t.message_count_op, 0)

    async def compact(self, max_lines: int) -> Path | str | None:
        """See :meth:`Transcript.compact`."""
        return await self._offload.run(self._t.compact, max_lines)

    async def write_header(self) -> int:
        """See :meth:`Transcript.write_header`."""
        return await self._offload.run(self._t.write_header)

    async def torn_bytes(self) -> int:
        """See :meth:`Transcript.torn_bytes`."""
        return await self._offload.run(self._t.torn_bytes)

    async def repair_tail(self) -> Path | None:
        """See :meth:`Transcript.repair_tail`."""
        return await self._offload.run(self._t.repair_tail)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for message in await self.messages():
            yield message


class AsyncSessionStore:
    """:class:`~sessionstore.store.SessionStore` as coroutines.

    Open it with :func:`open_async_store`, or wrap an open store.

    Args:
        store: The store to serve; closing this one closes it.
        workers: Threads for the blocking calls of this store (at least 1).
        native: Use the backend's asyncio driver when it has one (PostgreSQL); False runs
            every call in the worker threads, as on the other backends.
    """

    def __init__(
        self, store: SessionStore, *, workers: int = DEFAULT_WORKERS, native: bool = True
    ) -> None:
        if not isinstance(store, SessionStore):
            raise InvalidArgumentError(f"store must be a SessionStore, got {type(store).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidArgumentError(f"workers must be an integer >= 1, got {workers!r}")
        self._store = store
        self._offload = _Offload(workers)
        self._owned = True
        check_bool("native", native)
        self._twin: AsyncIndexBackend | None = store.index.async_twin() if native else None

    @classmethod
    def borrow(cls, store: SessionStore) -> AsyncSessionStore:
        """An async face over a store that its owner keeps and closes.

        Faces made this way share one thread pool of the process (no threads per face), and
        their ``close()`` leaves the store open. The adapters use it for the synchronous
        stores they are given.

        Args:
            store: The open store.
        """
        face = cls.__new__(cls)
        if not isinstance(store, SessionStore):
            raise InvalidArgumentError(
                f"store must be a SessionStore or an AsyncSessionStore, got {type(store).__name__}"
            )
        face._store = store
        face._offload = _shared_offload()
        face._owned = False
        face._twin = None  # the owner's store: its twin, if any, is the owner's to close
        return face

    # --- basics -----------------------------------------------------------------------------

    @property
    def sync(self) -> SessionStore:
        """The underlying synchronous store (share it with threads, not with the loop)."""
        return self._store

    @property
    def store_type(self) -> str:
        """The effective backend: ``json``, ``sqlite`` or ``postgres``."""
        return self._store.store_type

    @property
    def agent_id(self) -> str:
        """The agent of this store."""
        return self._store.agent_id

    @property
    def native(self) -> bool:
        """Whether reads and writes go through the backend's asyncio driver (no thread hop)."""
        return self._twin is not None

    def __repr__(self) -> str:
        return f"Async{self._store!r}"

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release connections and threads; the store cannot be used afterwards.

        A borrowed face (:meth:`borrow`) leaves the store open.
        """
        if not self._owned:
            return
        try:
            if self._twin is not None:
                await self._twin.close()
            await self._offload.run(self._store.close)
        except StoreClosedError:
            return  # idempotent
        self._offload.shutdown()

    # --- single entries ---------------------------------------------------------------------

    async def get(self, key: str, *, fields: Iterable[str] | None = None) -> SessionEntry | None:
        """See :meth:`SessionStore.get`."""
        if self._twin is None:
            return await self._offload.run(self._store.get, key, fields=fields)
        names = check_fields(fields)
        canonical = canonical_key(key)
        entry = await self._twin.get(canonical, blobs=names is None or _wants_large(names))
        if entry is None or names is None:
            return cast("SessionEntry | None", entry)
        return cast(SessionEntry, _project(entry, names))

    async def _write(self, plan: WritePlan[R]) -> R:
        """Run a write plan: natively on a twin (``finish`` in a thread only if it blocks)."""
        if self._twin is None or plan.fn_blocks:
            return await self._offload.run(self._store._write, plan)
        result, written = await self._twin.modify(
            plan.key, plan.fn, needs_blobs=plan.needs_blobs, full_result=plan.full_result
        )
        if plan.blocks(result, written):
            # Committed: the work that follows runs to its end even if the caller is
            # cancelled meanwhile.
            return await to_the_end(self._offload.run(plan.finish, result, written))
        return plan.finish(result, written)

    async def put(
        self, key: str, entry: dict[str, Any], *, fields: Iterable[str] | None = None
    ) -> SessionEntry:
        """See :meth:`SessionStore.put`."""
        return await self._write(self._store._put_plan(key, entry, fields))

    async def update(
        self,
        key: str,
        patch_or_fn: Patch,
        *,
        create: bool = False,
        preserve_activity: bool = False,
        fields: Iterable[str] | None = None,
    ) -> SessionEntry | None:
        """See :meth:`SessionStore.update`.

        A callable patch runs on the event loop (while the entry's lock is held) on a store
        with a native twin, in a worker thread otherwise: it must not block either way.
        """
        return await self._write(
            self._store._update_plan(key, patch_or_fn, create, preserve_activity, fields)
        )

    async def delete(self, key: str, *, archive_transcript: bool = True) -> bool:
        """See :meth:`SessionStore.delete`."""
        return await self._write(self._store._delete_plan(key, archive_transcript))

    async def reset(self, key: str, *, fields: Iterable[str] | None = None) -> SessionEntry:
        """See :meth:`SessionStore.reset`."""
        return await self._write(self._store._reset_plan(key, fields))

    async def transcript(self, key: str, topic_id: str | int | None = None) -> AsyncTranscript:
        """See :meth:`SessionStore.transcript`."""
        transcript = await self._offload.run(self._store.transcript, key, topic_id)
        return AsyncTranscript(transcript, self._offload, self._twin)

    # --- whole store ------------------------------------------------------------------------

    async def list(
        self,
        *,
        agent_id: str | None = None,
        channel: str | None = None,
        label: str | None = None,
        search: str | None = None,
        spawned_by: str | None = None,
        active_minutes: int | None = None,
        include_global: bool = False,
        include_unknown: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
        with_total: bool = False,
    ) -> SessionPage:
        """See :meth:`SessionStore.list`."""
        filters: dict[str, Any] = {
            "agent_id": agent_id,
            "channel": channel,
            "label": label,
            "search": search,
            "spawned_by": spawned_by,
            "active_minutes": active_minutes,
            "include_global": include_global,
            "include_unknown": include_unknown,
            "limit": limit,
            "cursor": cursor,
        }
        if self._twin is None:
            return await self._offload.run(self._store.list, with_total=with_total, **filters)
        check_bool("with_total", with_total)
        query: ListQuery = self._store._list_query(**filters)
        rows, more = await self._twin.list(query)
        total = await self._twin.count_matching(query) if with_total else None
        return SessionPage(
            rows=rows, next_cursor=encode_cursor(*more) if more else None, total=total
        )

    async def count(self) -> int:
        """See :meth:`SessionStore.count`."""
        if self._twin is None:
            return await self._offload.run(self._store.count)
        return await self._twin.count()

    async def load_all(self) -> dict[str, SessionEntry]:
        """See :meth:`SessionStore.load_all`."""
        if self._twin is None:
            return await self._offload.run(self._store.load_all)
        return cast("dict[str, SessionEntry]", await self._twin.load_all())

    async def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """See :meth:`SessionStore.mutate`.

        ``fn`` runs on the event loop (under the store's write lock) on a store with a
        native twin, in a worker thread otherwise.
        """
        if self._twin is None:
            return await self._offload.run(self._store.mutate, fn)
        result = await self._twin.mutate(self._store._mutate_checked(fn))
        if self._store._after_write_due():
            await to_the_end(self._offload.run(self._store._after_write, None))
        return result

    # --- maintenance and checks -------------------------------------------------------------

    async def maintain(
        self,
        mode: Literal["warn", "enforce"] | None = None,
        dry_run: bool = False,
        active_key: str | None = None,
        *,
        fix_missing: bool = False,
        reap_cron: bool = False,
    ) -> MaintenanceReport:
        """See :meth:`SessionStore.maintain`."""
        return await self._offload.run(
            self._store.maintain,
            mode,
            dry_run,
            active_key,
            fix_missing=fix_missing,
            reap_cron=reap_cron,
        )

    async def check(self, fix: bool = False) -> builtins.list[Finding]:
        """See :meth:`SessionStore.check`."""
        return await self._offload.run(self._store.check, fix)

    async def vacuum(self) -> dict[str, Any]:
        """See :meth:`SessionStore.vacuum`."""
        return await self._offload.run(self._store.vacuum)

    async def info(self) -> StoreInfo:
        """See :meth:`SessionStore.info`."""
        return await self._offload.run(self._store.info)

    async def openclaw_db_status(self) -> dict[str, Any] | None:
        """See :meth:`SessionStore.openclaw_db_status`."""
        return await self._offload.run(self._store.openclaw_db_status)


async def open_async_store(
    agent: str = "main",
    state_dir: str | Path | None = None,
    store_type: Literal["auto", "json", "sqlite", "postgres"] | None = None,
    dsn: str | None = None,
    *,
    store: str | None = None,
    durability: Literal["normal", "power"] | None = None,
    lock_timeout_ms: int = 10_000,
    read_only: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> AsyncSessionStore:
    """Open one agent's session store for asyncio code.

    The arguments are those of :func:`~sessionstore.store.open_store` (opening runs in a
    worker thread: it may import ``sessions.json``), plus ``workers``.

    Args:
        agent: The agent id.
        state_dir: The OpenClaw state dir.
        store_type: ``"auto"``, ``"json"``, ``"sqlite"`` or ``"postgres"``.
        dsn: PostgreSQL conninfo or URL.
        store: A ``session.store`` path instead of the per-agent default.
        durability: ``"normal"`` or ``"power"``.
        lock_timeout_ms: How long a writer waits for another writer.
        read_only: Never write.
        workers: Threads for the store's blocking calls (at least 1).

    Returns:
        The open store; ``await store.close()`` (or ``async with``) when done.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"workers must be an integer >= 1, got {workers!r}")
    opened = await asyncio.to_thread(
        open_store,
        agent,
        state_dir,
        store_type,
        dsn,
        store=store,
        durability=durability,
        lock_timeout_ms=lock_timeout_ms,
        read_only=read_only,
    )
    return AsyncSessionStore(opened, workers=workers)
