"""Text rendering for the CLI: ages, token counts, shortened keys, JSON output."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from ..entry import now_ms

__all__ = ["format_age", "format_bytes", "format_tokens", "print_json", "short_key"]


def print_json(value: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def format_age(updated_at: object, now: int | None = None) -> str:
    """``just now``, ``5m ago``, ``3h ago`` (under 48 h), ``2d ago`` or ``unknown``."""
    if not isinstance(updated_at, (int, float)) or isinstance(updated_at, bool) or updated_at <= 0:
        return "unknown"
    age_ms = max(0, (now_ms() if now is None else now) - updated_at)
    minutes = int(age_ms // 60_000)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes}m ago"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h ago"
    return f"{hours // 24}d ago"


def format_tokens(value: object) -> str:
    """``812``, ``2.0k`` (one decimal below 10k), ``24k``, ``1.3m``; ``-`` when unknown."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if value < 1000:
        return str(int(value))
    if value < 10_000:
        return f"{value / 1000:.1f}k"
    if value < 1_000_000:
        return f"{round(value / 1000)}k"
    return f"{value / 1_000_000:.1f}m"


def short_key(key: str, width: int = 26) -> str:
    """Keys longer than ``width`` become ``<first 16>...<last 6>``."""
    if len(key) <= width:
        return key
    return f"{key[:16]}...{key[-6:]}"


def format_bytes(size: object) -> str:
    """Human-readable byte size."""
    if not isinstance(size, int):
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
