"""StoreContext: what maintenance and the doctor work with, instead of the whole store.

``SessionStore.maintain()`` and ``SessionStore.check()`` build one and hand it to
:func:`sessionstore.maintenance.run_maintenance` and :func:`sessionstore.doctor.run_checks`.
Those modules never import ``store.py``, so the store stays the layer above them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .config import SessionConfig
from .index.base import IndexBackend
from .layout import StorePaths

if TYPE_CHECKING:
    # annotations only: the transcript naming rules load with the first transcript use
    from .transcripts.naming import TranscriptDirs

__all__ = ["StoreContext"]


class _HasContext(Protocol):
    """What a store offers to build a context from (``SessionStore`` has all of it)."""

    @property
    def index(self) -> IndexBackend: ...

    paths: StorePaths
    state_dir: Path
    config: SessionConfig

    @property
    def transcript_dirs(self) -> TranscriptDirs: ...


@dataclass(frozen=True)
class StoreContext:
    """One store's index, files and settings, as maintenance and the doctor need them.

    Attributes:
        index: The hot-index backend (the one in use when the context was built).
        paths: The store's files (sessions dir, ``sessions.json``, ``sessions.sqlite``).
        state_dir: The OpenClaw state dir the store belongs to.
        config: The store's settings (``session.maintenance`` among them).
        transcript_dirs: The directories the store's transcripts may be found in.
    """

    index: IndexBackend
    paths: StorePaths
    state_dir: Path
    config: SessionConfig
    transcript_dirs: TranscriptDirs

    @classmethod
    def of(cls, store: _HasContext) -> StoreContext:
        """The context of an open store (e.g. a ``SessionStore``)."""
        return cls(
            index=store.index,
            paths=store.paths,
            state_dir=store.state_dir,
            config=store.config,
            transcript_dirs=store.transcript_dirs,
        )

    @property
    def agent_id(self) -> str:
        """The store's agent."""
        return self.paths.agent_id

    @property
    def store_type(self) -> str:
        """The backend: ``json``, ``sqlite`` or ``postgres``."""
        return self.index.store_type

    @property
    def table_transcripts(self) -> bool:
        """Whether transcripts live in the PostgreSQL ``transcripts`` table, not in files."""
        return self.store_type == "postgres" and self.config.postgres.transcripts == "table"
