"""The issue's targets, each checked against what a run measured (never assumed)."""

from __future__ import annotations

from typing import Final

from .measure import OPS, BenchReport, TargetCheck
from .responsiveness import CLI_COMMANDS
from .units import format_bytes, format_duration, format_ratio, kib_mb

__all__ = ["CLI_FACTOR", "evaluate_targets"]

_US: Final = 1_000.0
_MS: Final = 1_000_000.0
_S: Final = 1_000_000_000.0

CLI_FACTOR: Final = 1.5
"""A whole ``sessionstore`` command may take this many times ``python -c "import typer, rich"``."""


def evaluate_targets(report: BenchReport) -> list[TargetCheck]:
    """The issue's targets, each computed from the report (never assumed).

    A target whose dataset or measurement is missing is ``not measured``, with the reason.
    """
    checks: list[TargetCheck] = []

    def add(target: str, measured: str | None, met: bool | None, why: str = "") -> None:
        if measured is None or met is None:
            checks.append(TargetCheck(target, why or "not measured", "not measured"))
        else:
            checks.append(TargetCheck(target, measured, "met" if met else "missed"))

    def value(label: str, backend: str, op: str) -> tuple[float | None, str]:
        size = report.size(label)
        if size is None:
            return None, f"size {label} not run"
        m = size.get(backend, op)
        if m is None or m.median_ns is None:
            reason = (m.note or "n/a") if m is not None else "not measured"
            return None, f"{backend} {op}: {reason}"
        return m.median_ns, ""

    def absolute(label: str, op: str, limit_ns: float, text: str) -> None:
        v, why = value(label, "sqlite", op)
        add(
            text, format_duration(v) if v is not None else None, v is not None and v < limit_ns, why
        )

    def ratio(
        label: str, op: str, slower: str, factor: float, text: str, *, at_least: bool
    ) -> None:
        ours, why1 = value(label, "sqlite", op)
        other, why2 = value(label, slower, op)
        if ours is None or other is None:
            add(text, None, None, why1 or why2)
            return
        r = other / ours if at_least else ours / other
        shown = f"{format_ratio(r)} ({format_duration(ours)} vs {format_duration(other)})"
        add(text, shown, r >= factor if at_least else r <= factor)

    absolute("1000b", "open_get", 1 * _MS, "1,000 bloated: open + first get < 1 ms")
    absolute("1000b", "get", 50 * _US, "1,000 bloated: get (full entry) < 50 µs")
    absolute("1000b", "update", 200 * _US, "1,000 bloated: update < 200 µs")
    absolute("1000b", "list50", 500 * _US, "1,000 bloated: list top-50 < 500 µs")
    absolute("1000b", "list_all", 5 * _MS, "1,000 bloated: all rows' metadata < 5 ms")

    size = report.size("1000b")
    mem = size.memory_of("sqlite") if size else None
    if mem is not None and mem.total_kib is not None and mem.data_kib is not None:
        # The store's own memory: what opening it and the work add to the interpreter with
        # its libraries loaded. The total above a bare interpreter is shown beside it;
        # importing orjson and apsw alone costs about 5 MB of it.
        add(
            "1,000 bloated: store memory < 5 MB above the interpreter",
            f"{kib_mb(mem.data_kib)} (total above a bare interpreter"
            f" {kib_mb(mem.total_kib)}, of which imports {kib_mb(mem.imports_kib)})",
            mem.data_kib * 1024 < 5_000_000,
        )
    else:
        add(
            "1,000 bloated: store memory < 5 MB above the interpreter",
            None,
            None,
            "size 1000b not run"
            if size is None
            else (mem.note if mem else "memory not measured") or "n/a",
        )
    if size is not None and size.sqlite_bytes and size.json_bytes:
        share = size.sqlite_bytes / size.json_bytes
        add(
            "1,000 bloated: sessions.sqlite <= 20% of sessions.json",
            f"{share:.1%} ({format_bytes(size.sqlite_bytes)} vs {format_bytes(size.json_bytes)})",
            share <= 0.20,
        )
    else:
        add(
            "1,000 bloated: sessions.sqlite <= 20% of sessions.json",
            None,
            None,
            "size 1000b not run",
        )

    for op, name in (("get", "get"), ("update", "update"), ("list50", "list top-50")):
        ratio(
            "1000b",
            op,
            "legacy",
            1_000,
            f"1,000 bloated: {name} >= 1,000x faster than the legacy json store",
            at_least=True,
        )
    ratio(
        "1000b",
        "list_all",
        "legacy",
        50,
        "1,000 bloated: all rows' metadata >= 50x faster than the legacy json store",
        at_least=True,
    )
    for op in ("get", "update"):
        ratio(
            "1000b",
            op,
            "bare-apsw",
            2,
            f"1,000 bloated: {op} within 2x of bare apsw",
            at_least=False,
        )

    absolute("100000t", "get", 20 * _US, "100,000 typical: get < 20 µs")
    absolute("100000t", "update", 150 * _US, "100,000 typical: update < 150 µs")
    absolute("100000t", "list50", 250 * _US, "100,000 typical: list top-50 < 250 µs")
    absolute("100000t", "count", 25 * _US, "100,000 typical: count < 25 µs")
    for op in ("get", "update", "list50", "count"):
        big, why1 = value("100000t", "sqlite", op)
        small, why2 = value("1000t", "sqlite", op)
        text = f"100,000 typical: {OPS[op]} within 1.5x of 1,000 typical"
        if big is None or small is None:
            add(text, None, None, why1 or why2)
        else:
            add(
                text,
                f"{big / small:.2f}x ({format_duration(big)} vs {format_duration(small)})",
                big / small <= 1.5,
            )

    absolute("1000b", "migrate", 2 * _S, "migration of 1,000 bloated < 2 s")
    absolute("100000t", "migrate", 30 * _S, "migration of 100,000 typical < 30 s")

    size = report.size("100000t")
    baseline = CLI_COMMANDS["baseline"]
    for name in ("list", "show"):
        text = (
            f"100,000 typical: `{CLI_COMMANDS[name]}`, whole process, within"
            f" {CLI_FACTOR}x of `{baseline}`"
        )
        ours = size.command(name) if size else None
        base = size.command("baseline") if size else None
        if ours is None or base is None or ours.median_ns is None or base.median_ns is None:
            if size is None:
                why = "size 100000t not run"
            elif ours is None or base is None:
                why = "CLI not measured"
            else:
                why = ours.note or base.note or "n/a"
            add(text, None, None, why)
            continue
        r = ours.median_ns / base.median_ns
        add(
            text,
            f"{r:.2f}x ({format_duration(ours.median_ns)} vs {format_duration(base.median_ns)})",
            r <= CLI_FACTOR,
        )
    return checks
