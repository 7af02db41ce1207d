"""Durations, ratios and sizes as the benchmark's reports print them."""

from __future__ import annotations

__all__ = ["format_bytes", "format_duration", "format_ratio", "kib_mb"]


def _sig(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_duration(ns: float | None) -> str:
    """``850 ns``, ``12.3 µs``, ``4.56 ms``, ``1.23 s``; ``n/a`` for None."""
    if ns is None:
        return "n/a"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{_sig(ns / 1e3)} µs"
    if ns < 1_000_000_000:
        return f"{_sig(ns / 1e6)} ms"
    return f"{_sig(ns / 1e9)} s"


def format_ratio(ratio: float) -> str:
    """``3.4x``, ``57x``, ``1,234x``."""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.1f}x"


def format_bytes(size: int | None) -> str:
    """Decimal units: ``56.3 MB``."""
    if size is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{_sig(size / scale)} {unit}"
    return f"{size} B"


def kib_mb(kib: int | None) -> str:
    """KiB as decimal MB: ``12.3 MB``; ``n/a`` for None."""
    return "n/a" if kib is None else f"{kib * 1024 / 1e6:.1f} MB"
