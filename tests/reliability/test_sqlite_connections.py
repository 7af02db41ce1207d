"""SQLite connections: one per live thread, released when its thread ends (issue 11, defect 8).

A gateway that serves each request on a short-lived thread must not accumulate a
connection (two descriptors: the database and its WAL) per thread it ever ran, and a
process with a low descriptor limit must keep working.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from hermetic import clean_env
from sessionstore import SessionStore, SessionStoreError
from sessionstore.index.sqlite import IDLE_CONNECTIONS, SqliteIndex

KEY = "agent:main:main"

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc/self/fd"
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def bump(entry: Any) -> dict[str, int]:
    return {"n": entry["n"] + 1}


def run_threads(total: int, batch: int, work: Callable[[], None]) -> list[BaseException]:
    """Run ``work`` on ``total`` threads, ``batch`` at a time; return what they raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    for start in range(0, total, batch):
        threads = [threading.Thread(target=target) for _ in range(min(batch, total - start))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return errors


@pytest.fixture
def sqlite_store(state_dir: Path) -> Any:
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        s.put(KEY, {"sessionId": "s", "n": 0})
        yield s


def test_1000_short_lived_threads_leave_a_bounded_number_of_descriptors(
    sqlite_store: SessionStore,
) -> None:
    store = sqlite_store
    store.get(KEY)  # the main thread's connection exists before the baseline
    before = open_fds()

    def work() -> None:
        assert store.get(KEY) is not None
        store.update(KEY, bump)

    errors = run_threads(1000, 8, work)
    assert errors == []
    entry = store.get(KEY)
    assert entry is not None and entry["n"] == 1000  # every update counted, none lost
    index = store.index
    assert isinstance(index, SqliteIndex)
    # The main thread's connection and a few idle ones for the next threads; the rest closed.
    assert len(index._conns) <= 1 + IDLE_CONNECTIONS
    # A bound set by the 8 threads alive at a time, not by the 1,000 that ran: SQLite keeps
    # the database descriptor of a closed connection until no connection of the process
    # holds a lock on the file, and reuses it for the next open.
    assert open_fds() - before <= 2 * 8


def test_a_live_thread_keeps_its_connection_and_close_closes_every_one(
    sqlite_store: SessionStore,
) -> None:
    store = sqlite_store
    index = store.index
    assert isinstance(index, SqliteIndex)
    main = index.connection()
    started, stop = threading.Event(), threading.Event()
    seen: list[apsw.Connection] = []

    def worker() -> None:
        store.update(KEY, bump)
        seen.append(index.connection())
        seen.append(index.connection())  # the same one on every call of the thread
        started.set()
        stop.wait(30)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert started.wait(30)
        assert seen[0] is seen[1] and seen[0] is not main
        assert len(index._conns) == 2 and index._idle == []
        store.close()
        for conn in (main, seen[0]):
            with pytest.raises(apsw.ConnectionClosedError):
                conn.filename  # noqa: B018
    finally:
        stop.set()
        t.join()
    with pytest.raises(SessionStoreError, match="closed"):
        store.get(KEY)


def test_a_child_with_64_descriptors_survives_300_short_lived_threads(state_dir: Path) -> None:
    child = textwrap.dedent(
        """
        import resource, sys, threading
        import sessionstore

        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        store = sessionstore.open_store(state_dir=sys.argv[1], store_type="sqlite")
        store.put("k", {"sessionId": "s", "n": 0})
        failures = []

        def work():
            try:
                store.get("k")
                store.update("k", lambda e: {"n": e["n"] + 1})
            except Exception as exc:
                failures.append(repr(exc))

        for _ in range(300 // 4):
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        print(len(failures), store.get("k")["n"], failures[:1])
        store.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split(maxsplit=2)[:2] == ["0", "300"], out.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_with_live_thread_connections(sqlite_store: SessionStore) -> None:
    """A child neither closes nor uses its parent's connections, even when it ends threads."""
    store = sqlite_store
    index = store.index
    assert isinstance(index, SqliteIndex)
    main = index.connection()
    started, stop = threading.Event(), threading.Event()
    held: list[apsw.Connection] = []

    def worker() -> None:
        store.update(KEY, bump)
        held.append(index.connection())
        started.set()
        stop.wait(60)
        store.update(KEY, bump)  # the parent's thread still works after the fork

    t = threading.Thread(target=worker)
    t.start()
    assert started.wait(30)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the worker thread does not exist here
            code = 3
            try:
                # New threads first: the forking thread never notices the fork itself.
                errors = run_threads(20, 4, lambda: store.update(KEY, bump) and None)
                store.close()
                # Inherited connections are abandoned, never closed: closing one could
                # checkpoint or unlock on behalf of the parent.
                inherited_open = True
                for conn in (main, held[0]):
                    try:
                        conn.filename  # noqa: B018
                    except apsw.ConnectionClosedError:
                        inherited_open = False
                code = 0 if not errors and inherited_open else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        t.join()
    store.update(KEY, bump)
    entry = store.get(KEY)
    # 1 before the fork, 20 in the child, 1 by the worker after it, 1 here
    assert entry is not None and entry["n"] == 23
    assert main.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
