"""``sessionstore cleanup``, ``doctor``, ``vacuum`` and ``recover``: the upkeep commands.

Assembled by ``cli/app.py``; they call the store's public API (``maintain``, ``check``,
``vacuum``) and the documented ``recover_store``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..doctor import Finding
from ..errors import CorruptStoreError, InvalidKeyError
from ..keys import canonical_key
from ..layout import openclaw_db_path
from ..maintenance import MaintenanceReport
from ..store import SessionStore
from .common import (
    AgentOpt,
    AllAgentsOpt,
    CliError,
    JsonOpt,
    StateDirOpt,
    StoreOpt,
    VerboseOpt,
    handle_errors,
    opened,
    out,
)
from .render import format_age, format_bytes, plural, print_json
from .targets import select_targets

__all__ = ["cleanup", "doctor", "recover", "vacuum"]

KEEP_ROWS_SHOWN = 20
EXAMPLES = 3  # per kind, in the summaries of doctor and cleanup (--verbose shows all)


def _summary(report: MaintenanceReport, current: int) -> dict[str, Any]:
    doc = report.to_dict()
    summary: dict[str, Any] = {
        "agentId": report.agentId,
        "storePath": report.storePath,
        "mode": report.mode,
        "dryRun": report.dryRun,
        "beforeCount": report.beforeCount,
        "afterCount": report.afterCount,
        "missing": report.missing,
        "reaped": report.reaped,
        "pruned": report.pruned,
        "capped": report.capped,
        "diskBudget": doc["diskBudget"],
        "wouldMutate": report.would_mutate,
    }
    if report.applied or (not report.dryRun and report.mode == "enforce"):
        summary["applied"] = True
        # What the store holds now: in warn mode only --fix-missing and --reap-cron were
        # applied, and afterCount is what enforcing would leave.
        summary["appliedCount"] = current
    for name in ("evicted", "archived", "removedFiles", "bytesFreed", "rotatedTo"):
        summary[name] = doc[name]
    summary["actions"] = doc["actions"]
    summary["warnings"] = report.warnings
    summary["errors"] = report.errors
    return summary


def _kept_rows(store: SessionStore, removed: set[str], active: str | None) -> list[list[str]]:
    rows: list[list[str]] = []
    cursor = None
    while len(rows) < KEEP_ROWS_SHOWN:
        page = store.list(include_global=True, include_unknown=True, limit=100, cursor=cursor)
        for r in page.rows:
            if r["key"] in removed or len(rows) >= KEEP_ROWS_SHOWN:
                continue
            flag = "active" if active and r["key"] == active.strip().lower() else ""
            rows.append(
                ["keep", r["key"], format_age(r.get("updatedAt")), str(r.get("model") or "-"), flag]
            )
        cursor = page.next_cursor
        if cursor is None:
            break
    return rows


def _print_report(
    report: MaintenanceReport,
    store: SessionStore,
    active: str | None,
    current: int,
    *,
    verbose: bool,
    reap_cron: bool = False,
) -> None:
    enforced = not report.dryRun and report.mode == "enforce"
    # Warn mode applies --fix-missing and --reap-cron only; every other step is a plan.
    verb = "Did" if enforced else "Would"
    removed = report.beforeCount - report.afterCount
    out.print(f"Session store: {report.storePath}", markup=False)
    out.print(f"Maintenance mode: {report.mode}", markup=False)
    out.print(f"Entries: {report.beforeCount} -> {report.afterCount} (remove {removed})")
    out.print(
        f"{'Did' if enforced or report.applied else 'Would'} prune missing transcripts:"
        f" {report.missing}"
    )
    if reap_cron:
        out.print(
            f"{'Did' if enforced or report.applied else 'Would'} reap cron runs: {report.reaped}"
        )
    out.print(f"{verb} prune stale: {report.pruned}")
    out.print(f"{verb} cap overflow: {report.capped}")
    budget = report.diskBudget
    if budget is not None:
        out.print(
            f"{verb} enforce disk budget: {budget.totalBytesBefore} -> {budget.totalBytesAfter}"
            f" bytes (files {budget.removedFiles}, entries {budget.removedEntries})"
        )
    if report.archived:
        out.print(f"{verb} archive transcripts: {len(report.archived)}")
    if report.removedFiles:
        out.print(
            f"{verb} delete files: {len(report.removedFiles)} ({format_bytes(report.bytesFreed)})"
        )
    if report.rotatedTo:
        out.print(f"{verb} back up sessions.json to {report.rotatedTo}", markup=False)
    for warning in report.warnings:
        out.print(f"warning: {warning}", markup=False)
    for error in report.errors:
        out.print(f"error: {error}", markup=False)
    if report.applied or enforced:
        out.print(f"Applied maintenance. Current entries: {current}")
        return
    if not verbose:
        _print_action_summary(report)
        return
    removed_keys = {a.key for a in report.actions}
    out.print("Planned session actions:")
    table = Table(box=None, pad_edge=False)
    for name, width in (("Action", 12), ("Key", None), ("Age", None), ("Model", None)):
        table.add_column(name, no_wrap=True, min_width=width)
    table.add_column("Flags", no_wrap=True)
    for a in report.actions:
        cells = (a.action, a.key, format_age(a.updatedAt), a.model or "-", "")
        table.add_row(*(Text(c) for c in cells))  # keys are shown as they are, not as markup
    kept = _kept_rows(store, removed_keys, active)
    for row in kept:
        table.add_row(*(Text(c) for c in row))
    out.print(table)
    more = report.afterCount - len(kept)
    if more > 0:
        out.print(f"... and {more} more kept")


def _print_action_summary(report: MaintenanceReport) -> None:
    """The planned removals grouped by action, with a few keys each."""
    by_action: dict[str, list[str]] = defaultdict(list)
    for a in report.actions:
        by_action[a.action].append(a.key)
    if not by_action:
        out.print("No session would be removed.")
        return
    out.print("Planned session actions (--verbose lists every key):")
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, justify="right")
    table.add_column(overflow="fold")
    for action, keys in by_action.items():
        more = len(keys) - EXAMPLES
        shown = ", ".join(keys[:EXAMPLES]) + (f" (+{more:,} more)" if more > 0 else "")
        table.add_row(Text(action), Text(f"{len(keys):,}"), Text(f"e.g. {shown}"))
    out.print(table)


@handle_errors
def cleanup(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    enforce: Annotated[
        bool, typer.Option("--enforce", help="Enforce even if the configured mode is warn.")
    ] = False,
    fix_missing: Annotated[
        bool,
        typer.Option(
            "--fix-missing",
            help="Also remove entries that had a transcript (a sessionFile or messages) whose"
            " file is gone; applied in warn mode too, unless --dry-run.",
        ),
    ] = False,
    reap_cron: Annotated[
        bool,
        typer.Option(
            "--reap-cron",
            help="Also remove cron run sessions idle longer than cron.sessionRetention"
            " (default 24h) and archive their transcripts, as OpenClaw's cron reaper;"
            " applied in warn mode too, unless --dry-run.",
        ),
    ] = False,
    active_key: Annotated[
        str | None,
        typer.Option("--active-key", help="A session never pruned, capped or evicted."),
    ] = None,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Prune, cap and budget sessions as the session.maintenance settings say.

    Warn mode (OpenClaw's default) and --dry-run only report; --enforce applies. The
    session of --active-key is never removed.
    """
    selection = select_targets(state_dir, agent, all_agents, store)
    if active_key is not None:
        try:
            canonical_key(active_key)
        except InvalidKeyError as exc:
            raise CliError(f"--active-key: {exc}", code=2) from None
    mode = "enforce" if enforce else selection.config.maintenance.mode
    # A plan changes nothing: it is made on a store opened read-only.
    read_only = dry_run or (mode == "warn" and not fix_missing and not reap_cron)
    summaries = []
    for target in selection.targets:
        if not target.exists():
            continue
        with opened(selection, target, read_only=read_only) as store_:
            report = store_.maintain(
                mode="enforce" if enforce else None,
                dry_run=dry_run,
                active_key=active_key,
                fix_missing=fix_missing,
                reap_cron=reap_cron,
            )
            current = store_.count()
            if json_output:
                summaries.append(_summary(report, current))
            else:
                _print_report(
                    report, store_, active_key, current, verbose=verbose, reap_cron=reap_cron
                )
    if json_output:
        if selection.all_agents:
            print_json({"allAgents": True, "mode": mode, "dryRun": dry_run, "stores": summaries})
        elif summaries:
            print_json(summaries[0])
        else:
            print_json({"stores": []})
    elif not summaries and not any(t.exists() for t in selection.targets):
        out.print("No session store found.")


@handle_errors
def doctor(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Repair what is safe to repair (never deletes entries, transcripts or archives).",
        ),
    ] = False,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check a store for inconsistencies; exit 1 while unrepaired problems remain.

    Without --fix it only reads (the store is opened read-only).
    """
    selection = select_targets(state_dir, agent, all_agents, store)
    docs = []
    unresolved = 0
    for target in selection.targets:
        # An OpenClaw 2026.8+ agent dir may hold only openclaw-agent.sqlite: opening the
        # store creates nothing, and the doctor says it was never imported.
        if (
            not target.exists()
            and not openclaw_db_path(selection.state_dir, target.agent_id).is_file()
        ):
            continue
        try:
            with opened(selection, target, read_only=not fix) as store_:
                findings = store_.check(fix=fix)
                store_type = store_.store_type
        except CorruptStoreError as exc:
            # A store that cannot even be opened is the doctor's first finding.
            message = str(exc)
            if "sessionstore recover" not in message:
                message += (
                    "; `sessionstore recover` rebuilds it from what is readable plus"
                    " sessions.json (the damaged file is kept)"
                )
            findings = [Finding("integrity", exc.path, message, severity="error")]
            store_type = "sqlite" if exc.path.endswith(".sqlite") else "json"
        left = sum(1 for f in findings if f.unresolved)
        unresolved += left
        docs.append(
            {
                "agentId": target.agent_id,
                "storeType": store_type,
                "path": str(target.paths.sessions_dir),
                "findings": [f.to_dict() for f in findings],
                "unresolved": left,
            }
        )
        if json_output:
            continue
        out.print(f"Session store: {target.paths.sessions_dir} ({store_type})", markup=False)
        if not findings:
            out.print("No problems found.")
            continue
        if verbose:
            _print_findings(findings)
        else:
            _print_finding_summary(findings)
        fixed = sum(1 for f in findings if f.fixed)
        out.print(
            f"{plural(len(findings), 'finding')}, {fixed:,} repaired, {left:,} unresolved"
            + ("" if verbose or len(findings) <= EXAMPLES else " (--verbose lists every one)")
        )
    if json_output:
        print_json(
            {"stores": docs, "unresolved": unresolved}
            if selection.all_agents
            else (docs[0] if docs else {"stores": [], "unresolved": 0})
        )
    elif not docs:
        out.print("No session store found.")
    if unresolved:
        raise typer.Exit(1)


def _print_findings(findings: list[Finding]) -> None:
    table = Table(box=None, pad_edge=False)
    for name in ("Severity", "Kind", "Subject", "Fixed", "Message"):
        table.add_column(name, no_wrap=name != "Message", overflow="fold")
    for f in findings:  # Text: keys and paths are shown as they are, never as markup
        cells = (f.severity, f.kind, f.subject, "yes" if f.fixed else "no", f.message)
        table.add_row(*(Text(c) for c in cells))
    out.print(table)


def _print_finding_summary(findings: list[Finding]) -> None:
    """One block per kind: how many, how many repaired, one message and a few subjects."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        groups[(f.severity, f.kind)].append(f)
    order = {"error": 0, "warning": 1, "info": 2}
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, justify="right")
    table.add_column(overflow="fold")
    for (severity, kind), items in sorted(groups.items(), key=lambda g: (order[g[0][0]], g[0][1])):
        fixed = sum(1 for f in items if f.fixed)
        count = f"{len(items):,}" + (f" ({fixed:,} repaired)" if fixed else "")
        detail = items[0].message
        if len(items) > 1:
            more = len(items) - EXAMPLES
            subjects = ", ".join(f.subject for f in items[:EXAMPLES])
            detail += f"\nin {subjects}" + (f" (+{more:,} more)" if more > 0 else "")
        table.add_row(Text(severity), Text(kind), Text(count), Text(detail))
    out.print(table)


@handle_errors
def vacuum(
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Compact sessions.sqlite (WAL checkpoint, then VACUUM); report its size before and after."""
    selection = select_targets(state_dir, agent, all_agents, store)
    results = []
    for target in selection.targets:
        if not target.exists():
            continue
        with opened(selection, target) as store_:
            if store_.store_type != "sqlite":
                if selection.all_agents:
                    continue  # json stores have nothing to compact
                raise CliError(
                    f"{target.agent_id}: vacuum applies to sqlite stores; this one is"
                    f" {store_.store_type} (`sessionstore migrate` first)"
                )
            done = store_.vacuum()
        results.append({"agentId": target.agent_id, "path": str(target.paths.sqlite_path), **done})
        if not json_output:
            out.print(
                f"Vacuumed {target.paths.sqlite_path}: {format_bytes(done['bytesBefore'])} ->"
                f" {format_bytes(done['bytesAfter'])}"
                + ("" if done["checkpointed"] else " (a reader kept the WAL from being reset)"),
                markup=False,
            )
    if json_output:
        print_json({"stores": results} if selection.all_agents or not results else results[0])
    elif not results:
        out.print("No sqlite session store found.")


@handle_errors
def recover(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Salvage from a copy and report; change nothing.")
    ] = False,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Rebuild a damaged sessions.sqlite from what is readable plus sessions.json.

    The damaged files are moved aside (never deleted); stop other writers first.
    """
    from ..recover import recover_store

    selection = select_targets(state_dir, agent, all_agents, store)
    reports = []
    for target in selection.targets:
        report = recover_store(
            target.paths, dry_run=dry_run, durability=selection.config.durability
        )
        reports.append(report.to_dict())
        if json_output:
            continue
        where = target.paths.sqlite_path
        if report.status == "no_database":
            out.print(f"{target.agent_id}: no database at {where}", markup=False)
        elif report.status == "healthy":
            out.print(f"{target.agent_id}: {where} reads whole; nothing to recover", markup=False)
        else:
            verb = "Would rebuild" if dry_run else "Rebuilt"
            out.print(f"{target.agent_id}: {where} {report.problem}", markup=False)
            out.print(
                f"  {verb} it with {plural(report.sessionCount, 'session')}:"
                f" {report.salvaged:,} salvaged, {report.fromJson:,} from sessions.json;"
                f" {plural(report.lost, 'unreadable row')} lost"
                + (f", {report.partial:,} without their large fields" if report.partial else ""),
                markup=False,
            )
            if report.damagedPath:
                out.print(f"  The damaged database is kept at {report.damagedPath}", markup=False)
            for note in report.notes:
                out.print(f"  note: {note}", markup=False)
    if json_output:
        print_json({"stores": reports} if selection.all_agents else reports[0])
