"""Which backend a store uses: ``auto``, the open-time fallback, and the deferred choice.

The backend is chosen once. ``auto`` uses ``sessions.sqlite`` when it exists, else
``sessions.json`` when that exists; a store with neither is not created by reading it:
until something exists, :class:`PendingIndex` answers reads as an empty store and makes
the choice at the first write (SQLite, or ``sessions.json`` if an OpenClaw gateway created
one meanwhile). Once a file exists the choice is final. The only fallback is at open time,
when the SQLite driver cannot be imported at all and no database exists.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import BackendUnavailableError
from .index.base import (
    EmptyMaintenance,
    IndexBackend,
    ListQuery,
    MaintenanceTxn,
    ModifyFn,
    SessionRow,
    writes_when_absent,
)
from .layout import StorePaths
from .logs import log

__all__ = ["PendingIndex", "open_index", "sqlite_driver"]


T = TypeVar("T")
Entry = dict[str, Any]


def sqlite_driver() -> tuple[bool, str | None]:
    """Whether apsw imports, and the SQLite version it bundles."""
    try:
        import apsw
    except ImportError:
        return False, None
    return True, str(apsw.sqlite_lib_version())


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


class PendingIndex(IndexBackend):
    """An ``auto`` store that has no file yet: reads see an empty store, a write chooses.

    Args:
        paths: The store's paths.
        make: Builds the backend for ``"sqlite"`` or ``"json"``.
        sqlite_ok: Whether SQLite can be used (else a first write creates sessions.json).
    """

    def __init__(
        self, paths: StorePaths, make: Callable[[str], IndexBackend], *, sqlite_ok: bool
    ) -> None:
        self._paths = paths
        self._make = make
        self._sqlite_ok = sqlite_ok
        self._real: IndexBackend | None = None
        self._guard = threading.Lock()
        self._listeners: list[Callable[[IndexBackend], None]] = []
        self.store_type = "sqlite" if sqlite_ok else "json"
        self.location = str(paths.sqlite_path if sqlite_ok else paths.json_path)

    def on_resolve(self, listener: Callable[[IndexBackend], None]) -> None:
        """Call ``listener(backend)`` once the choice is made."""
        self._listeners.append(listener)

    def resolve(self, *, write: bool) -> IndexBackend | None:
        """The backend, choosing it if a file exists now (or, for a write, in any case)."""
        if self._real is not None:
            return self._real
        with self._guard:
            if self._real is None:
                kind: str | None = None
                if self._sqlite_ok and _nonempty(self._paths.sqlite_path):
                    kind = "sqlite"
                elif self._paths.json_path.exists():
                    kind = "json"
                elif write:
                    kind = "sqlite" if self._sqlite_ok else "json"
                if kind is None:
                    return None
                self._real = self._make(kind)
                self.store_type, self.location = self._real.store_type, self._real.location
                for listener in self._listeners:
                    listener(self._real)
            return self._real

    def get(self, key: str, *, blobs: bool = True) -> Entry | None:
        """The entry, or None while the store has no file."""
        real = self.resolve(write=False)
        return real.get(key, blobs=blobs) if real is not None else None

    def modify(
        self, key: str, fn: ModifyFn, *, needs_blobs: bool = True, full_result: bool = True
    ) -> tuple[Entry | None, bool]:
        """A change that writes something chooses the backend; one that does not, nothing."""
        real = self.resolve(write=False)
        if real is not None:
            return real.modify(key, fn, needs_blobs=needs_blobs, full_result=full_result)
        again = writes_when_absent(fn)
        if again is None:
            return None, False
        backend = self.resolve(write=True)
        assert backend is not None
        return backend.modify(key, again, needs_blobs=needs_blobs, full_result=full_result)

    def modify_counters(self, key: str, fn: Callable[[Entry | None], Entry]) -> None:
        """The chosen backend's ``modify_counters``; ``modify`` while there is none."""
        real = self.resolve(write=False)
        if real is not None:
            real.modify_counters(key, fn)
        else:
            super().modify_counters(key, fn)

    def list(self, query: ListQuery) -> tuple[list[SessionRow], tuple[int | float, str] | None]:
        """Rows, or none while the store has no file."""
        real = self.resolve(write=False)
        return real.list(query) if real is not None else ([], None)

    def count(self) -> int:
        """Entries (0 while the store has no file)."""
        real = self.resolve(write=False)
        return real.count() if real is not None else 0

    def load_all(self) -> dict[str, Entry]:
        """Every entry ({} while the store has no file)."""
        real = self.resolve(write=False)
        return real.load_all() if real is not None else {}

    def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Whole-store mutator: chooses the backend."""
        backend = self.resolve(write=True)
        assert backend is not None
        return backend.mutate(fn)

    def maintenance(self, fn: Callable[[MaintenanceTxn], T], *, commit: bool) -> T:
        """Maintenance; a store without a file has nothing to maintain."""
        real = self.resolve(write=False)
        if real is not None:
            return real.maintenance(fn, commit=commit)
        return fn(EmptyMaintenance())

    def index_files(self) -> tuple[str, ...]:
        """The index files of the chosen backend (none before the choice)."""
        real = self.resolve(write=False)
        return real.index_files() if real is not None else ()

    def vacuum(self) -> dict[str, Any]:
        """Vacuum the chosen backend; nothing to do before the choice."""
        real = self.resolve(write=False)
        if real is None:
            return {"bytesBefore": 0, "bytesAfter": 0, "checkpointed": True}
        return real.vacuum()

    def close(self) -> None:
        """Close the chosen backend, if any."""
        if self._real is not None:
            self._real.close()

    def describe(self) -> dict[str, Any]:
        """Facts of the chosen backend; before the choice, that there is no file yet."""
        real = self.resolve(write=False)
        return real.describe() if real is not None else {"pending": True}

    def migration_record(self) -> dict[str, Any] | None:
        """The migration record of the chosen backend."""
        real = self.resolve(write=False)
        return real.migration_record() if real is not None else None


def open_index(
    configured: str,
    paths: StorePaths,
    *,
    durability: str,
    lock_timeout_ms: int,
    read_only: bool,
) -> tuple[IndexBackend, str | None]:
    """The backend of a store configured ``auto``, ``sqlite`` or ``json``.

    Returns:
        The backend and, when SQLite was wanted but cannot be used, why not.

    Raises:
        BackendUnavailableError: ``sessions.sqlite`` exists but SQLite cannot be used
            (falling back to sessions.json would split the store).
    """
    sqlite_ok, _ = sqlite_driver()
    reason = None if sqlite_ok else "the SQLite driver (apsw) cannot be imported"
    has_sqlite = _nonempty(paths.sqlite_path)
    if not sqlite_ok and has_sqlite and configured != "json":
        raise BackendUnavailableError(
            f"{paths.sqlite_path} exists but SQLite cannot be used: {reason}; fix that (falling"
            " back to sessions.json would split the store)"
        )

    def make(kind: str) -> IndexBackend:
        if kind == "json":
            from .index.json import JsonIndex

            return JsonIndex(
                paths.json_path,
                agent_id=paths.agent_id,
                lock_timeout_ms=lock_timeout_ms,
                read_only=read_only,
            )
        from .index.sqlite import SqliteIndex

        def on_create(index: SqliteIndex, conn: Any) -> None:
            # The migration code loads only when a database is built: an open of an
            # existing store (every CLI command) does not pay for importing it.
            from .migrate import import_on_create

            import_on_create(paths.json_path)(index, conn)

        return SqliteIndex(
            paths.sqlite_path,
            agent_id=paths.agent_id,
            durability=durability,
            busy_timeout_ms=lock_timeout_ms,
            read_only=read_only,
            on_create=on_create,
        )

    if configured == "json":
        return make("json"), None
    if configured == "sqlite":
        if not sqlite_ok:
            log.warning("sessionstore: %s; using sessions.json for %s", reason, paths.sessions_dir)
            return make("json"), reason
        return make("sqlite"), None
    if has_sqlite and sqlite_ok:
        return make("sqlite"), None
    if paths.json_path.exists():
        return make("json"), None
    if not sqlite_ok:
        log.warning("sessionstore: %s; a new store will use sessions.json", reason)
    return PendingIndex(paths, make, sqlite_ok=sqlite_ok), reason
