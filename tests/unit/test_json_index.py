"""The json backend's cache, its lock across fork, and ownership of ``sessions.json.lock``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import LockLostError, SessionStore
from sessionstore.files import atomic_write, dumps_pretty
from sessionstore.lockfile import process_start_time

KEY = "agent:main:main"


@pytest.fixture
def store(state_dir: Path) -> Iterator[SessionStore]:
    s = sessionstore.open_store(state_dir=state_dir, store_type="json")
    try:
        yield s
    finally:
        s.close()


def _json_path(store: SessionStore) -> Path:
    path = store.index.path
    assert path is not None
    return path


def _lock_path(store: SessionStore) -> Path:
    return _json_path(store).with_name("sessions.json.lock")


# --- the read cache (issue 11, defect 6) -----------------------------------------------------


def _feed_fifo(fifo: Path, data: bytes, replacement: Path, done: threading.Event) -> None:
    # Open the write end once the reader has opened the FIFO, hand it the old bytes, and
    # replace the path with the new file before the reader sees end-of-file: the replace
    # lands between the read and anything the reader does after it.
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.001)
    try:
        os.set_blocking(fd, True)
        os.write(fd, data)
        os.replace(replacement, fifo)
    finally:
        os.close(fd)
        done.set()


def test_a_file_replaced_while_it_is_read_is_not_served_stale(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "s", "label": "old"})
    path = _json_path(store)
    old = path.read_bytes()
    # What a gateway writes next (same length, so that only the identity can tell them apart).
    newer = json.loads(old)
    newer[KEY]["label"] = "new"
    replacement = path.with_name("sessions.json.gateway")
    atomic_write(replacement, dumps_pretty(newer))
    assert len(replacement.read_bytes()) == len(old)
    path.unlink()
    os.mkfifo(path, 0o600)
    done = threading.Event()
    feeder = threading.Thread(target=_feed_fifo, args=(path, old, replacement, done))
    feeder.start()
    try:
        first = store.get(KEY)
    finally:
        feeder.join(30)
    assert done.is_set()
    assert first is not None and first["label"] == "old"  # what the file held when read
    assert path.is_file()
    again = store.get(KEY)
    assert again is not None and again["label"] == "new", "the old bytes were cached as new"


def test_cache_serves_repeated_reads_and_sees_a_replace(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "s", "label": "one"})
    assert store.get(KEY)["label"] == "one"  # type: ignore[index]
    snap = store.index._cache  # type: ignore[attr-defined]
    assert store.get(KEY)["label"] == "one"  # type: ignore[index]
    assert store.index._cache is snap  # type: ignore[attr-defined]  # served from the cache
    path = _json_path(store)
    data = json.loads(path.read_bytes())
    data[KEY]["label"] = "two"
    atomic_write(path, dumps_pretty(data))  # a gateway's write
    assert store.get(KEY)["label"] == "two"  # type: ignore[index]


# --- fork (issue 11, defect 16) --------------------------------------------------------------


def _wait_child(pid: int, what: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung: {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def _held_by_other_thread(
    acquire: Callable[[threading.Event, threading.Event], None],
) -> Iterator[None]:
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=acquire, args=(held, release))
    holder.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(30)


def _hold_cache_guard(store: SessionStore) -> Callable[[threading.Event, threading.Event], None]:
    def run(held: threading.Event, release: threading.Event) -> None:
        with store.index._cache_guard:  # type: ignore[attr-defined]
            held.set()
            release.wait(30)

    return run


def _hold_write_lock(store: SessionStore) -> Callable[[threading.Event, threading.Event], None]:
    def run(held: threading.Event, release: threading.Event) -> None:
        def fn(entry: Any) -> dict[str, Any]:
            held.set()
            release.wait(30)
            return {"parent": True}

        store.update(KEY, fn)

    return run


def _hold_registry_guard(store: SessionStore) -> Callable[[threading.Event, threading.Event], None]:
    import sessionstore.lockfile as lockfile

    def run(held: threading.Event, release: threading.Event) -> None:
        with lockfile._registry_guard:
            held.set()
            release.wait(30)

    return run


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize(
    "holder", [_hold_cache_guard, _hold_write_lock, _hold_registry_guard], ids=lambda f: f.__name__
)
def test_a_child_forked_while_another_thread_holds_a_lock_reads_and_writes(
    store: SessionStore, holder: Callable[[SessionStore], Any]
) -> None:
    store.put(KEY, {"sessionId": "s", "label": "parent"})
    store.get(KEY)  # warm the cache
    with _held_by_other_thread(holder(store)):
        pid = os.fork()
        if pid == 0:  # the child: the parent's holder thread does not exist here
            code = 3
            try:
                entry = store.get(KEY)
                code = 2 if entry is None or entry["label"] != "parent" else 4
                # a write waits for the parent's lock (released once the parent resumes)
                store.update("agent:main:child", {"child": True}, create=True)
                code = 0
            finally:
                os._exit(code)
    assert _wait_child(pid, holder.__name__) == 0
    assert store.get("agent:main:child") is not None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_inside_a_write_neither_writes_nor_releases_the_parents_lock(
    store: SessionStore,
) -> None:
    store.put(KEY, {"sessionId": "s", "n": 0})
    lock = _lock_path(store)
    parent = os.getpid()
    child_codes: list[int] = []

    def fn(entries: dict[str, Any]) -> None:
        entries[KEY]["n"] += 1
        pid = os.fork()
        if pid:  # the parent waits until the child has finished the write it inherited
            child_codes.append(_wait_child(pid, "child of a write"))

    outcome = "?"
    try:
        store.mutate(fn)
        outcome = "written"
    except LockLostError:
        outcome = "refused"
    except BaseException as exc:
        outcome = type(exc).__name__
    finally:
        if os.getpid() != parent:  # the child carried on with the parent's write
            os._exit(0 if outcome == "refused" and lock.exists() else 1)
    assert outcome == "written"
    assert child_codes == [0], "the child wrote, or removed the parent's lock"
    assert store.get(KEY)["n"] == 1  # type: ignore[index]
    assert not lock.exists()


# --- ownership of sessions.json.lock (issue 16, section 2) -----------------------------------

_THIEF = textwrap.dedent(
    """
    # An OpenClaw writer that judged our lock stale (older than 30 s): it removes it, takes
    # its own, and writes the store.
    import json, os, sys
    from datetime import datetime, timezone
    lock, store = sys.argv[1], sys.argv[2]
    os.rename(lock, lock + ".taken")
    os.unlink(lock + ".taken")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps({"pid": os.getpid(), "createdAt": now}).encode())
    os.close(fd)
    with open(store, "rb") as fh:
        data = json.loads(fh.read())
    data["agent:main:main"]["label"] = "gateway"
    with open(store + ".gw.tmp", "w") as fh:
        fh.write(json.dumps(data, indent=2))
    os.replace(store + ".gw.tmp", store)
    print(os.getpid())
    """
)


def _steal(store: SessionStore) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _THIEF, str(_lock_path(store)), str(_json_path(store))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def test_lock_payload_names_its_holder_with_a_token(store: SessionStore) -> None:
    seen: list[dict[str, Any]] = []

    def fn(entries: dict[str, Any]) -> None:
        seen.append(json.loads(_lock_path(store).read_bytes()))

    store.mutate(fn)
    payload = seen[0]
    assert payload["pid"] == os.getpid()
    assert payload["starttime"] == process_start_time(os.getpid())
    assert isinstance(payload["createdAt"], str) and payload["createdAt"].endswith("Z")
    assert isinstance(payload["token"], str) and len(payload["token"]) >= 16
    store.mutate(fn)
    assert seen[1]["token"] != payload["token"]


def test_a_stolen_lock_is_left_alone_and_the_write_relying_on_it_does_not_happen(
    store: SessionStore,
) -> None:
    store.put(KEY, {"sessionId": "s", "label": "before"})
    thief: list[int] = []

    def fn(entries: dict[str, Any]) -> None:
        entries[KEY]["label"] = "ours"
        thief.append(_steal(store))

    with pytest.raises(LockLostError, match=r"taken over .*pid=\d+.*nothing was written"):
        store.mutate(fn)
    lock = _lock_path(store)
    assert lock.exists(), "our release removed the lock that the gateway holds now"
    assert json.loads(lock.read_bytes())["pid"] == thief[0]
    assert json.loads(_json_path(store).read_bytes())[KEY]["label"] == "gateway"
    assert store.get(KEY)["label"] == "gateway"  # type: ignore[index]


def test_a_lock_stolen_during_an_update_callback_fails_that_update(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "s", "label": "before"})

    def fn(entry: Any) -> dict[str, Any]:
        _steal(store)
        return {"label": "ours"}

    with pytest.raises(LockLostError):
        store.update(KEY, fn)
    assert store.get(KEY)["label"] == "gateway"  # type: ignore[index]
    assert _lock_path(store).exists()


@pytest.mark.parametrize("how", ["mutate", "update"])
def test_a_write_held_past_the_budget_is_refused_and_writes_nothing(
    store: SessionStore, how: str
) -> None:
    store.put(KEY, {"sessionId": "s", "label": "before"})
    before = _json_path(store).read_bytes()
    store.index._lock.max_hold_ms = 100  # type: ignore[attr-defined]

    def slow_mutate(entries: dict[str, Any]) -> None:
        time.sleep(0.3)
        entries[KEY]["label"] = "late"

    def slow_update(entry: Any) -> dict[str, Any]:
        time.sleep(0.3)
        return {"label": "late"}

    with pytest.raises(LockLostError, match=r"held for .*longer than the 0.1s"):
        if how == "mutate":
            store.mutate(slow_mutate)
        else:
            store.update(KEY, slow_update)
    assert _json_path(store).read_bytes() == before
    assert not _lock_path(store).exists()  # still ours, so released
    store.index._lock.max_hold_ms = 20_000  # type: ignore[attr-defined]
    assert store.update(KEY, {"label": "fast"})["label"] == "fast"  # type: ignore[index]
