"""Scenario 9: the readers fuzzed with Hypothesis (``faultkit.fuzz``).

Arbitrary bytes (raw, mutated valid files, structured JSON) as ``sessions.json``,
``openclaw.json``, a transcript and ``sessions.sqlite``; every read-only call runs on each
input in a child with a deadline. Two promises, two tests over one run: only
``SessionStoreError`` subclasses (no other exception, no hang, no crash), and never a write
to the input (its bytes and mtime are compared). ``derandomize`` makes the examples the
same on every run, and every run starts with a corpus of known dangerous inputs (the
examples Hypothesis draws also depend on which modules are loaded), so the expected
failures below fail every time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from faultkit import fuzz
from faultkit.harness import Figures

pytestmark = pytest.mark.stress

TIERS = [
    pytest.param(fuzz.SHORT_RUNS, id="short"),
    pytest.param(fuzz.FULL_RUNS, id="full", marks=pytest.mark.slow),
]

_cache: dict[tuple[str, int], Figures] = {}


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Figures]:
    """One run of the scenario per input kind and tier, shared by the tests of this module."""

    def get(kind: str, runs: int) -> Figures:
        if (kind, runs) not in _cache:
            base = tmp_path_factory.mktemp("fuzz")
            _cache[kind, runs] = fuzz.run(kind, seed=0, runs=runs, base=base, derandomize=True)
        return _cache[kind, runs]

    return get


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("kind", fuzz.VARIANTS)
def test_readers_raise_only_typed_errors_and_never_hang(
    kind: str, runs: int, figures: Callable[[str, int], Figures]
) -> None:
    fig = figures(kind, runs)
    assert fig.runs >= runs  # the examples drawn, and the corpus every run starts with
    assert not fig.failures_except(fuzz.WRITTEN), fig.summary()


@pytest.mark.parametrize("runs", TIERS)
@pytest.mark.parametrize("kind", fuzz.VARIANTS)
def test_readers_never_write_to_their_input(
    kind: str, runs: int, figures: Callable[[str, int], Figures]
) -> None:
    fig = figures(kind, runs)
    assert fig.runs >= runs  # the examples drawn, and the corpus every run starts with
    assert not [f for f in fig.failures if f.startswith(f"[{fuzz.WRITTEN}]")], fig.summary()
