"""Crash-safe file primitives: atomic replace, directory fsync, JSON encoding helpers."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import enum
import errno
import fcntl
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from .errors import InvalidEntryError, SessionStoreError, StorageFullError

__all__ = [
    "abandoned_build",
    "atomic_write",
    "check_json",
    "clone_json",
    "dumps_compact",
    "dumps_pretty",
    "ensure_private_dir",
    "fsync_dir",
    "move_into_place",
    "os_error",
    "sqlite_uri",
]

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# Deeper values (and values that contain themselves) are refused: the stdlib encoder, which
# takes what orjson refuses, recurses once per level.
MAX_JSON_DEPTH = 500
# orjson writes datetimes, dates, times and dataclasses by itself (as strings and objects): a
# value that is not JSON would be stored as something else than the caller holds. Passed
# through, they reach check_json, which refuses them; the cost is nil while none is there.
_STRICT: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_PRETTY: Final = _STRICT | orjson.OPT_INDENT_2


def os_error(exc: OSError, action: str, path: os.PathLike[str] | str) -> SessionStoreError:
    """Wrap an ``OSError`` in the matching ``SessionStoreError`` with advice."""
    if exc.errno in FULL_ERRNOS:
        return StorageFullError(
            f"cannot {action} {os.fspath(path)}: {exc.strerror} (the disk or a file size limit"
            " is full; free space and retry - nothing was half-written)"
        )
    return SessionStoreError(f"cannot {action} {os.fspath(path)}: {exc.strerror or exc}")


def sqlite_uri(path: os.PathLike[str] | str, query: str) -> str:
    """A ``file:`` URI for SQLite with ``query`` (e.g. ``mode=ro``); any path is escaped.

    ``#``, ``?`` and ``%`` in a path would otherwise end the path part of the URI.
    """
    from urllib.parse import quote

    return f"file:{quote(os.path.abspath(os.fspath(path)))}?{query}"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing; a directory we create gets mode 0700."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise os_error(exc, "create directory", path) from exc


_RENAME_NOREPLACE: Final = 1
_AT_FDCWD: Final = -100
# renameat2 is not in the os module; a missing symbol (old libc, not Linux) is remembered.
_renameat2: list[Any] = []


def _rename_noreplace(src: str, dst: str) -> bool:
    """``renameat2(RENAME_NOREPLACE)``; False when this system or filesystem lacks it."""
    if not _renameat2:
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            _renameat2.append(libc.renameat2)
        except (OSError, AttributeError, TypeError):
            _renameat2.append(None)
    call = _renameat2[0]
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    import ctypes

    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), dst)


def move_into_place(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if ``path`` does not exist, in one atomic step.

    The temporary name disappears in the same step (``renameat2`` with ``RENAME_NOREPLACE``),
    so a kill -9 can never leave a second name of the file behind. Where the system or the
    filesystem lacks that call, a hard link then an unlink of ``tmp`` does the same with a
    window in between (a leftover ``.tmp`` is what the doctor's stale-temp-file finding is for).

    Raises:
        FileExistsError: ``path`` exists; ``tmp`` is left as it was.
        OSError: Any other failure.
    """
    if _rename_noreplace(str(tmp), str(path)):
        return
    os.link(tmp, path)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def abandoned_build(path: Path, grace_s: float) -> bool | None:
    """Whether ``path`` is a file built under an flock whose builder is gone.

    A builder creates its temporary file, takes an exclusive flock on it before writing a
    byte, and holds it until the file has its final name or is removed. So a non-empty file
    that nobody holds locked was left by a dead builder; an empty one may belong to a
    builder between its create and its flock, and counts as abandoned only after
    ``grace_s`` seconds.

    Returns:
        True when abandoned, False when being built (or too new to tell), None when the
        file cannot be opened (gone already).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_size == 0 and st.st_mtime > time.time() - grace_s:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False  # its builder holds it
        return True
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (rename, create) to disk; best effort."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    durable: bool = True,
    before_replace: Callable[[], None] | None = None,
) -> os.stat_result:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync dir).

    The temp file is ``<name>.<uuid>.tmp`` beside the target, as OpenClaw names it. On any
    failure the temp file is removed and the old file is left as it was.

    Args:
        path: The file to replace.
        data: Its new content.
        mode: The file's permission bits.
        durable: fsync the file and the directory.
        before_replace: Called once the new content is on disk, right before the rename; if
            it raises, nothing is replaced and the exception propagates.

    Returns:
        The ``fstat`` of the written file, taken before the rename (which may change only
        its ``st_ctime``): who later finds these values under ``path`` reads these bytes.

    Raises:
        StorageFullError: The disk or a size limit is full.
        SessionStoreError: Any other I/O failure.
    """
    tmp = path.with_name(f"{path.name}.{uuid.uuid4()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(exc, "write", path) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
    return written


def check_json(
    value: Any, *, what: str = "value", prefix: tuple[str | int, ...] = (), keyed: bool = False
) -> None:
    """Refuse values JSON cannot hold exactly as given, naming where they are.

    Refused: values that are not JSON (``datetime``, ``date``, ``time``, dataclasses, sets,
    bytes, other objects), NaN and infinities (orjson writes them as ``null``), non-string
    object keys (the stdlib encoder turns ``1`` into ``"1"``) and integers outside
    [-2**63, 2**64) (orjson reads them back as floats): each would store something else
    than the caller holds, or fail later. Values nested deeper than ``MAX_JSON_DEPTH`` (or
    containing themselves) are refused too. ``uuid.UUID`` and ``enum.Enum`` members pass:
    orjson, which has no way to refuse them, writes the UUID's string and the member's
    value, and the fallback encoder does the same.

    Args:
        value: The value about to be encoded.
        what: What it is, for the message: ``entry``, ``transcript message``, ...
        prefix: Where ``value`` sits inside that (e.g. the session key and a field name).
        keyed: The first step of the path is a session key (a whole store, or a row).

    Raises:
        InvalidEntryError: Says which field holds what, and what to store instead, e.g.
            ``entry 'agent:main:x' field 'a.b': datetime is not a JSON value; store a
            string such as its isoformat()``.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, prefix)]
    while stack:
        item, path = stack.pop()
        if len(path) - len(prefix) > MAX_JSON_DEPTH:
            raise InvalidEntryError(
                f"{_where(what, path[: len(prefix)], keyed)} cannot be stored as JSON: it nests"
                f" deeper than {MAX_JSON_DEPTH} levels (or contains itself)"
            )
        if item is None or isinstance(item, str):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidEntryError(
                    f"{_where(what, path, keyed)}: {item!r} is not finite (JSON has no NaN or"
                    " Infinity); store a number, or None"
                )
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**64:
                raise InvalidEntryError(
                    f"{_where(what, path, keyed)}: integer {item} is beyond 64 bits, which JSON"
                    " readers cannot give back exactly; store it as a string"
                )
            if isinstance(item, enum.Enum):
                stack.append((item.value, path))
        elif isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise InvalidEntryError(
                        f"{_where(what, path, keyed)}: object key {k!r} is not a string; JSON"
                        " object keys are strings"
                    )
                stack.append((v, (*path, k)))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, (*path, i)) for i, v in enumerate(item))
        elif isinstance(item, enum.Enum):
            stack.append((item.value, path))
        elif not isinstance(item, uuid.UUID):
            raise InvalidEntryError(f"{_where(what, path, keyed)}: {_not_json(item)}")


def _where(what: str, path: tuple[str | int, ...], keyed: bool) -> str:
    """``entry 'agent:main:x' field 'a.b[0]'`` for a path inside an entry."""
    head = what
    if keyed and path:
        head, path = f"{what} {path[0]!r}", path[1:]
    if not path:
        return head
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return f"{head} field {dotted!r}"


def _not_json(item: object) -> str:
    """What is wrong with a value that is not JSON, and what to store instead."""
    name = type(item).__name__
    if isinstance(item, (datetime.date, datetime.time)):  # datetime is a date
        return f"{name} is not a JSON value; store a string such as its isoformat()"
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return (
            f"dataclass {name} is not a JSON value; store a dict such as dataclasses.asdict(value)"
        )
    if isinstance(item, (set, frozenset)):
        return f"{name} is not a JSON value; store a list"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"{name} is not a JSON value; store a string (e.g. base64)"
    return f"{name} is not a JSON value; store a string, number, bool, None, list or dict"


def _has_non_finite(value: Any) -> bool:
    """Whether a value orjson has just encoded holds NaN or an infinity.

    orjson already refused non-string keys and out-of-range integers, and it encodes no
    float subclass, so only exact floats (and the containers holding them) need a look.
    """
    t = type(value)
    if t is dict:
        items: Any = value.values()
    elif t is list or t is tuple:
        items = value
    elif t is float:
        return not math.isfinite(value)
    else:
        return False
    for item in items:
        ti = type(item)
        if (ti is dict or ti is list or ti is float or ti is tuple) and _has_non_finite(item):
            return True
    return False


def _as_orjson_writes(value: object) -> object:
    """The stdlib encoder's fallback for what orjson writes natively (and check_json lets by)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(
    value: Any,
    option: int,
    indent: int | None,
    what: str,
    prefix: tuple[str | int, ...],
    keyed: bool,
) -> bytes:
    try:
        data = orjson.dumps(value, option=option)
    except TypeError:
        pass  # a value that is not JSON, an integer beyond 64 bits, very deep nesting, ...
    else:
        # orjson writes NaN/Infinity as null: look closer only then.
        if b"null" in data and _has_non_finite(value):
            check_json(value, what=what, prefix=prefix, keyed=keyed)
        return data
    check_json(value, what=what, prefix=prefix, keyed=keyed)  # names what is wrong, and where
    try:
        text = json.dumps(
            value,
            indent=indent,
            separators=None if indent else (",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_as_orjson_writes,
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidEntryError(
            f"{_where(what, prefix, keyed)} cannot be stored as JSON: {exc}"
        ) from exc


def dumps_pretty(
    value: Any, *, what: str = "value", prefix: tuple[str | int, ...] = (), keyed: bool = False
) -> bytes:
    """``JSON.stringify(value, null, 2)``: 2-space indent, no trailing newline, UTF-8.

    Args:
        value: What to encode.
        what: What it is, named in the error (see :func:`check_json`).
        prefix: Where it sits inside that.
        keyed: The first step of the path is a session key.

    Raises:
        InvalidEntryError: ``value`` holds something JSON cannot hold exactly (see
            :func:`check_json`); the message names the field and the type.
    """
    return _dumps(value, _PRETTY, 2, what, prefix, keyed)


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    # hashlib loads OpenSSL (several MB of resident memory): only when something is hashed,
    # which a store that only reads never does.
    import hashlib

    return hashlib.sha256(data).hexdigest()


def dumps_compact(
    value: Any, *, what: str = "value", prefix: tuple[str | int, ...] = (), keyed: bool = False
) -> bytes:
    """Compact JSON (UTF-8), for database columns and transcript lines.

    Takes and refuses what :func:`dumps_pretty` does.
    """
    return _dumps(value, _STRICT, None, what, prefix, keyed)


def clone_json(value: Any) -> Any:
    """A deep copy of JSON data (faster than ``copy.deepcopy`` for large entries)."""
    try:
        return orjson.loads(orjson.dumps(value, option=_STRICT))
    except TypeError:  # not JSON: copied as it is, for the write to refuse
        return copy.deepcopy(value)
