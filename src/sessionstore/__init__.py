"""sessionstore: a session store for AI-agent gateways, compatible with OpenClaw.

Open a store with :func:`open_store`; entries are dicts with OpenClaw's camelCase fields.
"""

import importlib
from typing import TYPE_CHECKING, Any, Final

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
from .version import __version__

if TYPE_CHECKING:
    from .aio import AsyncSessionStore, AsyncTranscript, open_async_store
    from .entry import SessionEntry
    from .index.base import SessionPage, SessionRow
    from .store import SessionStore, StoreInfo, open_store
    from .transcripts.jsonl import Transcript

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


_LAZY: Final[dict[str, str]] = {
    "AsyncSessionStore": "aio",
    "AsyncTranscript": "aio",
    "open_async_store": "aio",
    "SessionEntry": "entry",
    "SessionPage": "index.base",
    "SessionRow": "index.base",
    "SessionStore": "store",
    "StoreInfo": "store",
    "open_store": "store",
    "Transcript": "transcripts.jsonl",
}
"""The public names imported on first use, each with its module in this package."""


def __getattr__(name: str) -> Any:
    # Imported on first use: asyncio alone costs a synchronous program ~40 ms of start-up,
    # the store and its transcripts ~20 ms that `import sessionstore` (say, for an error
    # class or the version) need not pay; a CLI command imports what it runs.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
