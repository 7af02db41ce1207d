"""How sessions.sqlite stores an entry (index/rowcodec.py), and what the store does with it."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

import sessionstore
from sessionstore.errors import CorruptStoreError
from sessionstore.index.rowcodec import CODEC_DEFLATE_V1, pack, unpack

TYPICAL = {
    "sessionId": "0b7c5d2e-1111-4a4a-9b9b-0123456789ab",
    "updatedAt": 1_790_000_000_000,
    "chatType": "direct",
    "deliveryContext": {"channel": "telegram", "to": "42", "accountId": "default"},
    "lastChannel": "telegram",
    "model": "claude-opus-4-6",
    "totalTokens": 1.0,
    "note": "é ✓ \u2028",
}


def test_pack_round_trips_and_is_smaller_than_the_json() -> None:
    data = orjson.dumps(TYPICAL)
    stored = pack(data)
    assert stored[0] == CODEC_DEFLATE_V1
    assert unpack(stored) == data
    assert len(stored) < len(data) * 0.6


def test_plain_json_is_read_as_it_is() -> None:
    data = orjson.dumps(TYPICAL)
    assert unpack(data) == data
    assert unpack(data.decode()) == data.decode()


def test_damage_is_an_error_never_a_wrong_entry() -> None:
    stored = pack(orjson.dumps(TYPICAL))
    with pytest.raises(zlib.error):
        unpack(stored[: len(stored) // 2])
    with pytest.raises(ValueError, match="unknown entry codec 2"):
        unpack(bytes([2]) + stored[1:])


def test_rows_written_with_the_dictionary_stay_readable() -> None:
    # part of the file format: a changed dictionary would make every stored entry unreadable.
    # This value was written by schema 6's first release.
    assert (
        unpack(WRITTEN_BY_V6) == b'{"sessionId":"s","chatType":"direct","lastChannel":"telegram"}'
    )


def test_the_store_writes_deflated_rows_and_reads_both_forms(state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as store:
        store.put("agent:main:a", dict(TYPICAL))
        store.put("agent:main:b", dict(TYPICAL, sessionId="b"))
        before = {k: store.get(k) for k in ("agent:main:a", "agent:main:b")}
        assert before["agent:main:a"] is not None and before["agent:main:a"]["note"] == "é ✓ \u2028"
        conn = store.index.connection()  # type: ignore[attr-defined]
        stored = dict(conn.execute("SELECT session_key, entry_json FROM sessions").fetchall())
        assert all(bytes(v)[0] == CODEC_DEFLATE_V1 for v in stored.values())
        # a row as schema 5 wrote it (plain JSON) reads the same
        conn.execute(
            "UPDATE sessions SET entry_json = ? WHERE session_key = 'agent:main:b'",
            (unpack(stored["agent:main:b"]),),
        )
        assert {k: store.get(k) for k in before} == before


def test_a_row_that_does_not_inflate_is_a_corrupt_store(state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as store:
        store.put("agent:main:a", dict(TYPICAL))
        conn = store.index.connection()  # type: ignore[attr-defined]
        conn.execute("UPDATE sessions SET entry_json = x'01ffff'")
        with pytest.raises(CorruptStoreError):
            store.get("agent:main:a")


WRITTEN_BY_V6 = b"\x01C\xcdj\xc58b\x17G\xea\xac\x05\x00"
