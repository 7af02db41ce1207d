"""Checks of what callers pass: each wrong argument is an ``InvalidArgumentError``.

The message names the argument, what it must be and the value given (shortened, so that a
huge or self-containing value cannot make the message itself fail or flood a log).
"""

from __future__ import annotations

import math
import os
import reprlib
from typing import Final

from .errors import InvalidArgumentError

__all__ = [
    "MAX_SAFE_INTEGER",
    "as_number",
    "check_bool",
    "check_callable",
    "check_fields",
    "check_limit",
    "check_minutes",
    "check_optional_path",
    "check_optional_str",
    "check_timeout_ms",
    "json_type",
    "show",
]

# JavaScript's Number.MAX_SAFE_INTEGER: OpenClaw, a JS program, cannot tell larger counts,
# sizes or millisecond times apart, and SQLite's 64-bit integers hold every product we take.
MAX_SAFE_INTEGER: Final = 2**53 - 1
# SQLite's busy timeout is a C int of milliseconds.
MAX_TIMEOUT_MS: Final = 2**31 - 1

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlong = 40


def show(value: object) -> str:
    """A short ``repr`` of ``value`` for an error message."""
    try:
        return _repr.repr(value)
    except Exception:  # a caller's object whose __repr__ fails
        return f"<{type(value).__name__} object>"


def as_number(value: object) -> int | float | None:
    """``value`` when it is a finite JSON number (an int or float, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if isinstance(value, int) or math.isfinite(value) else None


def _type_name(value: object) -> str:
    return type(value).__name__


def json_type(value: object) -> str:
    """What ``value`` is in JSON's words (``null``, ``array``, ``object``, ...).

    Values JSON has no word for are named by their Python type.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__} (not a JSON value)"


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is a bool (a truthy string such as ``"false"`` is refused)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(
            f"{name} must be True or False, got {show(value)} ({_type_name(value)})"
        )
    return value


def check_optional_str(name: str, value: object) -> str | None:
    """``value`` when it is a string or None."""
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(
            f"{name} must be a string or None, got {show(value)} ({_type_name(value)})"
        )
    return value


def check_callable(name: str, value: object) -> None:
    """Refuse ``value`` unless it can be called."""
    if not callable(value):
        raise InvalidArgumentError(
            f"{name} must be a function, got {show(value)} ({_type_name(value)})"
        )


def check_fields(value: object) -> tuple[str, ...] | None:
    """``fields=``: None (the whole entry) or an iterable of field names (not one string)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InvalidArgumentError(
            f"fields must be None or an iterable of field names such as ('label',), got"
            f" {show(value)} ({_type_name(value)})"
        )
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"fields must hold field names (strings), got {show(name)} ({_type_name(name)})"
            )
    return names


def check_limit(value: object) -> int | None:
    """A ``list`` page size: None, or a number of rows from 1 (a fraction is rounded down)."""
    if value is None:
        return None
    if type(value) is int and 1 <= value <= MAX_SAFE_INTEGER:
        return value
    number = as_number(value)
    if number is not None:
        size = math.floor(number)
        if 1 <= size <= MAX_SAFE_INTEGER:
            return size
    raise InvalidArgumentError(
        f"limit must be a whole number of rows from 1 to {MAX_SAFE_INTEGER}, or None;"
        f" got {show(value)}"
    )


def check_minutes(name: str, value: object) -> int | float | None:
    """A positive number of minutes (up to what a millisecond clock can count), or None."""
    if value is None:
        return None
    number = as_number(value)
    if number is not None and 0 < number <= MAX_SAFE_INTEGER // 60_000:
        return number
    raise InvalidArgumentError(
        f"{name} must be a positive number of minutes (at most {MAX_SAFE_INTEGER // 60_000}),"
        f" or None; got {show(value)}"
    )


def check_timeout_ms(name: str, value: object) -> int:
    """A whole number of milliseconds from 0 to ``2**31 - 1``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIMEOUT_MS:
        return value
    raise InvalidArgumentError(
        f"{name} must be a whole number of milliseconds from 0 to {MAX_TIMEOUT_MS}, got"
        f" {show(value)}"
    )


def check_optional_path(name: str, value: object) -> str | None:
    """A non-blank path (``str`` or ``os.PathLike[str]``) as a string, or None."""
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"{name} must be a path (str or os.PathLike), got {show(value)} ({_type_name(value)})"
        )
    if not text.strip() or "\0" in text:
        raise InvalidArgumentError(
            f"{name} must be a non-empty path without NUL characters, got {show(value)}"
        )
    return text
