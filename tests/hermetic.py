"""A hermetic environment for tests and the processes they start.

Every ``OPENCLAW_*`` and ``SESSIONSTORE_*`` variable is a setting of the code under test
(state dir, config file, store type, ...), and ``HOME`` leads to a user's
``~/.openclaw/openclaw.json``: a test must see none of them unless it sets them itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PREFIXES = ("OPENCLAW_", "SESSIONSTORE_")


def clean_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without our variables, plus ``extra``.

    Pass it as ``env=`` to every process a test starts.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(PREFIXES)}
    env.update(extra)
    return env
