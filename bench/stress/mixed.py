#!/usr/bin/env python3
"""Scenario 5: 8 processes x 500 mixed operations on 50 sessions, against a model.

The scenario is ``tests/reliability/faultkit/mixed.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/mixed.py                      # the full figures, seed 0
    python bench/stress/mixed.py --quick --seed 7     # the short tier the tests run
    python bench/stress/mixed.py --backend json --out /tmp/mixed.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("mixed"))
