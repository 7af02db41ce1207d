"""Scenario 6: open, fork, write from both (``faultkit.forks``).

The parent keeps one store open across all cycles; each cycle forks a child that writes
through the inherited store object and through one it opens, while the parent writes too.
The fork happens with no other thread in the store, with another thread inside a write,
or with another thread holding the store's internal locks: one test per backend and
situation, 50 cycles per backend in all in the slow tier.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import forks

pytestmark = pytest.mark.stress

TIERS = [
    pytest.param(forks.SHORT_RUNS // len(forks.MODES), id="short"),
    pytest.param(-(-forks.FULL_RUNS // len(forks.MODES)), id="full", marks=pytest.mark.slow),
]


def _cases() -> list[object]:
    return [
        pytest.param(variant, mode, id=f"{variant}-{mode}")
        for variant in forks.VARIANTS
        for mode in forks.MODES
    ]


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize(("variant", "mode"), _cases())
def test_open_fork_write_from_both(variant: str, mode: str, runs: int, tmp_path: Path) -> None:
    fig = forks.run(variant, seed=0, runs=runs, base=tmp_path, modes=(mode,))
    assert fig.ok, fig.summary()
    assert fig.runs == runs
    assert fig.acked > runs * 2 * (forks.WRITES + 2)  # both sides wrote in every cycle
