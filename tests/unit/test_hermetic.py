"""The test run is hermetic: no inherited OpenClaw or sessionstore setting reaches a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hermetic import PREFIXES, clean_env


def test_no_setting_of_ours_is_inherited_and_home_is_private_and_empty() -> None:
    assert [k for k in os.environ if k.startswith(PREFIXES)] == []
    home = Path(os.environ["HOME"])
    assert list(home.iterdir()) == []  # no ~/.openclaw/openclaw.json of the user's
    assert Path.home() == home


def test_children_get_a_clean_environment() -> None:
    env = clean_env({"OPENCLAW_STATE_DIR": "/x", "SESSIONSTORE_STORE_TYPE": "json", "A": "1"})
    assert env == {"A": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.environ))"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout
    assert not any(p in out for p in PREFIXES)
