"""This store as a Google ADK session service (extra ``adk``): :class:`StoreSessionService`.

Layout in the store (the id parts escaped by :func:`key_part`, so ids keep their case and
may hold ``:``):

- a session is the entry ``agent:<agent>:adk:<app>:<user>:<session>``: its ADK state
  (``adkState``), an integer revision (``adkRevision``), the number of events
  (``adkEvents``) and ADK's ``last_update_time`` (``adkUpdateTime``); its events are the
  records ``{"role": "adk", "event": {...}}`` of the entry's transcript;
- ``app:`` state is the entry ``agent:<agent>:adk:<app>``, ``user:`` state the entry
  ``agent:<agent>:adk:<app>:<user>`` (``adkState`` both), shared by the sessions below
  them; ``temp:`` keys are never stored.

All of them have ``channel: "adk"``, so ``store.list(channel="adk")`` lists them, and
maintenance prunes them like any entry (keep that in mind for the state entries when
``session.maintenance`` is ``enforce``).

Stale sessions: every ``append_event`` checks the revision the session object was read at
(``Session._storage_update_marker``) against the entry's, and bumps it in the same atomic
update; a session object read before another writer's event gets ADK's
``StaleSessionError``. Float timestamps play no part in it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

try:
    from google.adk.errors import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import (
        SessionNotFoundError as AdkSessionNotFoundError,
    )
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
    from google.adk.sessions.state import State
    from pydantic import ValidationError
    from pydantic_core import to_jsonable_python
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "sessionstore.adapters.adk needs Google ADK: pip install 'sessionstore[adk]'"
    ) from exc

from ..aio import AsyncSessionStore, AsyncTranscript
from ..args import check_bool
from ..errors import InvalidArgumentError, SessionNotFoundError
from ..keys import canonical_key
from ..store import SessionStore

__all__ = ["CHANNEL", "ROLE", "StoreSessionService", "key_part"]

ROLE: Final = "adk"
CHANNEL: Final = "adk"
STALE_MESSAGE: Final = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
_SAFE: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
_EMPTY: Final = "~"  # an empty id ("~" itself is escaped, so this stands for nothing else)


def key_part(value: str) -> str:
    """An id as one part of a key: kept when lowercase ``[a-z0-9._-]``, else %-escaped.

    Keys are lowercased by the store, so uppercase letters (and ``:``, ``%``, spaces, any
    other character) are written as ``%hh`` of their UTF-8 bytes: ``"Alice"`` ->
    ``"%41lice"``. Distinct ids always give distinct parts.
    """
    if value == "":
        return _EMPTY
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02x}" for b in ch.encode()) for ch in value)


def _from_part(part: str) -> str:
    return "" if part == _EMPTY else unquote(part, errors="strict")


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _split_state(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """ADK's scoping: ``app:``, ``user:``, session keys; ``temp:`` keys dropped."""
    out: dict[str, dict[str, Any]] = {"app": {}, "user": {}, "session": {}}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            out["app"][key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            out["user"][key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            out["session"][key] = value
    safe: dict[str, dict[str, Any]] = to_jsonable_python(out)
    return safe


def _merged(app: Mapping[str, Any], user: Mapping[str, Any], own: Mapping[str, Any]) -> Any:
    merged = dict(own)
    merged.update({State.APP_PREFIX + k: v for k, v in app.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user.items()})
    return merged


def _state_of(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    state = (entry or {}).get("adkState")
    return dict(state) if isinstance(state, dict) else {}


def _update_time(entry: Mapping[str, Any]) -> float:
    value = entry.get("adkUpdateTime")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _decode(rec: Mapping[str, Any]) -> Event | None:
    if rec.get("role") != ROLE or not isinstance(rec.get("event"), dict):
        return None
    try:
        return Event.model_validate(rec["event"])
    except ValidationError:
        return None  # a record that is not a whole event: skipped


class StoreSessionService(BaseSessionService):
    """A Google ADK ``BaseSessionService`` kept in a sessionstore store.

    Args:
        store: A ``SessionStore`` (its calls then run in a shared worker pool) or an
            ``AsyncSessionStore``.
        list_state: Also fill each listed session's (merged) state, as ADK's
            ``DatabaseSessionService`` does: one entry read per session. Default False:
            ``list_sessions`` returns metadata only, as ``BaseSessionService`` documents.
        newest_first: ``list_sessions`` returns the most recently updated session first
            (the order of ``sessionstore list``). Default False: oldest first, the order
            ``BaseSessionService.list_sessions`` documents and ADK's own services return.
    """

    def __init__(
        self,
        store: SessionStore | AsyncSessionStore,
        *,
        list_state: bool = False,
        newest_first: bool = False,
    ):
        if isinstance(store, AsyncSessionStore):
            self._store = store
        elif isinstance(store, SessionStore):
            self._store = AsyncSessionStore.borrow(store)
        else:
            raise InvalidArgumentError(
                f"store must be a SessionStore or an AsyncSessionStore, got {type(store).__name__}"
            )
        self._list_state = check_bool("list_state", list_state)
        self._newest_first = check_bool("newest_first", newest_first)
        self._root = canonical_key(f"agent:{self._store.agent_id}:adk")

    # --- keys -------------------------------------------------------------------------------

    def app_key(self, app_name: str) -> str:
        """The entry of an app's ``app:`` state."""
        return f"{self._root}:{key_part(_check_id('app_name', app_name))}"

    def user_key(self, app_name: str, user_id: str) -> str:
        """The entry of a user's ``user:`` state."""
        return f"{self.app_key(app_name)}:{key_part(_check_id('user_id', user_id))}"

    def session_key(self, app_name: str, user_id: str, session_id: str) -> str:
        """The entry of a session."""
        sid = _check_id("session_id", session_id).strip()
        return f"{self.user_key(app_name, user_id)}:{key_part(sid)}"

    # --- sessions ---------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session; ``app:``/``user:`` keys of ``state`` go to the shared state.

        Raises:
            AlreadyExistsError: A session with this id exists for this app and user.
        """
        sid = session_id.strip() if isinstance(session_id, str) else str(uuid.uuid4())
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidArgumentError(f"session_id must be a string, got {session_id!r}")
        key = self.session_key(app_name, user_id, sid)
        parts = _split_state(state or {})
        now = time.time()
        existed: list[bool] = []

        def create(existing: Any) -> dict[str, Any] | None:
            if existing is not None:
                existed.append(True)
                return None
            return {
                "channel": CHANNEL,
                "displayName": sid,
                "adkState": parts["session"],
                "adkRevision": 1,
                "adkEvents": 0,
                "adkUpdateTime": now,
            }

        await self._store.update(key, create, create=True, fields=())
        if existed:
            raise AlreadyExistsError(f"Session with id {sid} already exists.")
        app_state, user_state = await asyncio.gather(
            self._merge_shared(self.app_key(app_name), parts["app"], f"adk app {app_name}"),
            self._merge_shared(
                self.user_key(app_name, user_id), parts["user"], f"adk user {user_id}"
            ),
        )
        session = Session(
            id=sid,
            app_name=app_name,
            user_id=user_id,
            state=_merged(app_state, user_state, parts["session"]),
            last_update_time=now,
        )
        session._storage_update_marker = "1"
        return session

    async def _merge_shared(self, key: str, delta: dict[str, Any], name: str) -> dict[str, Any]:
        """Merge ``delta`` into a shared state entry (created when missing); its new state."""

        def merge(existing: Any) -> dict[str, Any]:
            patch: dict[str, Any] = {"adkState": {**_state_of(existing), **delta}}
            if existing is None:
                patch.update(channel=CHANNEL, displayName=name)
            return patch

        entry = await self._store.update(key, merge, create=True, fields=["adkState"])
        return _state_of(entry)

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with its merged state and events (filtered by ``config``), or None."""
        key = self.session_key(app_name, user_id, session_id)
        entry, app_entry, user_entry = await asyncio.gather(
            self._store.get(key),
            self._store.get(self.app_key(app_name), fields=["adkState"]),
            self._store.get(self.user_key(app_name, user_id), fields=["adkState"]),
        )
        if entry is None:
            return None
        events: list[Event] = []
        want = config.num_recent_events if config else None
        after = config.after_timestamp if config else None
        if want != 0:
            try:
                transcript = await self._store.transcript(key)
            except SessionNotFoundError:
                return None  # deleted meanwhile
            events = await self._events(transcript, want, after)
        session = Session(
            id=session_id.strip(),
            app_name=app_name,
            user_id=user_id,
            state=_merged(_state_of(app_entry), _state_of(user_entry), _state_of(entry)),
            events=events,
            last_update_time=_update_time(entry),
        )
        session._storage_update_marker = str(entry.get("adkRevision"))
        return session

    @staticmethod
    async def _events(
        transcript: AsyncTranscript, want: int | None, after: float | None
    ) -> list[Event]:
        """The newest ``want`` events at or after ``after``; the file is read from its end."""
        if want is None and after is None:
            return [e for e in map(_decode, await transcript.messages()) if e is not None]
        window = want or 64
        while True:
            records = await transcript.tail(window)
            events = [e for e in map(_decode, records) if e is not None]
            if after is not None:
                reached = bool(events) and events[0].timestamp < after
                events = [e for e in events if e.timestamp >= after]
            else:
                reached = False
            if (want is not None and len(events) >= want) or reached or len(records) < window:
                return events[-want:] if want is not None else events
            window *= 2

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The sessions of an app (of one user, or all), oldest update first.

        (Newest first when the service was made with ``newest_first=True``.)

        Metadata only (no events; no state unless ``list_state``), read from the hot index's
        listing, so it stays fast with many sessions.
        """
        prefix = (
            self.app_key(app_name) if user_id is None else self.user_key(app_name, user_id)
        ) + ":"
        page = await self._store.list(channel=CHANNEL, search=prefix)
        depth = self._root.count(":") + 3
        sessions: list[Session] = []
        for row in page.rows if self._newest_first else reversed(page.rows):
            key = row["key"]
            if not key.startswith(prefix) or key.count(":") != depth:
                continue
            _, _, user_part, sid_part = key.rsplit(":", 3)
            sessions.append(
                Session(
                    id=_from_part(sid_part),
                    app_name=app_name,
                    user_id=_from_part(user_part),
                    last_update_time=float(row.get("updatedAt") or 0) / 1000,
                )
            )
        if self._list_state and sessions:
            await self._fill_states(app_name, sessions)
        return ListSessionsResponse(sessions=sessions)

    async def _fill_states(self, app_name: str, sessions: list[Session]) -> None:
        users = sorted({s.user_id for s in sessions})
        app_entry, *user_entries = await asyncio.gather(
            self._store.get(self.app_key(app_name), fields=["adkState"]),
            *(self._store.get(self.user_key(app_name, u), fields=["adkState"]) for u in users),
        )
        user_states = {u: _state_of(e) for u, e in zip(users, user_entries, strict=True)}
        entries = await asyncio.gather(
            *(
                self._store.get(
                    self.session_key(app_name, s.user_id, s.id),
                    fields=["adkState", "adkUpdateTime"],
                )
                for s in sessions
            )
        )
        for session, entry in zip(sessions, entries, strict=True):
            session.state = _merged(
                _state_of(app_entry), user_states[session.user_id], _state_of(entry)
            )
            if entry is not None:
                session.last_update_time = _update_time(entry)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session (its transcript is archived as ``*.jsonl.deleted.<ts>``)."""
        await self._store.delete(self.session_key(app_name, user_id, session_id))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The ``user:`` state of a user, keys without the prefix; {} when there is none."""
        entry = await self._store.get(self.user_key(app_name, user_id), fields=["adkState"])
        return _state_of(entry)

    async def get_app_state(self, *, app_name: str) -> dict[str, Any]:
        """The ``app:`` state of an app, keys without the prefix; {} when there is none."""
        return _state_of(await self._store.get(self.app_key(app_name), fields=["adkState"]))

    # --- events -----------------------------------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store an event and its state delta; apply both to ``session``.

        Order: the session entry (revision check, session state, revision + 1) in one
        atomic update; then the event in the transcript (undone in the entry if that
        fails); then the ``app:``/``user:`` deltas.

        Raises:
            StaleSessionError: Another writer appended since ``session`` was read.
            google.adk.errors.session_not_found_error.SessionNotFoundError: No such session.
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        parts = _split_state(event.actions.state_delta if event.actions else {})
        key = self.session_key(session.app_name, session.user_id, session.id)
        marker = session._storage_update_marker
        outcome: dict[str, Any] = {}

        def advance(existing: Any) -> dict[str, Any] | None:
            revision = int(existing.get("adkRevision", 0))
            if (marker is not None and marker != str(revision)) or (
                marker is None and int(existing.get("adkEvents", 0)) != len(session.events)
            ):
                outcome["stale"] = True
                return None
            outcome["before"] = {k: existing.get(k) for k in ("adkState", "adkUpdateTime")}
            outcome["revision"] = revision + 1
            return {
                "adkState": {**_state_of(existing), **parts["session"]},
                "adkRevision": revision + 1,
                "adkEvents": int(existing.get("adkEvents", 0)) + 1,
                "adkUpdateTime": event.timestamp,
            }

        if await self._store.update(key, advance, fields=()) is None:
            raise AdkSessionNotFoundError(f"Session {session.id} not found.")
        if "stale" in outcome:
            raise StaleSessionError(STALE_MESSAGE)
        try:
            transcript = await self._store.transcript(key)
            await transcript.append(
                {"role": ROLE, "event": event.model_dump(exclude_none=True, mode="json")},
                idempotency_key=f"adk:{event.id}",
            )
        except BaseException:
            await self._undo(key, outcome["revision"], outcome["before"])
            raise
        if parts["app"]:
            await self._merge_shared(self.app_key(session.app_name), parts["app"], "")
        if parts["user"]:
            await self._merge_shared(
                self.user_key(session.app_name, session.user_id), parts["user"], ""
            )
        session.last_update_time = event.timestamp
        session._storage_update_marker = str(outcome["revision"])
        return self._commit_event_to_session(session, event)

    async def _undo(self, key: str, revision: int, before: dict[str, Any]) -> None:
        """Put the entry back as it was before a failed event write (if nobody wrote since)."""

        def undo(existing: Any) -> dict[str, Any] | None:
            if existing is None or existing.get("adkRevision") != revision:
                return None
            return {
                **before,
                "adkRevision": revision - 1,
                "adkEvents": int(existing.get("adkEvents", 1)) - 1,
            }

        await asyncio.shield(self._store.update(key, undo, fields=()))
