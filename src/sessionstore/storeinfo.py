"""``StoreInfo``: what ``SessionStore.info()`` returns (``sessionstore.StoreInfo``).

Apart from ``store.py`` because only ``info()`` makes one: a dataclass of this many fields
costs every program that opens a store ~1 ms to build at import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["StoreInfo"]


@dataclass
class StoreInfo:
    """What ``store-info`` prints about a store.

    Attributes:
        storeType: The configured type (``auto``, ``json``, ``sqlite``, ``postgres``).
        effectiveStoreType: The backend in use.
        fallbackReason: Why the effective type differs from the configured one, if it does.
        sqliteAvailable: Whether the SQLite driver (apsw) can be used.
        sqliteVersion: The SQLite library version, when available.
        sessionCount: Number of entries.
        jsonPath: The ``sessions.json`` path.
        sqlitePath: The ``sessions.sqlite`` path.
        migration: The record of the last import from sessions.json (sqlite), or None.
        sourceChangedSinceMigration: Whether sessions.json changed after that import.
        agentId: The agent of this store.
        durability: ``normal`` or ``power``.
        jsonBytes: Size of sessions.json, when it exists.
        backend: Backend facts (driver, index size, WAL size, schema version, ...).
        settings: The settings in effect and where each came from (``default``,
            ``argument``, a ``SESSIONSTORE_*`` variable, ``sessionstore.json`` or
            ``openclaw.json``), and the ``sessionstore.json`` path.
        splitWarning: When the file this store does not use holds sessions it cannot see
            (a sessions.json changed or never imported, a newer sessions.sqlite beside a
            json store): what is wrong and the command that merges them; else None.
        openclawDb: When the agent dir holds OpenClaw 2026.8+'s ``openclaw-agent.sqlite``:
            ``{"path", "imported", "importedAt", "changedSinceImport"}``; else None.
    """

    storeType: str
    effectiveStoreType: str
    fallbackReason: str | None
    sqliteAvailable: bool
    sqliteVersion: str | None
    sessionCount: int
    jsonPath: str
    sqlitePath: str
    migration: dict[str, Any] | None = None
    sourceChangedSinceMigration: bool | None = None
    agentId: str = "main"
    durability: str = "normal"
    jsonBytes: int | None = None
    backend: dict[str, Any] = field(default_factory=dict)
    splitWarning: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    openclawDb: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The info as a JSON-ready dict."""
        return asdict(self)
