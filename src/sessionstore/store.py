"""SessionStore: one agent's hot index, its transcripts, maintenance and checks.

The store canonicalises keys, applies OpenClaw's entry rules (``entry.py``) and hands each
change to its index backend as one read-modify-write under the backend's write lock, so
concurrent writers never lose an update. The backend is chosen once, at open; there is no
per-operation fallback.
"""

from __future__ import annotations

import builtins
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, NamedTuple, TypeVar, cast

from .args import (
    check_bool,
    check_callable,
    check_fields,
    check_limit,
    check_minutes,
    check_optional_path,
    check_optional_str,
    check_timeout_ms,
    show,
)
from .clock import now_ms
from .config import SETTINGS_FILE, SessionConfig, load_settings, resolve_store_type
from .entry import (
    SessionEntry,
    as_entry,
    merge_entry,
    new_session_id,
    normalize_channel,
    replace_entry,
    reset_entry,
)
from .errors import (
    ConfigError,
    CorruptStoreError,
    InvalidArgumentError,
    InvalidEntryError,
    InvalidKeyError,
    SessionNotFoundError,
    SessionStoreError,
    StorageFullError,
)
from .files import ensure_private_dir
from .index.base import (
    DELETE,
    LARGE_FIELDS,
    IndexBackend,
    ListQuery,
    ModifyFn,
    SessionPage,
    decode_cursor,
    encode_cursor,
)
from .keys import canonical_key, normalize_agent_id
from .layout import StorePaths, config_path, resolve_home, resolve_state_dir, resolve_store_paths
from .logs import log
from .selection import PendingIndex, open_index, sqlite_driver

if TYPE_CHECKING:
    from .doctor import Finding
    from .maintenance import MaintenanceReport
    from .storeinfo import StoreInfo
    from .transcripts.jsonl import Transcript
    from .transcripts.link import IndexLink
    from .transcripts.naming import TranscriptDirs
    from .transcripts.postgres import PostgresTranscript

__all__ = ["SessionStore", "StoreInfo", "open_store", "sqlite_driver"]

MAINTENANCE_MARKER = ".sessionstore-maintained"

# "Not read yet", where None is a value read (no migration record).
_UNREAD: Final = object()

T = TypeVar("T")
R = TypeVar("R")
Entry = dict[str, Any]
Patch = Mapping[str, Any] | Callable[[SessionEntry | None], Mapping[str, Any] | None]


def _wants_large(names: tuple[str, ...]) -> bool:
    return any(name in LARGE_FIELDS for name in names)


def _project(entry: Mapping[str, Any], names: tuple[str, ...]) -> Entry:
    """The named fields of ``entry`` that exist, in the order asked for."""
    return {name: entry[name] for name in names if name in entry}


@functools.lru_cache(maxsize=64)
def _plain_query(limit: int | None) -> ListQuery:
    """The unfiltered list query of one page size (frozen, so shared between calls)."""
    return ListQuery(limit=limit)


def _check_session_id(key: str, new: Entry, existing: Entry | None) -> None:
    """Refuse a write that gives an entry a ``sessionId`` that cannot name a transcript.

    An id the stored entry already has is let through, so stores holding such ids (from
    older versions or other writers) can still be written; only new ones are refused.
    """
    if "sessionId" not in new:
        return
    session_id = new["sessionId"]
    if existing is not None and "sessionId" in existing and existing["sessionId"] == session_id:
        return
    from .transcripts.naming import validate_session_id

    try:
        validate_session_id(session_id)
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"{exc}; the entry {key!r} was not written") from None


# A NamedTuple, not a frozen dataclass: the same immutable record, built faster per write
# and ~0.5 ms less at the import every program that opens a store pays.
class WritePlan(NamedTuple, Generic[R]):
    """One single-key write (``put``, ``update``, ``delete``, ``reset``), for either driver.

    The synchronous store runs ``fn`` through ``index.modify``, ``AsyncSessionStore``
    through ``await twin.modify``; both then call ``finish``, which runs the work after
    the commit (archiving, automatic maintenance) and builds the return value.

    Attributes:
        key: The canonical key.
        fn: The read-modify-write callback (the merge rules of the call).
        needs_blobs: Whether ``fn`` must see the large fields (see ``IndexBackend.modify``).
        full_result: Whether the result must hold the large fields.
        finish: ``(entry after the call, whether it wrote)`` -> the call's return value.
        blocks: Whether ``finish`` would block (touch files, maintain) for this outcome;
            the async store then runs it in a worker thread.
        fn_blocks: Whether ``fn`` itself blocks (writes a file).
    """

    key: str
    fn: ModifyFn
    needs_blobs: bool
    full_result: bool
    finish: Callable[[Entry | None, bool], R]
    blocks: Callable[[Entry | None, bool], bool]
    fn_blocks: bool = False


class SessionStore:
    """One agent's session store. Open it with :func:`open_store`.

    Entries are dicts with OpenClaw's camelCase fields; every method canonicalises the key
    (trim + lowercase) and raises only ``SessionStoreError`` subclasses. The store is safe
    to share between threads, and several processes may open the same store.
    """

    def __init__(
        self,
        index: IndexBackend,
        *,
        paths: StorePaths,
        state_dir: Path,
        configured_type: str,
        fallback_reason: str | None = None,
        config: SessionConfig | None = None,
        durability: str = "normal",
        lock_timeout_ms: int = 10_000,
    ) -> None:
        self._index = index
        self.paths = paths
        self.state_dir = state_dir
        self.agent_id = paths.agent_id
        self.configured_type = configured_type
        self.fallback_reason = fallback_reason
        self.config = config or SessionConfig()
        self.durability = durability
        self.lock_timeout_ms = lock_timeout_ms
        self.split_warning: str | None = None
        self._next_auto_check = 0.0
        self._dir_ready = False
        if isinstance(index, PendingIndex):
            index.on_resolve(self._resolved)

    @functools.cached_property
    def transcript_dirs(self) -> TranscriptDirs:
        """Where this store's transcripts may be found (resolved on first use, not at open)."""
        from .transcripts.naming import transcript_dirs

        return transcript_dirs(
            self.paths.sessions_dir,
            state_dir=self.state_dir,
            agent_id=self.agent_id,
            home=resolve_home(),
        )

    def _resolved(self, backend: IndexBackend) -> None:
        self._index = backend  # the choice is final: calls go straight to it from now on

    def _find_split(self, record: dict[str, Any] | object | None = _UNREAD) -> str | None:
        """The split-store warning; ``record``: the migration record when already read."""
        from .split import split_warning

        if self.store_type != "sqlite":
            return split_warning(self.paths, self.store_type, None)
        if record is _UNREAD:
            try:
                record = self._index.migration_record()
            except CorruptStoreError:
                return None  # advisory only: the doctor reports the damaged record
        return split_warning(self.paths, self.store_type, cast("dict[str, Any] | None", record))

    # --- basics -----------------------------------------------------------------------------

    @property
    def store_type(self) -> str:
        """The effective backend: ``json``, ``sqlite`` or ``postgres``."""
        return self._index.store_type

    @property
    def index(self) -> IndexBackend:
        """The hot-index backend (for maintenance, doctor and tests)."""
        return self._index

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections and caches; the store cannot be used afterwards."""
        self._index.close()

    def __repr__(self) -> str:
        where = self._index.location
        return f"SessionStore(agent={self.agent_id!r}, type={self.store_type!r}, at={where!r})"

    # --- single entries ---------------------------------------------------------------------

    def get(self, key: str, *, fields: Iterable[str] | None = None) -> SessionEntry | None:
        """The entry stored under ``key`` (or its freshest legacy mixed-case variant).

        Args:
            key: The session key.
            fields: Only these fields (those that exist); ``()`` returns ``{}`` for an
                entry that exists. The large fields (``skillsSnapshot``,
                ``systemPromptReport``) are read only when named. None: the whole entry.

        Returns:
            A fresh copy of the entry (or of the fields asked for), or None when there is
            none.
        """
        names = check_fields(fields)
        canonical = canonical_key(key)
        if names is None:
            return cast("SessionEntry | None", self._index.get(canonical))
        return cast("SessionEntry | None", self._index.get_fields(canonical, names))

    def put(
        self,
        key: str,
        entry: Mapping[str, Any],
        *,
        fields: Iterable[str] | None = None,
    ) -> SessionEntry:
        """Replace the entry under ``key`` whole.

        ``updatedAt`` is stored exactly as given (now when missing); a missing ``sessionId``
        gets a new UUID; the existing ``acp`` block is kept when ``entry`` has none. Legacy
        case variants of the key are folded into the canonical key.

        Args:
            key: The session key.
            entry: The new entry.
            fields: Return only these fields of the stored entry (see :meth:`get`); it
                changes what is returned, never what is stored.

        Returns:
            The stored entry.

        Raises:
            InvalidKeyError: ``sessionId`` cannot name a transcript file (``../x``, empty,
                not a string).
            InvalidEntryError: A value is not JSON (a ``datetime``, a dataclass, NaN, ...);
                the message names its field. ``uuid.UUID`` and enum members are stored as
                their string and value.
        """
        return self._write(self._put_plan(key, entry, fields))

    def _put_plan(
        self, key: str, entry: Mapping[str, Any], fields: Iterable[str] | None
    ) -> WritePlan[SessionEntry]:
        names = check_fields(fields)
        canonical = canonical_key(key)
        new = as_entry(entry)

        def replace(existing: Entry | None) -> Entry:
            out = replace_entry(existing, new)
            _check_session_id(canonical, out, existing)
            return out

        def finish(stored: Entry | None, written: bool) -> SessionEntry:
            assert stored is not None
            self._after_write(canonical)
            return cast(SessionEntry, stored if names is None else _project(stored, names))

        return WritePlan(
            canonical,
            replace,
            needs_blobs=True,
            full_result=names is None or _wants_large(names),
            finish=finish,
            blocks=lambda stored, written: self._after_write_due(),
        )

    def update(
        self,
        key: str,
        patch_or_fn: Patch,
        *,
        create: bool = False,
        preserve_activity: bool = False,
        fields: Iterable[str] | None = None,
    ) -> SessionEntry | None:
        """Merge a patch into the entry under ``key``, atomically.

        Args:
            key: The session key.
            patch_or_fn: A dict of fields to set (a None value deletes the field), or a
                callable that gets the current entry (or None) and returns such a patch, or
                None to change nothing.
            create: Create the entry (new UUID ``sessionId``) when it does not exist.
            preserve_activity: Keep ``updatedAt`` as it is (inbound metadata) instead of
                moving it to at least now.
            fields: Return only these fields of the entry after the update (see
                :meth:`get`); ``()`` skips building the result (``{}``).

        Returns:
            The entry after the update; None when it does not exist and ``create`` is False.

        Raises:
            InvalidKeyError: The update would set a ``sessionId`` that cannot name a
                transcript file.
            InvalidEntryError: A value is not JSON (as for :meth:`put`).
        """
        return self._write(self._update_plan(key, patch_or_fn, create, preserve_activity, fields))

    def _update_plan(
        self,
        key: str,
        patch_or_fn: Patch,
        create: bool,
        preserve_activity: bool,
        fields: Iterable[str] | None,
    ) -> WritePlan[SessionEntry | None]:
        canonical = canonical_key(key)
        check_bool("create", create)
        check_bool("preserve_activity", preserve_activity)
        names = check_fields(fields)
        fn: Callable[[SessionEntry | None], Mapping[str, Any] | None] | None = None
        fixed: Entry = {}
        if callable(patch_or_fn):
            fn = patch_or_fn
            needs_blobs = True
        else:
            fixed = as_entry(patch_or_fn)  # checked and copied once: merge_entry only reads it
            needs_blobs = False  # a fixed patch never needs to see the large blobs

        def apply(existing: Entry | None) -> Entry | None:
            if existing is None and not create:
                return None
            if fn is None:
                patch = fixed
            else:
                returned = fn(cast("SessionEntry | None", existing))
                if returned is None:
                    return None
                patch = as_entry(returned)
            out = merge_entry(
                existing,
                patch,
                preserve_activity=preserve_activity,
                assume_settled=True,  # entries read from the index are normalised
            )
            _check_session_id(canonical, out, existing)
            return out

        def finish(result: Entry | None, written: bool) -> SessionEntry | None:
            if written:
                self._after_write(canonical)
            if result is not None and names is not None:
                result = _project(result, names)
            return cast("SessionEntry | None", result)

        return WritePlan(
            canonical,
            apply,
            needs_blobs=needs_blobs,
            full_result=names is None or _wants_large(names),
            finish=finish,
            blocks=lambda result, written: written and self._after_write_due(),
        )

    def delete(self, key: str, *, archive_transcript: bool = True) -> bool:
        """Delete the entry under ``key`` and its legacy case variants.

        Args:
            key: The session key.
            archive_transcript: Rename the session's transcript to ``*.jsonl.deleted.<ts>``
                (only files inside the sessions dir; never unlinked).

        Returns:
            True when something was deleted.
        """
        return self._write(self._delete_plan(key, archive_transcript))

    def _delete_plan(self, key: str, archive_transcript: bool) -> WritePlan[bool]:
        canonical = canonical_key(key)
        check_bool("archive_transcript", archive_transcript)
        removed: list[Entry] = []

        def drop(existing: Entry | None) -> Any:
            removed.clear()  # a retried transaction calls it again
            if existing is None:
                return None
            removed.append(existing)
            return DELETE

        def finish(_: Entry | None, deleted: bool) -> bool:
            if deleted and archive_transcript and removed:
                self._archive_after(canonical, removed[0], "deleted")
            if deleted:
                self._after_write(None)
            return deleted

        return WritePlan(
            canonical,
            drop,
            needs_blobs=False,
            full_result=False,
            finish=finish,
            blocks=lambda _, deleted: (
                deleted and ((archive_transcript and bool(removed)) or self._after_write_due())
            ),
        )

    def reset(self, key: str, *, fields: Iterable[str] | None = None) -> SessionEntry:
        """Start a new session under ``key`` (``/new``, ``/reset``).

        The entry gets a new ``sessionId`` with OpenClaw's carry-over rules, the new
        transcript is created with its header (never at the old entry's ``sessionFile``),
        and the old transcript is renamed ``*.jsonl.reset.<ts>``.

        Args:
            key: The session key.
            fields: Return only these fields of the new entry (see :meth:`get`).

        Raises:
            SessionNotFoundError: There is no session under ``key``.
        """
        return self._write(self._reset_plan(key, fields))

    def _reset_plan(self, key: str, fields: Iterable[str] | None) -> WritePlan[SessionEntry]:
        from .transcripts.naming import transcript_path

        names = check_fields(fields)
        canonical = canonical_key(key)
        old: list[Entry] = []

        def renew(existing: Entry | None) -> Entry:
            old.clear()  # a retried transaction calls it again
            if existing is None:
                raise SessionNotFoundError(f"no session {canonical!r} to reset")
            session_id = new_session_id()
            path = transcript_path(self.paths.sessions_dir, session_id)
            fresh = reset_entry(existing, session_id)
            fresh["sessionFile"] = str(path)
            fresh["messageCount"] = 0
            if self.table_transcripts:
                fresh.pop("transcriptBytes", None)  # the header is written once this commits
            else:
                fresh["transcriptBytes"] = self._make_transcript(path, session_id).write_header()
            old.append(existing)
            return fresh

        def finish(result: Entry | None, written: bool) -> SessionEntry:
            assert result is not None
            if self.table_transcripts:
                self._table_transcript(result["sessionId"]).write_header()
            self._archive_after(canonical, old[0], "reset")
            self._after_write(canonical)
            return cast(SessionEntry, result if names is None else _project(result, names))

        return WritePlan(
            canonical,
            renew,
            needs_blobs=False,
            full_result=names is None or _wants_large(names),
            finish=finish,
            blocks=lambda result, written: True,  # a transcript header and an archive
            fn_blocks=not self.table_transcripts,  # the new transcript file's header
        )

    def _write(self, plan: WritePlan[R]) -> R:
        """Run a write plan on the synchronous index."""
        result, written = self._index.modify(
            plan.key, plan.fn, needs_blobs=plan.needs_blobs, full_result=plan.full_result
        )
        return plan.finish(result, written)

    def _archive_after(self, key: str, entry: Entry, reason: str) -> None:
        """Archive a transcript once the index change committed; a failure says so."""
        try:
            self._archive(entry, reason)
        except SessionStoreError as exc:
            done = "deleted" if reason == "deleted" else "reset"
            cls = StorageFullError if isinstance(exc, StorageFullError) else SessionStoreError
            raise cls(
                f"{key} was {done}, but its old transcript could not be archived: {exc}"
            ) from exc

    def _archive(self, entry: Entry, reason: str) -> None:
        """Archive every transcript of the entry's session in the sessions dir (topics too)."""
        from .transcripts.naming import (
            archive_timestamp,
            archive_transcript,
            file_names,
            is_session_id,
            other_owners,
            session_transcripts,
        )

        session_id = entry.get("sessionId")
        if not is_session_id(session_id):
            return  # an id that cannot name a file has no transcript to archive
        assert isinstance(session_id, str)
        if self.table_transcripts:
            # The rows are renamed, as the files would be; a session id another entry
            # still references keeps its transcript.
            if not self._referenced({session_id}):
                self._table_transcript(session_id).archive(reason)
            return
        directory = self.paths.sessions_dir
        session_file = entry.get("sessionFile")
        names = file_names(directory)
        others = other_owners(self.transcript_dirs, session_id, session_file, names=names)
        claimed = self._referenced(others) if others else set()
        stamp = archive_timestamp()
        for name in session_transcripts(
            self.transcript_dirs, session_id, session_file, names=names, claimed=claimed
        ):
            archive_transcript(directory / name, reason, sessions_dir=directory, stamp=stamp)

    def _referenced(self, session_ids: set[str]) -> set[str]:
        """Which of these session ids an entry of the store still references."""
        return self._index.maintenance(
            lambda txn: {sid for sid in session_ids if txn.reference_count(sid) > 0},
            commit=False,
        )

    # --- transcripts ------------------------------------------------------------------------

    @property
    def table_transcripts(self) -> bool:
        """Whether transcripts live in the PostgreSQL ``transcripts`` table (not in files)."""
        return self.store_type == "postgres" and self.config.postgres.transcripts == "table"

    def _table_transcript(
        self, transcript_id: str, link: IndexLink | None = None
    ) -> PostgresTranscript:
        from .index.postgres import PostgresIndex
        from .transcripts.postgres import PostgresTranscript

        assert isinstance(self._index, PostgresIndex)
        return PostgresTranscript(self._index, transcript_id, link=link)

    def _make_transcript(self, path: Path, session_id: str, **hooks: Any) -> Transcript:
        from .transcripts.jsonl import Transcript

        if self.store_type == "postgres" and path.parent == self.paths.sessions_dir:
            # The index lives on the server; the transcript files still need their dir.
            ensure_private_dir(path.parent)
        return Transcript(
            path,
            session_id,
            durable=self.durability == "power",
            lock_timeout_ms=self.lock_timeout_ms,
            **hooks,
        )

    def transcript(
        self, key: str, topic_id: str | int | None = None
    ) -> Transcript | PostgresTranscript:
        """The transcript (cold tier) of the session under ``key``.

        On a SQLite store, appends keep the entry's ``messageCount``, ``transcriptBytes``
        and ``updatedAt`` in step with the file (a topic transcript only ``updatedAt``); a
        ``sessions.json`` store is not rewritten by appends (see ``transcripts/link.py``).
        On a postgres store the transcript is a :class:`~.transcripts.postgres.
        PostgresTranscript` in the ``transcripts`` table (same API; appends keep
        ``messageCount`` and ``updatedAt`` in the same transaction), unless the
        ``postgres.transcripts`` setting is ``files``.

        Args:
            key: The session key.
            topic_id: A Telegram-style topic: ``<sessionId>-topic-<topicId>.jsonl``.

        Raises:
            SessionNotFoundError: There is no session under ``key``.
            InvalidKeyError: The entry's ``sessionId`` cannot name a file.
        """
        # The transcript modules load with the first transcript: ``list``, ``get`` and the
        # CLI's start-up never pay for them.
        from .transcripts.link import IndexLink
        from .transcripts.naming import (
            resolve_transcript_path,
            transcript_name,
            validate_session_id,
        )

        canonical = canonical_key(key)
        entry = self._index.get(canonical, blobs=False)
        if entry is None:
            raise SessionNotFoundError(f"no session {canonical!r}; create it before appending")
        session_id = validate_session_id(entry.get("sessionId"))
        link = IndexLink(self._index, canonical, session_id, primary=topic_id is None)
        if self.table_transcripts:
            name = transcript_name(session_id, topic_id)
            return self._table_transcript(name.removesuffix(".jsonl"), link)
        path = resolve_transcript_path(
            self.transcript_dirs, session_id, entry.get("sessionFile"), topic_id
        )
        return self._make_transcript(path, session_id, link=link)

    # --- whole store ------------------------------------------------------------------------

    def list(
        self,
        *,
        agent_id: str | None = None,
        channel: str | None = None,
        label: str | None = None,
        search: str | None = None,
        spawned_by: str | None = None,
        active_minutes: int | None = None,
        include_global: bool = False,
        include_unknown: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
        with_total: bool = False,
    ) -> SessionPage:
        """Sessions newest first, filtered like ``sessions.list``, without large blobs.

        Cron run keys (``…:cron:<job>:run:<id>``) are never listed; ``global`` and
        ``unknown`` only when asked for.

        Args:
            agent_id: Only ``agent:<agentId>:…`` keys.
            channel: Only rows whose channel (entry channel, else last channel, else the
                key's) is this one.
            label: Exact match on ``label`` (trimmed).
            search: Case-insensitive substring of displayName, label, subject, sessionId
                or key.
            spawned_by: Rows whose ``spawnedBy`` or ``parentSessionKey`` is this key.
            active_minutes: Only rows updated in the last N minutes.
            include_global: Include the ``global`` sentinel entry.
            include_unknown: Include the ``unknown`` sentinel entry.
            limit: Page size (at least 1); None for every row.
            cursor: ``next_cursor`` of the previous page.
            with_total: Also count the rows matching the filters from the cursor on
                (``page.total``; this page's rows included), e.g. to say how many remain.

        Returns:
            A page of rows and the cursor of the next page.
        """
        query = self._list_query(
            agent_id=agent_id,
            channel=channel,
            label=label,
            search=search,
            spawned_by=spawned_by,
            active_minutes=active_minutes,
            include_global=include_global,
            include_unknown=include_unknown,
            limit=limit,
            cursor=cursor,
        )
        check_bool("with_total", with_total)
        rows, more = self._index.list(query)
        total = self._index.count_matching(query) if with_total else None
        return SessionPage(
            rows=rows, next_cursor=encode_cursor(*more) if more else None, total=total
        )

    def _list_query(
        self,
        *,
        agent_id: str | None = None,
        channel: str | None = None,
        label: str | None = None,
        search: str | None = None,
        spawned_by: str | None = None,
        active_minutes: int | None = None,
        include_global: bool = False,
        include_unknown: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ListQuery:
        """The checked query of :meth:`list` (shared with ``AsyncSessionStore``)."""
        if (
            agent_id is None
            and channel is None
            and label is None
            and search is None
            and spawned_by is None
            and active_minutes is None
            and include_global is False
            and include_unknown is False
            and cursor is None
        ):
            # The gateway's list (newest first, one page, no filter): nothing to check or
            # normalise but the page size.
            return _plain_query(check_limit(limit))
        for name, value in (
            ("agent_id", agent_id),
            ("channel", channel),
            ("label", label),
            ("search", search),
            ("spawned_by", spawned_by),
            ("cursor", cursor),
        ):
            check_optional_str(name, value)
        check_bool("include_global", include_global)
        check_bool("include_unknown", include_unknown)
        check_minutes("active_minutes", active_minutes)
        page_size = check_limit(limit)
        query = ListQuery(
            agent_id=normalize_agent_id(agent_id) if agent_id is not None else None,
            channel=(normalize_channel(channel) or "") if channel is not None else None,
            label=label.strip() if isinstance(label, str) else None,
            search=(search.strip().lower() or None) if isinstance(search, str) else None,
            spawned_by=spawned_by.strip() if isinstance(spawned_by, str) else None,
            active_since=(now_ms() - active_minutes * 60_000) if active_minutes else None,
            include_global=include_global,
            include_unknown=include_unknown,
            limit=page_size,
            after=decode_cursor(cursor) if cursor is not None else None,
        )
        return query

    def count(self) -> int:
        """Number of entries in the store."""
        return self._index.count()

    def load_all(self) -> dict[str, SessionEntry]:
        """Every entry by key: the whole store, for compatibility only."""
        return cast("dict[str, SessionEntry]", self._index.load_all())

    def mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Run ``fn(store)`` on the whole store under the write lock and save its changes.

        Like OpenClaw's ``updateSessionStore(mutator)``: ``fn`` gets every entry by key,
        may add, change and delete entries in place, and its return value is returned.
        An ``acp`` block that ``fn`` drops from a surviving entry is put back. If ``fn``
        raises, nothing is saved.

        Raises:
            InvalidKeyError: ``fn`` gave an entry a ``sessionId`` that cannot name a
                transcript file (nothing is saved).
            InvalidEntryError: ``fn`` left a value that is not JSON in an entry (as for
                :meth:`put`; nothing is saved).
        """
        result = self._index.mutate(self._mutate_checked(fn))
        self._after_write(None)
        return result

    def _mutate_checked(self, fn: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
        """``fn`` as :meth:`mutate` hands it to the index: its result checked before saving."""
        check_callable("fn", fn)

        def checked(entries: dict[str, Any]) -> T:
            before = {k: v.get("sessionId") for k, v in entries.items() if isinstance(v, dict)}
            result = fn(entries)
            # Refused here, inside the transaction (so nothing is saved), with the value
            # shown safely whatever it is.
            for k, v in entries.items():
                if not isinstance(k, str):
                    raise InvalidKeyError(
                        f"session keys must be strings, got {show(k)} ({type(k).__name__})"
                    )
                if not isinstance(v, dict):
                    raise InvalidEntryError(
                        f"entry {show(k)} must be a JSON object, got {show(v)} ({type(v).__name__})"
                    )
                _check_session_id(k, v, {"sessionId": before[k]} if k in before else None)
            return result

        return checked

    # --- maintenance and checks -------------------------------------------------------------

    def maintain(
        self,
        mode: Literal["warn", "enforce"] | None = None,
        dry_run: bool = False,
        active_key: str | None = None,
        *,
        fix_missing: bool = False,
        reap_cron: bool = False,
    ) -> MaintenanceReport:
        """Prune, cap, archive, rotate and enforce the disk budget (``session.maintenance``).

        The steps and order are OpenClaw's; the active session is never removed. In warn
        mode (the default, as upstream) or with ``dry_run`` nothing changes and the report
        says what enforce would do.

        Args:
            mode: ``warn`` or ``enforce``; default the configured mode.
            dry_run: Change nothing; report the plan.
            active_key: The session in use, never pruned, capped or evicted.
            fix_missing: Also remove entries whose transcript file is missing (applied in
                warn mode too, unless ``dry_run``).
            reap_cron: Also run OpenClaw's cron reaper: remove cron run sessions
                (``…:cron:<job>:run:<id>``) idle longer than openclaw.json's
                ``cron.sessionRetention`` (default 24 hours; ``false`` turns it off) and
                archive their transcripts as ``.deleted.<ts>`` (applied in warn mode too,
                as upstream, unless ``dry_run``).

        Returns:
            What was done, or would be done.
        """
        from .context import StoreContext
        from .maintenance import run_maintenance

        check_optional_str("mode", mode)
        check_bool("dry_run", dry_run)
        if active_key is not None:
            canonical_key(active_key)
        check_bool("fix_missing", fix_missing)
        check_bool("reap_cron", reap_cron)
        return run_maintenance(
            StoreContext.of(self),
            mode=mode,
            dry_run=dry_run,
            active_key=active_key,
            fix_missing=fix_missing,
            reap_cron=reap_cron,
        )

    def check(self, fix: bool = False) -> builtins.list[Finding]:
        """Look for inconsistencies between the index, the transcripts and the files.

        Args:
            fix: Repair what can be repaired safely. User data is never deleted; what
                cannot be repaired safely is only reported.

        Returns:
            The findings, each saying whether it was repaired.
        """
        from .context import StoreContext
        from .doctor import run_checks

        check_bool("fix", fix)
        return run_checks(StoreContext.of(self), fix=fix)

    def vacuum(self) -> dict[str, Any]:
        """Checkpoint the WAL and compact ``sessions.sqlite`` (sqlite stores only).

        Returns:
            ``bytesBefore`` and ``bytesAfter`` (database plus WAL) and ``checkpointed``.

        Raises:
            InvalidArgumentError: The store is not a sqlite store.
        """
        return self._index.vacuum()

    def _after_write_due(self) -> bool:
        """Whether :meth:`_after_write` has work to do now (work that touches files)."""
        if not self._dir_ready and self.store_type == "postgres":
            return True
        every = self.config.maintain_every_ms
        if every is None or self.config.maintenance.mode != "enforce":
            return False
        return time.monotonic() >= self._next_auto_check

    def _after_write(self, key: str | None) -> None:
        """Run maintenance at most once per ``session.maintainEvery`` (enforce mode)."""
        if not self._after_write_due():
            return
        if not self._dir_ready and self.store_type == "postgres":
            # The index is on the server; the sessions dir (transcripts) appears with the
            # first write, as it does with the database file of a sqlite store.
            ensure_private_dir(self.paths.sessions_dir)
            self._dir_ready = True
        every = self.config.maintain_every_ms
        if every is None or self.config.maintenance.mode != "enforce":
            return
        clock = time.monotonic()
        marker = self.paths.sessions_dir / MAINTENANCE_MARKER
        try:
            last = marker.stat().st_mtime * 1000
        except OSError:
            last = 0.0
        wait_ms = last + every - now_ms()
        if wait_ms > 0:
            self._next_auto_check = clock + wait_ms / 1000
            return
        self._next_auto_check = clock + every / 1000
        try:
            marker.touch(mode=0o600)
            os.utime(marker)
            self.maintain(mode="enforce", active_key=key)
        except (SessionStoreError, OSError) as exc:
            # The write itself was acknowledged; maintenance is retried next interval.
            log.warning(
                "sessionstore: automatic maintenance of %s failed: %s", self.paths.sessions_dir, exc
            )

    def info(self) -> StoreInfo:
        """Backend, paths, counts and versions (what ``store-info`` prints)."""
        from .split import source_changed
        from .storeinfo import StoreInfo

        sqlite_ok, sqlite_version = sqlite_driver()
        record = self._index.migration_record()
        try:
            json_bytes: int | None = self.paths.json_path.stat().st_size
        except OSError:
            json_bytes = None
        return StoreInfo(
            storeType=self.configured_type,
            effectiveStoreType=self.store_type,
            fallbackReason=self.fallback_reason,
            sqliteAvailable=sqlite_ok,
            sqliteVersion=sqlite_version,
            sessionCount=self.count(),
            jsonPath=str(self.paths.json_path),
            sqlitePath=str(self.paths.sqlite_path),
            migration=record,
            sourceChangedSinceMigration=source_changed(record, self.paths.json_path),
            agentId=self.agent_id,
            durability=self.durability,
            jsonBytes=json_bytes,
            backend=self._index.describe(),
            splitWarning=self._find_split(),
            openclawDb=self.openclaw_db_status(),
            settings=self._settings(),
        )

    def _settings(self) -> dict[str, Any]:
        config = self.config
        sources = dict(config.sources)

        def origin(key: str, value: object, default: object) -> str:
            if key in sources:
                return sources[key] if value == default else "argument"
            return "default" if value == default else "argument"

        return {
            "storeType": {
                "value": self.configured_type,
                "from": origin("storeType", self.configured_type, config.store_type),
            },
            "durability": {
                "value": self.durability,
                "from": origin("durability", self.durability, config.durability),
            },
            "store": {"value": config.store, "from": sources.get("store", "default")},
            "maintainEvery": {
                "value": config.maintain_every_ms,
                "from": sources.get("maintainEvery", "default"),
            },
            "maintenanceMode": {
                "value": config.maintenance.mode,
                "from": sources.get("maintenance", "default"),
            },
            "settingsFile": str(self.state_dir / SETTINGS_FILE),
        }

    def openclaw_db_status(self) -> dict[str, Any] | None:
        """Whether the agent's ``openclaw-agent.sqlite`` (OpenClaw 2026.8+) was imported."""
        from .openclaw_import import import_record, openclaw_db_status

        return openclaw_db_status(self.state_dir, self.agent_id, import_record(self._index))


def open_store(
    agent: str = "main",
    state_dir: str | Path | None = None,
    store_type: Literal["auto", "json", "sqlite", "postgres"] | None = None,
    dsn: str | None = None,
    *,
    store: str | None = None,
    durability: Literal["normal", "power"] | None = None,
    lock_timeout_ms: int = 10_000,
    read_only: bool = False,
) -> SessionStore:
    """Open one agent's session store.

    Settings come from the arguments, then the ``SESSIONSTORE_*`` variables, then
    ``<stateDir>/sessionstore.json``, then the keys of ``openclaw.json``'s ``session``
    section that OpenClaw itself defines (``store``, ``maintenance``), then the defaults.
    Opening creates nothing: a store that does not exist yet reads as empty, and its files
    appear with the first write.

    Args:
        agent: The agent id (normalised like OpenClaw: ``"Main Bot"`` -> ``"main-bot"``).
        state_dir: The OpenClaw state dir; default ``OPENCLAW_STATE_DIR``, else
            ``~/.openclaw``.
        store_type: ``"auto"`` (sqlite if ``sessions.sqlite`` exists, json if only
            ``sessions.json`` exists; for a store with neither, the first write creates
            ``sessions.sqlite``), ``"json"`` or ``"sqlite"``. With ``"sqlite"``, an
            existing ``sessions.json`` is imported when the database is created.
        dsn: PostgreSQL conninfo or URL for ``store_type="postgres"`` (default the
            ``postgres.dsn`` setting or ``SESSIONSTORE_PG_DSN``); its password never
            appears in messages, ``repr`` or ``info()``.
        store: A ``session.store`` path (may contain ``{agentId}`` and ``~``) instead of
            the per-agent default under the state dir.
        durability: ``"normal"`` survives process crashes; ``"power"`` also power loss.
        lock_timeout_ms: How long a writer waits for another writer (and a migration for
            the database).
        read_only: Never write: no import, no schema upgrade, no file created; every write
            raises ``ReadOnlyStoreError``. Stores whose files this process may not write are
            read this way by themselves.

    Returns:
        The open store; close it (or use it as a context manager) when done.

    Raises:
        ConfigError: An invalid setting (argument, environment or config file).
        MigrationError: The automatic migration of sessions.json failed (nothing written).
        SessionStoreError: The store cannot be opened (corrupt file, permissions, ...).
    """
    _check_open_arguments(agent, state_dir, store_type, dsn, store, durability, lock_timeout_ms)
    check_bool("read_only", read_only)
    root = resolve_state_dir(state_dir)
    config = load_settings(root, config_path(root))
    configured = resolve_store_type(store_type, config)
    level = durability or config.durability
    if level not in ("normal", "power"):
        raise ConfigError(f"durability {level!r} is not one of normal, power")
    paths = resolve_store_paths(root, agent, store or config.store)
    index: IndexBackend
    if configured == "postgres":
        index, fallback_reason = (
            _open_postgres(config, paths, dsn, lock_timeout_ms, read_only),
            None,
        )
    else:
        index, fallback_reason = open_index(
            configured,
            paths,
            durability=level,
            lock_timeout_ms=lock_timeout_ms,
            read_only=read_only,
        )
    opened = SessionStore(
        index,
        paths=paths,
        state_dir=root,
        configured_type=configured,
        fallback_reason=fallback_reason,
        config=config,
        durability=level,
        lock_timeout_ms=lock_timeout_ms,
    )
    try:
        record = _UNREAD
        if configured == "sqlite" and opened.store_type == "sqlite" and not read_only:
            record = _first_open_import(opened, level, lock_timeout_ms)
        opened.split_warning = opened._find_split(record)
    except BaseException:
        opened.close()  # a failed import removed only what it alone created
        raise
    if opened.split_warning:
        log.warning("sessionstore: %s", opened.split_warning)
    return opened


def _open_postgres(
    config: SessionConfig, paths: StorePaths, dsn: str | None, lock_timeout_ms: int, read_only: bool
) -> IndexBackend:
    """The PostgreSQL index of ``paths.agent_id`` (DSN: the argument, else the settings)."""
    from .index.postgres import PostgresIndex, load_driver

    load_driver()  # a missing extra is named before anything else is said
    pg = config.postgres
    chosen = dsn if dsn is not None else pg.dsn
    if not chosen:
        raise ConfigError(
            "store type 'postgres' needs a DSN: pass dsn=..., set SESSIONSTORE_PG_DSN, or"
            " put postgres.dsn in sessionstore.json"
        )
    return PostgresIndex(
        chosen,
        agent_id=paths.agent_id,
        schema=pg.schema,
        pool_size=pg.pool_size,
        partitions=pg.partitions,
        lock_timeout_ms=lock_timeout_ms,
        read_only=read_only,
    )


def _check_open_arguments(
    agent: object,
    state_dir: object,
    store_type: object,
    dsn: object,
    store: object,
    durability: object,
    lock_timeout_ms: object,
) -> None:
    """Refuse ``open_store`` arguments of a wrong type or range (the values are checked later)."""
    if not isinstance(agent, str):
        raise InvalidArgumentError(
            f"agent must be an agent id string, got {show(agent)} ({type(agent).__name__})"
        )
    check_optional_path("state_dir", state_dir)
    check_optional_str("store_type", store_type)
    check_optional_str("dsn", dsn)
    check_optional_path("store", store)
    check_optional_str("durability", durability)
    check_timeout_ms("lock_timeout_ms", lock_timeout_ms)


def _first_open_import(
    store: SessionStore, durability: str, lock_timeout_ms: int
) -> dict[str, Any] | object | None:
    """A sqlite store opened with sessions.json beside it and nothing imported: import it.

    Returns:
        The migration record it read (the split check reuses it), or ``_UNREAD``.
    """
    from .index.sqlite import SqliteIndex

    index = store.index
    if not isinstance(index, SqliteIndex) or not store.paths.json_path.exists():
        return _UNREAD
    if not index.exists() and index.create():
        return _UNREAD  # its on_create imported sessions.json into the new database
    # The record first: a migrated store has one, and then the count need not be read.
    try:
        found, record = index.take_open_record()
        if not found:
            record = index.migration_record()
    except CorruptStoreError:
        if index.count() > 0:
            return _UNREAD  # a damaged record of a store with rows: the split check says so
        raise
    if record is not None or index.count() > 0:
        return record
    from .migrate import migrate_agent

    result = migrate_agent(store.paths, durability=durability, lock_timeout_ms=lock_timeout_ms)
    log.info("sessionstore: %s: %s", store.paths.json_path, result.message)
    return _UNREAD


def __getattr__(name: str) -> Any:
    # ``StoreInfo`` is defined in storeinfo.py, imported on first use (see there)
    if name == "StoreInfo":
        from .storeinfo import StoreInfo

        globals()["StoreInfo"] = StoreInfo
        return StoreInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
