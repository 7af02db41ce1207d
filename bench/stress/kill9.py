#!/usr/bin/env python3
"""Scenario 1: kill -9 of an index writer (sqlite, sqlite power, json) at 200 random points.

The scenario is ``tests/reliability/faultkit/kill9.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/kill9.py                      # the full figures, seed 0
    python bench/stress/kill9.py --quick --seed 7     # the short tier the tests run
    python bench/stress/kill9.py --backend json --out /tmp/kill9.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("kill9"))
