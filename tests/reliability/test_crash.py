"""Scenario 1: kill -9 of an index writer at random points loses no acknowledged write.

The scenario is ``faultkit.kill9``: a writer acknowledges each ``put``/``update`` over a
pipe after it returns, and is killed either by the parent at a random moment or by itself
at a random I/O event (so kills land inside transactions, lock holds and renames by
construction). After every kill: integrity ok, every acknowledged value there, the next
write not blocked, nothing left behind, ``store.check()`` clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import kill9

pytestmark = pytest.mark.crash

TIERS = [
    pytest.param(kill9.SHORT_RUNS, id="short"),
    pytest.param(kill9.FULL_RUNS, id="full", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("variant", kill9.VARIANTS)
def test_kill9_of_an_index_writer_loses_no_acknowledged_write(
    variant: str, runs: int, tmp_path: Path
) -> None:
    fig = kill9.run(variant, seed=0, runs=runs, base=tmp_path)
    assert fig.ok, fig.summary()
    assert fig.runs == runs
    assert fig.counts["kills at an I/O event"] == runs // 2
    assert fig.acked > runs  # the kills landed while acknowledged writes were going on
