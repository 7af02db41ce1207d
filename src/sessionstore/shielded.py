"""Awaiting work that must not be abandoned half-way by a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["to_the_end"]

T = TypeVar("T")


async def to_the_end(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` through cancellations; a cancellation is raised once it ended.

    For the steps after which a call must complete (a ``COMMIT`` sent, the work that
    follows a committed write): the caller that sees ``CancelledError`` knows the step ran.

    Args:
        awaitable: The step (a coroutine or a future).

    Returns:
        Its result, when the caller was not cancelled meanwhile.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True  # the caller's (or the step's own) cancellation: raised at the end
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
