"""Time as OpenClaw writes it: epoch milliseconds and JavaScript's ISO strings."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Final

from .args import as_number

__all__ = ["format_utc", "iso_ms", "iso_now", "now_ms"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def now_ms() -> int:
    """The current time in epoch milliseconds (``Date.now()``), as OpenClaw stores it."""
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    """``new Date(ms).toISOString()``: ``2026-03-31T12:34:56.789Z``.

    A time beyond what ``datetime`` can hold reads as the epoch (a damaged value must not
    stop the caller from writing the rest).
    """
    try:
        when = datetime.fromtimestamp(ms // 1000, timezone.utc)
    except (OverflowError, OSError, ValueError):
        when, ms = _EPOCH, 0
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_now() -> str:
    """``new Date().toISOString()``: the current time as ``2026-03-31T12:34:56.789Z``."""
    return iso_ms(now_ms())


def format_utc(ms: object) -> str:
    """Epoch milliseconds for a message: ``2026-03-31 12:34:56 UTC`` (``an unknown time``)."""
    number = as_number(ms)
    if number is None:
        return "an unknown time"
    try:
        return (_EPOCH + timedelta(milliseconds=number)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except OverflowError:
        return "an unknown time"
