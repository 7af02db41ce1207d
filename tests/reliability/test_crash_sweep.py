"""Scenario 2: a deterministic crash-point sweep (``faultkit.sweep``).

For a put, an update, a transcript append (on sqlite, sqlite with durability ``power``,
and json, where a put or an update is a ``sessions.json`` save) and a migration, every
write, sync, truncation and rename the operation makes is a crash point: the operation
fails there, stops there, or stops half-way through that write. The state is the old one
or the new one, never a mix; a recovery that itself crashes leaves it so; the next clean
recovery succeeds and ``store.check()`` is clean. The short tier samples the points with a
fixed seed; the slow tier visits every one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import sweep

pytestmark = pytest.mark.crash

TIERS = [
    pytest.param(sweep.SHORT_RUNS, id="short"),
    pytest.param(sweep.FULL_RUNS, id="full", marks=pytest.mark.slow),
]


def _variant(name: str) -> object:
    return pytest.param(name, id=name)


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("variant", [_variant(v) for v in sweep.VARIANTS])
def test_every_crash_point_leaves_old_or_new_and_recovers(
    variant: str, runs: int, tmp_path: Path
) -> None:
    fig = sweep.run(variant, seed=0, runs=runs, base=tmp_path)
    assert fig.ok, fig.summary()
    assert fig.runs > 0
    assert fig.counts.get("recovery crashed itself", 0) > 0
