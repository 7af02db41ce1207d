"""Issue 15's targets, each a ratio measured in one run and checked against it (never assumed).

Every timing target is this library's median against the bare-apsw floor
(:class:`~.models.BareApsw`) doing the same I/O in the same run, so a drifting machine moves
both sides; sizes are against the ``sessions.json`` the store was migrated from.
"""

from __future__ import annotations

from typing import Final, Protocol

from .measure import OPS, BenchReport, Scenario, TargetCheck
from .responsiveness import CLI_COMMANDS
from .units import format_bytes, format_duration, format_ratio

__all__ = [
    "CLI_FACTOR",
    "FLOOR_FACTORS",
    "INDEX_SHARE",
    "LONG_LIVED_FACTOR",
    "MILLION_FACTOR",
    "PG_FLOOR_FACTOR",
    "PG_LIST50_MS",
    "PG_SCALING",
    "evaluate_targets",
    "postgres_targets",
]

CLI_FACTOR: Final = 1.5
"""A whole ``sessionstore`` command may take this many times ``python -c "import typer, rich"``."""

FLOOR_FACTORS: Final[dict[str, float]] = {
    "open_get": 1.5,
    "get": 1.5,
    "update": 1.5,
    "list50": 1.5,
    "count": 1.5,
    "list_all": 1.2,
}
"""Index operations: at most this many times the floor (1,000 bloated and 100,000 typical)."""

TRANSCRIPT_FACTORS: Final[dict[str, float]] = {"append": 2.0, "tail": 1.5}
"""Transcript append (vs flock, lock file, one O_APPEND write, the entry kept in step in one
transaction) and tail(20) (vs reading 64 KB, parsing 20 lines and reading the count)."""

INDEX_SHARE: Final = 0.75
"""``sessions.sqlite`` at most this share of ``sessions.json``, at every size and kind."""

LONG_LIVED_FACTOR: Final = 1.2
"""After 1,000,000 updates, get/update/list at most this many times their fresh values."""

MILLION_FACTOR: Final = 1.5
"""At 1,000,000 typical, get/update/list top-50/count at most this many times their 1,000 value."""

MAINTENANCE_P99_MS: Final = 50.0
"""A concurrent writer's p99 wait while maintain() prunes half the store."""

_FLOOR_SIZES: Final = ("1000b", "100000t")

PG_FLOOR_FACTOR: Final = 2.0
"""Issue 13: postgres get/update/list top-50/count at most this many times bare psycopg."""

PG_LIST50_MS: Final = 1.0
"""Issue 13: postgres list top-50 at 100,000 typical sessions under this many milliseconds."""

PG_SCALING: Final = 4.0
"""Issue 13: 8 processes updating distinct sessions reach this many times one's throughput."""


def evaluate_targets(report: BenchReport) -> list[TargetCheck]:
    """Issue 15's targets, each computed from the report (never assumed).

    A target whose dataset or measurement is missing is ``not measured``, with the reason.
    """
    checks: list[TargetCheck] = []
    add = _adder(checks)

    def value(label: str, backend: str, op: str) -> tuple[float | None, str]:
        return _median(report, label, backend, op, "not measured")

    def vs_floor(label: str, op: str, factor: float) -> None:
        title = _title(label)
        text = f"{title}: {OPS[op]} <= {factor:g}x the bare-apsw floor"
        ours, why1 = value(label, "sqlite", op)
        floor, why2 = value(label, "bare-apsw", op)
        if ours is None or floor is None:
            add(text, None, None, why1 or why2)
            return
        r = ours / floor
        add(
            text,
            f"{format_ratio(r)} ({format_duration(ours)} vs {format_duration(floor)})",
            r <= factor,
        )

    for label in _FLOOR_SIZES:
        for op, factor in FLOOR_FACTORS.items():
            vs_floor(label, op, factor)
        for op, factor in TRANSCRIPT_FACTORS.items():
            vs_floor(label, op, factor)

    # the index file against sessions.json, at every size run (the two reference sizes at least)
    labels = [s.size.label for s in report.sizes]
    for label in ("1000b", "100000t"):
        if label not in labels:
            labels.append(label)
    for label in labels:
        text = f"{_title(label)}: sessions.sqlite <= {INDEX_SHARE:.0%} of sessions.json"
        size = report.size(label)
        if size is None or not size.sqlite_bytes or not size.json_bytes:
            add(text, None, None, f"size {label} not run" if size is None else "not measured")
            continue
        share = size.sqlite_bytes / size.json_bytes
        add(
            text,
            f"{share:.1%} ({format_bytes(size.sqlite_bytes)} vs {format_bytes(size.json_bytes)})",
            share <= INDEX_SHARE,
        )

    _scenario_targets(report, add)

    for op in ("get", "update", "list50", "count"):
        big, why1 = value("1000000t", "sqlite", op)
        small, why2 = value("1000t", "sqlite", op)
        text = f"1,000,000 typical: {OPS[op]} <= {MILLION_FACTOR:g}x its value at 1,000 typical"
        if big is None or small is None:
            add(text, None, None, why1 or why2)
        else:
            add(
                text,
                f"{big / small:.2f}x ({format_duration(big)} vs {format_duration(small)})",
                big / small <= MILLION_FACTOR,
            )
    migrate, why = value("1000000t", "sqlite", "migrate")
    add(
        "1,000,000 typical: migration throughput recorded",
        f"{1_000_000 / (migrate / 1e9):,.0f} sessions/s ({format_duration(migrate)})"
        if migrate
        else None,
        True if migrate else None,
        why,
    )

    _cli_targets(report, add)
    checks += postgres_targets(report)
    return checks


def postgres_targets(report: BenchReport) -> list[TargetCheck]:
    """Issue 13's postgres targets (not measured without a DSN), each from the report.

    Every ratio is the postgres backend's median against the bare-psycopg floor
    (:class:`~.models.BarePsycopg`) measured on the same dataset, server and run.
    """
    checks: list[TargetCheck] = []
    add = _adder(checks)
    absent = "not in this run (no DSN given; see benchmarks-postgres.md)"

    def value(label: str, backend: str, op: str) -> tuple[float | None, str]:
        return _median(report, label, backend, op, absent)

    for label in _FLOOR_SIZES:
        for op in ("get", "update", "list50", "count"):
            text = f"{_title(label)}: postgres {OPS[op]} <= {PG_FLOOR_FACTOR:g}x bare psycopg"
            ours, why1 = value(label, "postgres", op)
            floor, why2 = value(label, "bare-psycopg", op)
            if ours is None or floor is None:
                add(text, None, None, why1 or why2)
                continue
            r = ours / floor
            add(
                text,
                f"{format_ratio(r)} ({format_duration(ours)} vs {format_duration(floor)})",
                r <= PG_FLOOR_FACTOR,
            )
    text = f"100,000 typical: postgres list top-50 < {PG_LIST50_MS:g} ms"
    ours, why = value("100000t", "postgres", "list50")
    add(
        text,
        None if ours is None else format_duration(ours),
        None if ours is None else ours < PG_LIST50_MS * 1e6,
        why,
    )

    s = report.scenario("pg_writers8")
    text = (
        f"8 processes updating distinct sessions on postgres: >= {PG_SCALING:g}x one"
        " process's throughput"
    )
    one, many = _figure(s, "one_per_s"), _figure(s, "many_per_s")
    bare_one, bare_many = _figure(s, "bare_one_per_s"), _figure(s, "bare_many_per_s")
    conflicts, p99 = _figure(s, "conflicts"), _figure(s, "p99_ns")
    if s is None or None in (one, many, bare_one, bare_many, conflicts, p99):
        add(text, None, None, (s.note or "not measured") if s else "pg_writers8 not run")
    else:
        assert one and many and bare_one and bare_many and conflicts is not None and p99
        add(
            text,
            f"{many / one:.2f}x ({many:,.0f} vs {one:,.0f} updates/s; p99"
            f" {format_duration(p99)}; {conflicts:.0f} conflicts); bare psycopg reaches"
            f" {bare_many / bare_one:.2f}x ({bare_many:,.0f} vs {bare_one:,.0f}) on this machine",
            many / one >= PG_SCALING,
        )
    return checks


def _adder(checks: list[TargetCheck]) -> _Add:
    """``add(target, measured, met, why)``: one check onto ``checks`` (None: not measured)."""

    def add(target: str, measured: str | None, met: bool | None, why: str = "") -> None:
        if measured is None or met is None:
            checks.append(TargetCheck(target, why or "not measured", "not measured"))
        else:
            checks.append(TargetCheck(target, measured, "met" if met else "missed"))

    return add


def _median(
    report: BenchReport, label: str, backend: str, op: str, absent: str
) -> tuple[float | None, str]:
    """The median of ``op`` on ``backend`` at ``label``, or None and why (``absent``: no row)."""
    size = report.size(label)
    if size is None:
        return None, f"size {label} not run"
    m = size.get(backend, op)
    if m is None or m.median_ns is None:
        return None, f"{backend} {op}: {(m.note or 'n/a') if m is not None else absent}"
    return m.median_ns, ""


def _title(label: str) -> str:
    number, kind = label[:-1], {"b": "bloated", "t": "typical"}.get(label[-1:], label[-1:])
    return f"{int(number):,} {kind}" if number.isdigit() else label


def _figure(s: Scenario | None, name: str) -> float | None:
    if s is None or not s.ok:
        return None
    v = s.figures.get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _scenario_targets(report: BenchReport, add: _Add) -> None:
    def why(s: Scenario | None, name: str) -> str:
        if s is None:
            return f"{name} not run"
        return s.note or "not measured"

    s = report.scenario("writers4")
    text = "4 processes updating distinct sessions: throughput >= 1 process's, no busy error"
    one, four = _figure(s, "one_per_s"), _figure(s, "four_per_s")
    busy, p99 = _figure(s, "busy_errors"), _figure(s, "p99_ns")
    if s is None or one is None or four is None or busy is None or p99 is None:
        add(text, None, None, why(s, "the 4-writer scenario"))
    else:
        add(
            text,
            f"{four / one:.2f}x ({four:,.0f} vs {one:,.0f} updates/s; p99"
            f" {format_duration(p99)}; {busy:.0f} busy errors)",
            four >= one and busy == 0,
        )

    s = report.scenario("maintenance")
    text = (
        f"writer during maintain(): p99 wait < {MAINTENANCE_P99_MS:g} ms, no busy error;"
        " dry run blocks no longer than one batch"
    )
    p99, busy = _figure(s, "writer_p99_ns"), _figure(s, "busy_errors")
    dry, batch = _figure(s, "dry_run_max_hold_ns"), _figure(s, "batch_max_hold_ns")
    if s is None or p99 is None or busy is None or dry is None or batch is None:
        add(text, None, None, why(s, "the maintenance scenario"))
    else:
        add(
            text,
            f"p99 {format_duration(p99)}, {busy:.0f} busy errors; longest hold: dry run"
            f" {format_duration(dry)}, batch {format_duration(batch)}"
            f" ({s.figures.get('pruned', '?')} of {s.figures.get('sessions', '?')} pruned)",
            p99 < MAINTENANCE_P99_MS * 1e6 and busy == 0 and dry <= batch,
        )

    s = report.scenario("long_lived")
    text = (
        f"after {s.figures.get('updates', 1_000_000) if s else 1_000_000:,} updates:"
        f" get/update/list top-50 <= {LONG_LIVED_FACTOR:g}x fresh, WAL bounded"
    )
    ratios = [_figure(s, f"{op}_ratio") for op in ("get", "update", "list50")]
    wal, bound = _figure(s, "wal_max_bytes"), _figure(s, "wal_bound_bytes")
    if s is None or None in ratios or wal is None or bound is None:
        add(text, None, None, why(s, "the long-lived scenario"))
    else:
        values = [r for r in ratios if r is not None]
        add(
            text,
            ", ".join(
                f"{op} {r:.2f}x" for op, r in zip(("get", "update", "list"), values, strict=True)
            )
            + f"; WAL at most {format_bytes(int(wal))} (bound {format_bytes(int(bound))})",
            max(values) <= LONG_LIVED_FACTOR and wal <= bound,
        )


def _cli_targets(report: BenchReport, add: _Add) -> None:
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


class _Add(Protocol):
    def __call__(self, target: str, measured: str | None, met: bool | None, why: str = "") -> None:
        """Record one target."""
