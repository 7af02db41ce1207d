"""The cold tier: pi v3 ``.jsonl`` transcripts, as OpenClaw writes and reads them.

One JSON object per line. Line 1 is the ``session`` header; every other entry has an 8-hex
``id``, a ``parentId`` chained to the previous leaf and an ISO ``timestamp``. Files are
opened with ``O_NOFOLLOW``: a symlink planted at a transcript path is never followed.

Appends are crash-safe: one ``os.write`` of a whole line on an ``O_APPEND`` descriptor,
under an exclusive ``flock`` on the transcript (released by the kernel if the writer dies,
so no stale lock files). Before an append, bytes after the last newline that do not parse
as JSON (a line torn by a crash) are cut off and kept in ``<file>.torn.<ts>``; a last
record that parses but lacks its newline (another writer's) is kept, and gets its newline
with the append. Readers (``tail``, ``messages``, ``entries``) count such a record like any
other. A failed write (disk full, file size limit) is truncated back, so the file always
ends where it ended before.

Cost: ``tail(n)`` and ``append`` read what is new since the transcript's checkpoint plus
what they return, never the whole file again (``checkpoint.py``): a checkpoint records, for
one file identity, the message count, the last entry id and the idempotency keys of the
bytes up to a line boundary; it is checked against the file (identity, size, the first bytes
of its last line) before it is trusted, so a file rewritten in place and regrown is scanned
again, not miscounted. The first read of a file without a checkpoint scans it once. An
append takes the transcript's ``flock``, brings the checkpoint up to date (reading only the
new bytes, outside any index lock), decides idempotency from the checkpoint's keys, writes
its line, and then commits through its :class:`~.link.IndexLink`: on SQLite one short
transaction re-checks the entry's ``sessionId``, sets ``messageCount``/``updatedAt`` and
stores the new checkpoint (the file is never read inside it); on ``sessions.json`` the index
is left alone and the checkpoint is kept in this process. If the commit fails, the line is
truncated back. Idempotency is decided by parsing lines (``message.idempotencyKey``), so a
file written by any JSON writer (spacing, key order, escapes) is honoured. ``bytes_read``
counts what the last operation read from the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..clock import iso_now, now_ms
from ..errors import (
    InvalidArgumentError,
    InvalidEntryError,
    OutcomeUnknownError,
    SessionStoreError,
    StorageFullError,
)
from ..files import atomic_write, dumps_compact, fsync_dir, os_error, write_all
from ..lockfile import LockFile
from .checkpoint import MARK_BYTES, MEMORY, Checkpoint, CheckpointStore
from .naming import archive_timestamp

if TYPE_CHECKING:
    from .link import IndexLink

__all__ = [
    "COMPACTION_MARKER",
    "Transcript",
    "numbered",
]

BLOCK: Final = 64 * 1024
COMPACTION_MARKER: Final = {"role": "system", "content": [{"type": "text", "text": "Compaction"}]}


SCAN_CHUNK: Final = 1 << 20
# A JSON ``\u`` escape (``re`` finds it faster than ``bytes.__contains__`` does).
_U_ESCAPE: Final = re.compile(rb"\\u")
# A handle that found its file where it had left it this many appends in a row keeps the
# hex runs of the file's last block (``_NearEnd``): building them costs about as much as
# eight searches of the block (0.25 ms), and each later append then searches a few KB
# instead of 64 (and reads none), until another writer touches the file.
KEEP_RUNS_AFTER: Final = 2
# ... and builds them again once they cover this much more than a block.
RUNS_SPAN: Final = 4 * BLOCK
TAIL_ATTEMPTS: Final = 3
# Saves with this ``expect`` never replace a stored checkpoint of the same file (no real
# generation is empty): used when the stored one is ahead of what the caller read.
AHEAD: Final = ""
# A tail that had to read this much to bring a checkpoint up to date stores it (best
# effort, never waiting for the index), so the next reader does not read it again.
SAVE_AFTER: Final = BLOCK


def _parse_line(line: bytes) -> dict[str, Any] | None:
    """The JSON object on a line; None for anything else (blank, malformed, not an object)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _parses(data: bytes) -> bool:
    """Whether ``data`` is one complete JSON value (a record a writer finished)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


# Bytes as ``_hex_runs`` sees them: hex digits as "x", everything else as a space.
_HEX_MASK: Final = bytes(0x78 if chr(c) in "0123456789abcdef" else 0x20 for c in range(256))


def _hex_runs(data: bytes) -> bytes:
    """The runs of 8 or more lowercase hex digits in ``data``, joined by spaces.

    An 8-hex entry id occurs in ``data`` exactly when it occurs in one of these runs.
    """
    mask = data.translate(_HEX_MASK)
    runs = []
    at = mask.find(b"xxxxxxxx")
    while at >= 0:
        stop = mask.find(b" ", at + 8)
        if stop < 0:
            stop = len(mask)
        runs.append(data[at:stop])
        at = mask.find(b"xxxxxxxx", stop)
    return b" ".join(runs)


class _NearEnd:
    """What a handle's last append left behind about the end of its file.

    Attributes:
        dev: ``st_dev`` of the file.
        ino: ``st_ino`` of the file.
        end: The file's size after that append.
        streak: How many appends in a row before it found the file where the one before
            had left it (nothing written by anyone else in between).
        runs: ``_hex_runs`` of the bytes from ``start`` to ``end`` (None: not kept).
        start: Where those bytes start: never after ``end - BLOCK``.
    """

    __slots__ = ("dev", "end", "ino", "runs", "start", "streak")

    def __init__(self, dev: int, ino: int, end: int, streak: int) -> None:
        self.dev, self.ino, self.end, self.streak = dev, ino, end, streak
        self.runs: bytes | None = None
        self.start = end


def _blank(line: bytes) -> bool:
    return not line or line.isspace()


def _is_message(entry: dict[str, Any]) -> bool:
    return entry.get("type") == "message" and isinstance(entry.get("message"), dict)


def _ids_in(data: bytes) -> set[str]:
    """Entry ids on the lines of ``data`` (a first line cut short may parse or not)."""
    ids = set()
    for line in data.split(b"\n"):
        entry = _parse_line(line) if not _blank(line) else None
        if entry is not None and isinstance(entry.get("id"), str):
            ids.add(entry["id"])
    return ids


def numbered(records: list[dict[str, Any]], before: int = 0) -> list[dict[str, Any]]:
    """Number the message records ``before + 1``, ... (``__openclaw.seq``; markers get none).

    Args:
        records: Message records in order (from :func:`_record`), changed in place.
        before: How many messages precede the first one.

    Returns:
        ``records``.
    """
    seq = before
    for rec in records:
        if rec["__openclaw"].get("kind") is None:
            seq += 1
            rec["__openclaw"]["seq"] = seq
    return records


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


class _Tally:
    """Running totals of a forward read over whole lines (what a checkpoint records).

    Attributes:
        count: Message records so far.
        leaf: The id of the last entry so far.
        size: Bytes covered (the end of the last line taken, newline included).
        mark_at: Where the last non-blank line taken starts.
        mark: Its first bytes.
        keys: Idempotency keys met (first occurrence wins) -> entry id.
        ids: Entry ids met (to keep a new id unique).
    """

    __slots__ = ("count", "ids", "keys", "leaf", "mark", "mark_at", "size")

    def __init__(self, base: Checkpoint | None = None) -> None:
        self.count = base.count if base else 0
        self.leaf = base.leaf if base else None
        self.size = base.size if base else 0
        self.mark_at = base.mark_at if base else 0
        self.mark = base.mark if base else b""
        self.keys: dict[str, str] = {}
        self.ids: set[str] = set()

    def line(self, line: bytes, start: int) -> None:
        """Take the line at ``start`` (without its newline)."""
        self.size = start + len(line) + 1
        if not _blank(line):
            self.mark_at = start
            self.mark = line[:MARK_BYTES]
        entry = _parse_line(line)
        if entry is None:
            return
        entry_id = entry.get("id")
        if isinstance(entry_id, str) and entry.get("type") != "session":
            self.leaf = entry_id
            self.ids.add(entry_id)
        if _is_message(entry):
            self.count += 1
            key = entry["message"].get("idempotencyKey")
            if isinstance(key, str) and isinstance(entry_id, str):
                self.keys.setdefault(key, entry_id)

    def checkpoint(self, dev: int, ino: int, gen: str) -> Checkpoint:
        """These totals as the checkpoint of file ``(dev, ino)``."""
        return Checkpoint(dev, ino, self.size, self.count, self.leaf, self.mark_at, self.mark, gen)


class _Progress:
    """A checkpoint brought up to date: its base, the totals, and how it is to be saved."""

    __slots__ = ("base", "dev", "expect", "gen", "ino", "scanned", "tally")

    def __init__(self, st: os.stat_result, stored: Checkpoint | None, base: Checkpoint | None):
        self.dev, self.ino = st.st_dev, st.st_ino
        self.base = base
        self.expect = stored.gen if stored is not None else None
        self.gen = base.gen if base is not None else uuid.uuid4().hex
        self.tally = _Tally(base)
        self.scanned = 0

    def checkpoint(self) -> Checkpoint:
        return self.tally.checkpoint(self.dev, self.ino, self.gen)


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidArgumentError(
            f"n must be an integer number of messages, got {n!r} ({type(n).__name__})"
        )
    return n


class Transcript:
    """One session's transcript file.

    Obtain it from ``SessionStore.transcript(key)``; reads work on any pi/OpenClaw file.

    Attributes:
        path: The ``.jsonl`` file.
        session_id: The session it belongs to.
        skipped: Malformed lines met by the last read (never silently dropped).
        bytes_read: Bytes read from the file by the last read, append or compaction.
    """

    def __init__(
        self,
        path: Path,
        session_id: str,
        *,
        durable: bool = False,
        cwd: str | None = None,
        link: IndexLink | None = None,
        checkpoints: CheckpointStore | None = None,
        lock_timeout_ms: int = 10_000,
    ) -> None:
        self.path = path
        self.session_id = session_id
        self.skipped = 0
        self.bytes_read = 0
        self._durable = durable
        # OpenClaw's agent runner holds `<transcript>.lock` for a whole run: every write
        # here takes it too (after the kernel lock), so a run and this library never
        # interleave their lines; a live holder is waited for, a dead one's lock taken over.
        self._run_lock = LockFile(path, timeout_ms=lock_timeout_ms)
        self._cwd = cwd if cwd is not None else os.getcwd()
        self._link = link
        if checkpoints is None:
            checkpoints = link.checkpoints if link is not None else MEMORY
        self._checkpoints = checkpoints
        # The checkpoint this handle's last append committed (None after any failure).
        self._committed: Checkpoint | None = None
        self._near_end: _NearEnd | None = None

    def __repr__(self) -> str:
        return f"Transcript({str(self.path)!r})"

    # --- files ------------------------------------------------------------------------------

    def _open_failed(self, exc: OSError, action: str) -> SessionStoreError:
        if exc.errno == errno.ELOOP:
            return SessionStoreError(
                f"cannot {action} {self.path}: it is a symbolic link, and transcripts are never"
                " opened through one (it could lead outside the sessions dir); replace the link"
                " with the file itself"
            )
        if exc.errno == errno.EISDIR:
            return self._not_regular("a directory", action)
        return os_error(exc, action, self.path)

    def _not_regular(self, what: str, action: str) -> SessionStoreError:
        return SessionStoreError(
            f"cannot {action} {self.path}: it is {what}, not a regular file; move it away"
        )

    def _open(self, flags: int, action: str) -> int:
        """Open the transcript without following a symlink; it must be a regular file."""
        flags |= os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO never hangs us
        fd = os.open(self.path, flags, 0o600)
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, action, self.path) from exc
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise self._not_regular(
                "a directory" if stat.S_ISDIR(mode) else "a special file", action
            )
        return fd

    def _open_read(self) -> int | None:
        try:
            return self._open(os.O_RDONLY, "read")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._open_failed(exc, "read") from exc

    def _pread(self, fd: int, n: int, offset: int) -> bytes:
        try:
            data = os.pread(fd, n, offset)
        except OSError as exc:
            raise os_error(exc, "read", self.path) from exc
        self.bytes_read += len(data)
        return data

    # --- reading ----------------------------------------------------------------------------

    def _read_all(self) -> bytes:
        self.bytes_read = 0
        fd = self._open_read()
        if fd is None:
            return b""
        try:
            chunks = []
            pos = 0
            while chunk := self._pread(fd, 16 * SCAN_CHUNK, pos):
                chunks.append(chunk)
                pos += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Every line as parsed JSON, header included.

        Malformed lines are skipped and counted in ``skipped``; a last line without its
        newline counts when it parses (another writer's complete record).
        """
        self.skipped = 0
        out: list[dict[str, Any]] = []
        for line in self._read_all().split(b"\n"):
            if _blank(line):
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
        return numbered([rec for entry in self.entries() if (rec := _record(entry)) is not None])

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
            chunk = self._pread(fd, buf_start - start, start)
            buf = chunk + buf[:limit]
            limit = len(buf)
            buf_start = start

    def _last_line_start(self, fd: int, size: int) -> int:
        """Where the bytes after the last newline start (``size`` when the file ends with one)."""
        if size == 0 or self._pread(fd, 1, size - 1) == b"\n":
            return size
        for offset, _ in self._lines_backwards(fd, size):
            return offset
        return 0

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` message records, oldest first, with their absolute seq numbers.

        Reads the last records backwards, and for the seq numbers only what was appended
        since the transcript's checkpoint: the cost does not grow with the file size (the
        first read of a file without a checkpoint scans it once).

        Raises:
            InvalidArgumentError: ``n`` is not an integer.
        """
        n = _check_count(n)
        self.skipped = 0
        self.bytes_read = 0
        if n <= 0:
            return []
        fd = self._open_read()
        if fd is None:
            return []
        try:
            for attempt in range(TAIL_ATTEMPTS):
                done = self._tail_once(fd, n, last_try=attempt == TAIL_ATTEMPTS - 1)
                if done is not None:
                    return done
            raise AssertionError("unreachable: the last attempt always answers")
        finally:
            os.close(fd)

    def _tail_once(self, fd: int, n: int, *, last_try: bool) -> list[dict[str, Any]] | None:
        """``tail(n)`` of the file as it is now; None when it grew under us (try again)."""
        self.skipped = 0
        st = os.fstat(fd)
        end = self._last_line_start(fd, st.st_size)
        # A last line without its newline is a record when it parses (another writer's
        # complete record), as for messages() and entries().
        last = self._pread(fd, st.st_size - end, end) if end < st.st_size else b""
        last_entry = _parse_line(last) if not _blank(last) else None
        lines: Iterator[tuple[int, bytes]] = self._lines_backwards(fd, end)
        if last:
            lines = itertools.chain([(end, last)], lines)
        picked: list[dict[str, Any]] = []
        messages_seen = 0
        for _, line in lines:
            if len(picked) >= n:
                break
            if _blank(line):
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
        progress = self._catch_up(fd, st, end, last_try=last_try)
        if progress is None:
            return None
        self._keep(progress)
        total = progress.tally.count
        if last_entry is not None and _is_message(last_entry):
            total += 1
        picked.reverse()
        return numbered(picked, total - messages_seen)

    def message_count(self) -> int:
        """Number of message records in the file (a full read)."""
        return sum(1 for m in self.messages() if m["__openclaw"].get("kind") is None)

    # --- checkpoints ------------------------------------------------------------------------

    def _valid(self, fd: int, cp: Checkpoint, st: os.stat_result, end: int) -> bool:
        """Whether ``cp`` still describes the first ``cp.size`` bytes of the open file."""
        if (cp.dev, cp.ino) != (st.st_dev, st.st_ino) or cp.size > end:
            return False
        if cp.size == 0:
            return True
        return (
            self._pread(fd, 1, cp.size - 1) == b"\n"
            and self._pread(fd, len(cp.mark), cp.mark_at) == cp.mark
        )

    def _catch_up(
        self,
        fd: int,
        st: os.stat_result,
        end: int,
        *,
        last_try: bool,
        known: Checkpoint | None = None,
    ) -> _Progress | None:
        """The checkpoint of ``[0, end)`` (a line boundary), reading only what it lacks.

        A stored checkpoint beyond ``end`` that still matches the file is not stale: the
        file grew after ``st`` was taken (another process appended and saved it). Then
        this returns None, so the caller looks again; on its ``last_try`` it scans from
        the start and never replaces that checkpoint (replacing it would drop the
        idempotency keys a concurrent appender is reading).

        ``known``, a checkpoint this handle committed, stands in for the stored one when
        it covers exactly ``[0, end)`` of this file and passes the same checks: nothing
        was appended since it was committed, and a checkpoint that passes them gives the
        file's count whichever one the index holds now (saves are compare-and-set).
        """
        if (
            known is not None
            and known.size == end
            and (known.dev, known.ino) == (st.st_dev, st.st_ino)
            and self._valid(fd, known, st, end)
        ):
            return _Progress(st, known, known)
        stored = self._checkpoints.load(str(self.path), st.st_dev, st.st_ino)
        base = None
        if stored is not None and self._valid(fd, stored, st, end):
            base = stored
        elif stored is not None and stored.size > end:
            now = os.fstat(fd)
            if self._valid(fd, stored, now, now.st_size):
                if not last_try:
                    return None
                progress = _Progress(st, stored, None)
                progress.expect = AHEAD
                self._scan(fd, progress, end)
                return progress
        progress = _Progress(st, stored, base)
        self._scan(fd, progress, end)
        return progress

    def _scan(self, fd: int, progress: _Progress, end: int) -> None:
        """Feed the lines of ``[progress.tally.size, end)`` to the tally."""
        tally = progress.tally
        pos = at = tally.size
        parts: list[bytes] = []
        while pos < end:
            chunk = self._pread(fd, min(SCAN_CHUNK, end - pos), pos)
            if not chunk:
                break  # the file shrank under us: count what is there
            pos += len(chunk)
            progress.scanned += len(chunk)
            first = chunk.find(b"\n")
            if first == -1:
                parts.append(chunk)
                continue
            parts.append(chunk[:first])
            line = b"".join(parts)
            tally.line(line, at)
            at += len(line) + 1
            lines = chunk[first + 1 :].split(b"\n")
            rest = lines.pop()
            for line in lines:
                tally.line(line, at)
                at += len(line) + 1
            parts = [rest] if rest else []

    def _keep(self, progress: _Progress) -> None:
        """Save a checkpoint that a read brought up to date (best effort, never waiting).

        The in-process cache takes every advance; an index only a first scan or one that
        read at least ``SAVE_AFTER`` bytes (the rest is read again by the next reader).
        """
        if progress.scanned == 0:
            return
        if (
            self._checkpoints.in_index
            and progress.base is not None
            and progress.scanned < SAVE_AFTER
        ):
            return
        try:
            here = os.lstat(self.path)
        except OSError:
            return
        if (here.st_dev, here.st_ino) != (progress.dev, progress.ino):
            return  # the file was renamed away (reset, compact) while we read it
        with contextlib.suppress(SessionStoreError):  # e.g. a read-only or busy index
            self._checkpoints.save(
                str(self.path),
                progress.checkpoint(),
                progress.tally.keys,
                expect=progress.expect,
                wait=False,
            )

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
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        try:
            fd = self._open(flags, "open")
        except OSError as exc:
            raise self._open_failed(exc, "open") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The path may have been renamed (reset, compact) while we waited: follow it.
            try:
                now, mine = os.lstat(self.path), os.fstat(fd)
                same = (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
            if not same:
                raise _Moved()
            with self._run_lock.hold():
                yield fd
        finally:
            os.close(fd)

    def _retrying(self, action: Callable[[], Any]) -> Any:
        for _ in range(3):
            try:
                return action()
            except _Moved:
                continue
        raise SessionStoreError(f"{self.path} keeps being moved by another process; retry")

    def write_header(self) -> int:
        """Create the file with its ``session`` header (mode 0600); returns its size."""

        def once() -> int:
            with self._locked(create=True) as fd:
                size = os.fstat(fd).st_size
                if size == 0:
                    self._write(fd, self._header(), 0)
                    if self._durable:
                        self._sync(fd, 0)
                    fsync_dir(self.path.parent)
                    size = os.fstat(fd).st_size
                return size

        return int(self._retrying(once))

    def _sync(self, fd: int, size_before: int) -> None:
        """Sync the file to disk; on failure cut it back to ``size_before`` (not acknowledged)."""
        try:
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size_before)
            raise os_error(exc, "sync", self.path) from exc

    def _write(self, fd: int, data: bytes, size_before: int) -> None:
        try:
            write_all(fd, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size_before)  # the file ends where it ended before
            if exc.errno is not None and exc.errno in (28, 27, 122):  # ENOSPC, EFBIG, EDQUOT
                raise StorageFullError(
                    f"cannot append to {self.path}: {exc.strerror}; free space (or raise the"
                    " file size limit) and retry - the transcript was left at its last"
                    " complete record"
                ) from exc
            raise os_error(exc, "append to", self.path) from exc

    def _save_torn(self, data: bytes) -> Path:
        """Keep cut bytes in ``<file>.torn.<ts>`` (a new name: never over an earlier one)."""
        while True:
            saved = self.path.with_name(f"{self.path.name}.torn.{archive_timestamp()}")
            if not os.path.lexists(saved):
                break
            time.sleep(0.001)
        atomic_write(saved, data, mode=0o600)
        return saved

    def _settle_tail(self, fd: int, size: int) -> tuple[int, bytes, Path | None]:
        """Deal with bytes after the last newline, under the lock.

        Bytes that do not parse as JSON (a write cut short) are cut off and kept in a
        ``.torn.<ts>`` file; a complete record is kept (the next append adds its newline).

        Returns:
            The size after that, the kept record without newline (or b""), and the file
            holding the cut bytes (or None).
        """
        end = self._last_line_start(fd, size)
        if end == size:
            return size, b"", None
        rest = self._pread(fd, size - end, end)
        if _parses(rest):
            return size, rest, None
        saved = self._save_torn(rest)
        try:
            os.ftruncate(fd, end)
        except OSError as exc:
            raise os_error(exc, "cut the torn tail of", self.path) from exc
        return end, b"", saved

    def torn_bytes(self) -> int:
        """Bytes after the last newline that do not parse (a write cut short); 0 if none."""
        self.bytes_read = 0
        fd = self._open_read()
        if fd is None:
            return 0
        try:
            size = os.fstat(fd).st_size
            end = self._last_line_start(fd, size)
            if end == size or _parses(self._pread(fd, size - end, end)):
                return 0
            return size - end
        finally:
            os.close(fd)

    def repair_tail(self) -> Path | None:
        """Cut a torn last line off, keeping the cut bytes in ``<file>.torn.<ts>``.

        Only bytes that do not parse are cut: a complete last record without its newline
        is kept. Appends do this by themselves; this is for ``doctor --fix``.

        Returns:
            The file holding the cut bytes, or None when nothing was cut.
        """

        def once() -> Path | None:
            with self._locked(create=False) as fd:
                self.bytes_read = 0
                return self._settle_tail(fd, os.fstat(fd).st_size)[2]

        result: Path | None = self._retrying(once)
        return result

    def _recent_bytes(self, fd: int, end: int) -> bytes:
        """The last block before ``end``: where an entry id a new one must avoid may be."""
        start = max(0, end - BLOCK)
        return self._pread(fd, end - start, start)

    def _new_id(self, tally: _Tally, recent: bytes) -> str:
        r"""A random 8-hex entry id used by no entry the tally met nor in ``recent``.

        An id counts as used when its characters occur anywhere in ``recent`` (a plain
        substring search, far cheaper than parsing every line, and never less strict);
        a block holding ``\u`` escapes, in which an id could be spelt differently, is
        parsed instead. ``recent`` may also be the ``_hex_runs`` of the block (which hold
        no escape): an id occurs in the block exactly when it occurs in them.
        """
        taken = tally.ids
        # ``in`` of a two-byte needle scans byte by byte (about 1 ns a byte); ``memchr``
        # for the backslash first, so a block without escapes costs almost nothing.
        if b"\\" in recent and _U_ESCAPE.search(recent) is not None:
            taken = taken | _ids_in(recent)
            recent = b""
        while True:
            entry_id = os.urandom(4).hex()
            if entry_id not in taken and entry_id != tally.leaf and entry_id.encode() not in recent:
                return entry_id

    def append(self, message: dict[str, Any], *, idempotency_key: str | None = None) -> str:
        """Append a message as a pi v3 ``message`` entry; returns its entry id.

        Creates the file with its ``session`` header when missing. With an
        ``idempotency_key`` already present in the file (a message whose
        ``idempotencyKey`` is that key), nothing is appended and the existing entry's id is
        returned. On a SQLite store the session's ``messageCount`` and ``updatedAt`` are
        updated in the same call, after the transcript write; a ``sessions.json`` store is
        not rewritten.

        Raises:
            InvalidEntryError: ``message`` is not a JSON object, or holds a value JSON
                cannot represent exactly (NaN, infinity, a ``datetime``, a dataclass, an
                object that is not JSON); the message names its field.
            InvalidArgumentError: ``idempotency_key`` is not a string.
            StorageFullError: The disk or a file size limit is full; the file still ends at
                its last complete record.
            SessionStoreError: The session was reset or deleted meanwhile, or I/O failed.
        """
        if not isinstance(message, dict):
            raise InvalidEntryError(
                f"a message must be a JSON object (a dict), got {type(message).__name__}:"
                f" {message!r:.80}"
            )
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise InvalidArgumentError(
                f"idempotency_key must be a string, got {idempotency_key!r}"
                f" ({type(idempotency_key).__name__})"
            )
        msg = dict(message)
        if idempotency_key is not None:
            msg["idempotencyKey"] = idempotency_key
        msg.setdefault("timestamp", now_ms())
        body = dumps_compact(msg, what="transcript message")  # refuses what is not JSON
        result: str = self._retrying(lambda: self._append_once(body, idempotency_key))
        return result

    def _find_key(self, progress: _Progress, key: str) -> str | None:
        if progress.base is not None:
            found = self._checkpoints.find_key(str(self.path), progress.base, key)
            if found is not None:
                return found
        return progress.tally.keys.get(key)

    def _append_once(self, body: bytes, idempotency_key: str | None) -> str:
        with self._locked(create=True) as fd:
            self.bytes_read = 0
            st = os.fstat(fd)
            size, unterminated, _ = self._settle_tail(fd, st.st_size)
            end = size - len(unterminated)
            # Under the lock only a writer that takes no flock (pi) can move the end: no
            # second look, a checkpoint beyond it is not trusted.
            # An idempotency key is looked up in the index's keys of the checkpoint's
            # generation: load it from there.
            known = self._committed if idempotency_key is None else None
            self._committed = None
            progress = self._catch_up(fd, st, end, last_try=True, known=known)
            assert progress is not None  # the last try always answers
            tally = progress.tally
            if unterminated:
                tally.line(unterminated, end)  # it gets its newline with this append
            if idempotency_key is not None:
                existing = self._find_key(progress, idempotency_key)
                if existing is not None:
                    if not unterminated:
                        self._keep(progress)
                    return existing
            near, self._near_end = self._near_end, None
            same = (
                near is not None
                and not unterminated
                and progress.scanned == 0
                and (near.dev, near.ino, near.end) == (progress.dev, progress.ino, end)
            )
            runs = near.runs if same and near is not None else None
            # A scan of a whole block met every id in it; otherwise look at the block (or
            # at its hex runs, kept while nobody else writes the file).
            if progress.scanned >= BLOCK:
                recent = b""
            elif runs is not None:
                recent = runs
            else:
                recent = self._recent_bytes(fd, end)
                if (
                    same
                    and near is not None
                    and near.streak >= KEEP_RUNS_AFTER
                    and (b"\\" not in recent or _U_ESCAPE.search(recent) is None)
                ):
                    runs = _hex_runs(recent)
                    near.start = max(0, end - BLOCK)
            entry_id = self._new_id(tally, recent if runs is None else runs)
            line = (
                b'{"type":"message","id":"'
                + entry_id.encode()
                + b'","parentId":'
                + orjson.dumps(tally.leaf)
                + b',"timestamp":"'
                + iso_now().encode()
                + b'","message":'
                + body
                + b"}\n"
            )
            created = size == 0
            data = (b"\n" if unterminated else b"") + (self._header() if created else b"") + line
            self._write(fd, data, size)
            if self._durable:
                self._sync(fd, size)
                if created:
                    fsync_dir(self.path.parent)
            tally.line(line[:-1], size + len(data) - len(line))
            if idempotency_key is not None:
                tally.keys.setdefault(idempotency_key, entry_id)
            checkpoint = progress.checkpoint()

            saved: list[bool] = []

            def save() -> bool:
                stored = self._checkpoints.save(
                    str(self.path), checkpoint, tally.keys, expect=progress.expect
                )
                saved.append(stored)
                return stored

            try:
                if self._link is None:
                    save()
                else:
                    self._link.commit_append(save, checkpoint.count, checkpoint.size)
            except OutcomeUnknownError:
                # The index may have counted the line (a commit whose sync failed): keep
                # it, so the index never counts a record the file lacks. If the commit did
                # not land, the next reader counts the line from the file.
                raise
            except BaseException:
                # Not acknowledged: undo the write, so the file ends where it ended before.
                with contextlib.suppress(OSError):
                    if os.fstat(fd).st_size > size:
                        os.ftruncate(fd, size)
                    if size == 0:
                        os.unlink(self.path)
                raise
            if saved == [True] and self._checkpoints.in_index:
                self._committed = checkpoint
            after = _NearEnd(progress.dev, progress.ino, size + len(data), 0)
            if same and near is not None:
                after.streak = near.streak + 1
                if runs is not None and after.end - near.start <= RUNS_SPAN and b"\\u" not in line:
                    # the line follows a newline and ends with one: no run crosses either
                    after.runs, after.start = runs + b" " + _hex_runs(line), near.start
            self._near_end = after
            return entry_id

    # --- compaction -------------------------------------------------------------------------

    def compact(self, max_lines: int) -> Path | None:
        """Cut the transcript to its header and last ``max_lines`` lines (``sessions.compact``).

        The old file stays as ``<file>.bak.<ts>`` (a hard link: there is never a moment
        without the file). Unlike OpenClaw, the ``session`` header is always kept. The
        index entry loses its token counters and gets a fresh ``updatedAt``.

        Returns:
            The backup path, or None when the file had no more than ``max_lines`` lines.

        Raises:
            InvalidArgumentError: ``max_lines`` is not a positive integer.
        """
        if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
            raise InvalidArgumentError(f"max_lines must be a positive integer, got {max_lines!r}")
        done: tuple[Path, Callable[[], bool], Checkpoint] | None = self._retrying(
            lambda: self._compact_file(max_lines)
        )
        if done is None:
            return None
        backup, save, checkpoint = done
        if self._link is None:
            save()
        else:
            self._link.commit_compact(save, checkpoint.count, checkpoint.size)
        return backup

    def _compact_file(self, max_lines: int) -> tuple[Path, Callable[[], bool], Checkpoint] | None:
        with self._locked(create=False) as fd:
            self.bytes_read = 0
            size, _, _ = self._settle_tail(fd, os.fstat(fd).st_size)
            data = self._pread(fd, size, 0)
            lines = [ln for ln in data.split(b"\n") if not _blank(ln)]
            header = (
                lines[0]
                if lines and (_parse_line(lines[0]) or {}).get("type") == "session"
                else None
            )
            body = lines[1:] if header is not None else lines
            if len(body) <= max_lines:
                return None
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
                    st = os.fstat(tfd)
                finally:
                    os.close(tfd)
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise os_error(exc, "compact", self.path) from exc
            fsync_dir(self.path.parent)
            tally = _Tally()
            at = 0
            for line in kept:
                tally.line(line, at)
                at += len(line) + 1
            checkpoint = tally.checkpoint(st.st_dev, st.st_ino, uuid.uuid4().hex)
            path = str(self.path)

            def save() -> bool:
                return self._checkpoints.save(path, checkpoint, tally.keys, expect=None)

            return backup, save, checkpoint


class _Moved(Exception):
    """The transcript was renamed while we waited for its lock."""
