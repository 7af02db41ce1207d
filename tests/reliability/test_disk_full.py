"""Scenario 3: a full disk for every writer (``faultkit.diskfull``).

A child runs one writer (put and update on both backends, a transcript append on both, a
migration, an export) under an ``RLIMIT_FSIZE`` that makes one of its writes the first to
fail, at its start or half-way through, with SIGXFSZ ignored. The files must be intact
(the old state, no temp file, no partial record), the next call after the limit is lifted
must work, and the error must be ``StorageFullError`` (for a migration, the cause of its
``MigrationError``). The two promises are separate tests over one run of the scenario.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from faultkit import diskfull
from faultkit.harness import Figures

pytestmark = pytest.mark.crash

TIERS = [
    pytest.param(diskfull.SHORT_RUNS, id="short"),
    pytest.param(diskfull.FULL_RUNS, id="full", marks=pytest.mark.slow),
]

_cache: dict[tuple[str, int], Figures] = {}


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Figures]:
    """One run of the scenario per variant and tier, shared by the tests of this module."""

    def get(variant: str, runs: int) -> Figures:
        if (variant, runs) not in _cache:
            base = tmp_path_factory.mktemp("diskfull")
            _cache[variant, runs] = diskfull.run(variant, seed=0, runs=runs, base=base)
        return _cache[variant, runs]

    return get


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("variant", diskfull.VARIANTS)
def test_a_full_disk_leaves_files_intact_and_the_next_call_works(
    variant: str, runs: int, figures: Callable[[str, int], Figures]
) -> None:
    fig = figures(variant, runs)
    assert not fig.failures_except(diskfull.NOT_FULL), fig.summary()
    assert fig.runs > 0
    assert fig.acked >= fig.runs  # every point ended with an acknowledged call


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("variant", diskfull.VARIANTS)
def test_a_full_disk_raises_storage_full_error(
    variant: str, runs: int, figures: Callable[[str, int], Figures]
) -> None:
    fig = figures(variant, runs)
    assert not fig.failures, fig.summary()
