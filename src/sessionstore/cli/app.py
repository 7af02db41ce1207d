"""The typer application behind ``sessionstore``."""

from __future__ import annotations

import typer

from .. import __version__

app = typer.Typer(
    name="sessionstore",
    help="Inspect and manage OpenClaw-compatible session stores.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sessionstore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Inspect and manage OpenClaw-compatible session stores."""


def main() -> None:
    """Console-script entry point."""
    app()
