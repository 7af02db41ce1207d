#!/usr/bin/env python3
"""Scenario 4: SQLite I/O errors through the VFS, transient and permanent, on reads and writes.

The scenario is ``tests/reliability/faultkit/ioerrors.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/ioerrors.py                      # the full figures, seed 0
    python bench/stress/ioerrors.py --quick --seed 7     # the short tier the tests run
    python bench/stress/ioerrors.py --backend json --out /tmp/ioerrors.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("ioerrors"))
