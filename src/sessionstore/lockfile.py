"""OpenClaw's cross-process lock file (``<file>.lock``), shared with a running gateway.

Acquire = exclusive create of ``<realdir>/<name>.lock`` holding
``{"pid", "createdAt", "starttime"}`` (a hard link of a fully written temp file, so the lock
never exists without its payload). Unlike OpenClaw, a lock whose owner is alive is never
stolen, however old it is: only locks of dead or recycled pids, our own orphaned locks, and
locks without an owner that are older than ``stale_ms`` are removed. Within a process the
lock is re-entrant per thread, and threads queue on an in-process lock first.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import LockTimeoutError, SessionStoreError

__all__ = ["LockFile", "lock_is_stale", "process_start_time", "remove_stale_lock"]


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


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


def _iso_now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


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


@dataclass
class _Held:
    mutex: threading.RLock = field(default_factory=threading.RLock)
    count: int = 0


_registry: dict[str, _Held] = {}
_registry_guard = threading.Lock()


def _reset_after_fork() -> None:
    global _registry_guard
    _registry.clear()
    _registry_guard = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


class LockFile:
    """The lock file of one target file (e.g. ``sessions.json`` -> ``sessions.json.lock``).

    Args:
        target: The file being protected.
        timeout_ms: How long ``acquire`` waits before raising ``LockTimeoutError``.
        stale_ms: Age after which a lock without an owner pid is considered abandoned.
    """

    def __init__(self, target: Path, *, timeout_ms: int = 10_000, stale_ms: int = 30_000):
        self.target = target
        self.timeout_ms = timeout_ms
        self.stale_ms = stale_ms

    @property
    def path(self) -> Path:
        """``realpath(dirname(target))/<name>.lock`` (symlinked paths share one lock)."""
        parent = os.path.realpath(self.target.parent)
        return Path(parent) / (self.target.name + ".lock")

    def _held(self) -> _Held:
        key = str(self.path)
        with _registry_guard:
            held = _registry.get(key)
            if held is None:
                held = _registry[key] = _Held()
            return held

    @contextlib.contextmanager
    def hold(self, timeout_ms: int | None = None) -> Iterator[None]:
        """Hold the lock for the duration of a ``with`` block."""
        self.acquire(timeout_ms)
        try:
            yield
        finally:
            self.release()

    def acquire(self, timeout_ms: int | None = None) -> None:
        """Take the lock, waiting up to the timeout.

        Raises:
            LockTimeoutError: Another live process held the lock for the whole timeout.
        """
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = time.monotonic() + timeout / 1000
        held = self._held()
        if not held.mutex.acquire(timeout=max(0.0, timeout / 1000)):
            raise LockTimeoutError(
                f"session file locked (timeout {timeout}ms): held by another thread of this"
                f" process ({self.path})"
            )
        if held.count > 0:
            held.count += 1
            return
        try:
            self._create(deadline, timeout)
        except BaseException:
            held.mutex.release()
            raise
        held.count = 1

    def release(self) -> None:
        """Release one level of the lock; the file goes with the last one."""
        held = self._held()
        held.count -= 1
        if held.count == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        held.mutex.release()

    def _create(self, deadline: float, timeout: int) -> None:
        path = self.path
        pid = os.getpid()
        payload = json.dumps(
            {"pid": pid, "createdAt": _iso_now(), "starttime": process_start_time(pid)}
        ).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                placed = self._place(path, payload)
            except FileExistsError:
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
                time.sleep(min(1.0, 0.05 * attempt, max(0.0, deadline - time.monotonic())))
                continue
            except OSError as exc:
                raise SessionStoreError(f"cannot create lock file {path}: {exc.strerror}") from exc
            if placed:
                return

    @staticmethod
    def _place(path: Path, payload: bytes) -> bool:
        # The payload goes to a private `<lock>.<hex>.tmp` that is then hard-linked to the
        # lock path (FileExistsError if the lock exists), so a kill -9 at any point never
        # leaves a lock file without its owner pid - an empty lock would block every writer
        # for stale_ms. Orphaned temp files match `sessions.json.*.tmp` and are cleaned when
        # a store opens. Returns False to retry when the temp file was cleaned meanwhile.
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, payload)
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
                    os.write(fd, payload)
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
