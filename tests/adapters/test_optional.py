"""The adapters are optional: the core never imports the frameworks."""

from __future__ import annotations

import subprocess
import sys


def test_the_core_imports_no_framework() -> None:
    code = (
        "import sys, sessionstore, sessionstore.aio, sessionstore.cli.app\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('agents', 'google'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
