"""Scenario 5: 8 processes x 500 mixed operations on 50 sessions (``faultkit.mixed``).

create, update (callback counters and patches), append, delete, get, list and maintain
from 8 workers at once, on each backend. The final state equals the model that replays
every worker's acknowledged operations; no call fails ("database is locked" least of
all); every read agrees with the reading worker's own model; ``store.check()`` is clean.
The latency percentiles are in the figures (``bench/stress/mixed.py`` prints them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import mixed

pytestmark = pytest.mark.stress

TIERS = ["short", pytest.param("full", marks=pytest.mark.slow)]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("variant", mixed.VARIANTS)
def test_mixed_operations_from_8_processes_equal_the_model(
    variant: str, tier: str, tmp_path: Path
) -> None:
    runs = mixed.SHORT_RUNS[variant] if tier == "short" else mixed.FULL_RUNS
    fig = mixed.run(variant, seed=0, runs=runs, base=tmp_path)
    assert fig.ok, fig.summary()
    assert fig.acked == mixed.WORKERS * runs
    assert '"database is locked" surfaced' not in fig.counts
    assert {"create", "update", "append", "delete", "list", "maintain"} <= set(fig.latency_ms)
