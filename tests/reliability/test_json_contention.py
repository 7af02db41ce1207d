"""Writers of a json store get the lock in turn (issue 11, defect 18).

Before the kernel queue every waiter polled ``sessions.json.lock`` with growing sleeps, and
the holder that had just let go usually took it again at once: with 4 processes x 500
updates on a realistic store, writers starved until ``LockTimeoutError``. The first test
forces that interleaving; the others run real contention and check the exact outcome
against what each worker was told (acknowledgements go over a pipe after the call returns).
The full-size run is in the ``slow`` tier (``bench/stress/json_contention.py`` prints its
figures).
"""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import random
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore.bench.generate import generate_state_dir

pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="needs the fork start method"
)

KEY = "agent:main:main"
CTX = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _open(state_dir: Path, timeout_ms: int = 10_000) -> sessionstore.SessionStore:
    return sessionstore.open_store(
        state_dir=state_dir, store_type="json", lock_timeout_ms=timeout_ms
    )


def _append(tag: str) -> Any:
    return lambda entry: {"order": [*entry["order"], tag]}


def _queued_on(directory: Path) -> bool:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _holder(state_dir: Path, holding: Any, go: Any, conn: Connection) -> None:
    try:
        with _open(state_dir, 60_000) as store:

            def first(entry: Any) -> dict[str, Any]:
                holding.set()
                if not go.wait(60):
                    raise TimeoutError("no go")
                return {"order": [*entry["order"], "A1"]}

            store.update(KEY, first)
            store.update(KEY, _append("A2"))  # straight back for the lock
        conn.send("ok")
    except BaseException:
        conn.send(traceback.format_exc())


def _waiter(state_dir: Path, opened: Any, conn: Connection) -> None:
    try:
        with _open(state_dir, 60_000) as store:
            # Opening a json store looks at the lock once (to clean temp files): only
            # after that is a hold of the queue this process's wait for the update.
            opened.set()
            store.update(KEY, _append("B"))
        conn.send("ok")
    except BaseException:
        conn.send(traceback.format_exc())


def test_a_holder_that_comes_straight_back_queues_behind_a_waiting_process(
    state_dir: Path,
) -> None:
    assert CTX is not None
    with _open(state_dir) as store:
        store.put(KEY, {"sessionId": "s", "order": []})
        sessions_dir = store.paths.sessions_dir
    holding, go, opened = CTX.Event(), CTX.Event(), CTX.Event()
    a_out, a_in = CTX.Pipe(duplex=False)
    b_out, b_in = CTX.Pipe(duplex=False)
    a = CTX.Process(target=_holder, args=(state_dir, holding, go, a_in))
    b = CTX.Process(target=_waiter, args=(state_dir, opened, b_in))
    try:
        a.start()
        assert holding.wait(30), "the holder never got the lock"
        b.start()
        assert opened.wait(30), "the waiter never opened the store"
        # Let B reach the queue. (Without one there is nothing to see: the deadline passes
        # and B is left polling, which is the behaviour this test exists to catch.)
        deadline = time.monotonic() + 10
        while not _queued_on(sessions_dir) and time.monotonic() < deadline:
            time.sleep(0.005)
        go.set()
        assert a_out.poll(60) and a_out.recv() == "ok"
        assert b_out.poll(60) and b_out.recv() == "ok"
    finally:
        go.set()
        for p in (a, b):
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
    with _open(state_dir) as store:
        entry = store.get(KEY)
    assert entry is not None
    assert entry["order"] == ["A1", "B", "A2"], "the last holder took the lock back first"


# --- real contention, exact outcome ------------------------------------------------------------


def _worker(
    state_dir: Path, n: int, updates: int, keys: list[str], start: Any, conn: Connection
) -> None:
    try:
        rng = random.Random(f"contention:{n}")
        field = f"stressW{n}"
        with _open(state_dir) as store:
            if not start.wait(60):
                raise TimeoutError("no start signal")
            for i in range(1, updates + 1):
                key = rng.choice(keys)

                def bump(entry: Any, i: int = i) -> dict[str, Any]:
                    return {"stressCount": (entry.get("stressCount") or 0) + 1, field: i}

                try:
                    store.update(key, bump)
                except sessionstore.SessionStoreError as exc:
                    conn.send(("failed", key, i, f"{type(exc).__name__}: {exc}"))
                else:
                    conn.send(("ok", key, i, None))
        conn.send(("done", None, 0, None))
    except BaseException:
        conn.send(("crashed", None, 0, traceback.format_exc()))
    finally:
        conn.close()


def _contend(root: Path, processes: int, updates: int, sessions: int) -> None:
    assert CTX is not None
    state = generate_state_dir(root, sessions=sessions, seed=11, transcripts=True)
    keys = sorted(state.agents["main"].entries)
    start = CTX.Event()
    pipes = [CTX.Pipe(duplex=False) for _ in range(processes)]
    procs = [
        CTX.Process(target=_worker, args=(root, n, updates, keys, start, pipes[n][1]))
        for n in range(processes)
    ]
    for p in procs:
        p.start()
    for _, w in pipes:
        w.close()
    start.set()
    acked: Counter[str] = Counter()
    last: dict[tuple[str, int], int] = {}
    failures: list[str] = []
    try:
        for n, (r, _) in enumerate(pipes):
            while True:
                status, key, i, info = r.recv()
                if status == "done":
                    break
                assert status != "crashed", info
                if status == "ok":
                    acked[key] += 1
                    last[(key, n)] = i
                else:
                    failures.append(info)
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
    assert failures == [], f"{len(failures)} writes failed, e.g. {failures[:3]}"
    assert sum(acked.values()) == processes * updates
    with _open(root) as store:
        final = store.load_all()
        assert store.check() == []
    for key in keys:
        entry = final[key]
        assert (entry.get("stressCount") or 0) == acked[key], key
        for n in range(processes):
            assert entry.get(f"stressW{n}") == last.get((key, n)), (key, n)
    sessions_dir = state.agents["main"].json_path.parent
    leftovers = [p.name for p in sessions_dir.iterdir() if p.name.endswith((".lock", ".tmp"))]
    assert leftovers == []


def test_four_processes_contending_lose_and_fail_nothing(tmp_path: Path) -> None:
    _contend(tmp_path / "state", processes=4, updates=50, sessions=40)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_four_processes_times_500_updates_on_a_realistic_store(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    expr = str(request.config.getoption("-m") or "")
    if not (("slow" in expr and "not slow" not in expr) or os.environ.get("SESSIONSTORE_SLOW")):
        pytest.skip("slow tier: select with -m slow (or SESSIONSTORE_SLOW=1)")
    _contend(tmp_path / "state", processes=4, updates=500, sessions=300)
