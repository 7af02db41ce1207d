"""The ``sessionstore`` command line."""

from typing import Any

from .app import main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    # ``app`` (every command registered) is built on first use only: ``main`` registers
    # just the command it runs, and importing this package must not undo that.
    if name == "app":
        from .app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
