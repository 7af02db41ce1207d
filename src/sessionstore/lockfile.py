"""OpenClaw's cross-process lock file (``<file>.lock``), shared with a running gateway.

Acquire = exclusive create of ``<realdir>/<name>.lock`` holding
``{"pid", "createdAt", "starttime", "token"}`` (a hard link of a fully written temp file, so
the lock never exists without its payload). OpenClaw reads the first three; the random
``token`` names this very hold, so a release never removes a lock that is no longer ours
(OpenClaw steals a store lock older than 30 s even when its owner is alive) and a writer can
check, right before it replaces the target, that the lock is still its own and young enough
that nobody could have stolen it (:meth:`LockFile.check_held`).

Unlike OpenClaw, a lock whose owner is alive is never stolen, however old it is: only locks
of dead or recycled pids, our own orphaned locks, and locks without an owner that are older
than ``stale_ms`` are removed.

Waiting is fair. Threads of one process queue first-come first-served on an in-process
lock (re-entrant per thread). With ``queue=True`` the processes of this library then queue
on a kernel lock, ``flock`` on the target's directory (no file is added beside the target;
the kernel wakes the next waiter as soon as the lock is let go, and lets go for a process
that dies). Only the head of that queue polls for the lock file, and it leaves the queue as
soon as it has placed it: a holder that lets go and comes straight back queues behind the
waiters instead of winning again, as the fastest poller otherwise does. The head looks
again within milliseconds while the lock file is one of ours (its payload has a token), and
backs off with jitter, as OpenClaw does, while a foreign process (a gateway) holds it.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .clock import iso_now
from .errors import LockLostError, LockTimeoutError, SessionStoreError
from .files import os_error, write_all

__all__ = [
    "HOLD_BUDGET_MS",
    "LockFile",
    "lock_is_stale",
    "process_start_time",
    "remove_stale_lock",
]

log = logging.getLogger("sessionstore")

_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
# Kernels or filesystems where flock on a directory does not work (NFS emulates flock with
# byte-range locks, which need a writable descriptor): the lock file alone still excludes.
_NO_FLOCK = frozenset({errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP})

# Opens a directory to name it, without reading it (O_PATH where the platform has it).
_DIR_PATH_FLAGS: Final = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
_FD_LINKS = "/proc/self/fd/"

HOLD_BUDGET_MS: Final = 20_000
"""How long a writer may hold the lock before it must not write any more.

OpenClaw steals a ``sessions.json.lock`` older than 30 s from a live owner; a write checked
against this budget right before it replaces the file cannot have been overtaken.
"""


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        return int(data.rsplit(b")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


_own_start: tuple[int, int | None] = (-1, None)


def _own_start_time() -> int | None:
    """This process's start time, read once per pid (a forked child reads its own)."""
    global _own_start
    pid = os.getpid()
    if _own_start[0] != pid:
        _own_start = (pid, process_start_time(pid))
    return _own_start[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _parse_iso(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def lock_is_stale(
    lock_path: Path, stale_ms: int, *, own_pid: int | None = None
) -> tuple[bool, dict[str, Any]]:
    """Judge a lock file; returns (stale, payload). A missing file counts as stale."""
    try:
        raw = lock_path.read_bytes()
        st = lock_path.stat()
    except FileNotFoundError:
        return True, {}
    except OSError:
        return False, {}
    try:
        payload = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    pid = payload.get("pid")
    created = payload.get("createdAt")
    if not isinstance(pid, int) or isinstance(pid, bool) or created is None:
        age_ms = (time.time() - st.st_mtime) * 1000
        return age_ms > stale_ms, payload
    if not _parse_iso(created):
        return True, payload
    if pid == (os.getpid() if own_pid is None else own_pid):
        return True, payload  # our own pid, but this process does not hold it: orphan
    if not _pid_alive(pid):
        return True, payload
    starttime = payload.get("starttime")
    if isinstance(starttime, int) and not isinstance(starttime, bool):
        current = process_start_time(pid)
        if current is not None and current != starttime:
            return True, payload  # the pid was recycled
    return False, payload


class _FairMutex:
    """A re-entrant lock that hands itself to waiting threads in arrival order."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.owner: int | None = None
        self.depth = 0
        self._waiting: collections.deque[tuple[int, threading.Lock]] = collections.deque()

    def held_here(self) -> bool:
        return self.owner == threading.get_ident()

    def acquire(self, timeout: float) -> bool:
        me = threading.get_ident()
        with self._guard:
            if self.owner == me:
                self.depth += 1
                return True
            if self.owner is None and not self._waiting:
                self.owner, self.depth = me, 1
                return True
            if timeout <= 0:
                return False
            ticket = threading.Lock()
            ticket.acquire()
            entry = (me, ticket)
            self._waiting.append(entry)
        try:
            ticket.acquire(timeout=timeout)
        except BaseException:
            with self._guard:
                if self.owner == me:  # handed over just as the wait was interrupted
                    self._release_locked()
                else:
                    self._waiting.remove(entry)
            raise
        with self._guard:
            if self.owner == me:  # handed over (possibly just as the wait timed out)
                return True
            self._waiting.remove(entry)
            return False

    def release(self) -> None:
        with self._guard:
            self._release_locked()

    def _release_locked(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        if self._waiting:
            self.owner, ticket = self._waiting.popleft()
            self.depth = 1
            ticket.release()
        else:
            self.owner = None


@dataclass
class _Held:
    """This process's state of one lock file."""

    mutex: _FairMutex = field(default_factory=_FairMutex)
    count: int = 0
    token: str = ""
    since: float = 0.0  # time.monotonic() when the lock file was placed
    pid: int = field(default_factory=os.getpid)
    path: str = ""  # where the lock file was placed (released there, resolved once)


_registry: dict[str, _Held] = {}
_registry_guard = threading.Lock()
_queue_fds: set[int] = set()  # every directory descriptor this process has open for a queue


def _reset_after_fork() -> None:
    # Another thread of the parent may have held any of these at the fork: the child starts
    # afresh. It also closes its copies of the queue descriptors: a copy would keep the
    # parent's flock alive after the parent died.
    global _registry_guard
    for fd in list(_queue_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _queue_fds.clear()
    _registry.clear()
    _registry_guard = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _close_queue_fd(fd: int, *, locked: bool) -> None:
    # Unlock explicitly before closing (a forked child may share the open file description),
    # and only then forget the descriptor, so that a child forked in between closes its copy.
    try:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    finally:
        _queue_fds.discard(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


class _KernelWait:
    """A blocking ``flock`` in a helper thread, so that the caller can give up at a deadline.

    A wait that is given up keeps its place until the kernel grants it; the helper then
    lets go at once and closes the descriptor.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = threading.Event()
        self.error: OSError | None = None
        self.abandoned = False
        self.guard = threading.Lock()

    def run(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            self.error = exc
        with self.guard:
            if not self.abandoned:
                self.done.set()
                return
        _close_queue_fd(self.fd, locked=self.error is None)

    def wait(self, timeout: float) -> bool:
        """True once the lock is taken; False (the descriptor given away) after ``timeout``."""
        helper = threading.Thread(target=self.run, name="sessionstore-lock-wait", daemon=True)
        try:
            helper.start()
        except RuntimeError as exc:  # no thread to be had: the caller reports it
            raise OSError(errno.EAGAIN, f"cannot start a thread to wait in: {exc}") from exc
        try:
            self.done.wait(min(timeout, threading.TIMEOUT_MAX))
        except BaseException:
            if not self._give_up():
                _close_queue_fd(self.fd, locked=self.error is None)
            raise
        if not self._give_up():
            if self.error is not None:
                raise self.error
            return True
        return False

    def _give_up(self) -> bool:
        """Leave the descriptor to the helper unless it is done; True when it was left."""
        with self.guard:
            if self.done.is_set():
                return False
            self.abandoned = True
            return True


def _flock(fd: int, timeout: float) -> bool:
    """Take ``flock(LOCK_EX)`` on ``fd`` within ``timeout`` seconds.

    Returns:
        True when taken. False on timeout: the descriptor is then closed (now or, when the
        kernel grants the abandoned wait, by the helper thread).

    Raises:
        OSError: flock failed for another reason (the descriptor is left open).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    if timeout <= 0:
        _close_queue_fd(fd, locked=False)
        return False
    return _KernelWait(fd).wait(timeout)


def _holds_lock_in(directory: Path) -> bool:
    """True when the calling thread holds a lock file in ``directory``."""
    with _registry_guard:
        return any(
            held.count > 0 and held.mutex.held_here() and Path(key).parent == directory
            for key, held in _registry.items()
        )


def _real_dir(directory: Path) -> str:
    """``os.path.realpath(directory)`` of an existing directory, as the kernel names it.

    ``realpath`` walks the path with an ``lstat`` per component (about 20 µs for a deep
    sessions dir); opening the directory and reading its ``/proc/self/fd`` link asks the
    kernel for the same canonical path in three system calls. Anything unusual (no
    ``/proc``, a missing or deleted directory) takes ``realpath``, so the result, which keys
    this process's registry of holds, never depends on which way it was found.
    """
    try:
        fd = os.open(directory, _DIR_PATH_FLAGS)
    except OSError:
        return os.path.realpath(directory)
    try:
        found = os.readlink(f"{_FD_LINKS}{fd}")
    except OSError:
        found = ""
    finally:
        os.close(fd)
    if not found.startswith("/") or found.endswith(" (deleted)"):
        return os.path.realpath(directory)
    return found


def _read_payload(path: Path | str) -> dict[str, Any] | None:
    """The lock file's payload; None when there is no lock file, {} when it is unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        raw = b""
        while chunk := os.read(fd, 4096):  # ours are about 120 bytes: one read and EOF
            raw += chunk
    except OSError:
        return {}
    finally:
        os.close(fd)
    try:
        payload = orjson.loads(raw) if raw.strip() else {}  # checks UTF-8 too
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


class LockFile:
    """The lock file of one target file (e.g. ``sessions.json`` -> ``sessions.json.lock``).

    Args:
        target: The file being protected.
        timeout_ms: How long ``acquire`` waits before raising ``LockTimeoutError``.
        stale_ms: Age after which a lock without an owner pid is considered abandoned.
        queue: Queue this library's processes on a kernel lock (``flock`` on the target's
            directory) while they wait for the lock file, so that they get it in turn.
        max_hold_ms: The hold budget :meth:`check_held` enforces (None: no budget).
    """

    def __init__(
        self,
        target: Path,
        *,
        timeout_ms: int = 10_000,
        stale_ms: int = 30_000,
        queue: bool = False,
        max_hold_ms: int | None = HOLD_BUDGET_MS,
    ):
        self.target = target
        self.timeout_ms = timeout_ms
        self.stale_ms = stale_ms
        self.queue = queue
        self.max_hold_ms = max_hold_ms

    @property
    def path(self) -> Path:
        """``realpath(dirname(target))/<name>.lock`` (symlinked paths share one lock)."""
        return Path(self._lock_path())

    def _lock_path(self) -> str:
        # Resolved on every acquire, never cached: the registry of this process's holds is
        # keyed by it, and two spellings of one lock would let two threads both take it.
        return os.path.join(_real_dir(self.target.parent), self.target.name + ".lock")

    def _held(self, path: Path | str | None = None) -> _Held:
        key = self._lock_path() if path is None else str(path)
        with _registry_guard:
            held = _registry.get(key)
            if held is None:
                held = _registry[key] = _Held()
            return held

    def held_here(self) -> bool:
        """True when the calling thread holds this lock (through any ``LockFile`` of it)."""
        held = self._held()
        return held.count > 0 and held.mutex.held_here()

    @contextlib.contextmanager
    def hold(self, timeout_ms: int | None = None) -> Iterator[None]:
        """Hold the lock for the duration of a ``with`` block."""
        held = self._acquire(timeout_ms)
        try:
            yield
        finally:
            self._release(held)

    def acquire(self, timeout_ms: int | None = None) -> None:
        """Take the lock, waiting up to the timeout.

        Raises:
            LockTimeoutError: Another live process held the lock for the whole timeout.
        """
        self._acquire(timeout_ms)

    def release(self) -> None:
        """Release one level of the lock; the file goes with the last one.

        Raises:
            SessionStoreError: The calling thread does not hold the lock.
        """
        self._release(self._held())

    def _acquire(self, timeout_ms: int | None) -> _Held:
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = time.monotonic() + timeout / 1000
        path = self._lock_path()  # a str: a Path is built only where one is needed
        held = self._held(path)
        if not held.mutex.acquire(min(max(0.0, timeout / 1000), threading.TIMEOUT_MAX)):
            raise LockTimeoutError(
                f"session file locked (timeout {timeout}ms): held by another thread of this"
                f" process ({path})"
            )
        if held.count > 0:
            held.count += 1
            return held
        held.path = path
        try:
            # A thread already holding another lock of this directory skips the queue: the
            # process at its head may be waiting for that very lock.
            queued = (
                self._enter_queue(Path(path), deadline, timeout)
                if self.queue and not _holds_lock_in(Path(path).parent)
                else None
            )
            try:
                self._create(held, path, deadline, timeout)
            finally:
                if queued is not None:
                    _close_queue_fd(queued, locked=True)
        except BaseException:
            held.mutex.release()
            raise
        held.count = 1
        return held

    def _release(self, held: _Held) -> None:
        if held.pid != os.getpid():
            return  # taken by the parent before a fork: the parent's to release, not ours
        if held.count <= 0 or not held.mutex.held_here():
            raise SessionStoreError(f"{self.path} is not held by this thread; nothing to release")
        held.count -= 1
        try:
            if held.count == 0:
                self._remove_own(held.path, held.token)
        finally:
            held.mutex.release()

    def check_held(self) -> None:
        """Make sure a write may still rely on the lock; call it right before the write.

        Raises:
            LockLostError: The calling thread does not hold the lock, the lock file is not
                ours any more, or it has been held longer than ``max_hold_ms``.
        """
        path = self.path
        held = self._held(path)
        if held.count <= 0 or not held.mutex.held_here() or held.pid != os.getpid():
            raise LockLostError(f"{path} is not held by this thread; nothing was written")
        age_ms = (time.monotonic() - held.since) * 1000
        if self.max_hold_ms is not None and age_ms > self.max_hold_ms:
            raise LockLostError(
                f"{path} was held for {age_ms / 1000:.1f}s, longer than the"
                f" {self.max_hold_ms / 1000:g}s a writer may rely on it (OpenClaw takes over a"
                f" lock older than {self.stale_ms / 1000:g}s); nothing was written - make the"
                " work done under the lock shorter (a faster mutate callback, or maintenance"
                " in smaller steps) and retry"
            )
        payload = _read_payload(path)
        if payload is None or payload.get("token") != held.token:
            owner = "nobody" if payload is None else f"pid={payload.get('pid', '?')}"
            raise LockLostError(
                f"{path} was taken over while this write held it (it now belongs to {owner});"
                " nothing was written - retry"
            )

    # --- the kernel queue -------------------------------------------------------------------

    @staticmethod
    def _enter_queue(path: Path, deadline: float, timeout: int) -> int | None:
        """Wait for the head of the directory's queue; returns the descriptor holding it.

        The head only waits for the lock file and leaves the queue once it has placed it:
        a holder that lets go and comes straight back must queue behind the head, so the
        lock passes down the queue instead of back to whoever had it last.
        """
        directory = str(path.parent)
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None  # the lock file reports what is wrong with the directory
        _queue_fds.add(fd)
        try:
            taken = _flock(fd, max(0.0, deadline - time.monotonic()))
        except OSError as exc:
            _close_queue_fd(fd, locked=False)
            if exc.errno in _NO_FLOCK:
                return None
            raise SessionStoreError(
                f"cannot wait for {path}: flock on {directory}: {exc.strerror}"
            ) from exc
        if not taken:
            raise LockTimeoutError(
                f"session file locked (timeout {timeout}ms): {path}; other writers of this"
                " store were ahead in the queue for the whole timeout - retry"
            )
        return fd

    # --- the lock file ----------------------------------------------------------------------

    def _create(self, held: _Held, lock: str, deadline: float, timeout: int) -> None:
        pid = os.getpid()
        starttime = _own_start_time()
        attempt = 0
        while True:
            attempt += 1
            token = os.urandom(16).hex()
            since = time.monotonic()
            try:
                if attempt > 1 and os.path.lexists(lock):
                    raise FileExistsError(lock)  # cheaper than placing a temp file to find out
                # createdAt is the moment of this attempt: OpenClaw judges a lock's age by it.
                payload = {"pid": pid, "createdAt": iso_now(), "starttime": starttime}
                placed = self._place(lock, orjson.dumps({**payload, "token": token}))
            except FileExistsError:
                path = Path(lock)
                stale, seen = lock_is_stale(path, self.stale_ms)
                if stale and self._remove_stale(path, seen):
                    continue
                if time.monotonic() >= deadline:
                    owner = seen.get("pid", "?")
                    raise LockTimeoutError(
                        f"session file locked (timeout {timeout}ms): pid={owner} {path}; another"
                        " process is writing this store - retry, or if that process is gone,"
                        " remove the lock file"
                    ) from None
                # A holder of this library (its lock names a token) lets go within its hold
                # budget: look again soon. A foreign one (a gateway polls the same way): back
                # off as OpenClaw does. With jitter, so that pollers do not fall into step.
                ours = isinstance(seen.get("token"), str)
                pause = min(0.005, 0.001 * attempt) if ours else min(1.0, 0.05 * attempt)
                pause *= 0.5 + random.random() / 2
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                continue
            except OSError as exc:
                raise os_error(exc, "create the lock file", Path(lock)) from exc
            if placed:
                held.token, held.since = token, since
                return

    @staticmethod
    def _remove_own(path: str, token: str) -> None:
        # Remove the lock file only if it still carries our token. If it does not, someone
        # (a gateway judging it stale) took it over: theirs now, left alone.
        payload = _read_payload(path)
        if payload is None:
            log.warning("lock file %s disappeared while this process held it", path)
            return
        if payload.get("token") != token:
            log.warning(
                "lock file %s was taken over by pid=%s while this process held it; left in place",
                path,
                payload.get("pid", "?"),
            )
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    @staticmethod
    def _place(path: str, payload: bytes) -> bool:
        # The payload goes to a private `<lock>.<hex>.tmp` that is then hard-linked to the
        # lock path (FileExistsError if the lock exists), so a kill -9 at any point never
        # leaves a lock file without its owner pid - an empty lock would block every writer
        # for stale_ms. Orphaned temp files match `sessions.json.*.tmp` and are cleaned when
        # a store opens. Returns False to retry when the temp file was cleaned meanwhile.
        tmp = f"{path}.{os.urandom(16).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                write_all(fd, payload)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileNotFoundError:
                return False
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # no links here
                try:
                    write_all(fd, payload)
                finally:
                    os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return True

    @staticmethod
    def _remove_stale(path: Path, seen: dict[str, Any]) -> bool:
        # Move the stale lock aside first and check it is the one we judged, so two
        # processes cleaning the same stale lock never delete a fresh one.
        aside = path.with_name(f"{path.name}.stale.{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        try:
            raw = aside.read_bytes()
            current = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (OSError, ValueError, UnicodeDecodeError):
            current = {}
        if current != seen and isinstance(current, dict) and current.get("pid") is not None:
            with contextlib.suppress(OSError):
                os.link(aside, path)  # a fresh lock was taken meanwhile: put it back
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return True


def remove_stale_lock(lock_path: Path, stale_ms: int = 30_000) -> bool:
    """Remove ``lock_path`` if it is stale; a live owner's lock is never touched.

    Stale means: its owner is dead, or it names no owner and is older than ``stale_ms``.

    Returns:
        True when a stale lock was removed.
    """
    if not lock_path.exists():
        return False
    stale, payload = lock_is_stale(lock_path, stale_ms, own_pid=-1)
    if not stale:
        return False
    return LockFile._remove_stale(lock_path, payload) and not lock_path.exists()
