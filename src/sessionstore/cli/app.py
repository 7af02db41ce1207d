"""The ``sessionstore`` command: assembles the commands of the modules beside it.

Every store command takes ``--state-dir``, ``--agent``, ``--all-agents``, ``--store`` and
``--json`` after its name (``demo`` and ``bench`` have their own options). Exit codes: 0 ok,
1 operation failed, 2 usage error; every error is one line.
"""

# No `from __future__ import annotations`: typer reads the command's signature on every
# run, and string annotations would be compiled and evaluated then (~2 ms a run).
import importlib
import sys
from typing import Annotated, Any, Final

import typer

from .. import __version__
from ..errors import SessionStoreError
from .common import err, one_line

__all__ = ["app", "main"]

app: typer.Typer  # every command; built on first use by __getattr__ below

COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "migrate": ("migration", "migrate"),
    "store-info": ("info", "store_info"),
    "list": ("sessions", "list_sessions"),
    "show": ("sessions", "show"),
    "history": ("sessions", "history"),
    "reset": ("sessions", "reset"),
    "delete": ("sessions", "delete"),
    "export": ("migration", "export"),
    "cleanup": ("upkeep", "cleanup"),
    "doctor": ("upkeep", "doctor"),
    "vacuum": ("upkeep", "vacuum"),
    "recover": ("upkeep", "recover"),
    "demo": ("demo", "demo"),
    "bench": ("demo", "bench"),
}
"""Each command's name, and the module of this package and the function that implement it."""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sessionstore {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Inspect, migrate and manage OpenClaw-compatible session stores."""


def build_app(names: tuple[str, ...] = tuple(COMMANDS)) -> typer.Typer:
    """The ``sessionstore`` application with the named commands (default: all of them)."""
    built = typer.Typer(
        name="sessionstore",
        help="Inspect, migrate and manage OpenClaw-compatible session stores.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    built.callback()(_root)
    for name in names:
        module, function = COMMANDS[name]
        command = getattr(importlib.import_module(f".{module}", __package__), function)
        built.command(name)(command)
    return built


def __getattr__(name: str) -> Any:
    # ``app`` (every command) is built on first use: a command run from the console script
    # imports and registers only itself (typer evaluates every registered command's
    # signature on each call, ~5 ms a command).
    if name == "app":
        globals()["app"] = full = build_app()
        return full
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point: one-line errors, exit codes 0/1/2."""
    args = sys.argv[1:]
    names = (args[0],) if args and args[0] in COMMANDS else tuple(COMMANDS)
    try:
        code = build_app(names)(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors (exit code 2) and the like
        message = one_line(exc.format_message())
        if message:  # no_args_is_help has printed the help and has nothing to add
            err.print(f"error: {message}", markup=False)
        sys.exit(exc.exit_code)
    except SessionStoreError as exc:
        err.print(f"error: {one_line(str(exc))}", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
