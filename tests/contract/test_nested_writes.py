"""A write started from inside another write's callback is refused on every backend.

Acknowledging it would be a lie: the outer write replaces the store with what its callback
saw. Another thread's write during the callback is not nested: it waits its turn.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sessionstore import SessionStore, SessionStoreError

KEY = "agent:main:main"
OTHER = "agent:main:other"
NESTED = r"inside another write's callback"


def _nested_writes(store: SessionStore) -> dict[str, Any]:
    return {
        "put": lambda: store.put(OTHER, {"sessionId": "o", "label": "inner"}),
        "update": lambda: store.update(KEY, {"label": "inner"}),
        "delete": lambda: store.delete(KEY),
        "mutate": lambda: store.mutate(lambda entries: entries.pop(KEY, None)),
    }


@pytest.mark.parametrize("inner", ["put", "update", "delete", "mutate"])
def test_a_write_inside_an_update_callback_is_refused(store: SessionStore, inner: str) -> None:
    store.put(KEY, {"sessionId": "s", "label": "before"})
    errors: list[BaseException] = []

    def fn(entry: Any) -> dict[str, Any]:
        try:
            _nested_writes(store)[inner]()
        except SessionStoreError as exc:
            errors.append(exc)
        return {"label": "outer"}

    out = store.update(KEY, fn)
    assert len(errors) == 1, "the nested write was acknowledged"
    assert "inside another write's callback" in str(errors[0])
    assert out is not None and out["label"] == "outer"
    assert store.get(KEY)["label"] == "outer"  # type: ignore[index]
    assert store.get(OTHER) is None
    assert store.count() == 1


@pytest.mark.parametrize("inner", ["put", "update", "delete", "mutate"])
def test_a_write_inside_a_mutate_callback_is_refused_and_nothing_is_saved(
    store: SessionStore, inner: str
) -> None:
    store.put(KEY, {"sessionId": "s", "label": "before"})

    def fn(entries: dict[str, Any]) -> None:
        entries[KEY]["label"] = "outer"
        _nested_writes(store)[inner]()

    with pytest.raises(SessionStoreError, match=NESTED):
        store.mutate(fn)
    assert store.get(KEY)["label"] == "before"  # type: ignore[index]
    assert store.get(OTHER) is None


def test_a_write_inside_a_put_callback_is_refused_and_the_store_still_works(
    store: SessionStore,
) -> None:
    store.put(KEY, {"sessionId": "s", "n": 1})

    def fn(entry: Any) -> dict[str, Any]:
        store.put(OTHER, {"sessionId": "o"})
        return {"n": 2}

    with pytest.raises(SessionStoreError, match=NESTED):
        store.update(KEY, fn)
    assert store.get(KEY)["n"] == 1  # type: ignore[index]
    assert store.get(OTHER) is None
    # the lock was given back: later writes (from this thread) work
    store.put(OTHER, {"sessionId": "o"})
    assert store.update(KEY, {"n": 3})["n"] == 3  # type: ignore[index]


def test_another_threads_write_during_a_callback_waits_and_lands(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "s", "label": "before"})
    results: list[Any] = []

    def other_thread() -> None:
        try:
            results.append(store.put(OTHER, {"sessionId": "o", "label": "from thread"}))
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=other_thread)

    def fn(entry: Any) -> dict[str, Any]:
        thread.start()
        return {"label": "outer"}

    store.update(KEY, fn)
    thread.join(60)
    assert len(results) == 1 and isinstance(results[0], dict), results
    assert store.get(KEY)["label"] == "outer"  # type: ignore[index]
    assert store.get(OTHER)["label"] == "from thread"  # type: ignore[index]
