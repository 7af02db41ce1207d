"""Fault shims, installed inside a child process (never in the test process itself).

One :class:`FaultPlan` counts I/O events of two layers in one sequence:

- ``sqlite``: every file SQLite touches, through :class:`FaultVFS`, an apsw VFS that
  inherits every method from the default ``unix`` VFS and is made the default, so the
  store's own connections use it without any hook in the library;
- ``os``: ``os.write``, ``os.fsync``, ``os.ftruncate``, ``os.replace`` and ``os.rename``
  on files under one directory (``sessions.json``, its temp and lock files, transcripts),
  through wrappers around those functions.

At the plan's ``at``-th counted event (and the ``count - 1`` after it, or every later one
with ``count=0``) the plan acts: ``fail`` raises (``OSError`` with the plan's errno, or the
matching apsw error inside SQLite), ``stop`` ends the process at once (``os._exit``, no
cleanup), ``kill`` sends it SIGKILL (a kill -9 landing exactly there) and ``torn`` writes
the first half of the data and then stops (a crash in the middle of a write). A plan
without ``at`` only counts, which is how a sweep learns how many points an operation has.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import fcntl
import os
import resource
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIONS",
    "STOP_EXIT",
    "WRITE_KINDS",
    "Event",
    "FaultPlan",
    "arm",
    "disarm",
    "file_size_limit",
    "install",
]

STOP_EXIT = 86  # exit status of a child stopped by a plan (os._exit: no cleanup at all)
ACTIONS = ("fail", "stop", "torn", "kill")
WRITE_KINDS = frozenset({"write", "sync", "rename", "truncate"})
BASE_VFS = "unix"

# The real functions, captured before any wrapper is installed.
_os_write = os.write
_os_fsync = os.fsync
_os_ftruncate = os.ftruncate
_os_replace = os.replace
_os_rename = os.rename


@dataclass(frozen=True)
class Event:
    """One counted I/O event: its layer (``sqlite``/``os``), kind and file name.

    A write also has the file offset it starts at and its length.
    """

    layer: str
    kind: str
    name: str
    offset: int = -1
    size: int = 0

    def __str__(self) -> str:
        return f"{self.layer} {self.kind} {self.name}"


@dataclass
class FaultPlan:
    """Which events to count, and what to do at which of them.

    Attributes:
        kinds: Event kinds counted (``read``, ``write``, ``sync``, ``rename``,
            ``truncate``).
        at: 1-based index of the first faulted event; None only counts.
        action: ``fail``, ``stop``, ``torn`` or ``kill``.
        count: Events faulted from ``at`` on (1 = a transient fault); 0 = all of them
            until the plan is disarmed (a permanent fault).
        errno: The errno of a ``fail`` (``EIO``; ``ENOSPC`` makes SQLite report a full
            disk).
        seen: Events counted so far.
        faulted: Events acted upon so far.
        log: The counted events, in order.
    """

    kinds: frozenset[str] = WRITE_KINDS
    at: int | None = None
    action: str = "fail"
    count: int = 1
    errno: int = errnos.EIO
    seen: int = 0
    faulted: int = 0
    log: list[Event] = field(default_factory=list)

    def decide(
        self, layer: str, kind: str, name: str, offset: int = -1, size: int = 0
    ) -> str | None:
        """Count an event; the action to take at it, or None."""
        if kind not in self.kinds:
            return None
        self.seen += 1
        self.log.append(Event(layer, kind, name, offset, size))
        if self.at is None or self.seen < self.at:
            return None
        if self.count and self.seen >= self.at + self.count:
            return None
        self.faulted += 1
        return self.action

    def describe(self, index: int) -> str:
        """The ``index``-th counted event (1-based), for messages."""
        return str(self.log[index - 1]) if 0 < index <= len(self.log) else f"event {index}"


_plan: FaultPlan | None = None


def arm(plan: FaultPlan) -> FaultPlan:
    """Make ``plan`` the active plan of this process; returns it."""
    global _plan
    _plan = plan
    return plan


def disarm() -> FaultPlan | None:
    """Deactivate the active plan (the fault is gone); returns it."""
    global _plan
    plan, _plan = _plan, None
    return plan


def _act(
    layer: str,
    kind: str,
    name: str,
    write: Callable[[bytes], Any] | None,
    data: bytes = b"",
    offset: int = -1,
) -> bool:
    """Apply the active plan to an event; True when the caller must raise (``fail``)."""
    plan = _plan
    if plan is None:
        return False
    action = plan.decide(layer, kind, name, offset, len(data))
    if action is None:
        return False
    if action == "fail":
        return True
    if action == "torn" and write is not None and len(data) > 1:
        write(bytes(data[: len(data) // 2]))
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(STOP_EXIT)


# --- the SQLite layer: an apsw VFS ----------------------------------------------------------

try:
    import apsw
except ImportError:  # pragma: no cover - apsw is a dependency of sessionstore
    apsw = None


def _sqlite_error(kind: str) -> Exception:
    plan = _plan
    code = plan.errno if plan is not None else errnos.EIO
    message = f"injected {kind} fault: {os.strerror(code)}"
    if code in (errnos.ENOSPC, errnos.EDQUOT):
        return apsw.FullError(message)  # type: ignore[no-any-return]
    error = apsw.IOError(message)
    # The extended code the unix VFS would report (SQLite tells a failed write from a
    # failed sync by it, and so does the store).
    name = {"read": "READ", "write": "WRITE", "sync": "FSYNC", "truncate": "TRUNCATE"}[kind]
    error.extendedresult = apsw.mapping_extended_result_codes[f"SQLITE_IOERR_{name}"]
    return error  # type: ignore[no-any-return]


if apsw is not None:

    class FaultFile(apsw.VFSFile):  # type: ignore[misc]
        """A file of the default VFS whose reads, writes, syncs and truncations count."""

        def __init__(self, name: Any, flags: list[int]) -> None:
            if name is None:
                self._name = "(temp)"
            elif isinstance(name, str):
                self._name = os.path.basename(name)
            else:
                self._name = os.path.basename(name.filename())
            super().__init__(BASE_VFS, name, flags)

        def xRead(self, amount: int, offset: int) -> bytes:
            if _act("sqlite", "read", self._name, None):
                raise _sqlite_error("read")
            return super().xRead(amount, offset)  # type: ignore[no-any-return]

        def xWrite(self, data: bytes, offset: int) -> None:
            def partial(part: bytes) -> None:
                apsw.VFSFile.xWrite(self, part, offset)

            if _act("sqlite", "write", self._name, partial, data, offset):
                raise _sqlite_error("write")
            super().xWrite(data, offset)

        def xSync(self, flags: int) -> None:
            if _act("sqlite", "sync", self._name, None):
                raise _sqlite_error("sync")
            super().xSync(flags)

        def xLock(self, level: int) -> None:
            try:
                super().xLock(level)
            except apsw.BusyError:
                raise
            except apsw.Error as exc:
                # The unix VFS refuses EXCLUSIVE on a read-only descriptor (at the close of
                # a read-only WAL connection). SQLite takes any refusal as "not obtained"
                # and moves on, but apsw would raise the error at the end of the API call:
                # an artifact of a Python VFS. Busy is the refusal apsw lets SQLite handle.
                raise apsw.BusyError(str(exc)) from None

        def xTruncate(self, newsize: int) -> None:
            if _act("sqlite", "truncate", self._name, None):
                raise _sqlite_error("truncate")
            super().xTruncate(newsize)

    class FaultVFS(apsw.VFS):  # type: ignore[misc]
        """The default ``unix`` VFS, with every file a :class:`FaultFile`."""

        def __init__(self) -> None:
            super().__init__("faultkit", BASE_VFS, makedefault=True)

        def xOpen(self, name: Any, flags: list[int]) -> FaultFile:
            return FaultFile(name, flags)


# --- the os layer: wrappers around os functions -----------------------------------------------


def _under(root: str, path: str) -> str | None:
    real = os.path.realpath(path)
    if real == root or real.startswith(root + os.sep):
        return os.path.basename(real) or real
    return None


def _fd_name(root: str, fd: int) -> str | None:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return _under(root, target) if target.startswith("/") else None


def _position(fd: int) -> int:
    """Where the next write on ``fd`` lands (the end of the file with O_APPEND)."""
    try:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return os.fstat(fd).st_size
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return -1


def _fail(kind: str, name: str) -> OSError:
    code = _plan.errno if _plan is not None else errnos.EIO
    return OSError(code, f"{os.strerror(code)} (injected {kind} fault)", name)


def _install_os(root: Path) -> None:
    top = os.path.realpath(root)

    def write(fd: int, data: Any) -> int:
        name = _fd_name(top, fd)
        if name is not None:
            offset = _position(fd)
            if _act("os", "write", name, lambda b: _os_write(fd, b), bytes(data), offset):
                raise _fail("write", name)
        return _os_write(fd, data)

    def fsync(fd: Any) -> None:
        name = _fd_name(top, fd if isinstance(fd, int) else fd.fileno())
        if name is not None and _act("os", "sync", name, None):
            raise _fail("sync", name)
        _os_fsync(fd)

    def ftruncate(fd: int, length: int) -> None:
        name = _fd_name(top, fd)
        if name is not None and _act("os", "truncate", name, None):
            raise _fail("truncate", name)
        _os_ftruncate(fd, length)

    def moved(real: Callable[..., None], kind: str) -> Callable[..., None]:
        def wrapper(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            name = _under(top, os.fspath(dst)) or _under(top, os.fspath(src))
            if name is not None and _act("os", kind, name, None):
                raise _fail(kind, name)
            real(src, dst, *args, **kwargs)

        return wrapper

    os.write = write
    os.fsync = fsync
    os.ftruncate = ftruncate
    os.replace = moved(_os_replace, "rename")
    os.rename = moved(_os_rename, "rename")


_installed = False


def install(root: Path, *, os_layer: bool = True) -> None:
    """Install the layers in this process (a forked child): SQLite files, and ``root``.

    Only a child should call this: the wrappers stay for the life of the process.

    Args:
        root: The directory whose files the os layer counts.
        os_layer: Also wrap the os functions (False: only SQLite's files count).
    """
    global _installed, _vfs
    if _installed:
        raise RuntimeError("fault shims are already installed in this process")
    _installed = True
    if apsw is not None:
        _vfs = FaultVFS()
    if os_layer:
        _install_os(root)


_vfs: Any = None


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """``RLIMIT_FSIZE`` at ``limit`` bytes (SIGXFSZ ignored: writes fail with EFBIG).

    Only the soft limit changes, so the process can lift it again (``space returns``).
    """
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
