"""The contract suite through ``AsyncSessionStore``, on every backend of ``backend``.

The ``Test*`` classes of ``test_contract.py`` that take ``store`` run again here with a
``store`` whose every call is a coroutine of the async facade (``async_facade.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from async_facade import LoopThread, SyncFacade
from test_contract import (  # noqa: F401 - collected here a second time, through the facade
    TestBasics,
    TestClose,
    TestDelete,
    TestDeliveryContext,
    TestKeys,
    TestLegacyVariants,
    TestList,
    TestModelFields,
    TestMutate,
    TestRoundTrip,
    TestUpdate,
    listed,
)
from test_fields import (  # noqa: F401
    test_fields_must_be_names,
    test_get_returns_only_the_fields_that_exist,
    test_writes_return_the_projection_and_store_everything,
)

from sessionstore import SessionStore


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def store(store: SessionStore, loop_thread: LoopThread) -> Iterator[SyncFacade]:
    """conftest's store (every backend of ``backend``), used only through the async API."""
    facade = SyncFacade(store, loop_thread)
    # postgres runs the suite on its native twin (psycopg's asyncio pool), the rest in threads
    assert facade.astore.native == (store.store_type == "postgres")
    try:
        yield facade
    finally:
        facade.close()
