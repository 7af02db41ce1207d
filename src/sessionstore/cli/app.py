"""The typer application behind ``sessionstore``.

Every command takes ``--state-dir``, ``--agent``, ``--all-agents``, ``--store`` and
``--json``. Exit codes: 0 ok, 1 operation failed, 2 usage error; every error is one line.
The CLI only calls the public API (``open_store``, ``migrate``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import __version__
from ..errors import SessionStoreError
from ..migrate import MigrationResult, export_entries, migrate_agent
from ..openclaw_db import openclaw_db_path
from ..openclaw_import import OpenClawImportResult, migrate_openclaw_db, openclaw_db_status
from ..store import SessionStore, open_store, sqlite_driver
from .render import format_age, format_bytes, format_tokens, print_json, short_key
from .targets import Selection, Target, TargetError, select_targets

__all__ = ["app", "main"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="sessionstore",
    help="Inspect, migrate and manage OpenClaw-compatible session stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False)
# soft_wrap: an error is one line however long its paths are (no wrapping at 80 columns)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal:
    out.width = 240  # pipes and files get whole lines, not an 80-column squeeze

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="OpenClaw state dir (default: OPENCLAW_STATE_DIR or ~/.openclaw)."
    ),
]
AgentOpt = Annotated[
    str | None, typer.Option("--agent", help="Agent id (default: the default agent).")
]
AllAgentsOpt = Annotated[
    bool, typer.Option("--all-agents", help="Every configured or found agent.")
]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Path of a sessions.json (may contain {agentId}).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine output: one JSON document.")]


class CliError(Exception):
    """An error reported as one line with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _one_line(message: str) -> str:
    return " ".join(message.split())


def handle_errors(fn: F) -> F:
    """Turn library and usage errors into one line on stderr and exit code 1 or 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TargetError as exc:
            err.print(f"error: {_one_line(str(exc))}", markup=False)
            raise typer.Exit(2) from None
        except CliError as exc:
            err.print(f"error: {_one_line(str(exc))}", markup=False)
            raise typer.Exit(exc.code) from None
        except SessionStoreError as exc:
            err.print(f"error: {_one_line(str(exc))}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sessionstore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Inspect, migrate and manage OpenClaw-compatible session stores."""


@contextmanager
def _opened(selection: Selection, target: Target) -> Iterator[SessionStore]:
    store = open_store(agent=target.agent_id, state_dir=selection.state_dir, store=target.store)
    try:
        yield store
    finally:
        store.close()


# --- migrate ---------------------------------------------------------------------------------


@app.command()
@handle_errors
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Re-import even if migrated before or the database has data."),
    ] = False,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="json: sessions.json; openclaw-db: OpenClaw 2026.8+'s"
            " agents/<agentId>/agent/openclaw-agent.sqlite (sessions and transcripts).",
        ),
    ] = "json",
    destination: Annotated[
        str, typer.Option("--to", help="The backend to migrate into (sqlite).")
    ] = "sqlite",
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
    """Migrate sessions.json (or OpenClaw's database) to the SQLite hot index.

    The source is never modified.
    """
    if source not in ("json", "openclaw-db"):
        raise TargetError(f"--from must be json or openclaw-db, not {source!r}")
    if destination == "postgres":
        raise TargetError(
            "--to postgres is not available in this version of sessionstore (there is no"
            " PostgreSQL backend yet); use --to sqlite"
        )
    if destination != "sqlite":
        raise TargetError(f"--to must be sqlite, not {destination!r}")
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
                message=_one_line(str(exc)),
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


def _openclaw_db_of(selection: Selection, target: Target, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser().absolute()
    return openclaw_db_path(selection.state_dir, target.agent_id)


@contextmanager
def _progress(enabled: bool, agent_id: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn(f"[bold]{agent_id}[/] migrating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("migrate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_migration(results: list[MigrationResult], dry_run: bool) -> None:
    out.print("[bold]Session Store Migration[/]" + (" (dry run)" if dry_run else ""))
    for r in results:
        style = {"migrated": "green", "failed": "red", "would_migrate": "cyan"}.get(
            r.status, "yellow"
        )
        out.print(f"  [{style}]{r.status.upper():<13}[/] {r.agentId}  {r.message}", markup=True)
        if isinstance(r, OpenClawImportResult):
            out.print(f"                From: {r.openclawDbPath}", markup=False)
        if r.status in ("migrated", "would_migrate"):
            out.print(f"                SQLite: {r.sqlitePath}", markup=False)
    migrated = [r for r in results if r.status == "migrated"]
    if migrated:
        total = sum(r.migratedCount for r in migrated)
        out.print(f"Migrated {total} sessions across {len(migrated)} agent(s).")
    if any(not isinstance(r, OpenClawImportResult) for r in migrated):
        out.print(
            'Tip: with session.storeType "auto" (the default) or "sqlite" in openclaw.json,'
            " the SQLite store is used from now on; sessions.json is left in place."
        )
    skipped = [r for r in results if r.status == "skipped"]
    if skipped:
        out.print(f"Skipped {len(skipped)} agent(s).")
    empty = [r for r in results if r.status == "no_data"]
    if empty:
        out.print(f"{len(empty)} agent(s) had no sessions to migrate.")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        err.print(
            f"[red]{len(failed)} agent(s) failed to migrate; nothing was written for them.[/]"
        )


# --- store-info ------------------------------------------------------------------------------


def _info(selection: Selection, target: Target) -> dict[str, Any]:
    if not target.exists():
        available, version = sqlite_driver()
        return {
            "storeType": selection.config.store_type,
            "effectiveStoreType": None,
            "fallbackReason": None,
            "sqliteAvailable": available,
            "sqliteVersion": version,
            "sessionCount": 0,
            "jsonPath": str(target.paths.json_path),
            "sqlitePath": str(target.paths.sqlite_path),
            "migration": None,
            "sourceChangedSinceMigration": None,
            "agentId": target.agent_id,
            "openclawDb": openclaw_db_status(selection.state_dir, target.agent_id, None),
            "exists": False,
        }
    with _opened(selection, target) as store:
        info = store.info().to_dict()
    info["exists"] = True
    return info


@app.command("store-info")
@handle_errors
def store_info(
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show the backend, paths, sizes, counts and migration state of a store."""
    selection = select_targets(state_dir, agent, all_agents, store)
    infos = [_info(selection, t) for t in selection.targets]
    if json_output:
        print_json({"stores": infos} if selection.all_agents else infos[0])
        return
    for info in infos:
        _print_info(info)


def _print_info(info: dict[str, Any]) -> None:
    backend = info.get("backend") or {}
    table = Table(title=f"Session Store Info: {info['agentId']}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("Configured Type", str(info["storeType"])),
        ("Effective Type", str(info["effectiveStoreType"] or "(no store yet)")),
    ]
    if info.get("fallbackReason"):
        rows.append(("Fallback Reason", str(info["fallbackReason"])))
    rows += [
        ("SQLite Available", "yes" if info["sqliteAvailable"] else "no"),
        ("SQLite Version", str(info.get("sqliteVersion") or "-")),
    ]
    if backend.get("driver"):
        rows.append(("Driver", str(backend["driver"])))
    rows += [
        ("Session Count", str(info["sessionCount"])),
        ("JSON Path", f"{info['jsonPath']} ({format_bytes(info.get('jsonBytes'))})"),
        ("SQLite Path", f"{info['sqlitePath']} ({format_bytes(backend.get('indexBytes'))})"),
    ]
    if backend.get("walBytes") is not None:
        rows.append(("WAL Size", format_bytes(backend["walBytes"])))
    migration = info.get("migration")
    if migration:
        rows.append(
            (
                "Migration",
                f"{migration.get('migratedCount')} of {migration.get('entryCount')} sessions"
                f" at {format_age(migration.get('migratedAt'))}, sha256"
                f" {str(migration.get('sha256'))[:12]}…",
            )
        )
        changed = info.get("sourceChangedSinceMigration")
        rows.append(
            (
                "sessions.json Changed",
                "yes - run `sessionstore migrate --force` to re-import" if changed else "no",
            )
        )
    openclaw = info.get("openclawDb")
    if openclaw:
        rows.append(("OpenClaw DB", str(openclaw["path"])))
        rows.append(("OpenClaw DB Imported", _openclaw_state(openclaw)))
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _openclaw_state(status: dict[str, Any]) -> str:
    if not status["imported"]:
        return "no - run `sessionstore migrate --from openclaw-db`"
    when = format_age(status.get("importedAt"))
    if status.get("changedSinceImport"):
        return f"at {when}; changed since - run `sessionstore migrate --from openclaw-db --force`"
    return f"at {when}, unchanged since"


# --- list / show -----------------------------------------------------------------------------


@app.command("list")
@handle_errors
def list_sessions(
    active: Annotated[
        int | None,
        typer.Option("--active", min=1, help="Only sessions active in the last N minutes."),
    ] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Exact label.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Substring of name, label, id or key.")
    ] = None,
    spawned_by: Annotated[
        str | None, typer.Option("--spawned-by", help="Children of this key.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N rows.")] = None,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List sessions, newest first."""
    selection = select_targets(state_dir, agent, all_agents, store)
    rows: list[dict[str, Any]] = []
    for target in selection.targets:
        if not target.exists():
            continue
        with _opened(selection, target) as opened:
            page = opened.list(
                active_minutes=active,
                channel=channel,
                label=label,
                search=search,
                spawned_by=spawned_by,
                limit=limit,
            )
            rows.extend(dict(r) for r in page.rows)
    rows.sort(key=lambda r: (r.get("updatedAt") or 0, r["key"]), reverse=True)
    if limit is not None:
        rows = rows[:limit]
    paths = [str(t.paths.json_path.parent) for t in selection.targets]
    if json_output:
        doc: dict[str, Any] = {
            "path": paths[0] if len(paths) == 1 else None,
            "count": len(rows),
            "activeMinutes": active,
            "sessions": rows,
        }
        if selection.all_agents:
            doc["allAgents"] = True
            doc["stores"] = [
                {"agentId": t.agent_id, "path": str(t.paths.json_path.parent)}
                for t in selection.targets
            ]
        print_json(doc)
        return
    if len(paths) == 1:
        out.print(f"Session store: {paths[0]}", markup=False)
    else:
        ids = ", ".join(t.agent_id for t in selection.targets)
        out.print(f"Session stores: {len(paths)} ({ids})", markup=False)
    if not rows:
        out.print("No sessions found.")
        return
    out.print(f"Sessions listed: {len(rows)}")
    if active:
        out.print(f"Filtered to last {active} minute(s)")
    table = Table(box=None, pad_edge=False)
    for name in ("Agent", "Kind", "Key", "Age", "Model", "Tokens", "Channel", "Label"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(
            r["agentId"],
            r["kind"],
            short_key(r["key"]),
            format_age(r.get("updatedAt")),
            str(r.get("model") or "-"),
            format_tokens(r.get("totalTokens")),
            str(r.get("channel") or "-"),
            str(r.get("label") or ""),
        )
    out.print(table)


@app.command()
@handle_errors
def show(
    key: Annotated[str, typer.Argument(help="Session key.")],
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print one session's whole entry as JSON."""
    selection = select_targets(state_dir, agent, all_agents, store)
    for target in selection.targets:
        if not target.exists():
            continue
        with _opened(selection, target) as opened:
            entry = opened.get(key)
        if entry is not None:
            print_json(
                entry
                if not json_output
                else {"key": key.strip().lower(), "agentId": target.agent_id, "entry": entry}
            )
            return
    where = ", ".join(str(t.paths.sessions_dir) for t in selection.targets)
    raise CliError(f"no session {key!r} in {where}; list keys with `sessionstore list`")


# --- transcripts -----------------------------------------------------------------------------


def _one_store(selection: Selection) -> Target:
    if len(selection.targets) != 1:
        raise TargetError(
            "this command acts on one store: use --agent or --store, not --all-agents"
        )
    target = selection.targets[0]
    if not target.exists():
        raise CliError(f"no session store at {target.paths.sessions_dir}")
    return target


def _text_of(content: object, limit: int = 2000) -> str:
    """Readable text of a message's content: text parts, tool calls summarised."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts: list[str] = []
        calls: list[str] = []
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif kind == "toolCall":
                calls.append(str(part.get("name", "?")))
            elif kind == "image":
                parts.append("[image]")
            elif kind == "thinking":
                parts.append("(thinking)")
        if calls:
            shown = ", ".join(calls[:2]) + (f" +{len(calls) - 2}" if len(calls) > 2 else "")
            parts.append(f"[call {shown}]")
        text = "\n".join(parts)
    else:
        text = ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command()
@handle_errors
def history(
    key: Annotated[str, typer.Argument(help="Session key.")],
    tail: Annotated[int, typer.Option("--tail", min=1, help="The last N messages.")] = 20,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print the end of a session's conversation (reads only what it shows)."""
    selection = select_targets(state_dir, agent, all_agents, store)
    target = _one_store(selection)
    with _opened(selection, target) as opened:
        transcript = opened.transcript(key)
        messages = transcript.tail(tail)
        skipped = transcript.skipped
    if json_output:
        print_json(
            {
                "key": key.strip().lower(),
                "path": str(transcript.path),
                "skipped": skipped,
                "messages": messages,
            }
        )
        return
    out.print(f"Transcript: {transcript.path}", markup=False)
    if not messages:
        out.print("No messages.")
    for m in messages:
        meta = m.get("__openclaw", {})
        when = format_age(m.get("timestamp")) if isinstance(m.get("timestamp"), int) else ""
        role = str(m.get("role", "?"))
        label = f"#{meta['seq']}" if "seq" in meta else "--"
        if role == "toolResult":
            role = f"tool:{m.get('toolName', '?')}"
        out.print(f"[bold]{label} {role}[/] [dim]{when}[/]")
        out.print(_text_of(m.get("content")) or "(no text)", markup=False)
    if skipped:
        err.print(
            f"warning: {skipped} malformed line(s) skipped in {transcript.path}", markup=False
        )


@app.command()
@handle_errors
def reset(
    key: Annotated[str, typer.Argument(help="Session key.")],
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Start a new session under KEY; the old transcript is archived as .reset.<ts>."""
    selection = select_targets(state_dir, agent, all_agents, store)
    target = _one_store(selection)
    with _opened(selection, target) as opened:
        entry = opened.reset(key)
    if json_output:
        print_json({"ok": True, "key": key.strip().lower(), "entry": entry})
        return
    out.print(f"Reset {key.strip().lower()}: new session {entry['sessionId']}", markup=False)


@app.command()
@handle_errors
def delete(
    key: Annotated[str, typer.Argument(help="Session key.")],
    keep_transcript: Annotated[
        bool, typer.Option("--keep-transcript", help="Leave the transcript file as it is.")
    ] = False,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete a session; its transcript is archived as .deleted.<ts> (never unlinked)."""
    selection = select_targets(state_dir, agent, all_agents, store)
    target = _one_store(selection)
    with _opened(selection, target) as opened:
        deleted = opened.delete(key, archive_transcript=not keep_transcript)
    if json_output:
        print_json({"ok": deleted, "key": key.strip().lower(), "deleted": deleted})
    elif deleted:
        out.print(f"Deleted {key.strip().lower()}", markup=False)
    if not deleted:
        raise CliError(f"no session {key!r} in {target.paths.sessions_dir}")


# --- export ----------------------------------------------------------------------------------


@app.command()
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
        if not target.exists():
            continue
        destination = Path(out_path.replace("{agentId}", target.agent_id)).expanduser()
        with _opened(selection, target) as opened:
            count = export_entries(opened.load_all(), destination, overwrite=force)
        results.append({"agentId": target.agent_id, "path": str(destination), "count": count})
    if not results:
        raise CliError("no store to export: neither sessions.json nor sessions.sqlite exists")
    if json_output:
        print_json({"success": True, "exports": results})
        return
    for r in results:
        out.print(f"Exported {r['count']} sessions of {r['agentId']} to {r['path']}", markup=False)


# The upkeep commands live in their own module and register themselves on `app`.
from . import upkeep as _upkeep  # noqa: E402, F401

# `demo` and `bench` live in cli/demo.py, which imports this module's helpers.
from .demo import bench, demo  # noqa: E402

app.command()(demo)
app.command()(bench)


def main() -> None:
    """Console-script entry point: one-line errors, exit codes 0/1/2."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors (exit code 2) and the like
        message = _one_line(exc.format_message())
        if message:  # no_args_is_help has printed the help and has nothing to add
            err.print(f"error: {message}", markup=False)
        sys.exit(exc.exit_code)
    except SessionStoreError as exc:
        err.print(f"error: {_one_line(str(exc))}", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
