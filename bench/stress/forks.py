#!/usr/bin/env python3
"""Scenario 6: open, fork, write from both, 50 cycles, on each backend.

The scenario is ``tests/reliability/faultkit/forks.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/forks.py                      # the full figures, seed 0
    python bench/stress/forks.py --quick --seed 7     # the short tier the tests run
    python bench/stress/forks.py --backend json --out /tmp/forks.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("forks"))
