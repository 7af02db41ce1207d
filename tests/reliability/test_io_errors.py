"""Scenario 4: SQLite I/O errors injected through the VFS (``faultkit.ioerrors``).

Transient (one failing call) and permanent (failing until the fault is gone) errors, on
reads and on writes, at the first, last and some middle I/O call of each operation (every
call in the slow tier): a right answer or a typed error, never a wrong answer; the same
store works once the fault is gone; writes leave the old or the new state; the database
passes ``integrity_check`` and ``store.check()`` is clean. The message of the error must
carry the I/O failure: a separate test, over the same run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from faultkit import ioerrors
from faultkit.harness import Figures

pytestmark = pytest.mark.crash

TIERS = [
    pytest.param(ioerrors.SHORT_RUNS, id="short"),
    pytest.param(ioerrors.FULL_RUNS, id="full", marks=pytest.mark.slow),
]

_cache: dict[tuple[str, int], Figures] = {}


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Figures]:
    """One run of the scenario per operation and tier, shared by the tests of this module."""

    def get(op: str, runs: int) -> Figures:
        if (op, runs) not in _cache:
            base = tmp_path_factory.mktemp("ioerrors")
            _cache[op, runs] = ioerrors.run(op, seed=0, runs=runs, base=base)
        return _cache[op, runs]

    return get


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("op", ioerrors.VARIANTS)
def test_io_errors_give_typed_errors_and_no_corruption(
    op: str, runs: int, figures: Callable[[str, int], Figures]
) -> None:
    fig = figures(op, runs)
    assert not fig.failures_except(ioerrors.MASKED), fig.summary()
    assert fig.runs > 0
    assert fig.counts.get("typed error", 0) > 0  # the faults were reached


def _op(op: str) -> object:
    return pytest.param(op, id=op)


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("op", [_op(op) for op in ioerrors.VARIANTS])
def test_io_error_messages_carry_the_io_failure(
    op: str, runs: int, figures: Callable[[str, int], Figures]
) -> None:
    fig = figures(op, runs)
    assert not fig.failures, fig.summary()
