"""sessionstore: a session store for AI-agent gateways, compatible with OpenClaw.

Open a store with :func:`open_store`; entries are dicts with OpenClaw's camelCase fields.
"""

from typing import TYPE_CHECKING, Any

from .entry import SessionEntry
from .errors import (
    BackendUnavailableError,
    ConfigError,
    CorruptSourceError,
    CorruptStoreError,
    InvalidArgumentError,
    InvalidEntryError,
    InvalidKeyError,
    LockLostError,
    LockTimeoutError,
    MigrationError,
    OutcomeUnknownError,
    ReadOnlyStoreError,
    SchemaVersionError,
    SessionNotFoundError,
    SessionStoreError,
    StorageFullError,
    StoreClosedError,
    TranscriptConflictError,
    UnsupportedSourceError,
)
from .index.base import SessionPage, SessionRow
from .store import SessionStore, StoreInfo, open_store
from .transcripts.jsonl import Transcript
from .version import __version__

if TYPE_CHECKING:
    from .aio import AsyncSessionStore, AsyncTranscript, open_async_store

__all__ = [
    "AsyncSessionStore",
    "AsyncTranscript",
    "BackendUnavailableError",
    "ConfigError",
    "CorruptSourceError",
    "CorruptStoreError",
    "InvalidArgumentError",
    "InvalidEntryError",
    "InvalidKeyError",
    "LockLostError",
    "LockTimeoutError",
    "MigrationError",
    "OutcomeUnknownError",
    "ReadOnlyStoreError",
    "SchemaVersionError",
    "SessionEntry",
    "SessionNotFoundError",
    "SessionPage",
    "SessionRow",
    "SessionStore",
    "SessionStoreError",
    "StorageFullError",
    "StoreClosedError",
    "StoreInfo",
    "Transcript",
    "TranscriptConflictError",
    "UnsupportedSourceError",
    "__version__",
    "open_async_store",
    "open_store",
]


_ASYNC = frozenset({"AsyncSessionStore", "AsyncTranscript", "open_async_store"})


def __getattr__(name: str) -> Any:
    # The async API is imported on first use: asyncio alone costs a synchronous program
    # (and every CLI call) ~40 ms of start-up.
    if name in _ASYNC:
        from . import aio

        value = getattr(aio, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
