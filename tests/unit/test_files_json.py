"""JSON encoding helpers: nothing JSON cannot hold exactly is ever written."""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionstore import InvalidEntryError
from sessionstore.files import clone_json, dumps_compact, dumps_pretty

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


class _Float(float):
    """A float subclass: orjson refuses it, so the stdlib encoder writes the value."""


@pytest.mark.parametrize("dumps", [dumps_compact, dumps_pretty])
def test_values_that_are_not_json_are_named_with_their_path(dumps: Any) -> None:
    when = datetime.datetime(2026, 3, 31, 12, 0)
    cases: list[tuple[Any, dict[str, Any], str]] = [
        ({"a": [{"b": when}]}, {"what": "entry"}, "entry field 'a[0].b': datetime is not"),
        ({"k": {"a": when}}, {"what": "entry", "keyed": True}, "entry 'k' field 'a': datetime"),
        ({"a": when}, {"what": "entry", "prefix": ("k", "x"), "keyed": True}, "'k' field 'x.a'"),
        (when.date(), {}, "value: date is not a JSON value; store a string such as its isoformat"),
        ([when.time()], {"what": "transcript message"}, "transcript message field '[0]': time"),
        ({"n": [1, math.inf]}, {"what": "entry"}, "entry field 'n[1]': inf is not finite"),
        ({"n": {2: 1}}, {"what": "entry"}, "entry field 'n': object key 2 is not a string"),
        ({"n": 2**64}, {"what": "entry"}, "entry field 'n': integer 18446744073709551616 is"),
    ]
    for value, where, expected in cases:
        with pytest.raises(InvalidEntryError) as info:
            dumps(value, **where)
        assert expected in str(info.value)


@pytest.mark.parametrize("dumps", [dumps_compact, dumps_pretty])
def test_the_fallback_encoder_writes_what_orjson_writes(dumps: Any) -> None:
    class Color(enum.Enum):
        RED = "red"

    u = uuid.UUID("6f1d7a0e-3b1c-4c5e-9a57-3c2d9c1f4e20")
    native = {"u": u, "e": Color.RED, "f": 1.5}
    forced = {**native, "f": _Float(1.5)}  # takes the stdlib path
    assert dumps(forced) == dumps(native)
    assert orjson.loads(dumps(forced)) == {"u": str(u), "e": "red", "f": 1.5}


def test_clone_json_never_converts_a_value_that_is_not_json() -> None:
    when = datetime.datetime(2026, 3, 31)
    copy = clone_json({"a": [when]})
    assert copy == {"a": [when]} and type(copy["a"][0]) is datetime.datetime
