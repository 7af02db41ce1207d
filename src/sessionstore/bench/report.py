"""The report: ``benchmarks.md``, ``benchmarks.json`` and PNG charts, in a folder of its own."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import orjson

from .measure import (
    BACKENDS,
    INSTALL_HINT,
    OPS,
    BenchReport,
    Measurement,
    PeerResult,
    Scenario,
    SizeResult,
)
from .responsiveness import CLI_COMMANDS, ImportTime
from .targets import postgres_targets
from .units import format_bytes, format_duration, format_ratio, kib_mb

__all__ = [
    "OUT_PREFIX",
    "POSTGRES_NAME",
    "new_out_dir",
    "render_markdown",
    "render_postgres_markdown",
    "write_charts",
    "write_report",
]

OUT_PREFIX: Final = "sessionstore-bench-"
"""The name of a default results folder starts with this (then the run's UTC time)."""

_TABLE_BACKENDS: Final = (
    "legacy",
    "json",
    "sqlite",
    "postgres",
    "whole-store",
    "bare-apsw",
    "bare-psycopg",
)


def _cell(m: Measurement | None, *, few: int = 30) -> str:
    if m is None:
        return "—"
    if not m.ok:
        return f"n/a ({m.note})" if m.note else "n/a"
    text = f"{format_duration(m.median_ns)} / {format_duration(m.p99_ns)}"
    if m.iterations < few:
        text += f" (n={m.iterations})"
    return text


def _speedup(size: SizeResult, op: str, other: str) -> str:
    ours, theirs = size.get("sqlite", op), size.get(other, op)
    if ours is None or theirs is None or not ours.ok or not theirs.ok:
        return "—"
    assert ours.median_ns is not None and theirs.median_ns is not None
    return format_ratio(theirs.median_ns / ours.median_ns)


def _size_section(size: SizeResult) -> list[str]:
    backends = [b for b in _TABLE_BACKENDS if any(m.backend == b for m in size.measurements)]
    lines = [f"## {size.size.title} sessions", ""]
    lines.append(
        f"{size.size.sessions:,} sessions of one agent"
        + (
            " (every entry bloated: `skillsSnapshot` ~35-40 KB + `systemPromptReport`)"
            if size.size.kind == "bloated"
            else " (typical ~1.5 KB entries)"
        )
        + f", {size.transcripts:,} transcripts; generated in {size.generate_s:.1f} s"
        f" (the whole dataset took {size.seconds:.0f} s)."
        " Cells: median / p99 per call; `n=` when fewer than 30 calls fit the budget."
    )
    lines.append("")
    header = ["Operation", *(BACKENDS[b] for b in backends), "sqlite vs legacy"]
    if "whole-store" in backends:
        header.append("sqlite vs whole-store")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for op, label in OPS.items():
        cells = [label, *(_cell(size.get(b, op)) for b in backends), _speedup(size, op, "legacy")]
        if "whole-store" in backends:
            cells.append(_speedup(size, op, "whole-store"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| Backend | File size | Memory above interpreter | of which imports | Peak | Probe |"
    )
    lines.append("|---|---|---|---|---|---|")
    files = {
        "json": size.json_bytes,
        "sqlite": size.sqlite_bytes,
        "whole-store": size.whole_store_bytes,
    }
    for backend, nbytes in files.items():
        mem = size.memory_of(backend)
        share = ""
        if backend != "json" and nbytes and size.json_bytes:
            share = f" ({nbytes / size.json_bytes:.0%} of json)"
        if mem is None:
            mem_cells = ["not measured"] * 3 + [""]
        elif mem.total_kib is None:
            mem_cells = [f"n/a ({mem.note})", "", "", ""]
        else:
            mem_cells = [
                kib_mb(mem.total_kib),
                kib_mb(mem.imports_kib),
                kib_mb(mem.peak_kib),
                f"{mem.gets} gets, {mem.lists} lists, {mem.seconds:.1f} s"
                + (f"; {mem.note}" if mem.note else ""),
            ]
        lines.append(
            f"| {BACKENDS[backend]} | {format_bytes(nbytes)}{share} | "
            + " | ".join(mem_cells)
            + " |"
        )
    cold, ours = size.get("json", "open_get"), size.get("sqlite", "get")
    if cold and ours and cold.median_ns is not None and ours.median_ns is not None:
        lines.append("")
        lines.append(
            "json serves a warm `get` from its in-process copy of the parsed file; a process"
            " whose copy is stale (any other process wrote the file since) pays the cold read,"
            f" *open + first get* ({format_duration(cold.median_ns)}): sqlite's `get` is"
            f" {format_ratio(cold.median_ns / ours.median_ns)} faster than that."
        )
    lines += _cli_table(size)
    for note in size.notes:
        lines.append("")
        lines.append(f"Note: {note}")
    lines.append("")
    return lines


def _cli_table(size: SizeResult) -> list[str]:
    if not size.cli:
        return []
    runs = max((t.runs for t in size.cli), default=0)
    base = size.command("baseline")
    lines = [
        "",
        f"The CLI on this store, whole processes (start to exit, `sessionstore` on the sqlite"
        f" store as a migration leaves it): median of {runs} runs after a warm-up, each round"
        " running the baseline and both commands.",
        "",
        f"| Command | Median | Min | Max | vs `{CLI_COMMANDS['baseline']}` |",
        "|---|---|---|---|---|",
    ]
    for t in size.cli:
        name = f"`{CLI_COMMANDS.get(t.command, t.command)}`"
        if t.command == "baseline":
            name += " (baseline)"
        if t.median_ns is None:
            lines.append(f"| {name} | n/a ({t.note}) | | | |")
            continue
        ratio = (
            f"{t.median_ns / base.median_ns:.2f}x"
            if base is not None and base.median_ns is not None
            else "—"
        )
        lines.append(
            f"| {name} | {format_duration(t.median_ns)} | {format_duration(t.min_ns)}"
            f" | {format_duration(t.max_ns)} | {ratio} |"
        )
    return lines


def _imports_section(imports: list[ImportTime]) -> list[str]:
    lines = ["## Import time", ""]
    if not imports:
        return [*lines, "Not measured (the CLI timings were off).", ""]
    runs = max((t.runs for t in imports), default=0)
    lines += [
        "`python -X importtime -c STATEMENT` in fresh interpreters: the sum of the cumulative"
        " times of the top-level entries (the modules the statement itself imported, each with"
        f" everything it imported), median of {runs} runs. The CLI's whole-process times are"
        " in each dataset's section.",
        "",
        "| Statement | Import time | Min | Modules imported |",
        "|---|---|---|---|",
    ]
    for t in imports:
        if t.median_us is None:
            lines.append(f"| `{t.statement}` | n/a ({t.note}) | | |")
            continue
        lines.append(
            f"| `{t.statement}` | {format_duration(t.median_us * 1_000)}"
            f" | {format_duration((t.min_us or 0) * 1_000)} | {t.modules} |"
        )
    lines.append("")
    return lines


def _peers_section(peers: list[PeerResult]) -> list[str]:
    lines = ["## Peers", ""]
    if not peers:
        return [*lines, "Not run (`--no-peers`).", ""]
    for p in peers:
        lines.append(f"### {p.name}")
        lines.append("")
        if p.status != "ok":
            lines.append(f"{p.outcome.capitalize()}: {p.note}.")
            lines.append("")
            continue
        lines.append(f"{p.sessions:,} sessions. {p.note}.")
        if p.details:
            lines.append("")
            lines.append("Setup: " + ", ".join(f"{k} = {v}" for k, v in p.details.items()) + ".")
        lines.append("")
        lines.append("| Backend | Operation | Median / p99 |")
        lines.append("|---|---|---|")
        for m in p.measurements:
            label = "list_sessions (all)" if m.backend == "google-adk" else OPS.get(m.op, m.op)
            lines.append(f"| {m.backend} | {label} | {_cell(m)} |")
        lines.append("")
    return lines


def _scenarios_section(scenarios: Sequence[Scenario]) -> list[str]:
    if not scenarios:
        return []
    lines = ["## Scenarios", "", "| Scenario | Figures | Note |", "|---|---|---|"]
    for sc in scenarios:
        figures = ", ".join(f"{k} {_figure_text(k, v)}" for k, v in sc.figures.items())
        lines.append(f"| {sc.name} ({sc.status}) | {figures or '-'} | {sc.note or ''} |")
    lines.append("")
    return lines


def _figure_text(name: str, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if name.endswith("_ns"):
            return format_duration(value)
        if name.endswith("_bytes"):
            return format_bytes(int(value))
        if name.endswith("_ratio"):
            return f"{value:.2f}x"
        return f"{value:,.0f}" if float(value).is_integer() or value > 100 else f"{value:.2f}"
    return str(value)


def render_markdown(
    report: BenchReport, *, charts: Sequence[str] = (), chart_note: str = ""
) -> str:
    """``benchmarks.md``: machine, targets, one table per dataset, peers, method, how to rerun.

    Args:
        report: The results.
        charts: Chart file names relative to the markdown file.
        chart_note: Why there are no charts, if there are none.
    """
    m = report.machine
    s = report.settings
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `sessionstore bench` (sessionstore {m.get('sessionstore')}) on"
        f" {m.get('date')}; the run took {report.seconds / 60:.1f} min."
        + (" **Quick run (tiny N): development numbers, not results.**" if s.get("quick") else ""),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m.get('cpu')} ({m.get('cores')} cores) |",
        f"| Memory | {format_bytes(m.get('memoryBytes'))} |",
        f"| OS | {m.get('os')} |",
        f"| Python | {m.get('python')} |",
        f"| SQLite / apsw | {m.get('sqlite')} / {m.get('apsw')} |",
        f"| orjson | {m.get('orjson')} |",
        f"| Load average at start | {', '.join(map(str, m.get('loadAverage') or [])) or '?'} |",
        "",
        "## Targets",
        "",
        "Each target from the issue, checked against the numbers below (medians). PostgreSQL"
        " has a report of its own, refreshed by `bench/run.py --pg-only`:"
        " [benchmarks-postgres.md](benchmarks-postgres.md).",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
    ]
    for t in report.targets:
        lines.append(f"| {t.target} | {t.measured} | {t.status} |")
    lines.append("")
    lines += _scenarios_section(report.scenarios)
    lines += _imports_section(report.imports)
    for size in report.sizes:
        lines += _size_section(size)
    lines += _peers_section(report.peers)
    lines += ["## Charts", ""]
    if charts:
        lines += [f"![{Path(c).stem}]({c})" for c in charts]
    else:
        lines.append(chart_note or "No charts.")
    budget = s.get("budget", {})
    lines += [
        "",
        "## Method",
        "",
        '- **json** is `sessions.json` through `open_store(store_type="json")`: the legacy'
        " design, byte-compatible with OpenClaw. Every write re-reads the file under"
        " `sessions.json.lock`, re-serialises the whole store and replaces the file atomically"
        " (with fsync). Reads are served from an in-process copy of the parsed file validated by"
        " `stat` (like OpenClaw's 45 s cache), so a warm `get` is a lookup plus a copy of one"
        " entry; *open + first get* is the cold read a process pays after any other process"
        " wrote the file.",
        '- **sqlite** is the hot index (`store_type="sqlite"`), migrated from the same'
        ' `sessions.json`; `update (durability power)` opens it with `durability="power"`'
        " (`synchronous=FULL`).",
        "- **whole-store SQLite (PR #58550)** is `sessionstore.bench.WholeStoreSqlite`: the PR's"
        " table, indexes and PRAGMAs, wired as the PR wired it: every operation loads and parses"
        " every row (no cache), every write deletes and re-inserts every row in one transaction."
        " Its migration is the PR's `migrateJsonToSqlite` (no normalisation, no verification);"
        " its transcript operations are not modelled (the `.jsonl` files are the same for"
        " every backend). Normalisation and maintenance, which the PR also ran on every save,"
        " are left out, so it is if anything faster than the PR.",
        "- **bare apsw** is the floor every target is a ratio of, timed in turn with the"
        " sqlite store operation by operation (reads call by call; writes in blocks of"
        " 16 calls, because a write by one connection makes the other reload its page cache),"
        " so that a drifting machine moves both sides of a ratio alike; it runs with the"
        " store's page cache and `synchronous` setting and the same storage format;"
        " it does the work the store guarantees and no more: `get` reads the same row by"
        " primary key (and any legacy case variants of its key through the folded-key index,"
        " in the store's statement), then its blob rows by digest through a blob cache of"
        " the store's budget,"
        " and `orjson.loads` the same bytes (inflated first where the store keeps them"
        " compressed); `update` reads the row's `entry_json` in a `BEGIN IMMEDIATE`"
        " transaction, sets the tokens and `updatedAt` in it, writes it back with the token"
        " and time columns and returns the whole entry (blobs parsed, as `get`), as the store's"
        " `update` does; `open + first get` does what an open guarantees, minimally (a"
        " `stat` of each settings file, the file header checked, the schema version and"
        " migration record read in one statement with the store's pragmas, `sessions.json`"
        " compared with that record), and gets; `list top-50` and `list all rows` run the"
        " store's list query and make each row the dict of its 21 list fields that `list()`"
        " returns (one dict display per row);"
        " `count` reads the row counter; `transcript append` takes the transcript's `flock`"
        " and OpenClaw's `<transcript>.lock` (written aside, hard-linked into place, removed"
        " after), reads the last line's id (the new `parentId`), makes one `O_APPEND` write of"
        " a pi v3 line and, in one transaction, sets `messageCount` and `updatedAt` in"
        " `entry_json` and their columns; `tail(20)` reads the last 64 KB of the transcript,"
        " parses its last 20 lines and reads the session's message count.",
        f"- Timing: `time.perf_counter_ns` per call; up to {budget.get('warmup')} warm-up calls;"
        f" the garbage collector paused while sampling; as many calls as fit"
        f" {budget.get('seconds')} s, at least {budget.get('min_iterations')} and at most"
        f" {budget.get('max_iterations')}; median and nearest-rank p99. An operation whose"
        f" {budget.get('min_iterations')} runs would take over {budget.get('op_limit_s')} s is"
        " n/a, as is one that failed; the reason is given.",
        f"- Single-entry operations rotate through {s.get('sample_keys')} keys sampled with seed"
        f" {s.get('seed')}; `update` writes a post-turn token patch (a different one each call);"
        ' the projected rows (issue 15\'s `fields=`) are `get(key, fields=("sessionId",'
        ' "updatedAt", "totalTokens", "model"))`, which the sqlite store answers from the'
        " row's columns, and the same `update` with `fields=()`, which returns `{}` and"
        " decodes nothing; they have no floor of their own (compare them with the full rows);"
        ' `filtered list` is `channel="telegram"`; `transcript append` appends one user'
        " message (and updates the entry's `messageCount`); `tail(20)` reads the last 20"
        " messages. Migration is `sessionstore.migrate.migrate_agent` into a new database"
        " (read, normalise, write, read back and compare every entry, one transaction).",
        "- Memory: a fresh `python -c` per backend reads `VmRSS` from `/proc/self/status` before"
        " any import (the bare interpreter), after the imports (`sessionstore` and the"
        " backend's module: `sessionstore.index.json`, or `sessionstore.index.sqlite` with"
        " apsw; for the whole-store baseline the `sessionstore.bench` package, where its class"
        " lives, which inflates its imports), and after opening the"
        f" store, up to {s.get('memory_gets')} gets and the lists (10 top-50, 10 filtered, 1 of"
        " all rows); the table shows RSS above the bare interpreter, the imports' share, and the"
        " peak (`VmHWM`). The store-memory target is judged on the store's own memory: what"
        " opening it and the work add to the interpreter with its libraries loaded (the total"
        " minus the imports). MB = 10^6 bytes.",
        "- Absolute times follow the machine's speed at the moment, and on a shared VM it"
        " drifts, even within one run: the O(1) `count` is a gauge, so compare it across the"
        " datasets. Ratios within one dataset are measured minutes apart and are the steadier"
        " figures.",
        "- CLI: `sessionstore list --limit 20` and `sessionstore show KEY` run as whole"
        " processes (the console script beside the interpreter, start to exit, output to a"
        " pipe) on each dataset's sqlite store right after its migration, in rounds with"
        ' `python -c "import typer, rich"`, the least a typer and rich command costs; the'
        f" first round is a warm-up; medians of {s.get('cli_runs')} rounds. Import times:"
        " `python -X importtime`, see the section above.",
        "- File sizes: `sessions.json` as generated; `sessions.sqlite` (plus its WAL) right after"
        " migration; the whole-store database after the PR's import.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[bench]'",
        ".venv/bin/sessionstore bench             # writes ./sessionstore-bench-<UTC time>/",
        ".venv/bin/python bench/run.py --out docs # the same run, published into docs/",
        ".venv/bin/python bench/run.py --million --out docs  # adds 1,000,000 typical",
        "```",
        "",
        f"This run: sizes {', '.join(s.get('sizes', []))}, seed {s.get('seed')}.",
        "",
    ]
    return "\n".join(lines)


# --- charts ----------------------------------------------------------------------------------

_COLORS: Final = {
    "legacy": "#8c564b",
    "json": "#d62728",
    "sqlite": "#2ca02c",
    "postgres": "#9467bd",
    "whole-store": "#ff7f0e",
    "bare-apsw": "#7f7f7f",
    "bare-psycopg": "#bcbd22",
}


def write_charts(report: BenchReport, img_dir: Path) -> tuple[list[Path], str]:
    """PNG charts: latency against N (log-log), memory and file sizes per backend.

    Returns:
        The files written, and why there are none (matplotlib missing, nothing to plot).
    """
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return [], f"Charts skipped: matplotlib is not installed ({INSTALL_HINT})."
    if not report.sizes:
        return [], "No charts: no dataset was run."
    img_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, op in zip(axes, ("get", "update", "list50"), strict=True):
        for backend in ("legacy", "json", "sqlite", "postgres", "whole-store", "bare-apsw"):
            for kind, style in (("bloated", "-o"), ("typical", "--s")):
                points = sorted(
                    (s.size.sessions, m.median_ns / 1e3)
                    for s in report.sizes
                    if s.size.kind == kind
                    for m in [s.get(backend, op)]
                    if m is not None and m.median_ns is not None
                )
                if points:
                    ax.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        style,
                        color=_COLORS[backend],
                        label=f"{backend} ({kind})",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(OPS[op])
        ax.set_xlabel("sessions (N)")
        ax.set_ylabel("median latency (µs)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="small")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path = img_dir / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    labels = [s.size.label for s in report.sizes]

    def mb(kib: int | None) -> float:
        return kib * 1024 / 1e6 if kib is not None else 0.0

    memory_backends = ("json", "sqlite", "whole-store")
    totals = {
        b: [mb(m.total_kib) if (m := s.memory_of(b)) else 0.0 for s in report.sizes]
        for b in memory_backends
    }
    imports = {
        b: [mb(m.imports_kib) if (m := s.memory_of(b)) else 0.0 for s in report.sizes]
        for b in memory_backends
    }
    files = {
        "json": [(s.json_bytes or 0) / 1e6 for s in report.sizes],
        "sqlite": [(s.sqlite_bytes or 0) / 1e6 for s in report.sizes],
        "whole-store": [(s.whole_store_bytes or 0) / 1e6 for s in report.sizes],
    }
    for name, title, series, overlay in (
        (
            "memory.png",
            "RSS above the bare interpreter after open + gets + lists (hatched: imports)",
            totals,
            imports,
        ),
        (
            "file_size.png",
            "Index file size (sessions.json, sessions.sqlite, PR table)",
            files,
            None,
        ),
    ):
        if not any(v for values in series.values() for v in values):
            continue
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / len(series)
        for j, (backend, values) in enumerate(series.items()):
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, values, width, label=BACKENDS[backend], color=_COLORS[backend])
            if overlay is not None:
                ax.bar(xs, overlay[backend], width, fill=False, hatch="//", edgecolor="white")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yscale("log")
        ax.set_ylabel("MB")
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="small")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        path = img_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written, ""


def new_out_dir(parent: Path | None = None) -> Path:
    """Create a new folder for one run's results and return it.

    The folder is ``sessionstore-bench-<UTC time>`` (``-2``, ``-3`` when that exists) under
    ``parent`` (default: the current directory): a run never writes into an existing folder
    unless it is given one.

    Raises:
        OSError: The folder cannot be created.
    """
    parent = parent if parent is not None else Path.cwd()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while True:
        path = parent / (f"{OUT_PREFIX}{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return path


POSTGRES_NAME: Final = "benchmarks-postgres"
"""A postgres-only run writes ``benchmarks-postgres.md``/``.json`` (beside the full report)."""

_PG_OPS: Final = ("get", "update", "list50", "count")


def _postgres_size(size: SizeResult) -> list[str]:
    lines = [
        f"### {size.size.title} sessions",
        "",
        "| Operation | postgres (median / p99) | bare psycopg (median / p99) | postgres / floor |",
        "|---|---|---|---|",
    ]
    for op, label in OPS.items():
        ours, floor = size.get("postgres", op), size.get("bare-psycopg", op)
        if ours is None and floor is None:
            continue
        ratio = "—"
        if ours and floor and ours.median_ns is not None and floor.median_ns is not None:
            ratio = format_ratio(ours.median_ns / floor.median_ns)
        lines.append(f"| {label} | {_cell(ours)} | {_cell(floor)} | {ratio} |")
    for note in size.notes:
        lines += ["", f"Note: {note}"]
    return [*lines, ""]


def render_postgres_markdown(report: BenchReport) -> str:
    """``benchmarks-postgres.md``: issue 13's postgres rows, targets and writer scenario."""
    m, s = report.machine, report.settings
    lines = [
        "# Benchmarks: PostgreSQL",
        "",
        f"Measured by `sessionstore bench --pg-only` (sessionstore {m.get('sessionstore')}) on"
        f" {m.get('date')}; the run took {report.seconds / 60:.1f} min. The SQLite figures are"
        " in [benchmarks.md](benchmarks.md), the adapters on PostgreSQL beside the frameworks'"
        " own backends in [benchmarks-adapters.md](benchmarks-adapters.md).",
        "",
        f"Machine: {m.get('cpu')} ({m.get('cores')} cores, shared with the server and with"
        f" other work), {format_bytes(m.get('memoryBytes'))}, {m.get('os')},"
        f" {m.get('python')}. Server: PostgreSQL {m.get('postgres', '?')} on the same machine."
        f" Load average at start: {', '.join(map(str, m.get('loadAverage') or [])) or '?'}.",
        "",
        "## Targets",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
    ]
    for t in postgres_targets(report):
        lines.append(f"| {t.target} | {t.measured} | {t.status} |")
    lines.append("")
    lines += _scenarios_section(report.scenarios)
    lines += ["## Operations", ""]
    lines.append(
        "Cells: median / p99 per call (`n=` when fewer than 30 calls fit the budget). The"
        " datasets are the full run's (same generator, seed and key samples), loaded into a"
        " throw-away schema with one `mutate`."
    )
    lines.append("")
    for size in report.sizes:
        lines += _postgres_size(size)
    budget = s.get("budget", {})
    lines += [
        "## Method",
        "",
        '- **postgres** is `open_store(store_type="postgres")` with its default pool; every'
        " call goes through the pool, the retry loop and the row encoding.",
        "- **bare psycopg** is `sessionstore.bench.BarePsycopg`, one autocommit connection with"
        " prepared statements sending what the store sends and reading the same columns: `get`"
        " reads the entry and its blob references by key and parses the large fields from a"
        " client-side blob cache (the store keeps one); `update` reads the row `FOR UPDATE`,"
        " patches the entry and `list_row` (tokens, `updatedAt` moved to now) and writes every"
        " column the store's UPDATE writes, in one transaction; `list top-50` reads the top 51"
        " `list_row`s through the list index; `count` is `count(*)` of the agent. What the"
        " store adds on top: the pool checkout, per-key advisory locks, the row encoding."
        " These four operations are timed call by call in turn with the floor, so drift of"
        " a shared machine hits both sides of each ratio alike; the other operations alone.",
        "- The dataset is loaded with one `mutate`, then `VACUUM (ANALYZE)` (the store's"
        " `vacuum()`), as autovacuum leaves a store some time after a bulk load.",
        "- **pg_writers8**: 1, then 8 writer processes (each its own pool, started together)"
        " update their own sessions for a fixed time; then the same with bare psycopg's"
        " update. `conflicts`: `WriteConflictError`s that survived the store's retries."
        " `*_cpu_us`: CPU per update in the 8-process round, of the writer processes"
        " (`os.times`) and of their server backends (`/proc/<pid>/stat`), which says where the"
        " time goes: with the server on the same cores, 8 processes can at best add what the"
        " cores left idle by one.",
        f"- Timing: as in benchmarks.md: `perf_counter_ns` per call, up to"
        f" {budget.get('warmup')} warm-up calls, {budget.get('seconds')} s per operation,"
        " median and nearest-rank p99.",
        "",
        "## Reproduce",
        "",
        "```sh",
        ".venv/bin/python bench/run.py --pg-only --pg-dsn postgresql://postgres@127.0.0.1/test"
        " --sizes 1000b,100000t --out docs",
        "```",
        "",
        f"This run: sizes {', '.join(s.get('sizes', []))}, seed {s.get('seed')}.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: BenchReport, out_dir: Path, *, charts: bool = True) -> list[Path]:
    """Write ``benchmarks.md``, ``benchmarks.json`` and (optionally) ``img/*.png``.

    A postgres-only run writes ``benchmarks-postgres.md`` and ``.json`` instead (no
    charts): a report of its own rather than rows merged into ``benchmarks.md``, whose
    machine, load and date belong to the full run.

    Returns:
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if report.settings.get("postgres_only"):
        json_path = out_dir / f"{POSTGRES_NAME}.json"
        json_path.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        md_path = out_dir / f"{POSTGRES_NAME}.md"
        md_path.write_text(render_postgres_markdown(report), encoding="utf-8")
        return [md_path, json_path]
    written: list[Path] = []
    chart_paths: list[Path] = []
    chart_note = "Charts not drawn (`--no-charts`)."
    if charts:
        chart_paths, chart_note = write_charts(report, out_dir / "img")
    json_path = out_dir / "benchmarks.json"
    json_path.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    md_path = out_dir / "benchmarks.md"
    md_path.write_text(
        render_markdown(
            report,
            charts=[p.relative_to(out_dir).as_posix() for p in chart_paths],
            chart_note=chart_note,
        ),
        encoding="utf-8",
    )
    written += [md_path, json_path, *chart_paths]
    return written
