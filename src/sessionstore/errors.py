"""The exception hierarchy: every public error is a :class:`SessionStoreError`.

Driver and OS errors are wrapped in one of these classes with the original kept as
``__cause__``, so callers only ever need to catch ``SessionStoreError``.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "CorruptSourceError",
    "ConnectionLostError",
    "CorruptStoreError",
    "InvalidArgumentError",
    "InvalidEntryError",
    "InvalidKeyError",
    "LockLostError",
    "LockTimeoutError",
    "MigrationError",
    "OutcomeUnknownError",
    "ReadOnlyStoreError",
    "RetryableError",
    "SchemaVersionError",
    "SessionNotFoundError",
    "SessionStoreError",
    "StorageFullError",
    "StoreClosedError",
    "TranscriptConflictError",
    "UnsupportedSourceError",
    "WriteConflictError",
]


class SessionStoreError(Exception):
    """Root of every error raised by sessionstore."""


class InvalidArgumentError(SessionStoreError, ValueError):
    """An argument has the wrong type or value (a bad limit, cursor, patch...)."""


class InvalidKeyError(InvalidArgumentError):
    """A session key or session id is empty, whitespace-only or has control characters."""


class SessionNotFoundError(SessionStoreError, KeyError):
    """The operation needs an existing session and there is none under that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "session not found"


class InvalidEntryError(InvalidArgumentError):
    """An entry is not a JSON object or holds values JSON cannot represent."""


class ConfigError(SessionStoreError):
    """The configuration (openclaw.json ``session`` section, arguments, env) is invalid."""


class CorruptStoreError(SessionStoreError):
    """A store file cannot be parsed; it is left untouched.

    Attributes:
        path: The file that failed to parse.
        position: Character offset of the problem, when known.
        line: 1-based line of the problem, when known.
        column: 1-based column of the problem, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        position: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.position = position
        self.line = line
        self.column = column


class LockTimeoutError(SessionStoreError):
    """A lock (lock file or database write lock) could not be taken in time."""


class LockLostError(LockTimeoutError):
    """A write's lock was no longer safely its own when it came to write; nothing was written.

    Either the lock file was taken over (OpenClaw steals a ``sessions.json.lock`` older than
    30 s, even from a live owner), or it was held so long that it could have been. Retry;
    if it keeps happening, make the callback that runs under the lock faster.
    """


class StorageFullError(SessionStoreError):
    """The disk is full or a file size limit was hit; nothing was half-written."""


class MigrationError(SessionStoreError):
    """A migration could not complete; the target was left unchanged."""


class UnsupportedSourceError(MigrationError):
    """A migration source in a format this version does not read (e.g. an unknown schema).

    Attributes:
        path: The source file.
        version: Its schema version, when it has one.
    """

    def __init__(self, message: str, *, path: str, version: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.version = version


class CorruptSourceError(MigrationError):
    """A migration source holds a record that cannot be read as it claims to be.

    For example a compressed transcript row that does not decode, or a transcript archive
    whose checksum does not match. Nothing was written.

    Attributes:
        path: The source file (or the archive file concerned).
        session_id: The session whose transcript is damaged, when it is one.
        key: The session key whose entry is damaged, when it is one.
    """

    def __init__(
        self, message: str, *, path: str, session_id: str | None = None, key: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.session_id = session_id
        self.key = key


class TranscriptConflictError(MigrationError):
    """A transcript file to be written already exists with other contents; it was kept.

    Attributes:
        path: The existing file.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class OutcomeUnknownError(SessionStoreError):
    """A commit failed in a way that leaves open whether it was applied.

    The disk failed while making the write durable (a failed sync, say): after a restart
    the write may be there or not. Read the state back before retrying.
    """


class ReadOnlyStoreError(SessionStoreError):
    """A write to a store opened read-only, or whose files this process may not write."""


class SchemaVersionError(SessionStoreError):
    """The database was written by a newer sessionstore with an unknown schema."""


class BackendUnavailableError(SessionStoreError):
    """The requested backend cannot be used on this machine (driver missing, ...)."""


class StoreClosedError(SessionStoreError):
    """The store was used after ``close()``."""


class RetryableError(SessionStoreError):
    """The call failed for a passing reason (a lost connection, a conflict); retry it.

    The transaction was rolled back: nothing of it was written, unless the message says
    the connection was lost while committing (then read the state back before retrying).
    """

    retryable = True


class ConnectionLostError(RetryableError):
    """The database connection broke (server restart, failover, a terminated backend).

    The store discarded the broken connection; the next call opens a new one.
    """


class WriteConflictError(RetryableError):
    """Concurrent writers kept conflicting (serialization failure or deadlock).

    The store retried a bounded number of times before giving up; nothing was written.
    """
