"""Transcript appends under concurrency, a full disk and kill -9: exact post-conditions.

Children are forked (nothing is open in the parent while they run) and open their own store.
After every scenario the whole transcript must parse line by line, form one parent chain,
hold every acknowledged entry, and agree with the index's ``messageCount`` (SQLite) and with
the transcript's own checkpointed count (both backends).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import re
import resource
import select
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import SessionStore, StorageFullError

pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="needs the fork start method"
)

KEY = "agent:main:main"
HEX8 = re.compile(r"^[0-9a-f]{8}$")
CTX = mp.get_context("fork")


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
    state_dir: Path, backend: str, tag: int, count: int, start: Any, results: Any
) -> None:
    try:
        store = _open(state_dir, backend)
        try:
            transcript = store.transcript(KEY)
            if not start.wait(30):
                raise TimeoutError("start signal never came")
            ids = [
                transcript.append({"role": "user", "content": f"w{tag}-{i:03d}", "w": tag})
                for i in range(count)
            ]
        finally:
            store.close()
        results.put(("ok", tag, ids))
    except BaseException:
        results.put(("error", tag, traceback.format_exc()))


def test_four_processes_append_to_one_transcript(state_dir: Path, backend: str) -> None:
    workers, per_worker = 4, 250
    path = _create(state_dir, backend, KEY, "sess-conc")
    start, results = CTX.Event(), CTX.Queue()
    procs = [
        CTX.Process(
            target=_append_worker, args=(state_dir, backend, tag, per_worker, start, results)
        )
        for tag in range(workers)
    ]
    for p in procs:
        p.start()
    start.set()
    outcomes = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=90))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [o[2] for o in outcomes if o[0] != "ok"]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in procs] == [0] * workers
    returned = {tag: ids for _, tag, ids in outcomes}

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


# --- a full disk (EFBIG) ---------------------------------------------------------------------


def _efbig_worker(state_dir: Path, backend: str, limit: int, conn: Any) -> None:
    try:
        ignored = signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
        store = _open(state_dir, backend)
        transcript = store.transcript(KEY)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            entry_id = transcript.append({"role": "user", "content": "z" * 20_000})
        except StorageFullError as exc:
            conn.send(("full", ignored, str(exc)))
        except BaseException as exc:
            conn.send(("other", ignored, f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("appended", ignored, entry_id))
    except BaseException:
        conn.send(("error", None, traceback.format_exc()))
    finally:
        conn.close()


@pytest.mark.parametrize("room", [0, 100], ids=["at-limit", "partial-write"])
def test_efbig_leaves_last_complete_record(state_dir: Path, backend: str, room: int) -> None:
    path = _create(state_dir, backend, KEY, "sess-full")
    with _open(state_dir, backend) as store:
        transcript = store.transcript(KEY)
        for i in range(3):
            transcript.append({"role": "user", "content": f"before {i}"})
    before = path.read_bytes()
    parent_conn, child_conn = CTX.Pipe(duplex=False)
    proc = CTX.Process(
        target=_efbig_worker, args=(state_dir, backend, len(before) + room, child_conn)
    )
    proc.start()
    child_conn.close()
    assert parent_conn.poll(60), "the child reported nothing"
    outcome, sigxfsz_ignored, detail = parent_conn.recv()
    proc.join(30)
    assert outcome == "full", detail
    assert sigxfsz_ignored is True
    assert "cannot append" in detail
    assert proc.exitcode == 0
    assert path.read_bytes() == before  # truncated back to the last complete record
    with _open(state_dir, backend) as store:
        _assert_index(store, KEY, path, 3)
        new_id = store.transcript(KEY).append({"role": "user", "content": "after"})
        entries = _parse_file(path)
        _assert_chain(entries, "sess-full")
        assert entries[-1]["id"] == new_id
        _assert_index(store, KEY, path, 4)


# --- kill -9 during appends ------------------------------------------------------------------


def _kill_worker(state_dir: Path, backend: str, key: str, size: int, wfd: int) -> None:
    """Append forever, writing each acknowledged entry id to the pipe."""
    store = _open(state_dir, backend)
    transcript = store.transcript(key)
    os.write(wfd, b"ready\n")
    payload = "k" * size
    n = 0
    while True:
        entry_id = transcript.append({"role": "user", "content": payload, "n": n})
        os.write(wfd, entry_id.encode() + b"\n")
        n += 1


def _read_some(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "the child went silent"
    return os.read(fd, 1 << 16)


def _append_then_kill(
    state_dir: Path, backend: str, key: str, size: int, delay: float
) -> tuple[list[str], int | None]:
    """Run an appender, SIGKILL it ``delay`` seconds after it is ready; its acked ids."""
    rfd, wfd = os.pipe()
    proc = CTX.Process(target=_kill_worker, args=(state_dir, backend, key, size, wfd))
    proc.start()
    os.close(wfd)
    buf = b""
    try:
        while b"ready\n" not in buf:
            chunk = _read_some(rfd, 30)
            assert chunk, f"the child died before it was ready (exit code {proc.exitcode})"
            buf += chunk
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        while chunk := _read_some(rfd, 30):
            buf += chunk
    finally:
        os.close(rfd)
        if proc.is_alive():
            proc.kill()
            proc.join()
    lines = buf.split(b"\n")
    assert lines[0] == b"ready"
    assert lines[-1] == b""  # ids are written whole (pipe writes under PIPE_BUF are atomic)
    return [line.decode() for line in lines[1:-1]], proc.exitcode


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
