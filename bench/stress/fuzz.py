#!/usr/bin/env python3
"""Scenario 9: Hypothesis fuzzing of the readers (sessions.json, openclaw.json, transcripts, db).

The scenario is ``tests/reliability/faultkit/fuzz.py`` (its docstring says what is
checked); ``--help`` lists the options. Examples:

    python bench/stress/fuzz.py                      # the full figures, seed 0
    python bench/stress/fuzz.py --quick --seed 7     # the short tier the tests run
    python bench/stress/fuzz.py --backend json --out /tmp/fuzz.json
"""

from _cli import main

if __name__ == "__main__":
    raise SystemExit(main("fuzz"))
