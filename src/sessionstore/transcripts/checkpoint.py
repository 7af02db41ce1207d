"""Transcript checkpoints: how far a transcript file has been read, and what was in it.

A checkpoint says, for one file identity (``st_dev``, ``st_ino``): the first ``size`` bytes
(ending at a line boundary) hold ``count`` messages, their last entry id is ``leaf``, and
the idempotency keys in them are these. It lets ``tail`` and ``append`` read only what
follows ``size`` instead of the whole file. It is trusted only after checking the file: the
same identity, at least ``size`` bytes, a newline at ``size - 1``, and the first bytes of
the last non-blank line before ``size`` (``mark`` at ``mark_at``) unchanged, which catches a
file rewritten in place and grown past ``size`` again (that line carries a random entry id
and a timestamp).

Each full scan of a file starts a new generation (``gen``); the idempotency keys are kept
per generation, so the keys of a replaced file are never consulted, and those of the
generation a replacement displaced are kept until the next one (an appender that loaded it
may be looking keys up right now). Saves are compare-and-set on the generation, so two
writers never mix keys of two scans:

- extending (``checkpoint.gen == expect``): stored only while the stored checkpoint is of
  that generation and shorter; its keys are added to that generation's;
- replacing (a new generation): stored when nothing is stored, when the stored checkpoint is
  the one the caller found stale (``expect``), or when it is of another file.

Where checkpoints live is the index backend's choice (``IndexBackend.transcript_checkpoints``):
the SQLite index keeps them in its own tables, in the same transaction as the entry's
``messageCount`` (shared by every process, kept across restarts); other backends get the
process-wide :data:`MEMORY` cache, so there the first read of a file in a process scans it
once.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["MEMORY", "Checkpoint", "CheckpointStore", "MemoryCheckpoints"]

MARK_BYTES: Final = 128


@dataclass(frozen=True)
class Checkpoint:
    """What the first ``size`` bytes of one transcript file hold.

    Attributes:
        dev: ``st_dev`` of the file.
        ino: ``st_ino`` of the file.
        size: Bytes covered; ``size - 1`` is a newline (0 for nothing covered).
        count: Message records in ``[0, size)``.
        leaf: The id of the last entry in ``[0, size)`` (the parent of the next append).
        mark_at: Where the last non-blank line before ``size`` starts.
        mark: The first bytes (at most 128) of that line.
        gen: The scan generation its idempotency keys belong to.
    """

    dev: int
    ino: int
    size: int
    count: int
    leaf: str | None
    mark_at: int
    mark: bytes
    gen: str


class CheckpointStore(ABC):
    """Where transcript checkpoints and their idempotency keys are kept.

    Attributes:
        in_index: True when checkpoints live in the index itself and are saved in the same
            transaction as the entry's ``messageCount`` (appends keep the entry in step);
            False for the in-process cache (appends leave the index alone).
    """

    in_index: bool = False

    @abstractmethod
    def load(self, path: str, dev: int, ino: int) -> Checkpoint | None:
        """The stored checkpoint of the file at ``path`` (any identity), or None."""

    @abstractmethod
    def find_key(self, path: str, checkpoint: Checkpoint, key: str) -> str | None:
        """The entry id holding idempotency ``key`` in the checkpoint's covered bytes."""

    @abstractmethod
    def save(
        self,
        path: str,
        checkpoint: Checkpoint,
        keys: Mapping[str, str],
        *,
        expect: str | None,
        wait: bool = True,
    ) -> bool:
        """Store ``checkpoint`` and the ``keys`` found since ``expect``'s size (see module doc).

        Inside a write transaction of the index on this thread, the save joins it.

        Args:
            path: The transcript path.
            checkpoint: The new checkpoint.
            keys: Idempotency keys found in the bytes the new checkpoint adds (all of them
                for a new generation).
            expect: The generation of the checkpoint the caller loaded, or None.
            wait: Wait for the index's write lock; with False a busy index skips the save.

        Returns:
            Whether it was stored.
        """


@dataclass
class _Slot:
    checkpoint: Checkpoint
    keys: dict[str, str]
    previous: tuple[str, dict[str, str]] | None = None  # the displaced generation's keys


class MemoryCheckpoints(CheckpointStore):
    """Checkpoints kept in this process, by file identity, least recently used out first.

    Args:
        max_files: How many files to remember.
    """

    in_index = False

    def __init__(self, max_files: int = 2048) -> None:
        self._max = max_files
        self._slots: OrderedDict[tuple[int, int], _Slot] = OrderedDict()
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it

    def load(self, path: str, dev: int, ino: int) -> Checkpoint | None:
        """The checkpoint remembered for the file ``(dev, ino)``."""
        with self._lock:
            slot = self._slots.get((dev, ino))
            if slot is None:
                return None
            self._slots.move_to_end((dev, ino))
            return slot.checkpoint

    def find_key(self, path: str, checkpoint: Checkpoint, key: str) -> str | None:
        """The entry id of ``key``, if the remembered scan is ``checkpoint``'s."""
        with self._lock:
            slot = self._slots.get((checkpoint.dev, checkpoint.ino))
            if slot is None:
                return None
            if slot.checkpoint.gen == checkpoint.gen:
                return slot.keys.get(key)
            if slot.previous is not None and slot.previous[0] == checkpoint.gen:
                return slot.previous[1].get(key)
            return None

    def save(
        self,
        path: str,
        checkpoint: Checkpoint,
        keys: Mapping[str, str],
        *,
        expect: str | None,
        wait: bool = True,
    ) -> bool:
        """Remember ``checkpoint`` (compare-and-set on the generation)."""
        ident = (checkpoint.dev, checkpoint.ino)
        with self._lock:
            slot = self._slots.get(ident)
            if checkpoint.gen == expect:
                if slot is None or slot.checkpoint.gen != expect:
                    return False
                if slot.checkpoint.size < checkpoint.size:
                    slot.checkpoint = checkpoint
                for key, entry_id in keys.items():
                    slot.keys.setdefault(key, entry_id)
                return True
            if slot is not None and slot.checkpoint.gen != expect:
                return False  # another scan of this file got there first
            previous = (slot.checkpoint.gen, slot.keys) if slot is not None else None
            self._slots[ident] = _Slot(checkpoint, dict(keys), previous)
            self._slots.move_to_end(ident)
            while len(self._slots) > self._max:
                self._slots.popitem(last=False)
            return True


MEMORY: Final = MemoryCheckpoints()
"""The process-wide cache used by index backends that keep no checkpoints themselves."""
