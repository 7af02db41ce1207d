"""``migrate`` (sessions.json or OpenClaw's database into SQLite) and ``export`` (back)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..errors import SessionStoreError
from ..migrate import MigrationResult, export_entries, migrate_agent
from ..openclaw_db import openclaw_db_path
from ..openclaw_import import OpenClawImportResult, migrate_openclaw_db
from ..store import sqlite_driver
from .common import (
    AgentOpt,
    AllAgentsOpt,
    CliError,
    JsonOpt,
    StateDirOpt,
    StoreOpt,
    err,
    handle_errors,
    one_line,
    opened,
    out,
)
from .render import plural, print_json
from .targets import Selection, Target, TargetError, select_targets

__all__ = ["export", "migrate"]

STATUS_STYLE = {"migrated": "green", "failed": "red", "would_migrate": "cyan"}


@handle_errors
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Import again even if imported before or the database holds sessions"
            " (entries newer in the database are kept).",
        ),
    ] = False,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="json: sessions.json; openclaw-db: OpenClaw 2026.8+'s"
            " agents/<agentId>/agent/openclaw-agent.sqlite (sessions and transcripts);"
            " sqlite: sessions.sqlite (with --to postgres).",
        ),
    ] = "json",
    destination: Annotated[
        str,
        typer.Option(
            "--to",
            help="The backend to migrate into: sqlite, or postgres (DSN from"
            " SESSIONSTORE_PG_DSN or postgres.dsn in sessionstore.json).",
        ),
    ] = "sqlite",
    keep_transcript_files: Annotated[
        bool,
        typer.Option(
            "--keep-transcript-files",
            help=(
                "With --to postgres: leave the .jsonl transcripts as files (the store then"
                " needs postgres.transcripts: files, SESSIONSTORE_PG_TRANSCRIPTS=files)."
            ),
        ),
    ] = False,
    openclaw_db: Annotated[
        Path | None,
        typer.Option("--openclaw-db", help="With --from openclaw-db: the database file to import."),
    ] = None,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Import sessions.json (or OpenClaw 2026.8+'s database) into sessions.sqlite.

    The source is never modified; a second run changes nothing.
    """
    if destination == "postgres":
        _migrate_postgres(
            source,
            dry_run,
            force,
            keep_transcript_files,
            state_dir,
            agent,
            all_agents,
            store,
            json_output,
        )
        return
    if source not in ("json", "openclaw-db"):
        raise TargetError(f"--from must be json or openclaw-db, not {source!r}")
    if keep_transcript_files:
        raise TargetError("--keep-transcript-files goes with --to postgres")
    if destination != "sqlite":
        raise TargetError(f"--to must be sqlite or postgres, not {destination!r}")
    if openclaw_db is not None and source != "openclaw-db":
        raise TargetError("--openclaw-db goes with --from openclaw-db")
    if openclaw_db is not None and all_agents:
        raise TargetError("--openclaw-db names one database: use --agent, not --all-agents")
    available, _ = sqlite_driver()
    if not available:
        raise CliError("SQLite is not available: the apsw driver cannot be imported; install apsw")
    selection = select_targets(state_dir, agent, all_agents, store)
    targets = selection.targets
    if source == "openclaw-db" and selection.all_agents:
        # every agent directory holding an openclaw-agent.sqlite
        targets = [t for t in targets if _openclaw_db_of(selection, t, None).is_file()]
    results: list[MigrationResult] = []
    show_progress = not json_output and err.is_terminal
    for target in targets:
        db_path = _openclaw_db_of(selection, target, openclaw_db)
        try:
            with _progress(show_progress, target.agent_id) as progress:
                if source == "openclaw-db":
                    result: MigrationResult = migrate_openclaw_db(
                        target.paths,
                        db_path,
                        dry_run=dry_run,
                        force=force,
                        durability=selection.config.durability,
                        progress=progress,
                    )
                else:
                    result = migrate_agent(
                        target.paths,
                        dry_run=dry_run,
                        force=force,
                        durability=selection.config.durability,
                        progress=progress,
                    )
                    if result.status == "no_data" and db_path.is_file():
                        result.message += (
                            f"; {db_path} holds this agent's sessions (OpenClaw 2026.8+):"
                            " run `sessionstore migrate --from openclaw-db`"
                        )
        except SessionStoreError as exc:
            failed_row = MigrationResult if source == "json" else OpenClawImportResult
            result = failed_row(
                agentId=target.agent_id,
                jsonPath=str(target.paths.json_path),
                sqlitePath=str(target.paths.sqlite_path),
                status="failed",
                message=one_line(str(exc)),
            )
            if isinstance(result, OpenClawImportResult):
                result.openclawDbPath = str(db_path)
        results.append(result)
    failed = [r for r in results if r.status == "failed"]
    if json_output:
        print_json({"success": not failed, "results": [r.to_dict() for r in results]})
    else:
        _print_migration(results, dry_run)
        if not targets:
            out.print(
                f"No agent directory under {selection.state_dir} holds an openclaw-agent.sqlite."
            )
    if failed:
        raise typer.Exit(1)


def _migrate_postgres(
    source: str,
    dry_run: bool,
    force: bool,
    keep_transcript_files: bool,
    state_dir: Path | None,
    agent: str | None,
    all_agents: bool,
    store: str | None,
    json_output: bool,
) -> None:
    """``migrate --to postgres --from json|sqlite``: one transaction per agent."""
    from ..index.postgres import PostgresIndex
    from ..migrate_postgres import migrate_to_postgres
    from ..store import open_store

    if source not in ("json", "sqlite"):
        raise TargetError(f"with --to postgres, --from must be json or sqlite, not {source!r}")
    selection = select_targets(state_dir, agent, all_agents, store)
    if not selection.config.postgres.dsn:
        raise TargetError(
            "--to postgres needs a DSN: set SESSIONSTORE_PG_DSN, or postgres.dsn in"
            f" {selection.state_dir / 'sessionstore.json'}"
        )
    results: list[MigrationResult] = []
    show_progress = not json_output and err.is_terminal
    for target in selection.targets:
        try:
            with open_store(
                agent=target.agent_id,
                state_dir=selection.state_dir,
                store=target.store,
                store_type="postgres",
            ) as pg:
                index = pg.index
                assert isinstance(index, PostgresIndex)
                with _progress(show_progress, target.agent_id) as progress:
                    result = migrate_to_postgres(
                        target.paths,
                        index,
                        source=source,
                        dry_run=dry_run,
                        force=force,
                        keep_transcript_files=keep_transcript_files,
                        progress=progress,
                    )
        except SessionStoreError as exc:
            result = MigrationResult(
                agentId=target.agent_id,
                jsonPath=str(
                    target.paths.json_path if source == "json" else target.paths.sqlite_path
                ),
                sqlitePath="postgres",
                status="failed",
                message=one_line(str(exc)),
            )
        results.append(result)
    failed = [r for r in results if r.status == "failed"]
    if json_output:
        print_json({"success": not failed, "results": [r.to_dict() for r in results]})
    else:
        _print_migration(results, dry_run)
    if failed:
        raise typer.Exit(1)


def _openclaw_db_of(selection: Selection, target: Target, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser().absolute()
    return openclaw_db_path(selection.state_dir, target.agent_id)


@contextmanager
def _progress(enabled: bool, agent_id: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    # rich.progress (and what it pulls in) only costs the command that draws a bar.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn(f"[bold]{agent_id}[/] migrating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err.console,
        transient=True,
    ) as bar:
        task = bar.add_task("migrate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_migration(results: list[MigrationResult], dry_run: bool) -> None:
    out.print("[bold]Session Store Migration[/]" + (" (dry run)" if dry_run else ""))
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)  # status
    table.add_column(no_wrap=True)  # agent
    table.add_column(overflow="fold")  # what happened, then where
    for r in results:
        style = STATUS_STYLE.get(r.status, "yellow")
        where = [f"from {r.openclawDbPath}"] if isinstance(r, OpenClawImportResult) else []
        if r.status in ("migrated", "would_migrate"):
            where.append(f"into {r.sqlitePath}")
        table.add_row(
            Text(r.status.upper(), style=style),
            Text(r.agentId),
            Text("\n".join([r.message, *where])),
        )
    out.print(table)
    migrated = [r for r in results if r.status == "migrated"]
    if migrated:
        total = sum(r.migratedCount for r in migrated)
        out.print(f"Migrated {plural(total, 'session')} across {plural(len(migrated), 'agent')}.")
    if any(r.sqlitePath.startswith("postgres") for r in migrated):
        out.print(
            "Set storeType postgres (sessionstore.json or SESSIONSTORE_STORE_TYPE) to use the"
            " PostgreSQL store; the source files are left in place."
        )
    elif any(not isinstance(r, OpenClawImportResult) for r in migrated):
        out.print(
            "The SQLite store is used from now on (store type auto or sqlite);"
            " sessions.json is left in place."
        )
    skipped = [r for r in results if r.status == "skipped"]
    if skipped:
        out.print(f"Skipped {plural(len(skipped), 'agent')}.")
    empty = [r for r in results if r.status == "no_data"]
    if empty:
        out.print(f"{plural(len(empty), 'agent')} had no sessions to migrate.")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        err.print(
            f"[red]{plural(len(failed), 'agent')} failed to migrate; nothing was written for"
            " them.[/]"
        )


@handle_errors
def export(
    out_path: Annotated[
        str, typer.Option("--out", help="Where to write the sessions.json ({agentId} allowed).")
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Write a store back to a sessions.json in OpenClaw's exact format (for rollback)."""
    selection = select_targets(state_dir, agent, all_agents, store)
    if len(selection.targets) > 1 and "{agentId}" not in out_path:
        raise TargetError("with --all-agents, --out must contain {agentId}")
    results = []
    for target in selection.targets:
        if selection.config.store_type != "postgres" and not target.exists():
            continue
        destination = Path(out_path.replace("{agentId}", target.agent_id)).expanduser()
        with opened(selection, target, read_only=True) as store_:
            entries = store_.load_all()
            count = export_entries(entries, destination, overwrite=force)
            if store_.store_type == "postgres":
                from ..index.postgres import PostgresIndex
                from ..migrate_postgres import export_transcripts

                assert isinstance(store_.index, PostgresIndex)
                export_transcripts(store_.index, entries, destination.parent)
        results.append((target.agent_id, str(destination), count))
    if not results:
        raise CliError("no store to export: neither sessions.json nor sessions.sqlite exists")
    if json_output:
        exports = [{"agentId": a, "path": p, "count": n} for a, p, n in results]
        print_json({"success": True, "exports": exports})
        return
    for agent_id, path, count in results:
        out.print(f"Exported {plural(count, 'session')} of {agent_id} to {path}", markup=False)
