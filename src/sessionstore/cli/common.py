"""What every command shares: options, output consoles, one-line errors, opening stores.

Command modules import this module (and ``targets``/``render``), never each other and never
``app.py``, which only assembles them: the CLI has no import cycle.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar

import typer

from ..errors import SessionStoreError
from ..store import SessionStore, open_store
from .targets import Selection, Target, TargetError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

__all__ = [
    "AgentOpt",
    "AllAgentsOpt",
    "CliError",
    "JsonOpt",
    "LazyConsole",
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

# Text that rich's Console would write unchanged: printable ASCII (rich strips control
# codes and expands tabs), no ``:name:`` emoji code, and no markup when markup is on.
_EMOJI_LIKE = re.compile(r":\S*:")


class LazyConsole:
    """A rich ``Console`` made on first use, with plain lines written without it.

    Importing ``rich.console`` costs a command ~15 ms of its start-up, more than the query
    of ``list`` or ``show``: most of their runs (piped output, an error line) print only text
    that rich would write unchanged. Such text is written directly when rich would treat the
    stream as no terminal; anything else goes through the real console.

    Args:
        stderr: Write to ``sys.stderr`` instead of ``sys.stdout`` (looked up on each write,
            as rich does).
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """The rich ``Console`` (made, and rich imported, on first use)."""
        if self._console is None:
            from rich.console import Console

            # soft_wrap: a path or a message is never broken into lines (tables still fit
            # the width); an error is one line however long its paths are
            console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
            if not self._stderr and not console.is_terminal:
                console.width = 240  # pipes and files get whole lines, not 80 columns
            self._console = console
        return self._console

    def _file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    def _plainly_no_terminal(self) -> bool:
        """Whether rich would call the stream no terminal, decided without importing rich.

        False means "ask rich": the environment variables rich obeys (``FORCE_COLOR``,
        ``TTY_COMPATIBLE``) are left to it, as is a stream that is a tty.
        """
        if self._console is not None:
            return not self._console.is_terminal
        if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
            return False
        isatty = getattr(self._file(), "isatty", None)
        try:
            return isatty is None or not isatty()
        except ValueError:  # a closed stream: rich says no terminal too
            return True

    @property
    def is_terminal(self) -> bool:
        """Whether the stream is a terminal, as rich's ``Console.is_terminal`` decides."""
        return not self._plainly_no_terminal() and self.console.is_terminal

    @property
    def width(self) -> int:
        """The console's width."""
        return self.console.width

    @width.setter
    def width(self, value: int) -> None:
        self.console.width = value

    def print(self, *objects: Any, markup: bool | None = None, **options: Any) -> None:
        """``Console.print``; a plain line that rich would not change is written directly."""
        if not options and len(objects) <= 1 and self._plainly_no_terminal():
            text = objects[0] if objects else ""
            if (
                isinstance(text, str)
                and text.isascii()
                and text.isprintable()
                and (markup is False or "[" not in text)
                and _EMOJI_LIKE.search(text) is None
            ):
                file = self._file()
                file.write(text + "\n")
                file.flush()
                return
        self.console.print(*objects, markup=markup, **options)

    def status(self, status: str) -> Status:
        """``Console.status``: a spinner with a message."""
        return self.console.status(status)


out = LazyConsole()
err = LazyConsole(stderr=True)

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
