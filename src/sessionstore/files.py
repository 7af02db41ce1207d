"""Crash-safe file primitives: atomic replace, directory fsync, JSON encoding helpers."""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .errors import InvalidEntryError, SessionStoreError, StorageFullError

__all__ = [
    "atomic_write",
    "check_json",
    "clone_json",
    "dumps_compact",
    "dumps_pretty",
    "ensure_private_dir",
    "fsync_dir",
    "os_error",
    "sqlite_uri",
]

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# Deeper values (and values that contain themselves) are refused: the stdlib encoder, which
# takes what orjson refuses, recurses once per level.
MAX_JSON_DEPTH = 500


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


def check_json(value: Any) -> None:
    """Refuse values JSON cannot hold exactly as given.

    That is NaN and infinities (orjson writes them as ``null``), non-string object keys (the
    stdlib encoder turns ``1`` into ``"1"``) and integers outside [-2**63, 2**64) (orjson
    reads them back as floats): each would silently store something else. Values nested
    deeper than ``MAX_JSON_DEPTH`` (or containing themselves) are refused too.

    Raises:
        InvalidEntryError: ``value`` holds such a number or key, or nests too deep.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidEntryError(
                f"value cannot be stored as JSON: it nests deeper than {MAX_JSON_DEPTH} levels"
                " (or contains itself)"
            )
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidEntryError(f"value cannot be stored as JSON: {item!r} is not finite")
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**64:
                raise InvalidEntryError(
                    f"value cannot be stored as JSON: integer {item} is beyond 64 bits"
                )
        elif isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise InvalidEntryError(
                        f"value cannot be stored as JSON: object key {k!r} is not a string"
                    )
                stack.append((v, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)


def _check_finite(value: Any) -> None:
    """Refuse NaN and infinities in a value orjson has just encoded.

    orjson already refused non-string keys and out-of-range integers, and it encodes no
    float subclass, so only exact floats (and the containers holding them) need a look.
    """
    t = type(value)
    if t is dict:
        items: Any = value.values()
    elif t is list or t is tuple:
        items = value
    elif t is float:
        if not math.isfinite(value):
            raise InvalidEntryError(f"value cannot be stored as JSON: {value!r} is not finite")
        return
    else:
        return
    for item in items:
        ti = type(item)
        if ti is dict or ti is list or ti is float or ti is tuple:
            _check_finite(item)


def dumps_pretty(value: Any) -> bytes:
    """``JSON.stringify(value, null, 2)``: 2-space indent, no trailing newline, UTF-8."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except TypeError:
        pass  # e.g. integers beyond 64 bits: check_json refuses them below
    else:
        if b"null" in data:  # orjson writes NaN/Infinity as null: look closer only then
            _check_finite(value)
        return data
    check_json(value)
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidEntryError(f"value cannot be stored as JSON: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    # hashlib loads OpenSSL (several MB of resident memory): only when something is hashed,
    # which a store that only reads never does.
    import hashlib

    return hashlib.sha256(data).hexdigest()


def dumps_compact(value: Any) -> bytes:
    """Compact JSON (UTF-8) for database columns."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        pass
    else:
        if b"null" in data:  # orjson writes NaN/Infinity as null: look closer only then
            _check_finite(value)
        return data
    check_json(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidEntryError(f"value cannot be stored as JSON: {exc}") from exc


def clone_json(value: Any) -> Any:
    """A deep copy of JSON data (faster than ``copy.deepcopy`` for large entries)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return copy.deepcopy(value)
