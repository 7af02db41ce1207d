"""AsyncSessionStore beyond the contract: concurrency, a loop that keeps running, cancellation."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import sessionstore
from sessionstore import AsyncSessionStore, InvalidArgumentError, SessionStore, StoreClosedError
from sessionstore.index.base import AsyncIndexBackend, IndexBackend, ListQuery, MaintenanceTxn

T = TypeVar("T")
KEY = "agent:main:main"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(state_dir: Path, backend: str, **kw: Any) -> AsyncSessionStore:
    return await sessionstore.open_async_store(state_dir=state_dir, store_type=backend, **kw)


def test_open_async_store_and_context_manager(state_dir: Path, backend: str) -> None:
    async def main() -> None:
        async with await opened(state_dir, backend) as store:
            assert store.store_type == backend
            await store.put(KEY, {"sessionId": "s1", "label": "hi"})
            t = await store.transcript(KEY)
            await t.append({"role": "user", "content": "one"})
            await t.append({"role": "assistant", "content": "two"})
            assert [m["content"] for m in await t.tail(1)] == ["two"]
            assert [m["content"] async for m in t] == ["one", "two"]
            page = await store.list()
            assert [r["key"] for r in page.rows] == [KEY]
        with pytest.raises(StoreClosedError):
            await store.get(KEY)
        await store.close()  # idempotent

    run(main())
    with sessionstore.open_store(state_dir=state_dir, store_type=backend) as sync:  # type: ignore[arg-type]
        assert sync.get(KEY, fields=["label"]) == {"label": "hi"}


@pytest.mark.parametrize("workers", [0, -1, True, "2"])
def test_workers_must_be_a_positive_integer(state_dir: Path, workers: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="workers"):
        run(sessionstore.open_async_store(state_dir=state_dir, workers=workers))


def test_100_concurrent_coroutines_lose_no_update(store: SessionStore) -> None:
    sync = store  # conftest's store, every backend; used only through the async API

    def add(i: int) -> Callable[[Any], dict[str, Any]]:
        return lambda e: {"seen": [*(e or {}).get("seen", []), i]}

    async def main() -> tuple[list[int], int]:
        async with AsyncSessionStore(sync) as store:
            await store.put(KEY, {"sessionId": "s1"})
            t = await store.transcript(KEY)
            await asyncio.gather(
                *(store.update(KEY, add(i)) for i in range(100)),
                *(t.append({"role": "user", "content": str(i)}) for i in range(100)),
            )
            entry = await store.get(KEY)
            assert entry is not None
            return sorted(entry["seen"]), len(await t.messages())

    seen, messages = run(main())
    assert seen == list(range(100))
    assert messages == 100


def test_a_slow_call_does_not_block_the_loop(store: SessionStore) -> None:
    """The callback of an update waits until a coroutine on the loop has ticked 5 times.

    Were the loop blocked by the call, the ticker could not tick and the callback would
    give up (after 30 s) with ``ticked`` unset. Through the worker threads (``native=False``):
    on a native twin a callback runs on the loop, and a slow call is one waiting on the
    server (tests/postgres/test_pg_async_native.py).
    """
    sync = store  # conftest's store, every backend; used only through the async API
    ticked = threading.Event()
    in_call = threading.Event()
    ticks: list[int] = []

    def slow(entry: Any) -> dict[str, Any]:
        in_call.set()
        return {"ticked": ticked.wait(timeout=30)}

    async def ticker() -> None:
        while not in_call.is_set():
            await asyncio.sleep(0.001)
        while len(ticks) < 5:
            ticks.append(len(ticks))
            await asyncio.sleep(0.001)
        ticked.set()

    async def main() -> Any:
        async with AsyncSessionStore(sync, native=False) as store:
            await store.put(KEY, {"sessionId": "s1"})
            result, _ = await asyncio.gather(store.update(KEY, slow), ticker())
            return result

    result = run(main())
    assert result["ticked"] is True
    assert ticks == [0, 1, 2, 3, 4]


def test_cancelled_calls_completed_or_did_nothing(store: SessionStore) -> None:
    """200 calls cancelled after a random number of loop turns; the store equals a model
    built from the calls that completed (a cancelled call is found either whole or not at
    all), and the store answers after every cancellation. A call queued behind another
    (one worker) when it is cancelled never starts: it did nothing. Through the worker
    threads (the blocker's callback blocks); the native twin's cancellations are tested in
    tests/postgres/test_pg_async_native.py."""
    sync = store  # conftest's store, every backend; used only through the async API
    rng = random.Random(14)
    keys = [f"agent:main:k{i}" for i in range(4)]

    async def main() -> None:
        async with AsyncSessionStore(sync, workers=1, native=False) as store:
            model: dict[str, list[int]] = {}
            messages: list[str] = []
            await store.put(KEY, {"sessionId": "s-main"})
            t = await store.transcript(KEY)
            outcomes: list[tuple[bool, bool, bool]] = []  # (queued, completed, changed)
            for op in range(200):
                key = rng.choice(keys)
                kind = rng.choice(["update", "delete", "append"])
                release = threading.Event()
                blocker = None
                if rng.random() < 0.3:
                    blocker = asyncio.ensure_future(store.mutate(lambda _s, r=release: r.wait(30)))
                    await asyncio.sleep(0)
                if kind == "update":
                    call = store.update(
                        key, lambda e, op=op: {"ops": [*(e or {}).get("ops", []), op]}, create=True
                    )
                elif kind == "delete":
                    call = store.delete(key)
                else:
                    call = t.append({"role": "user", "content": f"m{op}"})
                task = asyncio.ensure_future(call)
                for _ in range(rng.randrange(0, 6)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                    completed = True
                except asyncio.CancelledError:
                    completed = False
                release.set()
                if blocker is not None:
                    assert await blocker is True
                # Which one was it? The store answers, and shows the call whole or not at all.
                entry = await store.get(key)
                now = (entry or {}).get("ops")
                if kind == "update":
                    changed = now == [*model.get(key, []), op]
                    if changed:
                        model[key] = now
                elif kind == "delete":
                    changed = key in model and entry is None
                    if changed:
                        del model[key]
                else:
                    changed = [m["content"] for m in await t.tail(1)] == [f"m{op}"]
                    if changed:
                        messages.append(f"m{op}")
                assert now == model.get(key)
                assert changed or not completed or (kind == "delete" and key not in model)
                outcomes.append((blocker is not None, completed, changed))
            entries = await store.load_all()
            assert {k: v["ops"] for k, v in entries.items() if k != KEY} == model
            assert [m["content"] for m in await t.messages()] == messages
            assert {(q, c, ch) for q, c, ch in outcomes if q and not c} == {(True, False, False)}
            assert any(not c and ch for _, c, ch in outcomes)  # some finished after the cancel

    run(main())


class _Twin(AsyncIndexBackend):
    """A native-async twin over the real backend (no postgres here): counts its calls."""

    def __init__(self, inner: IndexBackend) -> None:
        self.inner = inner
        self.store_type = inner.store_type
        self.location = inner.location
        self.calls: list[str] = []

    async def _do(self, name: str, fn: Callable[..., T], *a: Any, **k: Any) -> T:
        self.calls.append(name)
        return fn(*a, **k)

    async def get(self, key: str, *, blobs: bool = True) -> Any:
        return await self._do("get", self.inner.get, key, blobs=blobs)

    async def modify(self, key: str, fn: Any, **k: Any) -> Any:
        return await self._do("modify", self.inner.modify, key, fn, **k)

    async def list(self, query: ListQuery) -> Any:
        return await self._do("list", self.inner.list, query)

    async def count(self) -> int:
        return await self._do("count", self.inner.count)

    async def count_matching(self, query: ListQuery) -> int:
        return await self._do("count_matching", self.inner.count_matching, query)

    async def load_all(self) -> Any:
        return await self._do("load_all", self.inner.load_all)

    async def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        return await self._do("mutate", self.inner.mutate, fn)

    async def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        return await self._do("maintenance", self.inner.maintenance, fn, commit=commit)

    async def close(self) -> None:
        self.calls.append("close")


def test_a_native_twin_serves_reads_and_writes(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    twin = _Twin(sync.index)
    monkeypatch.setattr(sync.index, "async_twin", lambda: twin)

    async def main() -> None:
        async with AsyncSessionStore(sync) as store:
            assert store.native
            await store.put(KEY, {"sessionId": "s1", "label": "L"})
            assert await store.get(KEY, fields=["label"]) == {"label": "L"}
            page = await store.list(search="s1", with_total=True)
            assert [r["key"] for r in page.rows] == [KEY] and page.total == 1
            assert await store.count() == 1
            assert list(await store.load_all()) == [KEY]

    run(main())
    assert twin.calls == ["modify", "get", "list", "count_matching", "count", "load_all", "close"]
