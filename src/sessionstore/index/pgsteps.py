"""The PostgreSQL backend's transactions as data: generators of SQL steps, and their sync driver.

``PostgresIndex`` and the table transcripts write each transaction body once, as a
generator of :class:`Step` (an ``Op``); :func:`run_op` runs one on a synchronous psycopg
connection, ``postgres_aio.run_op_async`` on an asyncio one. Nothing here imports psycopg.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from ..errors import CorruptStoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["Op", "Step", "run_op"]

T = TypeVar("T")


class Step(NamedTuple):
    """One statement of a transaction body, and what the body wants back from it.

    The bodies are generators of steps (``Op``): they hold the SQL and the logic once,
    and a driver runs them on a connection, :func:`run_op` on a synchronous one and
    ``postgres_aio.run_op_async`` on an asyncio one.
    """

    sql: str
    params: Any
    fetch: Literal["all", "one", "rowcount", "none"]


Op = Generator[Step, Any, T]


def _given(value: T) -> Op[T]:
    """A body that runs no statement and returns ``value``."""
    return value
    yield  # unreachable: it makes this function a generator


def run_op(conn: psycopg.Connection[Any], op: Op[T]) -> T:
    """Run a transaction body on a synchronous connection; its return value."""
    try:
        step = next(op)
        while True:
            cur = conn.execute(step.sql, step.params)
            if step.fetch == "all":
                step = op.send(cur.fetchall())
            elif step.fetch == "one":
                step = op.send(cur.fetchone())
            else:
                step = op.send(cur.rowcount)
    except StopIteration as stop:
        result: T = stop.value
        return result


class _BlobGone(CorruptStoreError):
    """A referenced blob is missing.

    Between two reads a writer may have replaced the entry (``get`` reads again in one
    snapshot); inside one transaction it is damage, raised as the ``CorruptStoreError``
    it is.
    """

    def __init__(self, digest: str, location: str) -> None:
        super().__init__(
            f"{location}: an entry references the blob {digest} that is missing; run"
            " `sessionstore doctor` and restore the store from a backup",
            path=location,
        )
        self.digest = digest


class _NoSchema(Exception):
    """The store's tables do not exist yet (reads see an empty store)."""
