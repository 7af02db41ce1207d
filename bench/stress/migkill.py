#!/usr/bin/env python3
"""Scenario 8: a migration of a 5,000-entry store killed at 100 random points, then re-run.

The scenario is ``tests/reliability/faultkit/migkill.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/migkill.py                      # the full figures, seed 0
    python bench/stress/migkill.py --quick --seed 7     # the short tier the tests run
    python bench/stress/migkill.py --backend json --out /tmp/migkill.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("migkill"))
