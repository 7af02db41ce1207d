"""Schema 7 of ``sessions.sqlite``: the smaller layout, and the in-place upgrade from 6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sessionstore
from sessionstore import SessionStore
from sessionstore.index.base import search_text
from sessionstore.index.rowcodec import unpack
from sessionstore.keys import fold_key

LEGACY = "Agent:Main:Legacy"

ENTRIES: dict[str, dict[str, Any]] = {
    "agent:main:telegram:direct:1": {
        "sessionId": "0f5c-aaaa",
        "updatedAt": 1_000,
        "displayName": "Alice Smith",
        "label": "Support",
        "subject": "Refund",
    },
    "agent:main:telegram:direct:2": {"sessionId": "UPPER-Case-ID", "updatedAt": 2_000},
    "agent:main:discord:channel:3": {"sessionId": "s-42", "updatedAt": 3_000, "label": ""},
    "agent:main:cron:job:run:r1": {"sessionId": "cron-1", "updatedAt": 4_000},
    "global": {"sessionId": "g", "updatedAt": 5_000},
    "agent:main:main": {"sessionId": "main-id", "updatedAt": 6_000, "displayName": "Main"},
}

# needles that each match some rows: in a field, in the session id, in the key, across the
# NUL that separates the haystack's parts, and the empty needle
SEARCHES = [
    "alice",
    "refund",
    "refund\x000f5c",
    "0f5c-aaaa\x00agent",
    "upper-case",
    "telegram",
    "direct:2",
    "legacy",
    "42",
    "main",
    "\x00",
    "",
]


def _seed(state: Path) -> SessionStore:
    store = sessionstore.open_store(state_dir=state, store_type="sqlite")
    # and a legacy mixed-case key, as OpenClaw may have left it (mutate keeps keys as given)
    store.mutate(lambda st: st.update(ENTRIES, **{LEGACY: {"sessionId": "l-1", "updatedAt": 500}}))
    return store


def _searches(store: SessionStore) -> dict[str, list[str]]:
    return {
        needle: [r["key"] for r in store.list(search=needle, include_global=True, limit=None).rows]
        for needle in SEARCHES
    }


def _expected_search(store: SessionStore) -> dict[str, list[str]]:
    """What ``search`` matches by the definition every backend shares (base.search_text)."""
    entries = store.load_all()
    rows = store.list(include_global=True, limit=None).rows
    return {
        needle.strip().lower(): [
            r["key"]
            for r in rows
            if needle.strip().lower() in search_text(r["key"], entries[r["key"]])
        ]
        for needle in SEARCHES
    }


def test_search_matches_the_shared_haystack_definition(tmp_path: Path) -> None:
    with _seed(tmp_path / "state") as store:
        expected = _expected_search(store)
        found = _searches(store)
        assert {n.strip().lower(): keys for n, keys in found.items()} == expected
        assert expected["refund\x000f5c"] == ["agent:main:telegram:direct:1"]
        assert expected["legacy"] == [LEGACY]
        assert expected["upper-case"] == ["agent:main:telegram:direct:2"]


def test_rows_store_only_what_they_cannot_rebuild(tmp_path: Path) -> None:
    with _seed(tmp_path / "state") as store:
        conn = store.index.connection()  # type: ignore[attr-defined]
        rows = {
            key: (fold, typ, text)
            for key, fold, typ, text in conn.execute(
                "SELECT session_key, key_fold, typeof(search_text), search_text FROM sessions"
            )
        }
        # the folded key only where it differs from the key
        assert rows[LEGACY][0] == "agent:main:legacy"
        assert all(fold is None for key, (fold, _, _) in rows.items() if key != LEGACY)
        # the haystack without the id and the key where they are lowercase strings
        assert rows["agent:main:telegram:direct:1"][1:] == (
            "text",
            "alice smith\x00support\x00refund\x00",
        )
        assert rows["agent:main:main"][1:] == ("text", "main\x00")
        # whole, as bytes, where they are not
        for key in ("agent:main:telegram:direct:2", LEGACY):
            assert rows[key][1] == "blob"
        # a legacy variant is still found, and folded away on the next write
        assert store.get("agent:main:legacy") == {"sessionId": "l-1", "updatedAt": 500}
        store.update("agent:main:legacy", {"label": "folded"})
        keys = [r[0] for r in conn.execute("SELECT session_key FROM sessions")]
        assert LEGACY not in keys and "agent:main:legacy" in keys


def _downgrade_to_v6(store: SessionStore) -> None:
    """Rewrite a schema 7 file as schema 6 wrote it (columns, values and indexes)."""
    conn = store.index.connection()  # type: ignore[attr-defined]
    rows = conn.execute("SELECT rowid, session_key, entry_json FROM sessions").fetchall()
    import orjson

    conn.execute(
        "DROP INDEX idx_sessions_fold; DROP INDEX idx_sessions_hidden;"
        " DROP INDEX idx_sessions_agent; DROP INDEX idx_sessions_channel;"
        " ALTER TABLE sessions DROP COLUMN key_fold;"
        " ALTER TABLE sessions ADD COLUMN key_fold TEXT NOT NULL DEFAULT ''"
    )
    for rowid, key, stored in rows:
        entry = orjson.loads(unpack(stored))
        conn.execute(
            "UPDATE sessions SET key_fold = ?, search_text = ? WHERE rowid = ?",
            (fold_key(key), search_text(key, entry), rowid),
        )
    conn.execute(
        "CREATE INDEX idx_sessions_fold ON sessions(key_fold);"
        " CREATE INDEX idx_sessions_agent ON sessions(agent_id, vis, updated_at, session_key);"
        " CREATE INDEX idx_sessions_channel ON sessions(row_channel, vis, updated_at,"
        " session_key);"
        " CREATE INDEX idx_sessions_updated ON sessions(updated_at, session_key);"
        " UPDATE meta SET value = '6' WHERE key = 'schema_version'"
    )


def test_a_v6_database_is_upgraded_in_place(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with _seed(state) as store:
        before = store.load_all()
        listed = store.list(include_global=True, limit=None).rows
        searched = _searches(store)
        _downgrade_to_v6(store)
        conn = store.index.connection()  # type: ignore[attr-defined]
        assert (
            conn.execute("SELECT count(*) FROM sessions WHERE key_fold IS NULL").fetchone()[0] == 0
        )
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        assert store.info().backend["schemaVersion"] == 7
        conn = store.index.connection()  # type: ignore[attr-defined]
        indexes = dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        )
        assert "idx_sessions_updated" not in indexes
        assert "WHERE key_fold IS NOT NULL" in indexes["idx_sessions_fold"]
        assert "WHERE vis <> 0" in indexes["idx_sessions_hidden"]
        assert "session_key" not in indexes["idx_sessions_agent"]
        assert "session_key" not in indexes["idx_sessions_channel"]
        folds = dict(conn.execute("SELECT session_key, key_fold FROM sessions"))
        assert folds[LEGACY] == "agent:main:legacy"
        assert sum(f is not None for f in folds.values()) == 1
        # the same entries, rows and search results as before the round trip through v6
        assert store.load_all() == before
        assert store.list(include_global=True, limit=None).rows == listed
        assert _searches(store) == searched
        assert store.get("agent:main:legacy") == before[LEGACY]
        # the column is nullable now: a new row of a canonical key stores no folded copy
        store.put("agent:main:new", {"sessionId": "n", "updatedAt": 7_000})
        row = conn.execute(
            "SELECT key_fold FROM sessions WHERE session_key = 'agent:main:new'"
        ).fetchone()
        assert row == (None,)
        assert store.check() == []
