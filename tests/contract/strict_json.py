"""Strict JSON comparison for the contract tests: types, key order and -0.0 matter."""

from __future__ import annotations

import math
from typing import Any


def json_same(a: Any, b: Any) -> bool:
    """Strict JSON equality: types (1, 1.0, True differ), key order and the sign of 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(json_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def assert_same(actual: Any, expected: Any) -> None:
    assert json_same(actual, expected), f"\nactual:   {actual!r}\nexpected: {expected!r}"
