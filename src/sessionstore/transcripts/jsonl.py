"""The cold tier: pi v3 ``.jsonl`` transcripts, as OpenClaw writes and reads them.

One JSON object per line. Line 1 is the ``session`` header; every other entry has an 8-hex
``id``, a ``parentId`` chained to the previous leaf and an ISO ``timestamp``.

Appends are crash-safe: one ``os.write`` of a whole line on an ``O_APPEND`` descriptor,
under an exclusive ``flock`` on the transcript (released by the kernel if the writer
dies, so no stale lock files). A torn last line left by a crash is cut back to the last
complete record before the next append; a failed write (disk full, file size limit) is
truncated back so the file always ends at a complete record. Tail reads walk the file
backwards in blocks, so ``tail(n)`` costs what the last n records take, not the file size.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import orjson

from ..errors import SessionStoreError, StorageFullError
from ..files import atomic_write, fsync_dir, os_error, write_all
from .naming import archive_timestamp

__all__ = [
    "COMPACTION_MARKER",
    "Transcript",
    "TranscriptState",
    "iso_now",
]

BLOCK: Final = 64 * 1024
COMPACTION_MARKER: Final = {"role": "system", "content": [{"type": "text", "text": "Compaction"}]}


def iso_now() -> str:
    """``new Date().toISOString()``: ``2026-03-31T12:34:56.789Z``."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class TranscriptState:
    """Where a transcript stood after the last append the index knows of.

    Attributes:
        count: Message records in the file up to ``size``.
        size: Bytes of the file those counts cover.
    """

    __slots__ = ("count", "size")

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size


def _parse_line(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _record(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The message record of a line (a message, or the compaction marker), else None."""
    kind = entry.get("type")
    if kind == "message" and isinstance(entry.get("message"), dict):
        msg = dict(entry["message"])
        msg["__openclaw"] = {"id": entry.get("id")}
        return msg
    if kind == "compaction":
        marker = orjson.loads(orjson.dumps(COMPACTION_MARKER))
        marker["__openclaw"] = {"id": entry.get("id"), "kind": "compaction"}
        return marker  # type: ignore[no-any-return]
    return None


class Transcript:
    """One session's transcript file.

    Obtain it from ``SessionStore.transcript(key)``; reads work on any pi/OpenClaw file.

    Attributes:
        path: The ``.jsonl`` file.
        session_id: The session it belongs to.
        skipped: Malformed lines met by the last read (never silently dropped).
        bytes_read: Bytes read from the file by the last read operation.
    """

    def __init__(
        self,
        path: Path,
        session_id: str,
        *,
        durable: bool = False,
        cwd: str | None = None,
        on_append: Callable[[Callable[[], TranscriptState]], Any] | None = None,
        known_state: Callable[[], TranscriptState | None] | None = None,
        on_compact: Callable[[], Any] | None = None,
    ) -> None:
        self.path = path
        self.session_id = session_id
        self.skipped = 0
        self.bytes_read = 0
        self._durable = durable
        self._cwd = cwd if cwd is not None else os.getcwd()
        self._on_append = on_append
        self._known_state = known_state
        self._on_compact = on_compact

    def __repr__(self) -> str:
        return f"Transcript({str(self.path)!r})"

    # --- reading ----------------------------------------------------------------------------

    def _read_all(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise os_error(exc, "read", self.path) from exc
        self.bytes_read = len(data)
        return data

    def entries(self) -> list[dict[str, Any]]:
        """Every line as parsed JSON, header included.

        Malformed lines are skipped and counted in ``skipped``.
        """
        self.skipped = 0
        out: list[dict[str, Any]] = []
        for line in self._read_all().splitlines():
            if not line.strip():
                continue
            parsed = _parse_line(line)
            if parsed is None:
                self.skipped += 1
            else:
                out.append(parsed)
        return out

    def messages(self) -> list[dict[str, Any]]:
        """Every message record in order, annotated ``__openclaw: {id, seq}`` (seq from 1).

        A ``compaction`` line becomes the synthetic system marker of the gateway, annotated
        ``{id, kind: "compaction"}`` without a seq. v1/v2 files are read as they are.
        """
        out: list[dict[str, Any]] = []
        seq = 0
        for entry in self.entries():
            rec = _record(entry)
            if rec is None:
                continue
            if rec["__openclaw"].get("kind") is None:
                seq += 1
                rec["__openclaw"]["seq"] = seq
            out.append(rec)
        return out

    def _lines_backwards(self, fd: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Lines of ``[0, end)``, last first, as (offset, line), reading blocks backwards."""
        buf = b""
        buf_start = end
        limit = 0
        while True:
            idx = buf.rfind(b"\n", 0, limit)
            if idx != -1:
                yield buf_start + idx + 1, buf[idx + 1 : limit]
                limit = idx
                continue
            if buf_start == 0:
                if limit > 0:
                    yield 0, buf[:limit]
                return
            start = max(0, buf_start - BLOCK)
            chunk = os.pread(fd, buf_start - start, start)
            self.bytes_read += len(chunk)
            buf = chunk + buf[:limit]
            limit = len(buf)
            buf_start = start

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` message records, oldest first, with their absolute seq numbers.

        Reads the file backwards: the cost depends on ``n``, not on the file size. The seq
        numbers come from the count the index keeps (plus anything appended beyond it).
        """
        if n <= 0:
            return []
        self.skipped = 0
        self.bytes_read = 0
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise os_error(exc, "read", self.path) from exc
        try:
            size = os.fstat(fd).st_size
            end = size
            last = os.pread(fd, 1, size - 1) if size else b"\n"
            if last != b"\n":  # a torn (incomplete) last line is not a record yet
                self.skipped += 1
                end = self._last_newline(fd, size)
            picked: list[dict[str, Any]] = []
            messages_seen = 0
            for _, line in self._lines_backwards(fd, end):
                if len(picked) >= n:
                    break
                if not line.strip():
                    continue
                entry = _parse_line(line)
                if entry is None:
                    self.skipped += 1
                    continue
                rec = _record(entry)
                if rec is None:
                    continue
                if rec["__openclaw"].get("kind") is None:
                    messages_seen += 1
                picked.append(rec)
            total = self._count_through(fd, end)
        finally:
            os.close(fd)
        picked.reverse()
        seq = total - messages_seen
        for rec in picked:
            if rec["__openclaw"].get("kind") is None:
                seq += 1
                rec["__openclaw"]["seq"] = seq
        return picked

    def _last_newline(self, fd: int, size: int) -> int:
        for offset, _ in self._lines_backwards(fd, size):
            if offset > 0:
                return offset
        return 0

    def _count_through(self, fd: int, end: int) -> int:
        """Message records in ``[0, end)``: the index's count plus a scan of what follows."""
        state = self._known_state() if self._known_state else None
        if state is None or state.size > end:
            return _count_messages(fd, 0, end, self)
        return state.count + _count_messages(fd, state.size, end, self)

    def message_count(self) -> int:
        """Number of message records in the file (a full read)."""
        return sum(1 for m in self.messages() if m["__openclaw"].get("kind") is None)

    # --- appending --------------------------------------------------------------------------

    def _header(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "type": "session",
                    "version": 3,
                    "id": self.session_id,
                    "timestamp": iso_now(),
                    "cwd": self._cwd,
                }
            )
            + b"\n"
        )

    @contextlib.contextmanager
    def _locked(self, *, create: bool) -> Iterator[int]:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise os_error(exc, "open", self.path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The path may have been renamed (reset, compact) while we waited: follow it.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise _Moved()
            yield fd
        finally:
            os.close(fd)

    def write_header(self) -> int:
        """Create the file with its ``session`` header (mode 0600); returns its size."""
        for _ in range(3):
            try:
                with self._locked(create=True) as fd:
                    size = os.fstat(fd).st_size
                    if size == 0:
                        self._write(fd, self._header(), 0)
                        if self._durable:
                            os.fsync(fd)
                        fsync_dir(self.path.parent)
                        size = os.fstat(fd).st_size
                    return size
            except _Moved:
                continue
        raise SessionStoreError(f"{self.path} keeps being moved by another process; retry")

    def _write(self, fd: int, data: bytes, size_before: int) -> None:
        try:
            write_all(fd, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size_before)  # the file ends at a complete record again
            if exc.errno is not None and exc.errno in (28, 27, 122):  # ENOSPC, EFBIG, EDQUOT
                raise StorageFullError(
                    f"cannot append to {self.path}: {exc.strerror}; free space (or raise the"
                    " file size limit) and retry - the transcript was left at its last"
                    " complete record"
                ) from exc
            raise os_error(exc, "append to", self.path) from exc

    def _repair_tail(self, fd: int) -> int:
        """Cut a torn last line back to the last complete record; returns the size."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        keep = self._last_newline(fd, size)
        os.ftruncate(fd, keep)
        return keep

    def torn_bytes(self) -> int:
        """Bytes after the last complete line (a write cut short by a crash); 0 if none."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise os_error(exc, "read", self.path) from exc
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return 0
            return size - self._last_newline(fd, size)
        finally:
            os.close(fd)

    def repair_tail(self) -> Path | None:
        """Cut a torn last line off, keeping the cut bytes in ``<file>.torn.<ts>``.

        Appends do this by themselves; this is for ``doctor --fix``.

        Returns:
            The file holding the cut bytes, or None when the tail was whole.
        """
        for _ in range(3):
            try:
                with self._locked(create=False) as fd:
                    size = os.fstat(fd).st_size
                    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                        return None
                    keep = self._last_newline(fd, size)
                    saved = self.path.with_name(f"{self.path.name}.torn.{archive_timestamp()}")
                    atomic_write(saved, os.pread(fd, size - keep, keep), mode=0o600)
                    os.ftruncate(fd, keep)
                    return saved
            except _Moved:
                continue
        raise SessionStoreError(f"{self.path} keeps being moved by another process; retry")

    def _leaf_and_ids(self, fd: int, end: int) -> tuple[str | None, set[str]]:
        """The id of the last entry (the leaf) and the ids seen near the end."""
        leaf: str | None = None
        ids: set[str] = set()
        scanned = 0
        for _, line in self._lines_backwards(fd, end):
            entry = _parse_line(line)
            scanned += len(line) + 1
            if entry is not None and entry.get("type") != "session":
                entry_id = entry.get("id")
                if isinstance(entry_id, str):
                    if leaf is None:
                        leaf = entry_id
                    ids.add(entry_id)
            if leaf is not None and scanned >= BLOCK:
                break
        return leaf, ids

    def _find_idempotent(self, fd: int, end: int, key: str) -> str | None:
        if end == 0:
            return None
        needle = b'"idempotencyKey":' + orjson.dumps(key)
        with mmap.mmap(fd, end, prot=mmap.PROT_READ) as mm:
            pos = mm.find(needle)
            while pos != -1:
                start = mm.rfind(b"\n", 0, pos) + 1
                stop = mm.find(b"\n", pos)
                entry = _parse_line(mm[start : stop if stop != -1 else end])
                msg = entry.get("message") if entry else None
                if entry and isinstance(msg, dict) and msg.get("idempotencyKey") == key:
                    found = entry.get("id")
                    return found if isinstance(found, str) else None
                pos = mm.find(needle, pos + 1)
        return None

    def append(self, message: dict[str, Any], *, idempotency_key: str | None = None) -> str:
        """Append a message as a pi v3 ``message`` entry; returns its entry id.

        Creates the file with its ``session`` header when missing. With an
        ``idempotency_key`` already present in the file, nothing is appended and the
        existing entry's id is returned. The session's ``messageCount`` and ``updatedAt``
        in the index are updated in the same call, after the transcript write.

        Raises:
            StorageFullError: The disk or a file size limit is full; the file still ends at
                its last complete record.
            SessionStoreError: The session was reset or deleted meanwhile, or I/O failed.
        """
        if not isinstance(message, dict):
            raise SessionStoreError(f"a message must be a dict, got {type(message).__name__}")
        msg = dict(message)
        if idempotency_key is not None:
            msg["idempotencyKey"] = idempotency_key
        msg.setdefault("timestamp", _now_ms())
        for _ in range(3):
            try:
                return self._append_once(msg, idempotency_key)
            except _Moved:
                continue
        raise SessionStoreError(f"{self.path} keeps being moved by another process; retry")

    def _append_once(self, msg: dict[str, Any], idempotency_key: str | None) -> str:
        with self._locked(create=True) as fd:
            size = self._repair_tail(fd)
            if idempotency_key is not None:
                existing = self._find_idempotent(fd, size, idempotency_key)
                if existing is not None:
                    return existing
            created = size == 0
            header = self._header() if created else b""
            leaf, ids = self._leaf_and_ids(fd, size) if not created else (None, set())
            entry_id = uuid.uuid4().hex[:8]
            while entry_id in ids:
                entry_id = uuid.uuid4().hex[:8]
            line = (
                header
                + orjson.dumps(
                    {
                        "type": "message",
                        "id": entry_id,
                        "parentId": leaf,
                        "timestamp": iso_now(),
                        "message": msg,
                    }
                )
                + b"\n"
            )

            def write() -> TranscriptState:
                count_before = self._count_through(fd, size)
                self._write(fd, line, size)
                if self._durable:
                    os.fsync(fd)
                    if created:
                        fsync_dir(self.path.parent)
                return TranscriptState(count_before + 1, size + len(line))

            if self._on_append is None:
                write()
                return entry_id
            try:
                self._on_append(write)
            except BaseException:
                # The index did not take it: the append is not acknowledged, so undo it.
                with contextlib.suppress(OSError):
                    if os.fstat(fd).st_size > size:
                        os.ftruncate(fd, size)
                    if size == 0:
                        os.unlink(self.path)
                raise
            return entry_id

    # --- compaction -------------------------------------------------------------------------

    def compact(self, max_lines: int) -> Path | None:
        """Cut the transcript to its header and last ``max_lines`` lines (``sessions.compact``).

        The old file stays as ``<file>.bak.<ts>`` (a hard link: there is never a moment
        without the file). Unlike OpenClaw, the ``session`` header is always kept. The
        index entry loses its token counters and gets a fresh ``updatedAt``.

        Returns:
            The backup path, or None when the file had no more than ``max_lines`` lines.
        """
        for _ in range(3):
            try:
                backup, _size = self._compact_file(max_lines)
            except _Moved:
                continue
            if backup is not None and self._on_compact is not None:
                self._on_compact()
            return backup
        raise SessionStoreError(f"{self.path} keeps being moved by another process; retry")

    def _compact_file(self, max_lines: int) -> tuple[Path | None, int]:
        if max_lines < 1:
            raise SessionStoreError(f"max_lines must be at least 1, got {max_lines}")
        with self._locked(create=False) as fd:
            size = self._repair_tail(fd)
            data = os.pread(fd, size, 0)
            lines = [ln for ln in data.split(b"\n") if ln.strip()]
            header = (
                lines[0]
                if lines and (_parse_line(lines[0]) or {}).get("type") == "session"
                else None
            )
            body = lines[1:] if header is not None else lines
            if len(body) <= max_lines:
                return None, size
            kept = ([header] if header is not None else []) + body[-max_lines:]
            new = b"\n".join(kept) + b"\n"
            backup = self.path.with_name(f"{self.path.name}.bak.{archive_timestamp()}")
            tmp = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.tmp")
            try:
                os.link(self.path, backup)  # the backup is the old file itself, never a gap
                tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    write_all(tfd, new)
                    os.fsync(tfd)
                finally:
                    os.close(tfd)
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise os_error(exc, "compact", self.path) from exc
            fsync_dir(self.path.parent)
            return backup, len(new)


class _Moved(Exception):
    """The transcript was renamed while we waited for its lock."""


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def _count_messages(fd: int, start: int, end: int, reader: Transcript) -> int:
    """Message lines in ``[start, end)`` of the file."""
    if end <= start:
        return 0
    count = 0
    pos = start
    carry = b""
    while pos < end:
        chunk = os.pread(fd, min(1 << 20, end - pos), pos)
        if not chunk:
            break
        reader.bytes_read += len(chunk)
        pos += len(chunk)
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for line in parts:
            if b'"message"' in line:
                entry = _parse_line(line)
                if (
                    entry is not None
                    and entry.get("type") == "message"
                    and isinstance(entry.get("message"), dict)
                ):
                    count += 1
    if carry:
        entry = _parse_line(carry)
        if entry is not None and entry.get("type") == "message":
            count += 1
    return count
