#!/usr/bin/env python3
"""Scenario 3: a full disk (RLIMIT_FSIZE) for every writer.

The scenario is ``tests/reliability/faultkit/diskfull.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/diskfull.py                      # the full figures, seed 0
    python bench/stress/diskfull.py --quick --seed 7     # the short tier the tests run
    python bench/stress/diskfull.py --backend json --out /tmp/diskfull.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("diskfull"))
