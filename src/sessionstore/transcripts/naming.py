"""Transcript file names, and where a session's transcript lives (spec 3.2, 3.5 and 4A).

The one module that knows the grammar of the files in a sessions dir:

- ``<sessionId>.jsonl``: a primary transcript;
- ``<sessionId>-topic-<topicId>.jsonl``: a topic transcript (a string topic URI-encoded as
  ``encodeURIComponent`` does);
- ``<ISO-ts>_<sessionId>.jsonl``: a forked transcript (pi's ``newSession`` naming);
- ``<file>.reset.<ts>``, ``<file>.deleted.<ts>``, ``<file>.bak.<ts>``: OpenClaw's archives,
  ``<ts>`` an ISO time with ``-`` for ``:``; ``<file>.torn.<ts>``: the bytes an append cut
  off a torn last line (ours);
- ``sessions.json.bak.<epochMs>``: rotated copies of the index.

Session ids may themselves contain ``-topic-`` (or look like a fork prefix), so a name
can have several readings. :func:`parse_name` takes the ids a caller knows to exist and
prefers a reading that names one of them; without them it reads names as OpenClaw
generates them (fork prefix stripped, the first ``-topic-`` splits).

:func:`locate_transcript` is the path choice of spec 3.5 that every reader, writer and
checker uses, and :func:`accepted_path` the containment decision for ``sessionFile``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Final, Literal

from ..clock import iso_ms, now_ms
from ..errors import InvalidArgumentError, InvalidKeyError
from ..files import fsync_dir, os_error

__all__ = [
    "ARCHIVE_REASONS",
    "TranscriptCandidate",
    "TranscriptDirs",
    "TranscriptLocation",
    "TranscriptName",
    "accepted_path",
    "archive_name",
    "archive_timestamp",
    "archive_transcript",
    "claims_transcript",
    "encode_topic",
    "file_names",
    "inside_dir",
    "is_archive_artifact",
    "is_primary_transcript",
    "is_session_id",
    "is_usage_counted",
    "locate_transcript",
    "missing_transcript",
    "other_owners",
    "parse_archive_name",
    "parse_name",
    "resolve_transcript_path",
    "session_transcripts",
    "transcript_dirs",
    "transcript_name",
    "transcript_path",
    "validate_session_id",
]

SUFFIX: Final = ".jsonl"
TOPIC: Final = "-topic-"
ARCHIVE_REASONS: Final = ("reset", "deleted", "bak", "torn")
"""Archive reasons: OpenClaw's three, and ``torn`` for the bytes cut off a torn tail."""

# Always used with fullmatch: "$" would also match before a trailing newline.
_SESSION_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}", re.IGNORECASE)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_FORK = re.compile(r"(\d{4}-\d{2}-\d{2}T[\d-]+(?:\.\d+)?Z)_(.+)", re.DOTALL)
_STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d{1,6})?Z"
_ARCHIVE = re.compile(rf"(.+)\.({'|'.join(ARCHIVE_REASONS)})\.({_STAMP})", re.DOTALL)
_STORE_BACKUP = re.compile(r"(.+\.json)\.bak\.(\d+)", re.DOTALL)
_TOPIC_SAFE: Final = "-_.!~*'()"  # what encodeURIComponent leaves alone, besides [A-Za-z0-9]

Kind = Literal["primary", "archive", "store-backup"]
Source = Literal["sessionFile", "derived", "staleSessionFile", "agentDir", "legacyDir"]


# --- session ids and names ---------------------------------------------------------------------


def is_session_id(value: object) -> bool:
    """Whether ``value`` can name a transcript file (OpenClaw's ``Invalid session ID`` rule)."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def validate_session_id(session_id: object) -> str:
    """Check a session id before it becomes a file name.

    Raises:
        InvalidKeyError: ``Invalid session ID`` for ids like ``../etc/passwd``, ``a/b``,
            ``""`` or a non-string.
    """
    if not is_session_id(session_id):
        raise InvalidKeyError(
            f"Invalid session ID: {session_id!r} (expected letters, digits, '.', '_', '-';"
            " starting with a letter or digit; at most 128 characters)"
        )
    assert isinstance(session_id, str)
    return session_id


def encode_topic(topic_id: str | int) -> str:
    """A topic id as it appears in a file name: a string URI-encoded, a number as is."""
    if isinstance(topic_id, str):
        return urllib.parse.quote(topic_id, safe=_TOPIC_SAFE)
    return str(topic_id)


def transcript_name(session_id: str, topic_id: str | int | None = None) -> str:
    """``<sessionId>.jsonl`` or ``<sessionId>-topic-<topicId>.jsonl``.

    Raises:
        InvalidKeyError: ``session_id`` cannot name a file.
    """
    validate_session_id(session_id)
    if topic_id is None:
        return f"{session_id}{SUFFIX}"
    return f"{session_id}{TOPIC}{encode_topic(topic_id)}{SUFFIX}"


def transcript_path(sessions_dir: Path, session_id: str, topic_id: str | int | None = None) -> Path:
    """``<dir>/<sessionId>.jsonl`` or ``<dir>/<sessionId>-topic-<topicId>.jsonl``.

    Raises:
        InvalidKeyError: ``session_id`` cannot name a file.
    """
    return sessions_dir / transcript_name(session_id, topic_id)


# --- reading names -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptName:
    """What a file name in a sessions dir says.

    Attributes:
        name: The file name.
        kind: ``primary`` (a live ``*.jsonl`` transcript), ``archive`` (``.reset.``,
            ``.deleted.``, ``.bak.`` or ``.torn.`` plus a time) or ``store-backup`` (a
            rotated ``sessions.json.bak.<ms>``).
        session_id: The session the transcript (or the archived transcript) belongs to;
            None when the name does not say (``notes.jsonl.bak.<ts>`` does: ``notes``).
        topic: The topic as written in the name (URI-encoded), for topic transcripts.
        forked_at: The time prefix of a forked ``<ISO-ts>_<sessionId>.jsonl``.
        reason: ``reset``, ``deleted``, ``bak`` or ``torn`` for archives, ``bak`` for
            store backups.
        time_ms: When the archive or backup was made (ms since the epoch).
        archived: The name of the file an archive was made from.
    """

    name: str
    kind: Kind
    session_id: str | None = None
    topic: str | None = None
    forked_at: str | None = None
    reason: str | None = None
    time_ms: int | None = None
    archived: str | None = None


@dataclass(frozen=True)
class _Reading:
    session_id: str
    topic: str | None
    forked_at: str | None


def _readings(stem: str) -> list[_Reading]:
    """Every reading of a transcript name without ``.jsonl``, OpenClaw's usual one first."""
    out: list[_Reading] = []
    fork = _FORK.fullmatch(stem)
    bodies = [(fork.group(1), fork.group(2))] if fork else []
    bodies.append((None, stem))
    for forked_at, body in bodies:
        at = body.find(TOPIC)
        while at != -1:
            session_id, topic = body[:at], body[at + len(TOPIC) :]
            if topic and _SESSION_ID.fullmatch(session_id):
                out.append(_Reading(session_id, topic, forked_at))
            at = body.find(TOPIC, at + 1)
        if _SESSION_ID.fullmatch(body):
            out.append(_Reading(body, None, forked_at))
    return out


def _choose(readings: list[_Reading], known: Container[str] | None) -> _Reading | None:
    if known is not None:
        hits = [r for r in readings if r.session_id in known]
        if hits:
            # A name two known sessions can claim is the primary transcript of the one whose
            # id it spells out whole, rather than a topic of the shorter one.
            return min(hits, key=lambda r: (r.topic is not None, -len(r.session_id)))
    return readings[0] if readings else None


def _stamp_ms(stamp: str) -> int | None:
    date, _, clock = stamp.partition("T")
    try:
        when = datetime.fromisoformat(f"{date}T{clock[:8].replace('-', ':')}{clock[8:-1]}")
    except ValueError:
        return None
    return int(when.replace(tzinfo=timezone.utc).timestamp() * 1000)


def parse_name(name: str, known: Container[str] | None = None) -> TranscriptName | None:
    """Read a file name of a sessions dir; None for files that are not transcripts or archives.

    Args:
        name: A file name (no directory).
        known: Session ids known to exist (e.g. every id the index references). When a
            name has several readings (a session id containing ``-topic-``), the reading
            naming a known id wins; without one, the name is read as OpenClaw generates
            names (fork prefix stripped, split at the first ``-topic-``).

    Returns:
        The parsed name; ``session_id`` is None when no reading yields a valid id.
    """
    backup = _STORE_BACKUP.fullmatch(name)
    if backup:
        return TranscriptName(name, "store-backup", reason="bak", time_ms=int(backup.group(2)))
    archive = _ARCHIVE.fullmatch(name)
    if archive:
        base, reason, stamp = archive.groups()
        when = _stamp_ms(stamp)
        if when is not None:
            inner = parse_name(base, known)
            return TranscriptName(
                name,
                "archive",
                session_id=inner.session_id if inner else None,
                topic=inner.topic if inner else None,
                forked_at=inner.forked_at if inner else None,
                reason=reason,
                time_ms=when,
                archived=base,
            )
    if not name.endswith(SUFFIX):
        return None
    reading = _choose(_readings(name[: -len(SUFFIX)]), known)
    if reading is None:
        return TranscriptName(name, "primary")
    return TranscriptName(
        name,
        "primary",
        session_id=reading.session_id,
        topic=reading.topic,
        forked_at=reading.forked_at,
    )


def parse_archive_name(name: str) -> tuple[str, int] | None:
    """The reason and time in ms of an archive or store backup name; None for other names."""
    parsed = parse_name(name)
    if parsed is None or parsed.kind == "primary":
        return None
    assert parsed.reason is not None and parsed.time_ms is not None
    return parsed.reason, parsed.time_ms


def is_archive_artifact(name: str) -> bool:
    """An archive (``.deleted.``, ``.reset.``, ``.bak.``, ``.torn.`` + time) or store backup.

    Spec 4A's classification, plus our ``.torn.`` files: they keep bytes cut off a
    transcript, so the disk budget may remove them like the ``.bak.`` archives.
    """
    parsed = parse_name(name)
    return parsed is not None and parsed.kind != "primary"


def is_primary_transcript(name: str) -> bool:
    """A live transcript: a ``*.jsonl`` name that is not an archive."""
    parsed = parse_name(name)
    return parsed is not None and parsed.kind == "primary"


def is_usage_counted(name: str) -> bool:
    """Counted by OpenClaw's usage totals: primary transcripts, ``.reset.`` and ``.deleted.``."""
    parsed = parse_name(name)
    if parsed is None:
        return False
    return parsed.kind == "primary" or (
        parsed.kind == "archive" and parsed.reason in ("reset", "deleted")
    )


def _names_session(name: str, session_id: str, topic: str | None) -> bool:
    """Whether some reading of a ``*.jsonl`` name is this session (and topic)."""
    if not name.endswith(SUFFIX):
        return False
    folded = session_id.lower()
    return any(
        r.session_id.lower() == folded and r.topic == topic for r in _readings(name[: -len(SUFFIX)])
    )


def _other_generated_id(name: str, session_id: str) -> str | None:
    """The generated (UUID) session id a name spells, when it is not ``session_id``'s.

    Spec 3.5's "stale" ``sessionFile``: it names a different generated session id.
    """
    if not name.endswith(SUFFIX):
        return None
    readings = _readings(name[: -len(SUFFIX)])
    folded = session_id.lower()
    if any(r.session_id.lower() == folded for r in readings):
        return None
    return next((r.session_id for r in readings if _UUID.fullmatch(r.session_id)), None)


# --- archives ------------------------------------------------------------------------------------


def archive_timestamp(at_ms: int | None = None) -> str:
    """An archive suffix time: ISO with ``:`` replaced by ``-`` (``2026-03-31T12-34-56.789Z``)."""
    return iso_ms(now_ms() if at_ms is None else at_ms).replace(":", "-")


def archive_name(name: str, reason: str, stamp: str | None = None) -> str:
    """``<name>.<reason>.<ts>``; ``reason`` one of :data:`ARCHIVE_REASONS`."""
    if reason not in ARCHIVE_REASONS:
        raise InvalidArgumentError(
            f"archive reason must be one of {', '.join(ARCHIVE_REASONS)}, got {reason!r}"
        )
    return f"{name}.{reason}.{stamp or archive_timestamp()}"


def archive_transcript(
    path: Path, reason: str, *, sessions_dir: Path | None = None, stamp: str | None = None
) -> Path | None:
    """Rename ``path`` to ``<path>.<reason>.<ts>`` (``reset``, ``deleted``, ``bak``).

    Files outside ``sessions_dir`` (when given) are never touched, nor is an existing
    archive overwritten.

    Returns:
        The archive path, or None when there was nothing to archive.

    Raises:
        SessionStoreError: The rename failed.
    """
    if sessions_dir is not None and not inside_dir(path, sessions_dir):
        return None
    target = path.with_name(archive_name(path.name, reason, stamp))
    if target.exists():
        return None
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(exc, "archive", path) from exc
    fsync_dir(path.parent)
    return target


# --- containment ---------------------------------------------------------------------------------


def _real(path: Path) -> Path | None:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None


def inside_dir(path: Path, directory: Path) -> bool:
    """Whether ``path``, every symlink resolved, is a file directly inside ``directory``."""
    real, real_dir = _real(path), _real(directory)
    return real is not None and real_dir is not None and real.parent == real_dir


def _agents_sessions_shape(real: Path) -> bool:
    parts = real.parts
    return len(parts) >= 5 and parts[-2] == "sessions" and parts[-4] == "agents"


def _sibling(real: Path, sessions_dir: Path, real_dir: Path) -> bool:
    """A file of a sibling agent: ``<agents>/<id>/sessions/<file>`` beside the store's dir.

    Decided on real paths, so an ``agents`` dir that is itself a symlink (moved to another
    disk under another name) still has its agents side by side.
    """
    own_shape = sessions_dir.name == "sessions" and sessions_dir.parent.parent.name == "agents"
    return (
        own_shape
        and real.parent.name == "sessions"
        and len(real.parents) >= 3
        and len(real_dir.parents) >= 2
        and real.parents[2] == real_dir.parents[1]
    )


def accepted_path(session_file: object, sessions_dir: Path) -> Path | None:
    """Where an entry's ``sessionFile`` may be read and written; None if it may not be used.

    The containment rules of spec 3.5, decided on the real path (every symlink resolved,
    at every level): a ``*.jsonl`` file directly inside the sessions dir (a relative
    value must be a bare file name), or one whose real path is a sibling agent's
    ``<agents>/<id>/sessions/<file>`` or has the exact shape ``…/agents/<id>/sessions/<file>``
    (another state root). ``..`` anywhere, nesting, and anything whose real path lies
    elsewhere are refused: a symlink (file, directory, agent dir) cannot lead a write out.

    Returns:
        The path to use: inside the sessions dir ``<sessions_dir>/<real name>``, else the
        real path (so no symlink is left on the way to the file).
    """
    if not isinstance(session_file, str):
        return None
    value = session_file.strip()
    if not value or "\x00" in value:
        return None
    given = Path(value)
    if not given.is_absolute():
        if len(given.parts) != 1 or given.name in (".", ".."):
            return None
        given = sessions_dir / given
    elif ".." in given.parts:
        return None
    real, real_dir = _real(given), _real(sessions_dir)
    if real is None or real_dir is None or not real.name.endswith(SUFFIX):
        return None
    if real.parent == real_dir:
        return sessions_dir / real.name
    if _agents_sessions_shape(real) or _sibling(real, sessions_dir, real_dir):
        return real
    return None


# --- where a transcript lives (spec 3.5) ---------------------------------------------------------


@dataclass(frozen=True)
class TranscriptDirs:
    """The directories a store's transcripts may be found in.

    Attributes:
        sessions_dir: The store's own directory: read, written, archived in.
        agent_dir: ``<stateDir>/agents/<agentId>/sessions`` when the store lives elsewhere
            (a ``session.store`` path): read, and appended to when a transcript is there.
        legacy_dir: ``<home>/.openclaw/sessions``, the pre-multi-agent dir: read only.
    """

    sessions_dir: Path
    agent_dir: Path | None = None
    legacy_dir: Path | None = None


def transcript_dirs(
    sessions_dir: Path,
    *,
    state_dir: Path | None = None,
    agent_id: str | None = None,
    home: Path | None = None,
) -> TranscriptDirs:
    """The :class:`TranscriptDirs` of a store; dirs equal to the store's own are left out."""
    agent_dir = state_dir / "agents" / agent_id / "sessions" if state_dir and agent_id else None
    legacy_dir = home / ".openclaw" / "sessions" if home is not None else None
    own = _real(sessions_dir)
    if agent_dir is not None and _real(agent_dir) == own:
        agent_dir = None
    if legacy_dir is not None and _real(legacy_dir) in (own, _real(agent_dir or sessions_dir)):
        legacy_dir = None
    return TranscriptDirs(sessions_dir, agent_dir, legacy_dir)


@dataclass(frozen=True)
class TranscriptCandidate:
    """One place spec 3.5 looks for a transcript.

    Attributes:
        path: The file.
        source: ``sessionFile``, ``derived`` (``<storeDir>/<sessionId>.jsonl``),
            ``staleSessionFile`` (a ``sessionFile`` naming another generated session id),
            ``agentDir`` or ``legacyDir``.
        writable: Whether the store may append to it (the legacy dir is read only).
        exists: Whether the file existed when looked up.
    """

    path: Path
    source: Source
    writable: bool
    exists: bool


@dataclass(frozen=True)
class TranscriptLocation:
    """Where a session's transcript is: spec 3.5's candidates and the choice among them.

    Attributes:
        path: The transcript to read and append to: the first existing candidate the store
            may write, else ``create_path``.
        candidates: Every candidate, in spec 3.5's order (duplicates left out).
        create_path: Where a write creates the transcript when none exists: the entry's
            valid, non-stale ``sessionFile``, else ``<sessionsDir>/<sessionId>.jsonl``.
    """

    path: Path
    candidates: tuple[TranscriptCandidate, ...]
    create_path: Path

    @property
    def exists(self) -> bool:
        """Whether any candidate exists (read-only ones included)."""
        return any(c.exists for c in self.candidates)

    @property
    def found(self) -> TranscriptCandidate | None:
        """The first existing candidate (what spec 3.5's reader picks), if any."""
        return next((c for c in self.candidates if c.exists), None)


def _is_file(path: Path) -> bool:
    return os.path.isfile(path)  # False for anything that cannot be stat-ed


def locate_transcript(
    where: Path | TranscriptDirs,
    session_id: str,
    session_file: object = None,
    topic_id: str | int | None = None,
) -> TranscriptLocation:
    """Spec 3.5's read-side candidates for a session's transcript, and the one to use.

    The order: the entry's ``sessionFile`` (unless it is stale: it names a different
    generated session id), ``<sessionsDir>/<sessionId>.jsonl``, the stale ``sessionFile``,
    the agent's default dir, the legacy ``<home>/.openclaw/sessions``; the first existing
    file wins. A ``sessionFile`` that fails :func:`accepted_path` is no candidate at all.
    With a ``topic_id`` every candidate is that topic's file, and ``sessionFile`` counts
    only when it names that topic.

    Args:
        where: The sessions dir, or every dir of the store (:func:`transcript_dirs`).
        session_id: The entry's ``sessionId``.
        session_file: The entry's ``sessionFile`` (anything; only a usable string counts).
        topic_id: A topic, for ``<sessionId>-topic-<topicId>.jsonl``.

    Raises:
        InvalidKeyError: ``session_id`` cannot name a file.
    """
    dirs = where if isinstance(where, TranscriptDirs) else TranscriptDirs(where)
    name = transcript_name(session_id, topic_id)
    topic = encode_topic(topic_id) if topic_id is not None else None
    derived = dirs.sessions_dir / name
    explicit = stale = None
    given = accepted_path(session_file, dirs.sessions_dir)
    if given is not None:
        other = _other_generated_id(given.name, session_id)
        if other is not None:
            if topic is None or any(
                r.topic == topic for r in _readings(given.name[: -len(SUFFIX)])
            ):
                stale = given
        elif topic is None or _names_session(given.name, session_id, topic):
            explicit = given
    planned: list[tuple[Path | None, Source, bool]] = [
        (explicit, "sessionFile", True),
        (derived, "derived", True),
        (stale, "staleSessionFile", True),
        (dirs.agent_dir / name if dirs.agent_dir else None, "agentDir", True),
        (dirs.legacy_dir / name if dirs.legacy_dir else None, "legacyDir", False),
    ]
    candidates: list[TranscriptCandidate] = []
    for path, source, writable in planned:
        if path is not None and all(c.path != path for c in candidates):
            candidates.append(TranscriptCandidate(path, source, writable, _is_file(path)))
    create = derived
    if explicit is not None and (explicit.parent == dirs.sessions_dir or explicit.parent.is_dir()):
        create = explicit
    chosen = next((c.path for c in candidates if c.exists and c.writable), create)
    return TranscriptLocation(chosen, tuple(candidates), create)


def resolve_transcript_path(
    sessions_dir: Path | TranscriptDirs,
    session_id: str,
    session_file: object = None,
    topic_id: str | int | None = None,
) -> Path:
    """The transcript to read and append to: ``locate_transcript(...).path``.

    Raises:
        InvalidKeyError: ``session_id`` cannot name a file.
    """
    return locate_transcript(sessions_dir, session_id, session_file, topic_id).path


# --- a session's files, and the missing-transcript rule ------------------------------------------


def file_names(directory: Path) -> set[str]:
    """Names of the regular files directly in ``directory`` (symlinks left out).

    Raises:
        SessionStoreError: The directory cannot be listed (a missing one has no files).
    """
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries if e.is_file(follow_symlinks=False)}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise os_error(exc, "list", directory) from exc


def _dir_of(where: Path | TranscriptDirs) -> Path:
    return where.sessions_dir if isinstance(where, TranscriptDirs) else where


class _With(Container[str]):
    """``known`` plus one more id."""

    def __init__(self, extra: str, known: Container[str]) -> None:
        self._extra = extra
        self._known = known

    def __contains__(self, item: object) -> bool:
        return item == self._extra or item in self._known


def session_transcripts(
    where: Path | TranscriptDirs,
    session_id: str,
    session_file: object = None,
    *,
    names: Collection[str],
    claimed: Container[str] = frozenset(),
) -> list[str]:
    """Names of a session's live transcripts directly inside the sessions dir.

    Its spec 3.5 transcript (the chosen candidate), the other non-stale candidates inside
    the sessions dir, and its topic and forked transcripts (``<sessionId>-topic-*.jsonl``,
    ``<ISO-ts>_<sessionId>.jsonl``). A name that another session in ``claimed`` can
    claim as well is left to that session (see :func:`parse_name`), and so is a stale
    ``sessionFile`` naming a session in ``claimed``.

    Args:
        where: The sessions dir, or the store's dirs.
        session_id: The session.
        session_file: Its entry's ``sessionFile``.
        names: The files of the sessions dir (a listing, or a model of it); only these
            are returned.
        claimed: Other session ids still in use (:func:`other_owners` says which to ask
            about).

    Returns:
        Sorted names; empty when ``session_id`` cannot name a file.
    """
    if not is_session_id(session_id):
        return []
    directory = _dir_of(where)
    location = locate_transcript(where, session_id, session_file)
    found: set[str] = set()
    for c in location.candidates:
        if c.path.parent != directory or c.path.name not in names:
            continue
        if c.source == "staleSessionFile":
            owner = _other_generated_id(c.path.name, session_id)
            if c.path != location.path or owner in claimed:
                continue
        found.add(c.path.name)
    known = _With(session_id, claimed)
    for name in names:
        # Most names of a big dir are other sessions': a substring test rules them out.
        if session_id in name and name.endswith(SUFFIX) and name not in found:
            parsed = parse_name(name, known)
            if parsed is not None and parsed.kind == "primary" and parsed.session_id == session_id:
                found.add(name)
    return sorted(found)


def other_owners(
    where: Path | TranscriptDirs,
    session_id: str,
    session_file: object = None,
    *,
    names: Iterable[str],
) -> set[str]:
    """Other session ids that could own a file :func:`session_transcripts` would return.

    Ask the index which of these are in use and pass them as ``claimed``.
    """
    if not is_session_id(session_id):
        return set()
    out: set[str] = set()
    own = session_id.lower()
    for name in names:
        if own not in name.lower() or not name.endswith(SUFFIX):
            continue
        readings = _readings(name[: -len(SUFFIX)])
        if any(r.session_id.lower() == own for r in readings):
            out.update(r.session_id for r in readings if r.session_id.lower() != own)
    given = accepted_path(session_file, _dir_of(where))
    if given is not None:
        other = _other_generated_id(given.name, session_id)
        if other is not None:
            out.add(other)
    return out


def claims_transcript(session_file: object, message_count: object) -> bool:
    """Whether an entry says it has a transcript: a ``sessionFile``, or messages counted.

    A session created by ``put`` (no file until its first append) claims none.
    """
    if isinstance(session_file, str) and session_file.strip():
        return True
    return (
        isinstance(message_count, int) and not isinstance(message_count, bool) and message_count > 0
    )


def missing_transcript(
    where: Path | TranscriptDirs,
    session_id: object,
    session_file: object,
    message_count: object,
    *,
    names: Collection[str],
    claimed: Container[str] = frozenset(),
) -> TranscriptLocation | None:
    """The rule shared by doctor's ``missing-transcript`` and ``cleanup --fix-missing``.

    An entry's transcript is missing when the entry claims one
    (:func:`claims_transcript`) and no candidate of spec 3.5 exists, topic and forked
    transcripts in the sessions dir included.

    Args:
        where: The sessions dir, or the store's dirs.
        session_id: The entry's ``sessionId`` (an id that cannot name a file is not judged).
        session_file: The entry's ``sessionFile``.
        message_count: The entry's ``messageCount``.
        names: The files of the sessions dir.
        claimed: Every session id the store references (resolves ambiguous names).

    Returns:
        Where the transcript was looked for, when it is missing; else None.
    """
    if not is_session_id(session_id) or not claims_transcript(session_file, message_count):
        return None
    assert isinstance(session_id, str)
    location = locate_transcript(where, session_id, session_file)
    if location.exists:
        return None
    if session_transcripts(where, session_id, session_file, names=names, claimed=claimed):
        return None
    return location
