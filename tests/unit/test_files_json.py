"""JSON encoding helpers: nothing JSON cannot hold exactly is ever written."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionstore import InvalidEntryError
from sessionstore.files import dumps_compact, dumps_pretty

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=3), children, max_size=4),
    ),
    max_leaves=30,
)


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    return False


@pytest.mark.parametrize("dumps", [dumps_compact, dumps_pretty])
@given(value=values)
def test_non_finite_numbers_are_refused_anywhere(dumps: Any, value: Any) -> None:
    if _has_nonfinite(value):
        with pytest.raises(InvalidEntryError, match="not finite"):
            dumps(value)
    else:
        assert orjson.loads(dumps(value)) == orjson.loads(orjson.dumps(value))


@pytest.mark.parametrize("dumps", [dumps_compact, dumps_pretty])
def test_other_values_json_cannot_hold_exactly_are_refused(dumps: Any) -> None:
    for bad in ({1: "non-string key"}, {"n": 2**64}, [{"deep": [-(2**63) - 1]}]):
        with pytest.raises(InvalidEntryError):
            dumps(bad)
