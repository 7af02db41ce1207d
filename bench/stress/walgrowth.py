#!/usr/bin/env python3
"""Scenario 7: a long reader holds a snapshot while 20,000 writes commit.

The scenario is ``tests/reliability/faultkit/walgrowth.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/walgrowth.py                      # the full figures, seed 0
    python bench/stress/walgrowth.py --quick --seed 7     # the short tier the tests run
    python bench/stress/walgrowth.py --backend json --out /tmp/walgrowth.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("walgrowth"))
