"""The sqlite path of an append's index update (``modify_counters``) agrees with ``modify``.

An append changes ``messageCount``, ``transcriptBytes`` and ``updatedAt`` only: the row is
read as stored and only those fields' columns and ``entry_json`` are written. Whatever the
stored values, the row must come out byte for byte as ``modify`` leaves it; anything the
short path does not cover (case variants, another field changed) goes to ``modify``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import SessionStore
from sessionstore.entry import sort_time
from sessionstore.index import sqlite as sq

SKILLS = {"prompt": "You can use these skills.", "skills": [{"name": f"s{i}"} for i in range(30)]}
KEY = "agent:main:telegram:direct:1001"
LEGACY = "Agent:Main:Legacy"


def _open(state: Path) -> SessionStore:
    return sessionstore.open_store(state_dir=state, store_type="sqlite")


@pytest.fixture
def store(state_dir: Path) -> Iterator[SessionStore]:
    s = _open(state_dir)
    s.put(KEY, {"sessionId": "s-1", "updatedAt": 1_600_000_000_000, "skillsSnapshot": SKILLS})
    yield s
    s.close()


def _index(store: SessionStore) -> sq.SqliteIndex:
    index = store.index
    assert isinstance(index, sq.SqliteIndex)
    return index


def _row(store: SessionStore, key: str) -> tuple[Any, ...]:
    rows = (
        _index(store)
        .connection()
        .execute(f"SELECT {sq._ROW_COLUMNS} FROM sessions WHERE session_key = ?", (key,))
        .fetchall()
    )
    assert len(rows) == 1
    return tuple(rows[0])


def _count_modify(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    modify = sq.SqliteIndex.modify

    def counting(self: sq.SqliteIndex, key: str, fn: Any, **kwargs: Any) -> Any:
        calls.append(key)
        return modify(self, key, fn, **kwargs)

    monkeypatch.setattr(sq.SqliteIndex, "modify", counting)
    return calls


def test_an_append_sets_the_counters_without_modify(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_modify(monkeypatch)
    t = store.transcript(KEY)
    t.append({"role": "user", "content": "hello"})
    t.append({"role": "user", "content": "again"})
    assert calls == []
    entry = store.get(KEY)
    assert entry is not None
    assert entry["messageCount"] == 2
    assert entry["transcriptBytes"] == t.path.stat().st_size
    assert entry["updatedAt"] > 1_600_000_000_000
    assert entry["skillsSnapshot"] == SKILLS  # the blob left as it was
    assert [r["messageCount"] for r in store.list().rows if r["key"] == KEY] == [2]
    # every column as the full derivation gives it
    expected = sq._encode(KEY, _index(store).get(KEY, blobs=False) or {}, now=0).params
    row = _row(store, KEY)
    for i in sq._UPDATABLE:
        assert row[i] == expected[i], sq._ROW_NAMES[i]
        assert type(row[i]) is type(expected[i]), sq._ROW_NAMES[i]


# Stored values of the counters (and of updatedAt, which sorts) a row may hold.
STORED: list[dict[str, Any]] = [
    {},
    {"messageCount": 9, "transcriptBytes": 10, "updatedAt": 1_600_000_000_000},
    {"messageCount": 9.0, "updatedAt": 1.5},
    {"messageCount": "3", "updatedAt": "yesterday"},
    {"messageCount": False, "transcriptBytes": None, "updatedAt": None},
    {"messageCount": 4, "updatedAt": 99_999_999_999_999},  # in the future: kept
    {"messageCount": 4, "transcriptBytes": 120},  # an append that changes nothing
    {"lastChannel": "telegram", "label": "x", "messageCount": None, "origin": {"a": None}},
]


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("primary", [True, False])
def test_the_row_is_what_modify_writes(
    state_dir: Path, tmp_path: Path, stored: dict[str, Any], primary: bool
) -> None:
    first = _open(state_dir)
    first.put(KEY, {"sessionId": "s-1", "skillsSnapshot": SKILLS, **stored})
    first.close()
    twin = tmp_path / "twin"
    shutil.copytree(state_dir, twin)
    short, full = _open(state_dir), _open(twin)
    try:

        def fn(existing: dict[str, Any] | None) -> dict[str, Any]:
            assert existing is not None
            out = dict(existing)
            if primary:
                out["messageCount"], out["transcriptBytes"] = 4, 120
            out["updatedAt"] = max(sort_time(existing), 1_700_000_000_000)
            return out

        _index(short).modify_counters(KEY, fn)
        _index(full).modify(KEY, fn, needs_blobs=False, full_result=False)
        assert _row(short, KEY) == _row(full, KEY)
        assert short.get(KEY) == full.get(KEY)
    finally:
        short.close()
        full.close()


def test_another_field_changed_goes_to_modify(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_modify(monkeypatch)

    def fn(existing: dict[str, Any] | None) -> dict[str, Any]:
        assert existing is not None
        return {**existing, "messageCount": 1, "label": "renamed"}

    _index(store).modify_counters(KEY, fn)
    assert calls == [KEY]
    assert [r["key"] for r in store.list(label="renamed").rows] == [KEY]
    entry = store.get(KEY)
    assert entry is not None and entry["skillsSnapshot"] == SKILLS


def test_a_deleted_field_goes_to_modify(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_modify(monkeypatch)

    def fn(existing: dict[str, Any] | None) -> dict[str, Any]:
        assert existing is not None
        return {k: v for k, v in existing.items() if k != "skillsSnapshot"}

    _index(store).modify_counters(KEY, fn)
    assert calls == [KEY]
    entry = store.get(KEY)
    assert entry is not None and "skillsSnapshot" not in entry


def test_a_legacy_case_variant_is_folded_by_modify(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _open(state_dir)
    try:
        # a legacy mixed-case key, as OpenClaw may have left it (mutate keeps keys as given)
        s.mutate(lambda st: st.update({LEGACY: {"sessionId": "l-1", "updatedAt": 500}}))
        calls = _count_modify(monkeypatch)
        t = s.transcript("agent:main:legacy")
        t.append({"role": "user", "content": "hi"})
        assert calls == ["agent:main:legacy"]
        keys = [r[0] for r in _index(s).connection().execute("SELECT session_key FROM sessions")]
        assert keys == ["agent:main:legacy"]
        entry = s.get("agent:main:legacy")
        assert entry is not None and entry["messageCount"] == 1
    finally:
        s.close()
