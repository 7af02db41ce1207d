#!/usr/bin/env python3
"""Scenario 2: a deterministic crash-point sweep of put, update, append, json save and migrate.

The scenario is ``tests/reliability/faultkit/sweep.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/sweep.py                      # the full figures, seed 0
    python bench/stress/sweep.py --quick --seed 7     # the short tier the tests run
    python bench/stress/sweep.py --backend json --out /tmp/sweep.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("sweep"))
