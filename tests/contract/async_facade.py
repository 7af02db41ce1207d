"""A synchronous face over ``AsyncSessionStore``, so the contract suite runs through it.

Every call is a coroutine of the async store, run on an event loop in a thread of its own
and waited for: the tests see the contract exactly as the async API delivers it. Plain
attributes (``paths``, ``state_dir``, ``agent_id``) are the wrapped store's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sessionstore import AsyncSessionStore, AsyncTranscript, SessionStore

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncTranscript:
    def __init__(self, transcript: AsyncTranscript, loop: LoopThread) -> None:
        self._t = transcript
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._t, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr
        return lambda *a, **k: self._loop.run(attr(*a, **k))


class SyncFacade:
    """Looks like a ``SessionStore``; every method goes through ``AsyncSessionStore``."""

    def __init__(self, store: SessionStore, loop: LoopThread) -> None:
        self.astore = AsyncSessionStore(store)
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.astore, name, None)
        if attr is None or not asyncio.iscoroutinefunction(attr):
            return getattr(self.astore.sync, name)
        if name == "transcript":
            return lambda *a, **k: SyncTranscript(self._loop.run(attr(*a, **k)), self._loop)
        return lambda *a, **k: self._loop.run(attr(*a, **k))

    def __enter__(self) -> SyncFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
