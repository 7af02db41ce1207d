"""What an open of a sqlite store reads: the settings, schema version and migration record
in one batch, the record handed once to ``open_store``'s checks."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessionstore
from sessionstore.errors import SessionStoreError
from sessionstore.index.sqlite import SqliteIndex
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

KEY = "agent:main:main"


def _migrated(state_dir: Path) -> Path:
    paths = resolve_store_paths(state_dir, "main")
    paths.sessions_dir.mkdir(parents=True)
    paths.json_path.write_text('{"agent:main:main": {"sessionId": "s1", "updatedAt": 1}}')
    assert migrate_agent(paths).status == "migrated"
    return paths.sqlite_path


def test_open_record_is_handed_out_once(state_dir: Path) -> None:
    db = _migrated(state_dir)
    index = SqliteIndex(db, agent_id="main")
    try:
        found, record = index.take_open_record()
        assert found and record == index.migration_record()
        assert record is not None and record["sourceBytes"] > 0
        assert index.take_open_record() == (False, None)
    finally:
        index.close()


def test_open_store_uses_the_record_and_warns_of_a_changed_source(state_dir: Path) -> None:
    _migrated(state_dir)
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        assert s.split_warning is None
        assert s.index.take_open_record() == (False, None)  # type: ignore[attr-defined]
    json_path = resolve_store_paths(state_dir, "main").json_path
    json_path.write_text('{"agent:main:main": {"sessionId": "s2", "updatedAt": 2}}')
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        assert s.split_warning is not None and "changed after" in s.split_warning
        assert s.get(KEY) == {"sessionId": "s1", "updatedAt": 1}


def test_a_file_that_is_gone_is_named(state_dir: Path) -> None:
    db = _migrated(state_dir)
    index = SqliteIndex(db, agent_id="main")
    index.close()
    db.unlink()
    fresh = SqliteIndex(db, agent_id="main")
    with pytest.raises(SessionStoreError, match="does not exist"):
        fresh._open()
