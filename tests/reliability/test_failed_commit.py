"""A commit whose WAL sync fails: its outcome is made definite, or reported as unknown.

With ``durability="power"`` SQLite syncs the WAL at every commit. When that sync fails the
transaction is rolled back in memory, but its frames, commit mark included, are in the WAL
file already: a process killed right after would have them recovered by the next opener,
and a caller told "nothing was written" would be wrong. The store voids them with one more
write before raising; only when that write fails too does it raise
:class:`OutcomeUnknownError`. Each child here is killed (SIGKILL) right after the failed
call, before any other write could void the frames by chance.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from faultkit import shims
from faultkit.harness import Acks, open_variant, spawn, unresolved

from sessionstore import OutcomeUnknownError, SessionStoreError


def _fail_then_die(acks: Acks, state_dir: str, op: str, count: int) -> None:
    shims.install(Path(state_dir), os_layer=False)
    store = open_variant(Path(state_dir), "sqlite-power")
    # A first write starts the WAL (its header has a sync of its own): the fault then hits
    # the sync that makes the next commit durable, after its frames are written.
    store.put("agent:main:w", {"sessionId": "c0000000-0000-4000-8000-000000000000"})
    shims.arm(shims.FaultPlan(kinds=frozenset({"sync"}), at=1, count=count))
    try:
        if op == "put":
            store.put("agent:main:b", {"sessionId": "b0000000-0000-4000-8000-000000000000"})
        else:
            store.transcript("agent:main:a").append({"role": "user", "content": "lost?"})
    except SessionStoreError as exc:
        acks.send("raised", type=type(exc).__name__, message=str(exc))
    else:
        acks.send("returned")
    os.kill(os.getpid(), signal.SIGKILL)


def _run(state_dir: Path, op: str, count: int) -> dict[str, Any]:
    with open_variant(state_dir, "sqlite-power") as store:
        store.put("agent:main:a", {"sessionId": "a0000000-0000-4000-8000-000000000000"})
        store.transcript("agent:main:a").append({"role": "user", "content": "kept"})
    with spawn(_fail_then_die, str(state_dir), op, count) as child:
        child.drain(60)
        child.join(30)
    assert child.status == -signal.SIGKILL, child.records
    (record,) = child.records
    return record


def _lines(state_dir: Path) -> list[str]:
    with open_variant(state_dir, "sqlite-power") as store:
        return [m["content"] for m in store.transcript("agent:main:a").messages()]


@pytest.mark.parametrize("op", ["put", "append"])
def test_a_failed_sync_is_voided_before_the_call_raises(tmp_path: Path, op: str) -> None:
    record = _run(tmp_path, op, count=1)
    assert record["k"] == "raised"
    assert record["type"] != "OutcomeUnknownError", record["message"]
    with open_variant(tmp_path, "sqlite-power") as store:
        assert store.get("agent:main:b") is None  # the failed put did not come back
        assert store.get("agent:main:a")["messageCount"] == 1
    assert _lines(tmp_path) == ["kept"]  # the failed append's line was taken back


@pytest.mark.parametrize("op", ["put", "append"])
def test_when_the_void_write_fails_too_the_outcome_is_unknown(tmp_path: Path, op: str) -> None:
    record = _run(tmp_path, op, count=0)  # every sync fails until the process dies
    assert record == {"k": "raised", "type": OutcomeUnknownError.__name__, **record}
    assert "may or may not have been applied" in record["message"]
    with open_variant(tmp_path, "sqlite-power") as store:
        count = store.get("agent:main:a")["messageCount"]
    # Either outcome is allowed, but the index never counts a line the file lacks...
    assert count <= len(_lines(tmp_path))
    # ... and the next append counts the kept line from the file.
    with open_variant(tmp_path, "sqlite-power") as store:
        store.transcript("agent:main:a").append({"role": "user", "content": "next"})
        assert store.get("agent:main:a")["messageCount"] == len(_lines(tmp_path))
        assert not unresolved(store)
