"""Scenario 8: a migration killed at random points, then re-run (``faultkit.migkill``).

On an OpenClaw-written ``sessions.json`` (500 entries and 8 kills in the short tier; 5,000
entries and 100 kills in the slow one), half the kills at a random moment and half at a
random I/O event of the migration: the database is all or nothing after each kill, the
re-run makes the index equal to the source, and the source's sha256 and mtime never change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import migkill

pytestmark = pytest.mark.crash

TIERS = [
    pytest.param(migkill.SHORT_RUNS, migkill.SHORT_SESSIONS, id="short"),
    pytest.param(migkill.FULL_RUNS, migkill.FULL_SESSIONS, id="full", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("runs", "sessions"), TIERS)
def test_killed_migrations_are_all_or_nothing_and_rerun_to_the_source(
    runs: int, sessions: int, tmp_path: Path
) -> None:
    fig = migkill.run("sqlite", seed=0, runs=runs, sessions=sessions, base=tmp_path)
    assert fig.ok, fig.summary()
    assert fig.runs == runs
    assert fig.acked == runs  # every re-run was acknowledged and checked entry by entry
    assert fig.counts.get("after the kill: old", 0) > 0  # kills landed before the commit
