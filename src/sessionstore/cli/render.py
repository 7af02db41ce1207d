"""Text rendering for the CLI: ages, counts, message text, tables that never cut keys."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import orjson

from ..clock import now_ms
from .common import out

__all__ = [
    "Column",
    "format_age",
    "format_bytes",
    "format_tokens",
    "plural",
    "print_info",
    "print_json",
    "print_rows",
    "text_of",
]


def print_json(value: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 session``, ``2 sessions`` (thousands separated)."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


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


def text_of(content: object, limit: int = 2000) -> str:
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


class Column:
    """A column of :func:`print_rows`.

    Args:
        name: The header.
        drop: Order in which columns give way when the terminal is too narrow (lower
            goes first); None for a column that always stays (it folds instead).
    """

    def __init__(self, name: str, drop: int | None) -> None:
        self.name = name
        self.drop = drop


def print_rows(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, plain_when_piped: bool = True
) -> None:
    """Rows as a table on a terminal, as tab-separated lines (no header) elsewhere.

    In a table, columns give way in their ``drop`` order until the table fits; a column
    that always stays (the key) folds onto more lines rather than being cut, so every
    character can be copied.

    Args:
        columns: The columns.
        rows: The cells, as text.
        plain_when_piped: Tab-separated lines when stdout is not a terminal (else always a
            table).
    """
    if plain_when_piped and not out.is_terminal:
        for row in rows:
            sys.stdout.write("\t".join(cell.replace("\t", " ") for cell in row) + "\n")
        sys.stdout.flush()
        return
    widths = [max([len(c.name), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    keep = list(range(len(columns)))
    gap = 2
    for i in sorted(
        (i for i, c in enumerate(columns) if c.drop is not None),
        key=lambda i: columns[i].drop or 0,
    ):
        if sum(widths[k] for k in keep) + gap * (len(keep) - 1) <= out.width:
            break
        keep.remove(i)
    # rich's tables only on a terminal: importing them costs a piped command ~5 ms
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, padding=(0, gap, 0, 0))
    for k in keep:
        fixed = columns[k].drop is None
        table.add_column(columns[k].name, no_wrap=not fixed, overflow="fold")
    for row in rows:
        table.add_row(*(Text(row[k]) for k in keep))  # keys are text, never markup
    out.print(table)


def print_info(info: dict[str, Any]) -> None:
    """A store's ``store-info`` as a two-column table."""
    from rich.table import Table
    from rich.text import Text

    backend = info.get("backend") or {}
    table = Table(title=f"Session Store Info: {info['agentId']}", show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
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
        ("Session Count", f"{info['sessionCount']:,}"),
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
    settings = info.get("settings") or {}
    given = [
        f"{name}={value['value']} ({value['from']})"
        for name, value in settings.items()
        if isinstance(value, dict) and value.get("from") not in (None, "default")
    ]
    if settings:
        rows.append(("Settings", "; ".join(given) or "defaults"))
        rows.append(("Settings File", str(settings.get("settingsFile"))))
    if info.get("splitWarning"):
        rows.append(("Warning", str(info["splitWarning"])))
    openclaw = info.get("openclawDb")
    if openclaw:
        rows.append(("OpenClaw DB", str(openclaw["path"])))
        rows.append(("OpenClaw DB Imported", _openclaw_state(openclaw)))
    for name, value in rows:
        table.add_row(name, Text(value))
    out.print(table)


def _openclaw_state(status: dict[str, Any]) -> str:
    if not status["imported"]:
        return "no - run `sessionstore migrate --from openclaw-db`"
    when = format_age(status.get("importedAt"))
    if status.get("changedSinceImport"):
        return f"at {when}; changed since - run `sessionstore migrate --from openclaw-db --force`"
    return f"at {when}, unchanged since"
