"""``list``, ``show``, ``history``, ``reset`` and ``delete``: one session or a page of them.

A command that takes a key acts on the store of the agent the key names
(``agent:<id>:...``), as OpenClaw does; the informational ones open stores read-only.
"""

# No `from __future__ import annotations`: typer reads the command's signature on every
# run, and string annotations would be compiled and evaluated then (~2 ms a run).
from typing import Annotated, Any

import typer

from ..index.base import encode_cursor
from ..keys import canonical_key
from .common import (
    AgentOpt,
    AllAgentsOpt,
    JsonOpt,
    StateDirOpt,
    StoreOpt,
    err,
    handle_errors,
    no_session,
    one_store,
    opened,
    out,
)
from .render import (
    Column,
    format_age,
    format_tokens,
    plural,
    print_json,
    print_rows,
    text_of,
)
from .targets import TargetError, select_targets

__all__ = ["delete", "history", "list_sessions", "reset", "show"]

DEFAULT_LIMIT = 50

KeyArg = Annotated[str, typer.Argument(help="Session key (agent:<id>:... picks that agent).")]


def _next_command(options: list[tuple[str, object]], cursor: str) -> str:
    """The command line of the next page: the options given, and ``--cursor``."""
    import shlex  # only a page with a next one prints this

    args = ["sessionstore", "list"]
    for name, value in options:
        if value is True:
            args.append(name)
        elif value is not None and value is not False:
            args += [name, str(value)]
    return shlex.join([*args, "--cursor", cursor])


@handle_errors
def list_sessions(
    active: Annotated[
        int | None,
        typer.Option("--active", min=1, help="Only sessions active in the last N minutes."),
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel",
            help="Only this channel (the entry's channel, else its last one, else the key's).",
        ),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Exact label.")] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            help="Case-insensitive substring of the display name, label, subject, session id"
            " or key.",
        ),
    ] = None,
    spawned_by: Annotated[
        str | None, typer.Option("--spawned-by", help="Children of this key.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows per page.")] = DEFAULT_LIMIT,
    all_rows: Annotated[bool, typer.Option("--all", help="Every row, no paging.")] = False,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor",
            help="Start after the page that printed this cursor (in its last line, or as"
            " nextCursor with --json).",
        ),
    ] = None,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List sessions, newest first, a page at a time.

    On a terminal, a table (keys are never shortened); piped, one tab-separated row per
    session: key, agent, kind, updatedAt (ms), model, total tokens, channel, label.
    """
    if all_rows and cursor is not None:
        raise TargetError("--all lists every row; it cannot start at a --cursor")
    page_size = None if all_rows else limit
    selection = select_targets(state_dir, agent, all_agents, store)
    rows: list[dict[str, Any]] = []
    total = 0
    for target in selection.targets:
        if not target.exists():
            continue
        with opened(selection, target, read_only=True) as store_:
            page = store_.list(
                active_minutes=active,
                channel=channel,
                label=label,
                search=search,
                spawned_by=spawned_by,
                limit=page_size,
                cursor=cursor,
                with_total=page_size is not None,
            )
        rows.extend(dict(r) for r in page.rows)
        total += page.total or 0
    rows.sort(key=lambda r: (r.get("updatedAt") or 0, r["key"]), reverse=True)
    if page_size is not None:
        rows = rows[:page_size]
    remaining = max(total - len(rows), 0) if page_size is not None else 0
    next_cursor = (
        encode_cursor(rows[-1].get("updatedAt") or 0, rows[-1]["key"])
        if remaining and rows
        else None
    )
    paths = [str(t.paths.sessions_dir) for t in selection.targets]
    if json_output:
        doc: dict[str, Any] = {
            "path": paths[0] if len(paths) == 1 else None,
            "count": len(rows),
            "activeMinutes": active,
            "sessions": rows,
            "nextCursor": next_cursor,
            "remaining": remaining,
        }
        if selection.all_agents:
            doc["allAgents"] = True
            doc["stores"] = [
                {"agentId": t.agent_id, "path": str(t.paths.sessions_dir)}
                for t in selection.targets
            ]
        print_json(doc)
        return
    terminal = out.is_terminal
    if terminal:
        if len(paths) == 1:
            out.print(f"Session store: {paths[0]}", markup=False)
        else:
            ids = ", ".join(t.agent_id for t in selection.targets)
            out.print(f"Session stores: {len(paths)} ({ids})", markup=False)
        if active:
            out.print(f"Active in the last {plural(active, 'minute')}")
    if not rows:
        (out.print if terminal else err.print)("No sessions found.")
        return
    columns = [
        Column("Key", None),
        Column("Agent", 0 if len(paths) == 1 else 3),
        Column("Kind", 5),
        Column("Updated", 6),
        Column("Model", 4),
        Column("Tokens", 2),
        Column("Channel", 3),
        Column("Label", 1),
    ]
    cells = [
        [
            r["key"],
            str(r.get("agentId") or ""),
            str(r.get("kind") or ""),
            format_age(r.get("updatedAt")) if terminal else _plain(r.get("updatedAt")),
            str(r.get("model") or ("-" if terminal else "")),
            format_tokens(r.get("totalTokens")) if terminal else _plain(r.get("totalTokens")),
            str(r.get("channel") or ("-" if terminal else "")),
            str(r.get("label") or ""),
        ]
        for r in rows
    ]
    if len(paths) == 1 and terminal:
        columns.pop(1)
        for row in cells:
            row.pop(1)
    print_rows(columns, cells)
    footer = out.print if terminal else err.print  # piped: stdout carries only rows
    if next_cursor is not None:
        given: list[tuple[str, object]] = [
            ("--state-dir", state_dir),
            ("--agent", agent),
            ("--all-agents", all_agents),
            ("--store", store),
            ("--active", active),
            ("--channel", channel),
            ("--label", label),
            ("--search", search),
            ("--spawned-by", spawned_by),
            ("--limit", None if limit == DEFAULT_LIMIT else limit),
        ]
        footer(
            f"{plural(len(rows), 'session')} shown, {remaining:,} more; next page:"
            f" {_next_command(given, next_cursor)} (or --all for every row)",
            markup=False,
        )
    elif terminal:
        footer(f"{plural(len(rows), 'session')}.")


def _plain(value: object) -> str:
    return "" if value is None else str(value)


@handle_errors
def show(
    key: KeyArg,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print one session's whole entry as JSON."""
    selection = select_targets(state_dir, agent, all_agents, store, key=key)
    canonical = canonical_key(key)
    for target in selection.targets:
        if not target.exists():
            continue
        with opened(selection, target, read_only=True) as store_:
            entry = store_.get(canonical)
        if entry is not None:
            print_json(
                entry
                if not json_output
                else {"key": canonical, "agentId": target.agent_id, "entry": entry}
            )
            return
    raise no_session(canonical, selection.targets[0])


@handle_errors
def history(
    key: KeyArg,
    tail: Annotated[int, typer.Option("--tail", min=1, help="The last N messages.")] = 20,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print the last messages of a session's transcript."""
    selection = select_targets(state_dir, agent, all_agents, store, key=key)
    target = selection.targets[0] if len(selection.targets) == 1 else one_store(selection)
    canonical = canonical_key(key)
    with opened(selection, target, read_only=True) as store_:
        if store_.get(canonical) is None:
            raise no_session(canonical, target)
        transcript = store_.transcript(canonical)
        messages = transcript.tail(tail)
        skipped = transcript.skipped
        # A postgres store's transcript is rows of its table, not a file.
        path = None if transcript.path is None else str(transcript.path)
        where = path or f"{store_.index.location}, transcript {transcript.session_id}"
    if json_output:
        print_json(
            {
                "key": canonical,
                "agentId": target.agent_id,
                "path": path,
                "skipped": skipped,
                "messages": messages,
            }
        )
        return
    out.print(f"Transcript: {where}", markup=False)
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
        out.print(text_of(m.get("content")) or "(no text)", markup=False)
    if skipped:
        err.print(
            f"warning: {plural(skipped, 'malformed line')} skipped in {transcript.path}",
            markup=False,
        )


@handle_errors
def reset(
    key: KeyArg,
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Start a new session under KEY; the old transcript is archived as .reset.<ts>."""
    selection = select_targets(state_dir, agent, all_agents, store, key=key)
    target = one_store(selection)
    canonical = canonical_key(key)
    with opened(selection, target) as store_:
        if store_.get(canonical) is None:
            raise no_session(canonical, target)
        entry = store_.reset(canonical)
    if json_output:
        print_json({"ok": True, "key": canonical, "agentId": target.agent_id, "entry": entry})
        return
    out.print(f"Reset {canonical}: new session {entry['sessionId']}", markup=False)


@handle_errors
def delete(
    key: KeyArg,
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
    selection = select_targets(state_dir, agent, all_agents, store, key=key)
    target = one_store(selection)
    canonical = canonical_key(key)
    with opened(selection, target) as store_:
        deleted = store_.delete(canonical, archive_transcript=not keep_transcript)
    if not deleted:
        raise no_session(canonical, target)
    if json_output:
        print_json({"ok": True, "key": canonical, "agentId": target.agent_id, "deleted": True})
        return
    out.print(f"Deleted {canonical}", markup=False)
