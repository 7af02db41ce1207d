"""AsyncSessionStore on PostgreSQL through psycopg's asyncio pool (the native twin).

No thread hop on the common path, exact counters under 100 coroutines, cancellation at
random awaits, terminated backends in the middle of transactions, and a loop that keeps
running while a native call waits on the server.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

import sessionstore
from sessionstore import AsyncSessionStore, AsyncTranscript, SessionStore, StoreClosedError, aio
from sessionstore.errors import ConnectionLostError, RetryableError
from sessionstore.index.postgres import PostgresIndex, _two_ints
from sessionstore.index.postgres_aio import PostgresAsyncIndex
from sessionstore.keys import fold_key

T = TypeVar("T")
KEY = "agent:main:main"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def pg(pg_env: str, state_dir: Path) -> Any:
    s = sessionstore.open_store(state_dir=state_dir, store_type="postgres")
    try:
        yield s
    finally:
        s.close()


def _index(store: SessionStore) -> PostgresIndex:
    assert isinstance(store.index, PostgresIndex)
    return store.index


def _backends(dsn: str, store: SessionStore, state: str | None = None) -> list[int]:
    """Server pids of this process's store connections (in ``state`` when given)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND pid <> pg_backend_pid() AND (%s::text IS NULL OR state = %s)",
            (_index(store).application_name(), state, state),
        ).fetchall()
    return [int(r[0]) for r in rows]


def _terminate(dsn: str, pids: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_writes_and_reads_go_through_the_twin_without_a_thread(pg: SessionStore) -> None:
    pg.put(KEY, {"sessionId": "s0"})  # the sessions dir exists: no first-write work left

    async def main() -> None:
        store = AsyncSessionStore(pg)
        assert store.native
        assert isinstance(store._twin, PostgresAsyncIndex)
        await store.put(KEY, {"sessionId": "s1", "n": 0})
        await store.update(KEY, {"label": "L"})
        await store.update(KEY, lambda e: {"n": (e or {})["n"] + 1})
        await store.mutate(lambda entries: entries.pop("agent:main:none", None))
        await store.put("agent:main:b", {"sessionId": "s2"})
        assert await store.delete("agent:main:b", archive_transcript=False)
        assert await store.get(KEY, fields=["n", "label"]) == {"n": 1, "label": "L"}
        assert [r["key"] for r in (await store.list()).rows] == [KEY]
        assert await store.count() == 1
        # not one call needed a worker thread (the pool starts its threads on first use)
        assert store._offload._threads == []
        await store.close()

    run(main())


def test_the_contract_facade_is_native_on_postgres(pg: SessionStore) -> None:
    assert AsyncSessionStore.borrow(pg).native is False  # a borrowed face uses threads
    assert AsyncSessionStore(pg, native=False).native is False
    face = AsyncSessionStore(pg)
    assert face.native
    run(face.close())


def test_100_coroutines_x_10_updates_lose_nothing(pg: SessionStore) -> None:
    keys = [f"agent:main:k{i}" for i in range(5)]

    async def worker(store: AsyncSessionStore, w: int) -> None:
        for i in range(10):
            key = keys[(w + i) % len(keys)]
            await store.update(
                key,
                lambda e, w=w: {
                    "n": (e or {}).get("n", 0) + 1,
                    f"w{w}": (e or {}).get(f"w{w}", 0) + 1,
                },
                create=True,
            )

    async def main() -> dict[str, Any]:
        async with AsyncSessionStore(pg) as store:
            assert store.native
            await asyncio.gather(*(worker(store, w) for w in range(100)))
            return await store.load_all()

    entries = run(main())
    assert sorted(entries) == sorted(keys)
    assert [entries[k]["n"] for k in keys] == [200] * 5
    for w in range(100):
        assert sum(entries[k].get(f"w{w}", 0) for k in keys) == 10


def test_200_cancellations_at_random_awaits_leave_whole_calls_or_nothing(
    pg: SessionStore, pg_env: str
) -> None:
    """Each call but every tenth is cancelled (1 to 3 times, at seeded loop turns). Right after
    its ``CancelledError`` (or result) the store holds the call whole or not at all, and
    never changes its mind later: no commit lands after the cancellation was delivered
    (it did without the shielded COMMIT: a second cancellation abandoned psycopg's wait
    for it). Calls
    that returned are all there; the connections go back clean (none idle in a
    transaction, no advisory lock left) and the next call works."""
    rng = random.Random(20261203)
    a, b, c = "agent:main:a", "agent:main:b", "agent:main:c"
    index = _index(pg)

    async def main() -> None:
        async with AsyncSessionStore(pg) as store:
            assert store.native
            for key in (a, b, c):
                await store.put(key, {"sessionId": key[-1], "ops": []})
            seen: dict[int, bool] = {}  # op -> found right after the call ended
            returned: set[int] = set()
            cancelled = 0
            for op in range(200):
                if op % 2:
                    call: Coroutine[Any, Any, Any] = store.update(
                        c, lambda e, op=op: {"ops": [*e["ops"], op]}
                    )
                else:

                    def both(entries: dict[str, Any], op: int = op) -> None:
                        entries[a]["ops"].append(op)
                        entries[b]["ops"].append(op)

                    call = store.mutate(both)
                task = asyncio.ensure_future(call)
                for _ in range(rng.randrange(0, 40)):
                    await asyncio.sleep(0)
                # cancelled 1 to 3 times (again while it unwinds); every tenth call never
                cancels = 0 if op % 10 == 9 else rng.randrange(1, 4)
                for _ in range(cancels):
                    task.cancel()
                    for _ in range(rng.randrange(0, 4)):
                        await asyncio.sleep(0)
                try:
                    await task
                    returned.add(op)
                except asyncio.CancelledError:
                    cancelled += 1
                ea, eb, ec = await store.get(a), await store.get(b), await store.get(c)
                assert ea is not None and eb is not None and ec is not None
                assert ea["ops"] == eb["ops"]  # a mutate is whole or absent
                seen[op] = op in (ec["ops"] if op % 2 else ea["ops"])
                assert seen[op] or op not in returned
            entries = await store.load_all()
            final = set(entries[a]["ops"]) | set(entries[c]["ops"])
            assert entries[a]["ops"] == entries[b]["ops"]
            assert final == {op for op, found in seen.items() if found}
            assert returned <= final
            assert sorted(entries[a]["ops"]) == entries[a]["ops"]
            assert sorted(entries[c]["ops"]) == entries[c]["ops"]
            assert cancelled > 0 and {op for op in range(200) if op % 10 == 9} <= returned
            with psycopg.connect(pg_env, autocommit=True) as admin:
                dirty = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    " AND state LIKE 'idle in transaction%%'",
                    (index.application_name(),),
                ).fetchone()
                locks = admin.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND s.application_name = %s",
                    (index.application_name(),),
                ).fetchone()
            assert dirty == (0,) and locks == (0,)
            await store.update(c, {"after": True})
            assert (await store.get(c, fields=["after"])) == {"after": True}

    run(main())


def test_a_terminated_backend_mid_transaction_is_a_retryable_error_and_no_partial_write(
    pg: SessionStore, pg_env: str
) -> None:
    a, b = "agent:main:a", "agent:main:b"

    async def main() -> None:
        async with AsyncSessionStore(pg) as store:
            await store.put(a, {"sessionId": "a", "n": 0})
            await store.put(b, {"sessionId": "b", "n": 0})
            done = lost = 0
            for i in range(20):
                kill = i % 2 == 1

                def kill_mine() -> None:
                    # the twin's connection, idle in its transaction while the callback runs
                    pids = _backends(pg_env, pg, "idle in transaction")
                    assert len(pids) == 1
                    _terminate(pg_env, pids)

                def both(entries: dict[str, Any], kill: bool = kill) -> None:
                    entries[a]["n"] += 1
                    entries[b]["n"] += 1
                    if kill:
                        kill_mine()

                def bump(entry: Any, kill: bool = kill) -> dict[str, Any]:
                    if kill:
                        kill_mine()
                    return {"n": entry["n"] + 1}

                try:
                    if i % 4 < 2:
                        await store.mutate(both)
                    else:
                        await store.update(a, bump)
                        await store.update(b, lambda e: {"n": e["n"] + 1})
                    done += 1
                except ConnectionLostError as exc:
                    assert isinstance(exc, RetryableError) and exc.retryable
                    assert "lost" in str(exc)
                    lost += 1
                # the next call works, and nothing of a lost transaction was written
                ea, eb = await store.get(a), await store.get(b)
                assert ea is not None and eb is not None
                assert ea["n"] == eb["n"] == done
            assert (done, lost) == (10, 10)

    run(main())


def test_idle_connections_terminated_between_calls_are_replaced_silently(
    pg: SessionStore, pg_env: str
) -> None:
    async def main() -> None:
        async with AsyncSessionStore(pg) as store:
            await store.put(KEY, {"sessionId": "s1", "n": 0})
            for _ in range(5):
                _terminate(pg_env, _backends(pg_env, pg))  # a server restart, as clients see it
                await store.update(KEY, lambda e: {"n": e["n"] + 1})
            assert (await store.get(KEY, fields=["n"])) == {"n": 5}

    run(main())


def test_the_loop_keeps_ticking_while_a_native_update_waits_on_a_lock(
    pg: SessionStore, pg_env: str
) -> None:
    """Another connection holds the key's advisory lock; the update waits on the server.
    The ticker goes on ticking 1000 times while the update is seen waiting, and the update
    finishes only after the lock is released."""
    index = _index(pg)
    pg.put(KEY, {"sessionId": "s1"})
    lock = _two_ints(index.schema, index.agent_id, fold_key(KEY))
    ticks = [0]
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks[0] += 1
            await asyncio.sleep(0)

    async def main() -> None:
        async with (
            AsyncSessionStore(pg) as store,
            await psycopg.AsyncConnection.connect(pg_env, autocommit=True) as holder,
        ):
            await holder.execute("SELECT pg_advisory_lock(%s, %s)", lock)
            ticking = asyncio.ensure_future(ticker())
            update = asyncio.ensure_future(store.update(KEY, {"label": "after the lock"}))
            waiting = 0
            while not waiting:  # until the server shows the update waiting on the lock
                row = await (
                    await holder.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                        " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                        (index.application_name(),),
                    )
                ).fetchone()
                waiting = int(row[0]) if row else 0
            start = ticks[0]
            while ticks[0] < start + 1000:
                await asyncio.sleep(0)
            assert not update.done()  # 1000 ticks while the native call waited
            await holder.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
            result = await update
            stop.set()
            await ticking
            assert result is not None and result["label"] == "after the lock"

    run(main())


def test_table_transcripts_append_and_read_natively(pg: SessionStore) -> None:
    """append/tail/messages/message_count on the twin: given a thread pool that refuses
    every call, they still work; 50 concurrent appends get gap-free seqs and the entry's
    messageCount follows in the same transactions."""
    pg.put(KEY, {"sessionId": "s1"})

    async def main() -> None:
        async with AsyncSessionStore(pg) as store:
            opened = await store.transcript(KEY)
            no_threads = aio._Offload(1)
            no_threads.shutdown()  # any call sent to it raises StoreClosedError
            t = AsyncTranscript(opened.sync, no_threads, store._twin)
            first = await t.append({"role": "user", "content": "m0"}, idempotency_key="k0")
            again = await t.append({"role": "user", "content": "m0"}, idempotency_key="k0")
            assert again == first  # a retried append writes once
            await asyncio.gather(
                *(t.append({"role": "user", "content": f"m{i}"}) for i in range(1, 51))
            )
            assert await t.message_count() == 51
            messages = await t.messages()
            assert [m["__openclaw"]["seq"] for m in messages] == list(range(1, 52))
            assert sorted(m["content"] for m in messages) == sorted(f"m{i}" for i in range(51))
            assert await t.tail(2) == messages[-2:]
            assert (await store.get(KEY, fields=["messageCount"])) == {"messageCount": 51}
            with pytest.raises(StoreClosedError):
                await t.entries()  # not native: it went to the (refusing) threads

    run(main())


def test_one_store_serves_successive_event_loops(pg: SessionStore) -> None:
    """A store opened once and used by several ``asyncio.run`` calls (as the adapters'
    tests do): each loop gets a pool of its own, and no loop's shutdown hangs."""
    store = AsyncSessionStore(pg)
    for i in range(5):
        run(store.update(KEY, lambda e, i=i: {"n": i, "sessionId": "s1"}, create=True))
    assert run(store.get(KEY, fields=["n"])) == {"n": 4}
    run(store.close())


def test_the_password_never_shows_on_the_twin(pg_env: str, state_dir: Path) -> None:
    secret = "sekret-Pa55-word"
    info = psycopg.conninfo.conninfo_to_dict(pg_env)
    bad = psycopg.conninfo.make_conninfo(**{**info, "password": secret, "port": "1"})
    with sessionstore.open_store(
        state_dir=state_dir, store_type="postgres", dsn=bad, lock_timeout_ms=500
    ) as sync:

        async def main() -> None:
            async with AsyncSessionStore(sync) as store:
                assert store.native
                assert secret not in repr(store._twin) and "***" in repr(store._twin)
                for call in (store.get(KEY), store.put(KEY, {"sessionId": "a"})):
                    with pytest.raises(ConnectionLostError) as caught:
                        await call
                    assert "no connection" in str(caught.value)
                    assert secret not in str(caught.value) and secret not in repr(caught.value)

        run(main())
