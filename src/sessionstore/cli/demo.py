"""``sessionstore demo`` (the README's first command) and ``sessionstore bench``.

``demo`` generates a realistic state dir, migrates it with a progress bar, shows the store
(info, recent sessions, one history) and times ``sessions.json`` against ``sessions.sqlite``
right there. ``bench`` runs :mod:`sessionstore.bench` and writes ``benchmarks.md`` into a
folder of its own. Both are registered on the app by ``cli/app.py``; the benchmark package is
imported inside the commands, so no other command loads it.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..layout import resolve_store_paths
from ..migrate import migrate_agent
from ..store import open_store
from .common import CliError, JsonOpt, err, handle_errors, out
from .render import (
    Column,
    format_age,
    format_bytes,
    format_tokens,
    print_info,
    print_json,
    print_rows,
    text_of,
)

if TYPE_CHECKING:
    from ..bench import BenchReport

__all__ = ["bench", "demo"]

DEMO_AGENT = "main"
DEMO_OPS = ("open_get", "get", "update", "list50", "count")
HISTORY_MESSAGES = 6
DEMO_BUDGET_S = 0.3  # sampling time per operation and backend in the timing table


@contextlib.contextmanager
def _demo_root(state_dir: Path | None) -> Iterator[tuple[Path, bool]]:
    """The state dir to generate into and whether it is kept afterwards."""
    if state_dir is not None:
        root = state_dir.expanduser().absolute()
        paths = resolve_store_paths(root, DEMO_AGENT)
        if paths.json_path.exists() or paths.sqlite_path.exists():
            raise CliError(
                f"{paths.sessions_dir} already holds a session store; the demo writes a new one:"
                " pass an empty or new --state-dir"
            )
        root.mkdir(parents=True, exist_ok=True)
        yield root, True
        return
    with tempfile.TemporaryDirectory(prefix="sessionstore-demo-") as tmp:
        yield Path(tmp), False


@contextlib.contextmanager
def _migration_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    # rich.progress (and what it pulls in) only costs the command that draws a bar.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("  migrating"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out.console,
    ) as bar:
        task = bar.add_task("migrate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _step(enabled: bool, number: int, title: str) -> None:
    if enabled:
        out.print()
        out.print(f"[bold cyan]{number}/5[/] [bold]{title}[/]")


@handle_errors
def demo(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Generate here (it must hold no store yet) and keep it; default: a temporary"
            " dir, removed at the end.",
        ),
    ] = None,
    sessions: Annotated[
        int, typer.Option("--sessions", min=1, max=100_000, help="Sessions to generate.")
    ] = 1_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data generator.")] = 7,
    json_output: JsonOpt = False,
) -> None:
    """Generate a realistic store, migrate it, show it, and time json against sqlite."""
    from ..bench import generate_state_dir

    show = not json_output
    started = time.perf_counter()
    with _demo_root(state_dir) as (root, kept):
        _step(show, 1, f"Generating {sessions:,} sessions with transcripts")
        t0 = time.perf_counter()
        status = out.status("  generating…") if show else contextlib.nullcontext()
        with status:
            generated = generate_state_dir(
                root,
                sessions=sessions,
                agents=(DEMO_AGENT,),
                bloated_ratio=1.0,
                seed=seed,
                transcripts=True,
            )
        agent = generated.agents[DEMO_AGENT]
        paths = resolve_store_paths(root, DEMO_AGENT)
        json_bytes = paths.json_path.stat().st_size
        generate_s = time.perf_counter() - t0
        if show:
            out.print(
                f"  {len(agent.entries):,} sessions of agent {DEMO_AGENT!r}, each carrying a"
                f" ~40 KB skillsSnapshot as in the field: sessions.json is"
                f" {format_bytes(json_bytes)}, plus {len(agent.transcripts):,} transcripts"
                f" ({generate_s:.1f} s)",
                markup=False,
            )
            out.print(f"  state dir: {root}", markup=False)

        _step(show, 2, "Migrating sessions.json -> sessions.sqlite")
        t0 = time.perf_counter()
        with _migration_bar(show) as progress:
            migration = migrate_agent(paths, progress=progress)
        migrate_s = time.perf_counter() - t0
        if show:
            out.print(f"  {migration.message} ({migrate_s:.1f} s)", markup=False)

        with open_store(DEMO_AGENT, root, "sqlite") as store:
            info = store.info().to_dict()
            recent: list[dict[str, Any]] = [dict(r) for r in store.list(limit=10).rows]
            history_key: str | None = recent[0]["key"] if recent else None
            messages = store.transcript(history_key).tail(HISTORY_MESSAGES) if history_key else []
        _step(show, 3, "Store info")
        if show:
            print_info(info)
        _step(show, 4, "The ten most recent sessions, and the history of the first")
        if show:
            _print_recent(recent)
            if history_key is not None:
                _print_history(history_key, messages)

        _step(show, 5, "sessions.json against sessions.sqlite, measured now")
        t0 = time.perf_counter()
        timings = _compare(root, sorted(agent.entries), seed)
        compare_s = time.perf_counter() - t0
        total_s = time.perf_counter() - started
        if json_output:
            print_json(
                {
                    "stateDir": str(root),
                    "kept": kept,
                    "sessions": len(agent.entries),
                    "jsonBytes": json_bytes,
                    "generateSeconds": round(generate_s, 3),
                    "migration": migration.to_dict(),
                    "migrateSeconds": round(migrate_s, 3),
                    "info": info,
                    "recent": recent,
                    "history": {"key": history_key, "messages": messages},
                    "timings": timings,
                    "seconds": round(total_s, 3),
                }
            )
            return
        _print_timings(timings)
        out.print(
            f"  [dim]medians of repeated calls ({compare_s:.1f} s); sessions.json as OpenClaw"
            " uses it: every read clones the whole cached store, every write rewrites the whole"
            " file; full tables: sessionstore bench[/]"
        )
        out.print()
        out.print(f"Done in {total_s:.1f} s.")
        if kept:
            out.print(f"The state dir is kept at {root}. Try:", markup=False)
            out.print(f"  sessionstore list --state-dir {root} --limit 5", markup=False)
            if history_key is not None:
                out.print(f"  sessionstore history {history_key} --state-dir {root}", markup=False)
        else:
            out.print("The temporary state dir was removed (keep one with --state-dir).")


def _compare(root: Path, keys: list[str], seed: int) -> list[dict[str, Any]]:
    """Time the demo's operations on a copy of sessions.json and on the migrated store."""
    from ..bench import Budget, measure_legacy_ops, measure_store_ops

    sample = random.Random(seed).sample(keys, min(64, len(keys)))
    budget = Budget(seconds=DEMO_BUDGET_S, min_iterations=3, max_iterations=2_000, warmup=3)
    source = resolve_store_paths(root, DEMO_AGENT).json_path
    with tempfile.TemporaryDirectory(prefix="sessionstore-demo-json-") as tmp:
        # json writes go to a copy: the demo store's sessions.json stays the migrated source
        copy = resolve_store_paths(Path(tmp), DEMO_AGENT).json_path
        copy.parent.mkdir(parents=True)
        shutil.copyfile(source, copy)
        legacy = measure_legacy_ops(copy, sample, DEMO_OPS, budget)
    ours = measure_store_ops("sqlite", root, sample, DEMO_OPS, budget, scratch=root)
    rows = []
    for op, j, s in zip(DEMO_OPS, legacy, ours, strict=True):
        rows.append(
            {
                "op": op,
                "jsonNs": j.median_ns,
                "sqliteNs": s.median_ns,
                "jsonRuns": j.iterations,
                "sqliteRuns": s.iterations,
                "speedup": (
                    j.median_ns / s.median_ns
                    if j.median_ns is not None and s.median_ns is not None
                    else None
                ),
                "note": j.note or s.note,
            }
        )
    return rows


_OP_TITLES = {
    "open_get": "open + first get",
    "get": "get (full entry)",
    "update": "update",
    "list50": "list top-50",
    "count": "count",
}


def _print_timings(rows: list[dict[str, Any]]) -> None:
    from ..bench import format_duration, format_ratio

    table = Table(box=None, pad_edge=False)
    table.add_column("  Operation", no_wrap=True)
    table.add_column("sessions.json (OpenClaw)", justify="right", no_wrap=True)
    table.add_column("sessions.sqlite", justify="right", no_wrap=True)
    table.add_column("speed-up", justify="right", no_wrap=True)
    for r in rows:
        speedup = r["speedup"]
        table.add_row(
            Text("  " + _OP_TITLES.get(r["op"], r["op"])),
            Text(format_duration(r["jsonNs"])),
            Text(format_duration(r["sqliteNs"])),
            Text(format_ratio(speedup) if speedup else "n/a", style="bold green"),
        )
    out.print(table)
    for r in rows:
        if r["note"]:
            out.print(f"  {_OP_TITLES.get(r['op'], r['op'])}: {r['note']}", markup=False)


def _print_recent(rows: list[dict[str, Any]]) -> None:
    columns = [
        Column("Key", None),
        Column("Kind", 5),
        Column("Age", 6),
        Column("Model", 4),
        Column("Tokens", 2),
        Column("Channel", 3),
        Column("Label", 1),
    ]
    cells = [
        [
            r["key"],
            str(r["kind"]),
            format_age(r.get("updatedAt")),
            str(r.get("model") or "-"),
            format_tokens(r.get("totalTokens")),
            str(r.get("channel") or "-"),
            str(r.get("label") or ""),
        ]
        for r in rows
    ]
    print_rows(columns, cells, plain_when_piped=False)


def _print_history(key: str, messages: list[dict[str, Any]]) -> None:
    out.print()
    out.print(f"  History of {key} (last {len(messages)} messages):", markup=False)
    for m in messages:
        role = str(m.get("role", "?"))
        if role == "toolResult":
            role = f"tool:{m.get('toolName', '?')}"
        when = format_age(m.get("timestamp")) if isinstance(m.get("timestamp"), int) else ""
        text = " ".join((text_of(m.get("content"), limit=160) or "(no text)").split())
        line = Text("    ")
        line.append(f"{role:<12}", style="bold")
        line.append(f"{when:>9}  ", style="dim")
        line.append(text)
        out.print(line)


@handle_errors
def bench(
    sizes: Annotated[
        str | None,
        typer.Option(
            "--sizes",
            help="Datasets: sessions + b (bloated) or t (typical), e.g. 1000b,10000b,100000t;"
            " default 1000b,10000b,1000t,100000t.",
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Tiny datasets and budgets: a smoke run (under a minute)."),
    ] = False,
    million: Annotated[
        bool, typer.Option("--million", help="Add 1,000,000 typical sessions (long).")
    ] = False,
    long_lived_updates: Annotated[
        int | None,
        typer.Option(
            "--long-lived-updates",
            min=0,
            help="Updates in the long-lived scenario (default 20,000; the issue's 1,000,000"
            " takes about half an hour; 0 skips it).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where benchmarks.md, benchmarks.json and img/ are written; default: a new"
            " folder sessionstore-bench-<UTC time> in the current directory.",
        ),
    ] = None,
    no_charts: Annotated[bool, typer.Option("--no-charts", help="Draw no PNG charts.")] = False,
    peers: Annotated[
        bool,
        typer.Option("--peers/--no-peers", help="Compare with installed peers (google-adk)."),
    ] = True,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Where datasets are generated (default: a temporary dir)."),
    ] = None,
    pg_dsn: Annotated[
        str | None,
        typer.Option(
            "--pg-dsn",
            help="Also measure the postgres backend (and a bare psycopg floor) on this server,"
            " in a throw-away schema; default SESSIONSTORE_BENCH_PG_DSN.",
        ),
    ] = None,
    pg_only: Annotated[
        bool,
        typer.Option(
            "--pg-only",
            help="Only the postgres rows, their targets and the 8-writer scenario (needs"
            " --pg-dsn; default sizes 1000b,100000t); writes benchmarks-postgres.md.",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Benchmark json, sqlite and PR #58550's whole-store SQLite; write benchmarks.md."""
    from .. import bench as engine

    try:
        chosen = engine.parse_sizes(sizes) if sizes else None
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None
    settings = engine.quick_settings() if quick else engine.BenchSettings()
    if pg_only:
        settings.postgres_only = True
        if not quick:
            settings.sizes = engine.parse_sizes(engine.PG_ONLY_SIZES)
    if chosen is not None:
        settings.sizes = chosen
    if million and all(s.sessions != 1_000_000 for s in settings.sizes):
        settings.sizes.append(engine.Size(1_000_000, "typical"))
    if long_lived_updates is not None:
        settings.long_lived_updates = long_lived_updates
    settings.peers = peers
    settings.work_dir = work_dir
    if pg_dsn:
        settings.postgres_dsn = pg_dsn
    # the folder is made first: a run of half an hour must not fail at its last step
    target = out_dir
    try:
        if target is None:
            target = engine.new_out_dir()
        else:
            target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = target if target is not None else Path.cwd()
        raise CliError(
            f"cannot create the output folder in {where}: {exc.strerror or exc};"
            " choose another with --out"
        ) from None
    labels = ", ".join(s.label for s in settings.sizes)
    err.print(f"sessionstore bench: sizes {labels}" + (" (quick)" if quick else ""), markup=False)
    err.print(f"results go to {target}", markup=False)
    try:
        report = engine.run_benchmark(settings, log=lambda line: err.print(line, markup=False))
    except BaseException:
        if out_dir is None:  # the folder made for this run, still empty
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    written = engine.write_report(report, target, charts=not no_charts)
    if json_output:
        print_json(report.to_dict())
        return
    _print_targets(report)
    out.print(f"Done in {report.seconds / 60:.1f} min. Wrote:", markup=False)
    for path in written:
        out.print(f"  {path}", markup=False)


def _print_targets(report: BenchReport) -> None:
    table = Table(title="Targets", box=None, pad_edge=False)
    for name in ("Target", "Measured", ""):
        table.add_column(name)
    styles = {"met": "green", "missed": "red", "not measured": "dim"}
    for t in report.targets:
        table.add_row(Text(t.target), Text(t.measured), Text(t.status, style=styles[t.status]))
    out.print(table)
