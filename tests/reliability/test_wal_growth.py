"""Scenario 7: a long reader holds a snapshot while writes commit (``faultkit.walgrowth``).

4,000 writes in the short tier (20,000 in the slow one) grow the WAL past the doctor's
threshold (``doctor.WAL_WARN_BYTES``, not lowered): ``store.check()`` reports a
``wal-size`` finding; ``vacuum()`` with the reader still there does not claim a
checkpoint; once the reader is gone ``vacuum()`` truncates the WAL and the store checks
clean with every acknowledged write in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import walgrowth

pytestmark = pytest.mark.stress

TIERS = [
    pytest.param(walgrowth.SHORT_RUNS, id="short"),
    pytest.param(walgrowth.FULL_RUNS, id="full", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("runs", TIERS)
def test_doctor_reports_wal_growth_and_vacuum_recovers_it(runs: int, tmp_path: Path) -> None:
    fig = walgrowth.run("sqlite", seed=0, runs=runs, base=tmp_path)
    assert fig.ok, fig.summary()
    assert fig.counts["wal-size reported"] == 1
    assert fig.counts["WAL bytes after vacuum"] == 0
    assert fig.acked == runs
