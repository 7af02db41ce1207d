"""The PostgreSQL hot index through psycopg's asyncio pool (``PostgresIndex.async_twin()``).

The twin runs the very transaction bodies of :class:`~.postgres.PostgresIndex` (the
generators of :class:`~.pgsteps.Step` its methods are made of: same SQL, row encoding,
advisory locks) on an ``AsyncConnectionPool``, with the same retry policy and typed errors
(``PostgresIndex.retry_pause``). ``AsyncSessionStore`` awaits it instead of running the
synchronous index in a worker thread.

Cancellation: a call cancelled before its ``COMMIT`` was sent rolls back (psycopg cancels
the statement in flight on the server, the transaction is rolled back, and the connection
goes back to the pool clean, or is discarded by the pool if it cannot be cleaned); once
``COMMIT`` was sent it is awaited to its end and ``CancelledError`` is raised afterwards.
So when ``CancelledError`` reaches the caller, the call either committed whole or left no
trace, and the next call works.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StoreClosedError
from ..shielded import to_the_end
from .base import (
    AsyncIndexBackend,
    ListQuery,
    MaintenanceTxn,
    ModifyFn,
    SessionRow,
    writes_when_absent,
)
from .pgsteps import Op, _BlobGone, _NoSchema

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

    from .postgres import PostgresIndex, Rows

__all__ = ["PostgresAsyncIndex", "run_op_async"]

Entry = dict[str, Any]
T = TypeVar("T")


async def run_op_async(
    conn: psycopg.AsyncConnection[Any], op: Op[T], began: list[bool] | None = None
) -> T:
    """Run a transaction body on an asyncio connection (``run_op``'s twin).

    ``began[0]`` becomes True once a statement of the body ran: from then on a lost
    connection is not retried (the body's callback may have run).
    """
    try:
        step = next(op)
        while True:
            cur = await conn.execute(step.sql, step.params)
            if began is not None:
                began[0] = True
            if step.fetch == "all":
                step = op.send(await cur.fetchall())
            elif step.fetch == "one":
                step = op.send(await cur.fetchone())
            else:
                step = op.send(cur.rowcount)
    except StopIteration as stop:
        result: T = stop.value
        return result


class PostgresAsyncIndex(AsyncIndexBackend):
    """One agent's PostgreSQL hot index as coroutines, on psycopg's asyncio pool.

    Same DSN, schema, pool size and ``application_name`` as the synchronous index it
    belongs to; the pool opens on first use and closes with :meth:`close`. The schema is
    created or upgraded through the synchronous index, once per process, in a worker
    thread.

    Args:
        index: The synchronous index of the store.
    """

    store_type = "postgres"

    def __init__(self, index: PostgresIndex) -> None:
        self._sync = index
        self.location = index.location
        self._pool_obj: psycopg_pool.AsyncConnectionPool[Any] | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresAsyncIndex({self.location!r})"

    # --- connections and transactions ------------------------------------------------------

    async def _pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        if self._closed or self._sync._closed:
            raise StoreClosedError(f"the store at {self.location} was closed")
        loop = asyncio.get_running_loop()
        if self._pool_obj is not None and self._pool_loop is loop:
            return self._pool_obj
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:
            if self._pool_obj is None or self._pool_loop is not loop:
                # A pool lives on the loop that opened it. On another loop (a store used
                # by successive asyncio.run calls) the old one's tasks died with its loop:
                # it is dropped (its connections close when it is collected).
                self._pool_obj = None
                sync = self._sync
                # Every connection is made at open (the pool never grows; only a broken
                # one is replaced in the background): psycopg_pool's connecting task does
                # not end when cancelled, so one in flight when a loop ends with the store
                # open hangs asyncio.run's shutdown.
                options = {**sync.pool_options(), "min_size": sync.pool_size}
                pool = sync._pool_mod.AsyncConnectionPool(
                    sync._dsn, open=False, name=f"sessionstore-aio-{sync.agent_id}", **options
                )
                try:
                    await pool.open(wait=True, timeout=sync._timeout)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await pool.close()
                    raise
                self._pool_obj, self._pool_loop = pool, loop
            return self._pool_obj

    async def _discard_broken(self) -> None:
        # As the synchronous index does: the server may have closed every connection.
        with contextlib.suppress(Exception):
            if self._pool_obj is not None:
                await self._pool_obj.check()

    @staticmethod
    async def _transaction(conn: psycopg.AsyncConnection[Any], op: Op[T], began: list[bool]) -> T:
        await conn.execute("BEGIN")
        try:
            result = await run_op_async(conn, op, began)
        except BaseException:
            # Cancelled or failed before COMMIT: nothing of it stays. A connection that
            # cannot even roll back is left to the pool, which discards it.
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise
        await to_the_end(conn.execute("COMMIT"))
        return result

    async def _run(self, make: Callable[[], Op[T]], *, write: bool, txn: bool = True) -> T:
        """Run the body ``make()`` builds (a new one per attempt) with the sync retry policy."""
        sync = self._sync
        sync.check_write(write)
        if write and not sync._ready:
            await asyncio.to_thread(sync.create)  # once per process
        pg = sync._psycopg
        attempt = 0
        while True:
            attempt += 1
            began = [False]
            try:
                pool = await self._pool()
                async with pool.connection() as conn:
                    if not txn:  # a read of single statements: autocommit
                        return await run_op_async(conn, make(), began)
                    return await self._transaction(conn, make(), began)
            except (pg.Error, sync._pool_mod.PoolTimeout) as exc:
                if sync._lost(exc):
                    await self._discard_broken()
                await asyncio.sleep(sync.retry_pause(exc, attempt, began=began[0], write=write))

    async def _schema_exists(self) -> bool:
        return await self._run(self._sync.schema_exists_op, write=False, txn=False)

    async def run(self, make: Callable[[], Op[T]]) -> T:
        """A write transaction of the body ``make()`` builds (the transcript engine's)."""
        return await self._run(make, write=True)

    async def read(self, make: Callable[[], Op[T]], empty: T, *, snapshot: bool = False) -> T:
        """A read (of single statements, or one snapshot); ``empty`` before any write."""
        sync = self._sync
        if not (sync._ready or sync._seen) and not await self._schema_exists():
            return empty
        sync._seen = True
        try:
            return await self._run(make, write=False, txn=snapshot)
        except _NoSchema:
            return empty

    # --- the contract -----------------------------------------------------------------------

    async def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """See :meth:`PostgresIndex.get`."""
        sync = self._sync
        try:
            return await self.read(lambda: sync.get_op(key, blobs=blobs, snapshot=False), None)
        except _BlobGone:
            pass  # a writer replaced the entry between two statements: one snapshot now
        try:
            return await self.read(
                lambda: sync.get_op(key, blobs=blobs, snapshot=True), None, snapshot=True
            )
        except _BlobGone as exc:
            raise sync.blob_gone(key) from exc

    async def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """See :meth:`PostgresIndex.modify` (``fn`` runs on the event loop, under the lock)."""
        if not self._sync._ready and not await self._schema_exists():
            again = writes_when_absent(fn)
            if again is None:
                return None, False
            fn = again
        return await self._run(
            lambda: self._sync.modify_op(key, fn, needs_blobs=needs_blobs, full_result=full_result),
            write=True,
        )

    async def list(
        self, query: ListQuery
    ) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """See :meth:`PostgresIndex.list`."""
        empty: Rows = []
        raw = await self.read(lambda: self._sync.list_op(query), empty)
        return self._sync.list_rows(query, raw)

    async def count(self) -> int:
        """See :meth:`PostgresIndex.count`."""
        return await self.read(self._sync.count_op, 0)

    async def count_matching(self, query: ListQuery) -> int:
        """See :meth:`PostgresIndex.count_matching`."""
        return await self.read(lambda: self._sync.count_matching_op(query), 0)

    async def load_all(self) -> dict[str, Entry]:
        """See :meth:`PostgresIndex.load_all`."""
        return await self.read(self._sync.load_all_op, {}, snapshot=True)

    async def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """See :meth:`PostgresIndex.mutate` (``fn`` runs on the event loop, under the lock)."""
        return await self._run(lambda: self._sync.mutate_op(fn), write=True)

    async def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """See :meth:`PostgresIndex.maintenance` (in a worker thread: ``fn`` may block)."""
        return await asyncio.to_thread(self._sync.maintenance, fn, commit=commit)

    async def close(self) -> None:
        """Close the asyncio pool (the synchronous index stays open). Idempotent."""
        self._closed = True
        pool, self._pool_obj = self._pool_obj, None
        if pool is not None and self._pool_loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await pool.close()
