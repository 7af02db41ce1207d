"""The legacy backend: one ``sessions.json`` per agent, as OpenClaw reads and writes it.

Byte-compatible with OpenClaw: ``JSON.stringify(store, null, 2)`` layout (no trailing
newline, key order kept), mode 0600, atomic replace, no write when nothing changed, and the
same ``sessions.json.lock`` protocol, so this library and a running gateway can share a
store. Writers of this library queue fairly on a kernel lock before taking the lock file
(see ``lockfile.py``), and check right before each replace that the lock is still theirs.
Every write re-reads the file under the lock (never trusting a cache there); reads outside
the lock use a cache keyed by the identity (device, inode, size, mtime, ctime) that
``fstat`` gave for the very descriptor the cached bytes were read from.

Unlike OpenClaw, a file that does not parse is never treated as empty: it raises
``CorruptStoreError`` and is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..args import as_number, json_type
from ..entry import load_normalize, settle_entry, sort_time
from ..errors import (
    CorruptStoreError,
    InvalidEntryError,
    InvalidKeyError,
    ReadOnlyStoreError,
    SessionStoreError,
    StoreClosedError,
)
from ..files import atomic_write, clone_json, dumps_pretty, ensure_private_dir, os_error
from ..keys import fold_key
from ..lockfile import LockFile
from .base import (
    DELETE,
    IndexBackend,
    ListQuery,
    MaintenanceTxn,
    ModifyFn,
    RowRef,
    SessionRow,
    derive_row,
    row_ref,
    visibility,
)

__all__ = ["JsonIndex", "parse_store_bytes"]

Entry = dict[str, Any]
T = TypeVar("T")
FileId = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

_live: weakref.WeakSet[JsonIndex] = weakref.WeakSet()


def _after_fork() -> None:
    # Another thread of the parent may have held a cache guard at the fork: the child would
    # wait for it forever. (lockfile.py resets the write lock itself.)
    for index in list(_live):
        index._cache_guard = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def _file_id(st: os.stat_result) -> FileId:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


JSON5_MAX_BYTES = 1024 * 1024


def parse_store_bytes(raw: bytes, path: Path) -> dict[str, Any]:
    """Parse the text of a ``sessions.json`` (JSON, or JSON5 as OpenClaw's doctor reads it).

    An empty file or ``[]`` is an empty store.

    Raises:
        CorruptStoreError: The text parses as neither, or its root is not an object.
    """
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            # JSON5 is for hand-edited files; the pure-Python parser is far too slow to be
            # the judge of a large (and so machine-written) file.
            if len(raw) > JSON5_MAX_BYTES:
                raise ValueError("too large for the JSON5 fallback")
            import json5  # loaded only for the rare hand-edited file

            data = json5.loads(raw.decode("utf-8"))
        except Exception:  # json5 raises assorted errors for bad input
            raise CorruptStoreError(
                f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}, char"
                f" {exc.pos}: {exc.msg}); the file was left untouched - fix it or restore a"
                " sessions.json.bak.* backup",
                path=str(path),
                position=exc.pos,
                line=exc.lineno,
                column=exc.colno,
            ) from exc
    if isinstance(data, list) and not data:
        return {}
    if not isinstance(data, dict):
        raise CorruptStoreError(
            f"{path} must hold a JSON object of sessions, found {json_type(data)}; the file"
            " was left untouched - fix it or restore a sessions.json.bak.* backup",
            path=str(path),
            position=0,
            line=1,
            column=1,
        )
    return data


@dataclass
class _Snapshot:
    stat_key: FileId | None
    raw: bytes | None
    store: dict[str, Any]
    folds: dict[str, list[str]] | None = None

    def resolve(self, key: str) -> str | None:
        """The freshest key matching ``key`` (see :func:`resolve_key`).

        Through a fold map built once per snapshot: a read does not scan the whole store.
        """
        if self.folds is None:
            folds: dict[str, list[str]] = {}
            for k in self.store:
                folds.setdefault(fold_key(k), []).append(k)
            self.folds = folds
        matches = self.folds.get(key, [])
        if len(matches) == 1:
            return matches[0] if isinstance(self.store.get(matches[0]), dict) else None
        winner, _ = resolve_key({k: self.store[k] for k in matches}, key)
        return winner


def resolve_key(store: dict[str, Any], key: str) -> tuple[str | None, list[str]]:
    """Find ``key`` or its freshest case variant; returns (winner, every matching key)."""
    matches = [k for k in store if k == key or fold_key(k) == key]
    winner: str | None = None
    for k in matches:
        entry = store[k]
        if not isinstance(entry, dict):
            continue
        if (
            winner is None
            or sort_time(entry) > sort_time(store[winner])
            or (sort_time(entry) == sort_time(store[winner]) and k == key)
        ):
            winner = k
    return winner, matches


class _JsonMaintenance(MaintenanceTxn):
    """Maintenance over the store loaded under ``sessions.json.lock``."""

    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store
        self.removed = 0
        self._refs: Counter[str] | None = None

    def _entries(self) -> Iterator[tuple[str, Entry]]:
        return ((k, v) for k, v in self.store.items() if isinstance(v, dict))

    @staticmethod
    def _ref(key: str, entry: Entry, *, sized: bool = False) -> RowRef:
        # Upstream's projection: the entry's pretty-printed chunk (plus separators).
        return row_ref(key, entry, len(dumps_pretty({key: entry})) if sized else 0)

    def count(self) -> int:
        return sum(1 for _ in self._entries())

    def rows(self) -> Iterator[RowRef]:
        return (self._ref(k, v) for k, v in list(self._entries()))

    def stale(self, cutoff: int | float, protect: frozenset[str]) -> list[RowRef]:
        out = []
        for k, v in self._entries():
            ts = as_number(v.get("updatedAt"))
            if ts is not None and ts < cutoff and fold_key(k) not in protect:
                out.append(self._ref(k, v))
        return out

    def overflow(self, max_entries: int, protect: frozenset[str]) -> list[RowRef]:
        entries = list(self._entries())
        if len(entries) <= max_entries:
            return []
        entries.sort(key=lambda kv: (fold_key(kv[0]) in protect, sort_time(kv[1]), kv[0]))
        entries.reverse()
        return [self._ref(k, v) for k, v in entries[max_entries:] if fold_key(k) not in protect]

    def oldest(self, protect: frozenset[str]) -> Iterator[RowRef]:
        entries = [kv for kv in self._entries() if fold_key(kv[0]) not in protect]
        entries.sort(key=lambda kv: (sort_time(kv[1]), kv[0]))
        return (self._ref(k, v, sized=True) for k, v in entries)

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in self.store:
                continue
            entry = self.store.pop(key)
            self.removed += 1
            if self._refs is not None and isinstance(entry, dict):
                sid = entry.get("sessionId")
                if isinstance(sid, str):
                    self._refs[sid] -= 1

    def reference_count(self, session_id: str) -> int:
        if self._refs is None:
            self._refs = Counter(
                v["sessionId"] for _, v in self._entries() if isinstance(v.get("sessionId"), str)
            )
        return max(self._refs[session_id], 0)

    def index_bytes(self) -> int:
        return len(dumps_pretty(self.store))


class JsonIndex(IndexBackend):
    """``sessions.json`` backend.

    Args:
        path: The ``sessions.json`` file.
        agent_id: The agent this store belongs to (for rows of non-agent keys).
        lock_timeout_ms: How long a writer waits for ``sessions.json.lock``.
    """

    store_type = "json"

    def __init__(
        self,
        path: Path,
        *,
        agent_id: str,
        lock_timeout_ms: int = 10_000,
        read_only: bool = False,
    ):
        self._path = path
        self.location = str(path)
        self._agent_id = agent_id
        self._lock = LockFile(path, timeout_ms=lock_timeout_ms, queue=True)
        self._cache: _Snapshot | None = None
        self._cache_guard = threading.Lock()
        self._closed = False
        self._read_only = read_only
        _live.add(self)
        # Nothing is created at open (no directory, no file): that waits for a write.
        if not read_only and path.parent.is_dir() and os.access(path.parent, os.W_OK):
            self._clean_stale_temp_files()

    @property
    def path(self) -> Path:
        """The ``sessions.json`` file."""
        return self._path

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed; open a new one with open_store()")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"cannot write {self._path}: the store was opened read-only")
        directory = self._path.parent
        if directory.is_dir() and not os.access(directory, os.W_OK):
            raise ReadOnlyStoreError(
                f"cannot write {self._path}: its directory {directory} is not writable by this"
                " process (check its permissions); reads work"
            )
        ensure_private_dir(directory)  # the lock file lives beside sessions.json

    def _clean_stale_temp_files(self) -> None:
        # Only while holding the lock: a gateway's in-flight temp file is never touched.
        try:
            self._lock.acquire(timeout_ms=0)
        except SessionStoreError:
            return
        try:
            prefix = self._path.name + "."
            for child in self._path.parent.iterdir():
                name = child.name
                if name.startswith(prefix) and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        child.unlink()
        except OSError:
            pass
        finally:
            self._lock.release()

    # --- reading ----------------------------------------------------------------------------

    def _stat_key(self) -> FileId | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, "read", self._path) from exc
        return _file_id(st)

    def _read(self) -> tuple[FileId | None, bytes | None]:
        """The file's bytes and the identity of exactly those bytes (None: no file).

        The identity is the ``fstat`` of the descriptor read, before and after the read: a
        file replaced meanwhile is another inode and cannot lend its identity to these
        bytes; one changed in place (not how OpenClaw writes) gives no identity, so the
        bytes are used once and not cached.
        """
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise os_error(exc, "read", self._path) from exc
        try:
            before = os.fstat(fd)
            chunks = []
            while True:
                chunk = os.read(fd, max(before.st_size + 1, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
            after = os.fstat(fd)
        except OSError as exc:
            raise os_error(exc, "read", self._path) from exc
        finally:
            os.close(fd)
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        same = (
            stat.S_ISREG(after.st_mode)
            and _file_id(before) == _file_id(after)
            and after.st_size == len(raw)
        )
        return (_file_id(after) if same else None), raw

    def _load(self, *, fresh: bool) -> _Snapshot:
        """The parsed, normalised store; ``fresh`` re-reads the file whatever the cache says."""
        self._check_open()
        with self._cache_guard:
            cached = self._cache
        if (
            not fresh
            and cached is not None
            and cached.stat_key is not None
            and cached.stat_key == self._stat_key()
        ):
            return cached
        file_id, raw = self._read()
        if raw is None:
            snap = _Snapshot(None, None, {})
        elif cached is not None and cached.raw == raw:
            snap = _Snapshot(file_id, raw, cached.store)
        else:
            store = parse_store_bytes(raw, self._path)
            for k, v in store.items():
                if isinstance(v, dict):
                    store[k] = load_normalize(v)
            snap = _Snapshot(file_id, raw, store)
        with self._cache_guard:
            self._cache = snap
        return snap

    def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """The entry for ``key`` or its freshest case variant."""
        snap = self._load(fresh=False)
        winner = snap.resolve(key)
        return None if winner is None else clone_json(snap.store[winner])

    def count(self) -> int:
        """Number of entries (object values) in the file."""
        return sum(1 for v in self._load(fresh=False).store.values() if isinstance(v, dict))

    def load_all(self) -> dict[str, Entry]:
        """Every entry, as a fresh copy."""
        store = self._load(fresh=False).store
        return clone_json({k: v for k, v in store.items() if isinstance(v, dict)})  # type: ignore[no-any-return]

    def list(self, query: ListQuery) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """Rows matching ``query``, newest first (computed in Python over the whole file)."""
        store = self._load(fresh=False).store
        hits = [
            (sort_time(v), k, v)
            for k, v in store.items()
            if isinstance(v, dict) and query.matches(k, v, visibility(k))
        ]
        hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
        more = None
        if query.limit is not None and len(hits) > query.limit:
            hits = hits[: query.limit]
            more = (hits[-1][0], hits[-1][1])
        return [derive_row(k, v, self._agent_id) for _, k, v in hits], more

    # --- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold ``sessions.json.lock`` for one write; a write nested in another is refused.

        The lock is re-entrant (as OpenClaw's), so a write started from inside another
        write's callback in the same thread would succeed and then be overwritten by the
        outer write. Other threads simply wait their turn.
        """
        self._check_writable()
        if self._lock.held_here():
            raise SessionStoreError(
                "a write was started from inside another write's callback on the same store;"
                " do all changes inside the one callback"
            )
        with self._lock.hold():
            yield

    def _write(self, snap: _Snapshot, store: dict[str, Any]) -> bool:
        data = dumps_pretty(store, what="entry", keyed=True)
        if snap.raw is not None and data == snap.raw:
            return False  # no-op write skipped, as upstream
        ensure_private_dir(self._path.parent)
        # The last moment to find the lock stolen or too old to rely on: nothing written.
        written = atomic_write(self._path, data, mode=0o600, before_replace=self._lock.check_held)
        # Our bytes are cached under the identity the file has now only if it is still the
        # inode we wrote (the rename changed its ctime alone); else they get no identity.
        try:
            now = self._stat_key()
        except SessionStoreError:
            now = None  # written all the same: only the cache goes without an identity
        ours = now is not None and now[:4] == _file_id(written)[:4]
        with self._cache_guard:
            self._cache = _Snapshot(now if ours else None, data, store)
        return True

    def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """Read-modify-write ``key`` under ``sessions.json.lock``."""
        with self._writing():
            snap = self._load(fresh=True)
            winner, matches = resolve_key(snap.store, key)
            existing = snap.store[winner] if winner is not None else None
            result = fn(clone_json(existing) if existing is not None else None)
            if result is None:
                return (clone_json(existing) if existing is not None else None), False
            store = dict(snap.store)
            for k in matches:
                if k != key:
                    del store[k]
            if result is DELETE:
                if not matches:
                    return None, False
                store.pop(key, None)
                return None, self._write(snap, store)
            assert isinstance(result, dict)
            store[key] = result
            written = self._write(snap, store)
            # Now that the write has checked it: the cached store must not share objects
            # with the caller's entry.
            store[key] = clone_json(result)
            return clone_json(result), written

    def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Whole-store mutator under the lock (``updateSessionStore``), ACP preserved."""
        with self._writing():
            snap = self._load(fresh=True)
            working: dict[str, Any] = clone_json(snap.store)
            acp_before = {
                k: v["acp"] for k, v in snap.store.items() if isinstance(v, dict) and "acp" in v
            }
            result = fn(working)
            for k, acp in acp_before.items():
                current = working.get(k)
                if isinstance(current, dict) and "acp" not in current:
                    current["acp"] = clone_json(acp)
            for k, v in list(working.items()):
                if not isinstance(k, str):
                    raise InvalidKeyError(f"session keys must be strings, got {k!r}")
                if isinstance(v, dict):
                    working[k] = settle_entry(v)
                elif k not in snap.store or v != snap.store[k]:
                    # Non-object values already in the file are kept as they are; new ones
                    # are refused, as the other backends refuse them.
                    raise InvalidEntryError(
                        f"entry {k!r} must be a JSON object, got {json_type(v)}"
                    )
            if self._write(snap, working):
                with self._cache_guard:
                    self._cache = None  # `working` may still be referenced through fn's result
            return result

    def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """Run ``fn`` on the store loaded under the lock; write its removals if ``commit``."""
        if not commit and (self._read_only or not os.access(self._path.parent, os.W_OK)):
            # A plan only: without the lock, on the file as it is now.
            return fn(_JsonMaintenance(dict(self._load(fresh=True).store)))
        with self._writing():
            snap = self._load(fresh=True)
            working = dict(snap.store)  # entries are only removed, never changed
            txn = _JsonMaintenance(working)
            result = fn(txn)
            if commit and txn.removed:
                # Only when something was removed: a run that changes nothing writes nothing
                # (not even the file normalised).
                self._write(snap, working)
            return result

    def index_files(self) -> tuple[str, ...]:
        """``sessions.json``."""
        return (self._path.name,)

    def close(self) -> None:
        """Drop the cache; further calls raise ``StoreClosedError``."""
        self._closed = True
        with self._cache_guard:
            self._cache = None

    def describe(self) -> dict[str, Any]:
        """Facts for ``info()``."""
        return {"driver": "json", "indexPath": str(self._path), "lockPath": str(self._lock.path)}
