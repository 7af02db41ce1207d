"""What every command shares: options, output consoles, one-line errors, opening stores.

Command modules import this module (and ``targets``/``render``), never each other and never
``app.py``, which only assembles them: the CLI has no import cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ..errors import SessionStoreError
from ..store import SessionStore, open_store
from .targets import Selection, Target, TargetError

__all__ = [
    "AgentOpt",
    "AllAgentsOpt",
    "CliError",
    "JsonOpt",
    "StateDirOpt",
    "StoreOpt",
    "VerboseOpt",
    "err",
    "handle_errors",
    "one_line",
    "one_store",
    "opened",
    "out",
]

F = TypeVar("F", bound=Callable[..., Any])

# soft_wrap: a path or a message is never broken into lines (tables still fit the width)
out = Console(highlight=False, soft_wrap=True)
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
    str | None,
    typer.Option("--agent", help="Agent id (default: openclaw.json's default agent, else main)."),
]
AllAgentsOpt = Annotated[
    bool,
    typer.Option(
        "--all-agents", help="Every agent listed in openclaw.json or with a dir under agents/."
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="A sessions.json path (may contain {agentId}) to use instead of the agent's store.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine output: one JSON document.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Every item, not a summary by kind.")
]


class CliError(Exception):
    """An error reported as one line with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines included) as one space."""
    return " ".join(message.split())


def handle_errors(fn: F) -> F:
    """Turn library and usage errors into one line on stderr and exit code 1 or 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TargetError as exc:
            err.print(f"error: {one_line(str(exc))}", markup=False)
            raise typer.Exit(exc.code) from None
        except CliError as exc:
            err.print(f"error: {one_line(str(exc))}", markup=False)
            raise typer.Exit(exc.code) from None
        except SessionStoreError as exc:
            err.print(f"error: {one_line(str(exc))}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def opened(
    selection: Selection, target: Target, *, read_only: bool = False
) -> Iterator[SessionStore]:
    """Open one target's store (read-only for commands that only look); close it after.

    Informational commands pass ``read_only=True``: they never import, upgrade or create
    anything.
    """
    store = open_store(
        agent=target.agent_id,
        state_dir=selection.state_dir,
        store=target.store,
        read_only=read_only,
    )
    try:
        yield store
    finally:
        store.close()


def one_store(selection: Selection) -> Target:
    """The single target of a command that acts on one store.

    Raises:
        TargetError: ``--all-agents`` was given.
        CliError: The store does not exist.
    """
    if len(selection.targets) != 1:
        raise TargetError(
            "this command acts on one store: use --agent or --store, not --all-agents"
        )
    target = selection.targets[0]
    if not target.exists():
        raise CliError(f"agent {target.agent_id}'s store at {target.paths.sessions_dir} is empty")
    return target


def no_session(key: str, target: Target) -> CliError:
    """The one wording of "there is no such session", for every command."""
    return CliError(
        f"no session {key} in agent {target.agent_id}'s store ({target.paths.sessions_dir});"
        f" list keys with `sessionstore list --agent {target.agent_id}`"
    )
