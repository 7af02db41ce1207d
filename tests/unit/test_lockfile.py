"""Unit tests for lockfile.py (OpenClaw's sessions.json.lock protocol) and files.atomic_write."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

import sessionstore
from hermetic import clean_env
from sessionstore import lockfile
from sessionstore.errors import (
    LockLostError,
    LockTimeoutError,
    SessionStoreError,
    StorageFullError,
)
from sessionstore.files import atomic_write
from sessionstore.lockfile import LockFile, lock_is_stale, process_start_time

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

OLD_ISO = "2020-01-01T00:00:00.000Z"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "sessions.json"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _write_lock(path: Path, payload: object, *, age_s: float = 0.0) -> None:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_start_time(proc.pid) is None  # reaped: the pid is free
    return proc.pid


# --- the lock file itself --------------------------------------------------------------------


def test_lock_path_is_beside_the_target(target: Path) -> None:
    assert LockFile(target).path == target.parent / "sessions.json.lock"


def test_lock_path_uses_the_real_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert LockFile(link / "sessions.json").path == real / "sessions.json.lock"


def _spellings(tmp_path: Path) -> list[Path]:
    real = tmp_path / "a" / "real"
    (real / "deeper").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (tmp_path / "chain").symlink_to(tmp_path / "link", target_is_directory=True)
    (real / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    return [
        real,
        tmp_path / "link",
        tmp_path / "chain" / "deeper",
        tmp_path / "link" / "deeper" / "..",  # `..` after a symlink: the real parent
        real / "up" / "real",
        tmp_path / "missing" / "dir",  # not there: named as realpath names it
        Path(os.path.relpath(real)),
    ]


def test_lock_dir_is_named_as_realpath_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for spelling in _spellings(tmp_path):
        assert lockfile._real_dir(spelling) == os.path.realpath(spelling), spelling
    # without /proc (or any failure to read the link): realpath itself
    monkeypatch.setattr(lockfile, "_FD_LINKS", str(tmp_path / "no-proc") + "/")
    for spelling in _spellings(tmp_path / "again"):
        assert lockfile._real_dir(spelling) == os.path.realpath(spelling), spelling


def test_a_directory_renamed_and_replaced_by_a_symlink_keeps_one_lock(tmp_path: Path) -> None:
    # The registry of this process's holds is keyed by the lock path: after the directory
    # moves and a symlink takes its name, both spellings must still name one lock.
    old = tmp_path / "sessions"
    old.mkdir()
    before = LockFile(old / "sessions.json").path
    moved = tmp_path / "moved"
    old.rename(moved)
    old.symlink_to(moved, target_is_directory=True)
    by_link, by_dir = LockFile(old / "sessions.json"), LockFile(moved / "sessions.json")
    assert by_link.path == by_dir.path == moved / "sessions.json.lock" != before
    with by_link.hold(), by_dir.hold(timeout_ms=0):  # re-entrant: one lock, not two
        assert by_dir.held_here()
    assert not by_dir.path.exists()


def test_payload_mode_and_release(target: Path) -> None:
    lock = LockFile(target)
    before = datetime.now().astimezone()
    lock.acquire()
    try:
        path = lock.path
        payload = json.loads(path.read_text())
        assert set(payload) == {"pid", "createdAt", "starttime", "token"}
        assert payload["pid"] == os.getpid()
        assert payload["starttime"] == process_start_time(os.getpid())
        assert isinstance(payload["starttime"], int)
        assert payload["createdAt"].endswith("Z")
        created = datetime.fromisoformat(payload["createdAt"].replace("Z", "+00:00"))
        assert abs((created - before).total_seconds()) < 5
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        lock.release()
    assert not lock.path.exists()


def test_hold_context_manager_releases_on_error(target: Path) -> None:
    lock = LockFile(target)
    with pytest.raises(RuntimeError), lock.hold():
        assert lock.path.exists()
        raise RuntimeError("boom")
    assert not lock.path.exists()


def test_reentrant_in_one_thread(target: Path) -> None:
    lock = LockFile(target, timeout_ms=200)
    lock.acquire()
    lock.acquire(timeout_ms=0)  # would time out at once if it were not re-entrant
    with lock.hold(timeout_ms=0):
        assert lock.path.exists()
    lock.release()
    assert lock.path.exists(), "released one level too early"
    lock.release()
    assert not lock.path.exists()


def test_two_lockfile_objects_share_the_in_process_lock(target: Path) -> None:
    a, b = LockFile(target), LockFile(target)
    with a.hold(), b.hold(timeout_ms=0):
        pass
    assert not a.path.exists()


def test_other_thread_waits_then_times_out(target: Path) -> None:
    lock = LockFile(target)
    errors: list[BaseException] = []
    got = threading.Event()

    def other() -> None:
        try:
            with LockFile(target).hold(timeout_ms=150):
                got.set()
        except BaseException as exc:
            errors.append(exc)

    with lock.hold():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert not got.is_set()
    assert len(errors) == 1 and isinstance(errors[0], LockTimeoutError)
    # once released, another thread gets it
    t2 = threading.Thread(target=other)
    t2.start()
    t2.join()
    assert got.is_set()


# --- foreign locks ---------------------------------------------------------------------------


def test_live_owner_is_never_stolen_even_when_old(
    target: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    lock = LockFile(target, timeout_ms=400, stale_ms=10)
    payload = {
        "pid": sleeper.pid,
        "createdAt": OLD_ISO,
        "starttime": process_start_time(sleeper.pid),
    }
    assert payload["starttime"] is not None
    _write_lock(lock.path, payload, age_s=3600)
    start = time.monotonic()
    with pytest.raises(LockTimeoutError) as info:
        lock.acquire()
    elapsed = time.monotonic() - start
    assert 0.35 <= elapsed < 5
    message = str(info.value)
    assert f"pid={sleeper.pid}" in message
    assert str(lock.path) in message
    assert "timeout 400ms" in message
    assert json.loads(lock.path.read_text()) == payload  # untouched
    stale, seen = lock_is_stale(lock.path, 10)
    assert not stale and seen == payload
    # the in-process lock was given back: a later attempt fails the same way, not differently
    with pytest.raises(LockTimeoutError, match=f"pid={sleeper.pid}"):
        lock.acquire(timeout_ms=50)


def test_live_owner_without_starttime_is_not_stolen(
    target: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    lock = LockFile(target, timeout_ms=100, stale_ms=10)
    _write_lock(lock.path, {"pid": sleeper.pid, "createdAt": OLD_ISO}, age_s=3600)
    with pytest.raises(LockTimeoutError):
        lock.acquire()
    assert lock.path.exists()


def test_lock_of_dead_pid_is_stolen(target: Path) -> None:
    lock = LockFile(target, timeout_ms=2_000, stale_ms=60_000)
    pid = _dead_pid()
    _write_lock(lock.path, {"pid": pid, "createdAt": datetime.now().isoformat(), "starttime": 1})
    start = time.monotonic()
    with lock.hold():
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - start < 1.0
    assert not lock.path.exists()
    assert not list(lock.path.parent.glob("*.stale.*"))


def test_lock_of_recycled_pid_is_stolen(target: Path, sleeper: subprocess.Popen[bytes]) -> None:
    lock = LockFile(target, timeout_ms=2_000, stale_ms=60_000)
    real = process_start_time(sleeper.pid)
    assert real is not None
    payload = {"pid": sleeper.pid, "createdAt": datetime.now().isoformat(), "starttime": real + 1}
    _write_lock(lock.path, payload)
    start = time.monotonic()
    with lock.hold():
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - start < 1.0
    assert sleeper.poll() is None  # the live process was not harmed


def test_lock_without_pid_older_than_stale_ms_is_stolen(target: Path) -> None:
    lock = LockFile(target, timeout_ms=2_000, stale_ms=1_000)
    _write_lock(lock.path, {"createdAt": datetime.now().isoformat()}, age_s=5)
    with lock.hold():
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]"])
def test_unreadable_lock_older_than_stale_ms_is_stolen(target: Path, content: str) -> None:
    lock = LockFile(target, timeout_ms=2_000, stale_ms=1_000)
    _write_lock(lock.path, content, age_s=5)
    with lock.hold():
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_fresh_lock_without_pid_is_not_stolen(target: Path) -> None:
    lock = LockFile(target, timeout_ms=150, stale_ms=60_000)
    _write_lock(lock.path, {"createdAt": datetime.now().isoformat()})
    with pytest.raises(LockTimeoutError, match=r"pid=\?"):
        lock.acquire()
    assert lock.path.exists()


def test_orphan_lock_of_this_process_is_stolen(target: Path) -> None:
    lock = LockFile(target, timeout_ms=2_000, stale_ms=60_000)
    _write_lock(
        lock.path,
        {
            "pid": os.getpid(),
            "createdAt": datetime.now().isoformat(),
            "starttime": process_start_time(os.getpid()),
        },
    )
    with lock.hold():
        pass
    assert not lock.path.exists()


def test_invalid_created_at_is_stale(target: Path, sleeper: subprocess.Popen[bytes]) -> None:
    lock = LockFile(target)
    _write_lock(lock.path, {"pid": sleeper.pid, "createdAt": "not a date"})
    stale, _ = lock_is_stale(lock.path, 60_000)
    assert stale


def test_missing_lock_counts_as_stale(target: Path) -> None:
    assert lock_is_stale(target.parent / "nothing.lock", 1)[0]


_DIE_WHILE_LOCKING = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import sessionstore.lockfile as lf
    real_write = os.write
    def dying_write(fd, data):
        if fd > 2:  # the lock payload: die before a single byte of it is written
            os.kill(os.getpid(), 9)
        return real_write(fd, data)
    lf.os.write = dying_write
    lf.LockFile(Path(sys.argv[1])).acquire()
    """
)


def test_writer_killed_while_creating_the_lock_blocks_nobody(state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as store:
        store.put("agent:main:main", {"sessionId": "s", "updatedAt": 1})
        path = store.index.path
    assert path is not None
    proc = subprocess.run(
        [sys.executable, "-c", _DIE_WHILE_LOCKING, str(path)], timeout=60, env=clean_env()
    )
    assert proc.returncode == -9
    lock_path = path.parent / "sessions.json.lock"
    if lock_path.exists():  # whatever the child left must name its (dead) owner
        assert lock_is_stale(lock_path, 60_000)[0]
    start = time.monotonic()
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as store:
        store.put("agent:main:next", {"sessionId": "n", "updatedAt": 2})
    assert time.monotonic() - start < 2.0
    assert _leftovers(path.parent) == []  # the orphaned temp file was cleaned at open
    assert not lock_path.exists()


def test_process_start_time() -> None:
    assert process_start_time(os.getpid()) == process_start_time(os.getpid())
    assert isinstance(process_start_time(os.getpid()), int)
    assert process_start_time(_dead_pid()) is None


def test_cannot_create_lock_file_in_missing_dir(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "missing" / "sessions.json", timeout_ms=100)
    with pytest.raises(SessionStoreError, match="cannot create the lock file"):
        lock.acquire()
    # the in-process lock was released on failure
    (tmp_path / "missing").mkdir()
    with lock.hold(timeout_ms=0):
        pass


# --- atomic_write ----------------------------------------------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_and_sets_mode(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    atomic_write(path, b'{"a": 1}')
    assert path.read_bytes() == b'{"a": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_atomic_write_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.mkdir()  # renaming a file over a directory fails
    with pytest.raises(SessionStoreError, match="cannot write"):
        atomic_write(path, b"{}")
    assert _leftovers(tmp_path) == []
    assert path.is_dir()


def test_atomic_write_disk_full_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sessions.json"
    path.write_bytes(b"original")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageFullError) as info:
        atomic_write(path, b"new content")
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert path.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


_FSIZE_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import sessionstore
    state_dir, limit = sys.argv[1], int(sys.argv[2])
    store = sessionstore.open_store(state_dir=state_dir, store_type="json")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    big = {"sessionId": "big", "updatedAt": 2, "blob": "x" * (limit * 4)}
    try:
        store.put("agent:main:big", big)
    except sessionstore.StorageFullError as exc:
        print(json.dumps({"error": "StorageFullError", "message": str(exc)}))
    except BaseException as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        print(json.dumps({"error": None}))
    # the store still works for writes that fit
    store.put("agent:main:small", {"sessionId": "small", "updatedAt": 3})
    print(json.dumps({"small": store.get("agent:main:small") is not None}))
    """
)


def test_file_size_limit_raises_storage_full_and_keeps_the_file(state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as store:
        store.put("agent:main:main", {"sessionId": "s1", "updatedAt": 1, "label": "keep me"})
        path = store.index.path
    assert path is not None
    original = path.read_bytes()
    limit = 64 * 1024
    assert len(original) < limit // 4
    proc = subprocess.run(
        [sys.executable, "-c", _FSIZE_CHILD, str(state_dir), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["error"] == "StorageFullError", lines
    assert "sessions.json" in lines[0]["message"]
    assert lines[1] == {"small": True}
    # the big write left nothing behind; the small one replaced the file atomically
    assert _leftovers(path.parent) == []
    data = json.loads(path.read_bytes())
    assert set(data) == {"agent:main:main", "agent:main:small"}
    assert data["agent:main:main"]["label"] == "keep me"
    assert not (path.parent / "sessions.json.lock").exists()


def test_file_size_limit_before_any_other_write_keeps_the_file_byte_identical(
    state_dir: Path,
) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as store:
        store.put("agent:main:main", {"sessionId": "s1", "updatedAt": 1})
        path = store.index.path
    assert path is not None
    original = path.read_bytes()
    child = _FSIZE_CHILD.split("# the store still works")[0]
    proc = subprocess.run(
        [sys.executable, "-c", child, str(state_dir), str(32 * 1024)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["error"] == "StorageFullError", proc.stdout
    assert path.read_bytes() == original
    assert _leftovers(path.parent) == []


# --- fairness, ownership, the kernel queue -----------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def test_threads_get_the_lock_in_arrival_order(target: Path) -> None:
    lock = LockFile(target, timeout_ms=30_000)
    order: list[str] = []
    lock.acquire()
    mutex = lock._held().mutex
    threads = []
    for name in ("t1", "t2", "t3"):

        def run(name: str = name) -> None:
            with LockFile(target, timeout_ms=30_000).hold():
                order.append(name)

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        _wait_for(lambda: len(mutex._waiting) == len(threads), f"{name} to queue")
    lock.release()
    with lock.hold():  # straight back: behind the three that were waiting
        order.append("main")
    for thread in threads:
        thread.join(30)
    assert order == ["t1", "t2", "t3", "main"]


_THIEF = textwrap.dedent(
    """
    import json, os, sys
    lock = sys.argv[1]
    os.unlink(lock)  # OpenClaw's verdict on a lock older than 30 s, live owner or not
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps({"pid": os.getpid(), "createdAt": "2026-01-01T00:00:00.000Z"}).encode())
    os.close(fd)
    """
)


def test_a_stolen_lock_fails_check_held_and_survives_release(target: Path) -> None:
    lock = LockFile(target)
    with lock.hold():
        lock.check_held()  # ours
        subprocess.run([sys.executable, "-c", _THIEF, str(lock.path)], check=True, timeout=60)
        with pytest.raises(LockLostError, match=r"taken over .* pid=\d+"):
            lock.check_held()
        stolen = lock.path.read_bytes()
    assert lock.path.read_bytes() == stolen  # left to its new owner
    assert "token" not in json.loads(stolen)


def test_check_held_refuses_a_hold_past_its_budget(target: Path) -> None:
    lock = LockFile(target, max_hold_ms=50)
    with lock.hold():
        lock.check_held()
        time.sleep(0.1)
        with pytest.raises(LockLostError, match=r"longer than the 0.05s"):
            lock.check_held()
    assert not lock.path.exists()
    with pytest.raises(LockLostError, match="not held by this thread"):
        lock.check_held()


def _queued_on(directory: Path) -> bool:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


_QUEUED_WAITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sessionstore.lockfile import LockFile
    with LockFile(Path(sys.argv[1]), timeout_ms=60_000, queue=True).hold():
        print("got it", flush=True)
    """
)


def test_a_second_lock_of_the_same_directory_skips_the_queue_its_holder_blocks(
    tmp_path: Path,
) -> None:
    # Another process heads the directory's queue, waiting for a lock this thread holds;
    # taking a second lock of that directory must not wait behind it (that is a deadlock).
    first = LockFile(tmp_path / "a.json", timeout_ms=60_000, queue=True)
    second = LockFile(tmp_path / "b.json", timeout_ms=2_000, queue=True)
    with first.hold():
        waiter = subprocess.Popen(
            [sys.executable, "-c", _QUEUED_WAITER, str(tmp_path / "a.json")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(lambda: _queued_on(tmp_path), "the other process to queue")
            with second.hold():
                assert second.path.exists()
        except BaseException:
            waiter.kill()
            raise
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and out.strip() == "got it"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
