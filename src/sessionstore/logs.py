"""The package's logger, ``logging.getLogger("sessionstore")``, with ``logging`` loaded late.

Opening a store and reading from it log nothing in the usual case, and importing ``logging``
costs every program that opens one (each CLI command) ~1.5 ms of start-up; ``log`` imports
it on the first message.
"""

from __future__ import annotations

from typing import Any

__all__ = ["log"]


class _Log:
    """``warning`` and ``info`` of the ``sessionstore`` logger, which is looked up per call."""

    def warning(self, msg: str, *args: Any) -> None:
        """``logging.getLogger("sessionstore").warning``, the record naming the caller."""
        import logging

        logging.getLogger("sessionstore").warning(msg, *args, stacklevel=2)

    def info(self, msg: str, *args: Any) -> None:
        """``logging.getLogger("sessionstore").info``, the record naming the caller."""
        import logging

        logging.getLogger("sessionstore").info(msg, *args, stacklevel=2)


log = _Log()
"""Where store.py and selection.py log."""
