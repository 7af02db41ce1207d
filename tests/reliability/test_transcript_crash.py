"""Transcript appends under concurrency and kill -9: exact post-conditions.

A full disk during an append is part of scenario 3 (``test_disk_full.py``).

Children are forked with ``faultkit.harness.spawn`` (nothing is open in the parent while
they run), open their own store and acknowledge each append over their pipe after it
returns.
After every scenario the whole transcript must parse line by line, form one parent chain,
hold every acknowledged entry, and agree with the index's ``messageCount`` (SQLite) and with
the transcript's own checkpointed count (both backends).
"""

from __future__ import annotations

import json
import random
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from faultkit.harness import Acks, Child, Gate, join_all, spawn

import sessionstore
from sessionstore import SessionStore

# The .jsonl file engine: a postgres store keeps its transcripts in its table (tested in
# tests/postgres/test_table_transcripts.py), so these run on the file-backed stores.
pytestmark = pytest.mark.file_transcripts

KEY = "agent:main:main"
HEX8 = re.compile(r"^[0-9a-f]{8}$")


def _open(state_dir: Path, backend: str) -> SessionStore:
    return sessionstore.open_store(state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]


def _create(state_dir: Path, backend: str, key: str, session_id: str) -> Path:
    with _open(state_dir, backend) as store:
        store.put(key, {"sessionId": session_id})
        return store.transcript(key).path


def _parse_file(path: Path) -> list[dict[str, Any]]:
    """Every line as JSON: fails on any corrupt line or a file not ending at a record."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path} does not end at a complete record: {data[-80:]!r}"
    out = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} of {path} is corrupt: {line[:120]!r}")
        assert isinstance(value, dict), f"line {number} is not an object"
        out.append(value)
    return out


def _assert_chain(entries: list[dict[str, Any]], session_id: str) -> None:
    header = entries[0]
    assert (header["type"], header["version"], header["id"]) == ("session", 3, session_id)
    assert all(e.get("type") != "session" for e in entries[1:])
    previous = None
    for number, entry in enumerate(entries[1:], 2):
        assert HEX8.match(entry["id"]), (number, entry["id"])
        assert entry["parentId"] == previous, f"line {number}: parent chain broken"
        previous = entry["id"]


def _message_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in entries if e.get("type") == "message"]


def _assert_index(store: SessionStore, key: str, path: Path, messages: int) -> None:
    """The transcript's checkpointed count, and on SQLite the index, agree with the file.

    On ``sessions.json`` appends leave the index alone (no whole-file rewrite per message).
    """
    tail = store.transcript(key).tail(1)
    assert [m["__openclaw"]["seq"] for m in tail] == ([messages] if messages else [])
    entry = store.get(key)
    assert entry is not None
    if store.store_type == "json":
        return
    assert entry["messageCount"] == messages
    assert entry["transcriptBytes"] == path.stat().st_size
    rows = [r for r in store.list().rows if r["key"] == key]
    assert [r["messageCount"] for r in rows] == [messages]


# --- concurrent appends ----------------------------------------------------------------------


def _append_worker(
    acks: Acks, gate: Gate, state_dir: Path, backend: str, tag: int, count: int
) -> None:
    store = _open(state_dir, backend)
    try:
        transcript = store.transcript(KEY)
        if not gate.wait(30):
            raise TimeoutError("start signal never came")
        for i in range(count):
            entry_id = transcript.append({"role": "user", "content": f"w{tag}-{i:03d}", "w": tag})
            acks.send("ack", id=entry_id)
    finally:
        store.close()


@pytest.mark.stress
def test_four_processes_append_to_one_transcript(state_dir: Path, backend: str) -> None:
    workers, per_worker = 4, 250
    path = _create(state_dir, backend, KEY, "sess-conc")
    gate = Gate()
    children = [
        spawn(_append_worker, gate, state_dir, backend, tag, per_worker) for tag in range(workers)
    ]
    gate.open()
    join_all(children, 120)
    errors = [c.crash for c in children if c.crash]
    assert not errors, "\n".join(str(e) for e in errors)
    assert [c.status for c in children] == [0] * workers
    returned = {tag: [r["id"] for r in c.of("ack")] for tag, c in enumerate(children)}

    entries = _parse_file(path)  # every line parses: no interleaved bytes
    assert len(entries) == 1 + workers * per_worker
    _assert_chain(entries, "sess-conc")
    ids = _message_ids(entries)
    assert len(ids) == workers * per_worker
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == sorted(i for tag_ids in returned.values() for i in tag_ids)
    for tag in range(workers):
        mine = [e for e in entries[1:] if e["message"]["w"] == tag]
        assert [e["message"]["content"] for e in mine] == [
            f"w{tag}-{i:03d}" for i in range(per_worker)
        ]
        assert [e["id"] for e in mine] == returned[tag]
    with _open(state_dir, backend) as store:
        _assert_index(store, KEY, path, workers * per_worker)
        tail = store.transcript(KEY).tail(3)
        assert [m["__openclaw"]["seq"] for m in tail] == [998, 999, 1000]
        assert [m["__openclaw"]["id"] for m in tail] == ids[-3:]


# --- kill -9 during appends ------------------------------------------------------------------


def _kill_worker(acks: Acks, state_dir: Path, backend: str, key: str, size: int) -> None:
    """Append forever, acknowledging each entry id."""
    store = _open(state_dir, backend)
    transcript = store.transcript(key)
    acks.send("ready")
    payload = "k" * size
    n = 0
    while True:
        entry_id = transcript.append({"role": "user", "content": payload, "n": n})
        acks.send("ack", id=entry_id)
        n += 1


def _append_then_kill(
    state_dir: Path, backend: str, key: str, size: int, delay: float
) -> tuple[list[str], int | None]:
    """Run an appender, SIGKILL it ``delay`` seconds after it is ready; its acked ids."""
    child: Child
    with spawn(_kill_worker, state_dir, backend, key, size) as child:
        assert child.wait_for("ready", 30) is not None, f"the child did not start: {child.crash}"
        child.kill_after(delay)
        child.join(30)
    return [r["id"] for r in child.of("ack")], child.status


def _check_after_kill(path: Path, known: list[str], acked: list[str]) -> tuple[list[str], bool]:
    """Right after the kill: complete lines parse; the run's acked ids follow ``known``."""
    raw = path.read_bytes() if path.exists() else b""
    complete, newline, torn = raw.rpartition(b"\n")
    lines = complete.split(b"\n") if newline else []
    entries = [json.loads(line) for line in lines]  # a corrupt complete line fails here
    ids = _message_ids(entries)
    assert ids[: len(known)] == known, "an earlier record changed"
    fresh = ids[len(known) :]
    assert fresh[: len(acked)] == acked, "an acknowledged append is missing"
    # at most one written-but-unacknowledged record (killed before the index commit/ack)
    assert len(fresh) - len(acked) in (0, 1)
    return ids, bool(torn)


def _reopen_and_verify(
    state_dir: Path,
    backend: str,
    key: str,
    session_id: str,
    path: Path,
    must_have: list[str],
    size: int,
) -> list[str]:
    with _open(state_dir, backend) as store:
        transcript = store.transcript(key)
        assert transcript.path == path
        more = [
            transcript.append({"role": "assistant", "content": "x" * size, "after": i})
            for i in range(10)
        ]
        entries = _parse_file(path)
        _assert_chain(entries, session_id)
        ids = _message_ids(entries)
        assert ids[-10:] == more
        assert ids[: len(must_have)] == must_have
        _assert_index(store, key, path, len(ids))
        assert transcript.messages()[-1]["__openclaw"]["seq"] == len(ids)
        assert transcript.skipped == 0
    return ids


@pytest.mark.crash
def test_kill9_during_small_appends(state_dir: Path, backend: str) -> None:
    rng = random.Random(f"small-{backend}")
    path = _create(state_dir, backend, KEY, "sess-kill")
    known: list[str] = []
    all_acked: set[str] = set()
    for _run in range(50):
        acked, exitcode = _append_then_kill(state_dir, backend, KEY, 200, rng.uniform(0.0, 0.04))
        assert exitcode == -signal.SIGKILL
        all_acked.update(acked)
        after_kill, _ = _check_after_kill(path, known, acked)
        known = _reopen_and_verify(state_dir, backend, KEY, "sess-kill", path, after_kill, 200)
    assert all_acked <= set(known)
    assert len(known) > 50 * 10


@pytest.mark.crash
def test_kill9_during_1mb_appends(state_dir: Path) -> None:
    backend, size = "sqlite", 1_000_000
    rng = random.Random("large")
    torn_runs = 0
    for run in range(50):
        key, session_id = f"agent:main:big{run}", f"sess-big-{run}"
        path = _create(state_dir, backend, key, session_id)
        acked, exitcode = _append_then_kill(state_dir, backend, key, size, rng.uniform(0.0, 0.03))
        assert exitcode == -signal.SIGKILL
        after_kill, torn = _check_after_kill(path, [], acked)
        torn_runs += torn
        # the follow-up appends are small: the point is that the file recovers
        ids = _reopen_and_verify(state_dir, backend, key, session_id, path, after_kill, 200)
        assert set(acked) <= set(ids)
        path.unlink()  # keep the disk footprint small; the next run uses its own key
    print(f"torn last lines repaired: {torn_runs}/50")
