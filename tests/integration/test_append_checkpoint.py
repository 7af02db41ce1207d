"""An append starts from the checkpoint its handle committed last, only while that is safe.

On SQLite a handle remembers the checkpoint its last append committed and, when the file
ends exactly where that checkpoint does (nothing was appended since), starts from it
instead of loading the stored one. Whatever happened to the file in between (a gateway's
append, a rewrite in place, a failed commit), ``messageCount`` must stay the file's count.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from gateway_files import GatewayWriter
from sessionstore import SessionStore, SessionStoreError
from sessionstore.index import sqlite as sq
from sessionstore.transcripts import jsonl

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


# --- the hex runs of the last block -----------------------------------------------------------


def test_hex_runs_hold_every_8_hex_id_of_the_bytes() -> None:
    rng = random.Random(5)
    alphabet = b'0123456789abcdefABCxyz -:"{}\n\\'
    for _ in range(200):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        runs = jsonl._hex_runs(data)
        assert set(runs) <= set(b"0123456789abcdef ")
        needles = {data[i : i + 8] for i in range(len(data) - 7)}
        needles |= {rng.randbytes(4).hex().encode() for _ in range(20)}
        for needle in needles:
            if len(needle) == 8 and all(c in b"0123456789abcdef" for c in needle):
                assert (needle in runs) == (needle in data), (data, needle)


def _draws(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    real = os.urandom
    draws = iter(bytes.fromhex(h) for h in ids)
    monkeypatch.setattr(os, "urandom", lambda n: next(draws) if n == 4 else real(n))


def test_kept_runs_still_avoid_every_id_in_the_last_block(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = store.transcript(KEY)
    t.append(_user("before: bbbbbbbb"))
    for i in range(jsonl.KEEP_RUNS_AFTER + 2):
        t.append(_user(f"turn {i}"))
    t.append(_user("mentions dddddddd"))  # written while the runs are kept
    near = t._near_end
    assert near is not None and near.runs is not None
    _draws(monkeypatch, "bbbbbbbb", "dddddddd", "eeeeeeee")
    assert t.append(_user("next")) == "eeeeeeee"
    monkeypatch.undo()
    assert _count(store) == jsonl.KEEP_RUNS_AFTER + 5 == t.message_count()


def test_kept_runs_are_dropped_when_someone_else_writes(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = store.transcript(KEY)
    for i in range(jsonl.KEEP_RUNS_AFTER + 3):
        t.append(_user(f"turn {i}"))
    near = t._near_end
    assert near is not None and near.runs is not None
    gw = GatewayWriter(t.path, SID)
    gw.write([gw.message("the gateway says ffffffff")[1]])
    _draws(monkeypatch, "ffffffff", "eeeeeeee")
    assert t.append(_user("next")) == "eeeeeeee"
    monkeypatch.undo()
    assert _count(store) == jsonl.KEEP_RUNS_AFTER + 5 == t.message_count()


def test_kept_runs_are_dropped_when_another_handle_appends(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the other handle saves its checkpoint: this one then reads nothing new, and must
    # still see the other's line in the block
    t = store.transcript(KEY)
    for i in range(jsonl.KEEP_RUNS_AFTER + 3):
        t.append(_user(f"turn {i}"))
    near = t._near_end
    assert near is not None and near.runs is not None
    store.transcript(KEY).append(_user("another handle says ffffffff"))
    _draws(monkeypatch, "ffffffff", "eeeeeeee")
    assert t.append(_user("next")) == "eeeeeeee"
    monkeypatch.undo()
    assert _count(store) == jsonl.KEEP_RUNS_AFTER + 5 == t.message_count()
