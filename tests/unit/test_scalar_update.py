"""The sqlite update path that skips deriving the row agrees with the full one.

An update that changes no field a derived column reads (``_COLUMN_FIELDS``) re-encodes
``entry_json`` and recomputes only the changed fields' own columns (``_scalar_update``).
After every update, whichever path it took, each column of the row must equal what
``_encode`` derives from the stored entry.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import SessionStore
from sessionstore.index import sqlite as sq

SKILLS = {"prompt": "You can use these skills.", "skills": [{"name": f"s{i}"} for i in range(30)]}
REPORT = {"source": "run", "systemPrompt": {"chars": 5000}, "tools": [{"name": "exec"}]}
KEYS = (
    "agent:main:telegram:direct:1001",
    "agent:main:discord:channel:c42",
    "agent:main:main",
    "agent:ops:slack:group:g7",
)

# Values each field may take in a random patch; None deletes the field.
POOL: dict[str, list[Any]] = {
    # the fields whose own columns the fast path recomputes
    "updatedAt": [1_700_000_000_000, 1.5, None],
    "totalTokens": [0, 12, 12.0, 3.5, "7", True, None],
    "inputTokens": [1, 2_000, None],
    "outputTokens": [300, None, 4.25],
    "messageCount": [1, 9, 9.0, False, "3", None],
    # fields no column reads
    "contextTokens": [100, None],
    "thinkingLevel": ["low", "high", None],
    "origin": [{"label": "x", "provider": "telegram"}, None],
    "deliveryContext": [{"channel": "discord", "to": "c42"}, None],
    # fields columns are derived from: the full path
    "label": ["Ops room", "Ops Room 2", None],
    "displayName": ["Alice", None],
    "subject": ["Standup", None],
    "channel": ["telegram", "Discord", None],
    "lastChannel": ["slack", None],
    "lastTo": ["+100", None],
    "lastThreadId": [17, "17", None],
    "chatType": ["group", "direct", None],
    "status": ["running", "done", None],
    "model": ["gpt-5", "claude", None],
    "modelProvider": ["openai", None],
    "spawnedBy": ["agent:main:main", None],
    "parentSessionKey": ["agent:main:main", None],
    "skillsSnapshot": [SKILLS, {"prompt": "other"}, None],
    "systemPromptReport": [REPORT, None],
}
SCALAR = ("updatedAt", "totalTokens", "inputTokens", "outputTokens", "messageCount")
FREE = ("contextTokens", "thinkingLevel", "origin", "deliveryContext")
COLUMN = tuple(f for f in POOL if f not in SCALAR + FREE)


@pytest.fixture
def sqlite_store(state_dir: Path) -> Iterator[SessionStore]:
    store = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    for i, key in enumerate(KEYS):
        store.put(
            key,
            {
                "sessionId": f"s-{i}",
                "updatedAt": 1_600_000_000_000 + i,
                "label": f"label {i}",
                "lastChannel": "telegram",
                "totalTokens": 10,
                "contextTokens": 5,
                "skillsSnapshot": SKILLS,
                "systemPromptReport": REPORT,
            },
        )
    yield store
    store.close()


def _check_row(store: SessionStore, key: str) -> None:
    """Every updatable column equals what ``_encode`` derives from the stored entry."""
    index = store.index
    assert isinstance(index, sq.SqliteIndex)
    entry = index.get(key, blobs=False)
    assert entry is not None
    expected = sq._encode(key, entry, now=0).params
    row = (
        index.connection()
        .execute(f"SELECT {sq._ROW_COLUMNS} FROM sessions WHERE session_key = ?", (key,))
        .fetchall()[0]
    )
    for i in sq._UPDATABLE:
        assert row[i] == expected[i], (sq._ROW_NAMES[i], row[i], expected[i])
        assert type(row[i]) is type(expected[i]), (sq._ROW_NAMES[i], row[i], expected[i])


def _count_full(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    encode = sq._encode

    def counting(key: str, entry: dict[str, Any], *, now: int) -> Any:
        calls.append(key)
        return encode(key, entry, now=now)

    monkeypatch.setattr(sq, "_encode", counting)
    return calls


def test_token_update_skips_deriving_the_row(
    sqlite_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = _count_full(monkeypatch)
    key = KEYS[0]
    out = sqlite_store.update(key, {"totalTokens": 2_300, "inputTokens": 2_000})
    assert out is not None and out["totalTokens"] == 2_300
    assert out["skillsSnapshot"] == SKILLS  # the returned entry is whole
    assert full == []  # the scalar path wrote it
    monkeypatch.undo()
    _check_row(sqlite_store, key)
    assert sqlite_store.get(key) == out
    assert [r["totalTokens"] for r in sqlite_store.list().rows if r["key"] == key] == [2_300]


def test_column_field_takes_the_full_path(
    sqlite_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = _count_full(monkeypatch)
    sqlite_store.update(KEYS[1], {"label": "renamed", "totalTokens": 1})
    assert full == [KEYS[1]]
    monkeypatch.undo()
    _check_row(sqlite_store, KEYS[1])
    assert [r["key"] for r in sqlite_store.list(label="renamed").rows] == [KEYS[1]]


def test_unchanged_values_write_nothing(sqlite_store: SessionStore) -> None:
    index = sqlite_store.index
    assert isinstance(index, sq.SqliteIndex)
    sqlite_store.update(KEYS[2], {"contextTokens": 77}, preserve_activity=True)
    before = index.connection().execute("PRAGMA data_version").fetchall()
    changes = index.connection().total_changes()
    sqlite_store.update(KEYS[2], {"contextTokens": 77}, preserve_activity=True)
    assert index.connection().total_changes() == changes
    assert index.connection().execute("PRAGMA data_version").fetchall() == before


def test_callback_changing_the_entry_in_place_is_seen(sqlite_store: SessionStore) -> None:
    # without large fields, a callback's entry is eligible for the scalar path
    sqlite_store.update(KEYS[3], {"skillsSnapshot": None, "systemPromptReport": None})

    def rename(entry: dict[str, Any] | None) -> dict[str, Any]:
        assert entry is not None
        entry["label"] = "changed in place"  # the callback's own object, changed
        entry["displayName"] = "Bob"
        return {"totalTokens": 5}

    sqlite_store.update(KEYS[3], rename)
    _check_row(sqlite_store, KEYS[3])
    rows = sqlite_store.list(label="changed in place", include_unknown=True).rows
    assert [r["key"] for r in rows] == [KEYS[3]]
    assert sqlite_store.list(search="bob").rows[0]["key"] == KEYS[3]


@pytest.mark.parametrize("seed", range(4))
def test_random_patches_keep_every_column_derived(sqlite_store: SessionStore, seed: int) -> None:
    rng = random.Random(seed)
    names = list(POOL)
    for _ in range(120):
        key = rng.choice(KEYS)
        kind = rng.random()
        if kind < 0.7:  # the fast path's domain, with at most one field a column reads
            fields = rng.sample(SCALAR + FREE, rng.randint(0, 3))
            if not fields or rng.random() < 0.5:
                fields.append(rng.choice(COLUMN))
        else:
            fields = rng.sample(names, rng.randint(1, 4))
        patch = {f: rng.choice(POOL[f]) for f in fields}
        preserve = rng.random() < 0.3
        if rng.random() < 0.3:
            sqlite_store.update(key, lambda _e, p=patch: p, preserve_activity=preserve)
        else:
            sqlite_store.update(key, patch, preserve_activity=preserve)
        _check_row(sqlite_store, key)
    reopened = sessionstore.open_store(state_dir=sqlite_store.state_dir, store_type="sqlite")
    try:
        assert reopened.load_all() == sqlite_store.load_all()
        # no transcripts were written: their absence is the only finding
        assert {f.kind for f in reopened.check()} <= {"missing-transcript"}
    finally:
        reopened.close()
