"""The one clock and number helpers every module uses (``clock.py``, ``args.as_number``)."""

from __future__ import annotations

import math
import re
from datetime import datetime

import pytest

from sessionstore.args import as_number
from sessionstore.clock import format_utc, iso_ms, iso_now, now_ms
from sessionstore.transcripts.naming import archive_timestamp, parse_archive_name

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_774_960_496_789, "2026-03-31T12:34:56.789Z"),
        (10**20, "1970-01-01T00:00:00.000Z"),  # beyond datetime: the epoch, not an error
    ],
)
def test_iso_ms_writes_javascripts_iso_strings(ms: int, text: str) -> None:
    assert iso_ms(ms) == text


def test_now_is_one_clock() -> None:
    before = now_ms()
    stamp = iso_now()
    after = now_ms()
    assert ISO.fullmatch(stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    at = round(parsed.timestamp() * 1000)
    assert before - before % 1000 <= at <= after


def test_archive_timestamps_are_iso_times_without_colons() -> None:
    assert archive_timestamp(1_774_960_496_789) == "2026-03-31T12-34-56.789Z"
    info = parse_archive_name(f"abc.jsonl.deleted.{archive_timestamp(1_774_960_496_789)}")
    assert info == ("deleted", 1_774_960_496_789)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (1_774_960_496_789, "2026-03-31 12:34:56 UTC"),
        (None, "an unknown time"),
        ("1774960496789", "an unknown time"),
        (True, "an unknown time"),
        (math.nan, "an unknown time"),
        (1e300, "an unknown time"),
    ],
)
def test_format_utc(ms: object, text: str) -> None:
    assert format_utc(ms) == text


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (0, 0),
        (-3, -3),
        (2.5, 2.5),
        (2**70, 2**70),
        (True, None),
        (False, None),
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        ("1", None),
        (None, None),
    ],
)
def test_as_number_takes_finite_json_numbers_only(value: object, number: object) -> None:
    got = as_number(value)
    assert got == number and type(got) is type(number)
