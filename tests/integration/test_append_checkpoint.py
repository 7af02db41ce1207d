"""An append starts from the checkpoint its handle committed last, only while that is safe.

On SQLite a handle remembers the checkpoint its last append committed and, when the file
ends exactly where that checkpoint does (nothing was appended since), starts from it
instead of loading the stored one. Whatever happened to the file in between (a gateway's
append, a rewrite in place, a failed commit), ``messageCount`` must stay the file's count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from gateway_files import GatewayWriter
from sessionstore import SessionStore, SessionStoreError
from sessionstore.index import sqlite as sq

KEY = "agent:main:telegram:direct:8123456789"
SID = "6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44"


@pytest.fixture
def store(state_dir: Path) -> Iterator[SessionStore]:
    s = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    s.put(KEY, {"sessionId": SID})
    yield s
    s.close()


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "timestamp": 1_774_948_442_100}


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    load = sq.SqliteCheckpoints.load

    def counting(self: sq.SqliteCheckpoints, path: str, dev: int, ino: int) -> Any:
        calls.append(path)
        return load(self, path, dev, ino)

    monkeypatch.setattr(sq.SqliteCheckpoints, "load", counting)
    return calls


def _count(store: SessionStore) -> int:
    entry = store.get(KEY)
    assert entry is not None
    return int(entry["messageCount"])


def test_consecutive_appends_start_from_the_committed_checkpoint(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = store.transcript(KEY)
    t.append(_user("one"))
    loads = _count_loads(monkeypatch)
    for i in range(3):
        t.append(_user(f"more {i}"))
    assert loads == []
    assert _count(store) == 4 == t.message_count()
    # a new handle knows nothing: it loads
    store.transcript(KEY).append(_user("five"))
    assert len(loads) == 1
    assert _count(store) == 5 == t.message_count()


def test_a_gateway_append_in_between_is_counted(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = store.transcript(KEY)
    t.append(_user("one"))
    gw = GatewayWriter(t.path, SID)
    gw.write([gw.message("from the gateway")[1], gw.message("and again")[1]])
    loads = _count_loads(monkeypatch)
    t.append(_user("two"))
    assert len(loads) == 1
    assert _count(store) == 4 == t.message_count()


def test_a_rewrite_in_place_of_the_same_size_is_caught(store: SessionStore) -> None:
    t = store.transcript(KEY)
    t.append(_user("one"))
    t.append(_user("two"))
    data = t.path.read_bytes()
    lines = data.split(b"\n")
    # the last line becomes an entry of another type, byte for byte as long: not a message
    lines[-2] = lines[-2].replace(b'"type":"message"', b'"type":"mesSage"', 1)
    changed = b"\n".join(lines)
    assert len(changed) == len(data) and changed != data
    t.path.write_bytes(changed)
    t.append(_user("three"))
    assert _count(store) == 2 == t.message_count()


def test_a_failed_commit_forgets_the_checkpoint(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = store.transcript(KEY)
    t.append(_user("one"))

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise SessionStoreError("the index refused")

    with monkeypatch.context() as patched:
        patched.setattr(sq.SqliteIndex, "modify_counters", refuse)
        with pytest.raises(SessionStoreError, match="refused"):
            t.append(_user("lost"))
    loads = _count_loads(monkeypatch)
    t.append(_user("two"))
    assert len(loads) == 1
    assert _count(store) == 2 == t.message_count()


def test_an_idempotent_append_looks_its_key_up_in_the_index(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = store.transcript(KEY)
    first = t.append(_user("one"), idempotency_key="k-1")
    other = store.transcript(KEY)  # another handle (or process) appends meanwhile
    second = other.append(_user("two"), idempotency_key="k-2")
    loads = _count_loads(monkeypatch)
    assert t.append(_user("two again"), idempotency_key="k-2") == second
    assert t.append(_user("one again"), idempotency_key="k-1") == first
    assert len(loads) == 2
    assert _count(store) == 2 == t.message_count()
