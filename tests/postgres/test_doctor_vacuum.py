"""Doctor checks and vacuum on a postgres store, against the real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sessionstore
from sessionstore import SessionStore

SNAPSHOT = {"skills": ["a", "b"], "prompt": "x" * 500}


@pytest.fixture
def pg(pg_env: str, state_dir: Path) -> Iterator[SessionStore]:
    s = sessionstore.open_store(state_dir=state_dir, store_type="postgres")
    try:
        yield s
    finally:
        s.close()


def test_doctor_finds_and_recounts_drifted_blob_references(pg: SessionStore, pg_env: str) -> None:
    for i in range(3):
        pg.put(f"agent:main:k{i}", {"sessionId": f"s{i}", "skillsSnapshot": SNAPSHOT})
    assert [f.kind for f in pg.check() if f.kind.startswith("blob")] == []
    schema = os.environ["SESSIONSTORE_PG_SCHEMA"]
    with psycopg.connect(pg_env, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.blobs SET refcount = 7 WHERE agent_id = 'main'")
    found = [f for f in pg.check() if f.kind == "blob-refcount"]
    assert len(found) == 1 and not found[0].fixed
    fixed = [f for f in pg.check(fix=True) if f.kind == "blob-refcount"]
    assert len(fixed) == 1 and fixed[0].fixed
    assert [f for f in pg.check() if f.kind.startswith("blob")] == []
    with psycopg.connect(pg_env) as conn:
        row = conn.execute(f"SELECT refcount FROM {schema}.blobs").fetchone()
    assert row == (3,)
    for i in range(3):
        pg.delete(f"agent:main:k{i}")
    with psycopg.connect(pg_env) as conn:
        assert conn.execute(f"SELECT count(*) FROM {schema}.blobs").fetchone() == (0,)


def test_doctor_reports_a_missing_blob(pg: SessionStore, pg_env: str) -> None:
    pg.put("agent:main:k", {"sessionId": "s", "skillsSnapshot": SNAPSHOT})
    schema = os.environ["SESSIONSTORE_PG_SCHEMA"]
    with psycopg.connect(pg_env, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {schema}.blobs")
    missing = [f for f in pg.check() if f.kind == "blob-missing"]
    assert len(missing) == 1 and missing[0].severity == "error"


def test_vacuum_runs_vacuum_analyze_on_the_tables(pg: SessionStore, pg_env: str) -> None:
    pg.put("agent:main:k", {"sessionId": "s"})
    schema = os.environ["SESSIONSTORE_PG_SCHEMA"]
    with psycopg.connect(pg_env) as conn:
        before = conn.execute(
            "SELECT coalesce(max(vacuum_count), 0) FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = 'sessions'",
            (schema,),
        ).fetchone()
    done = pg.vacuum()
    assert done["bytesAfter"] > 0
    with psycopg.connect(pg_env) as conn:
        after = conn.execute(
            "SELECT vacuum_count, analyze_count FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = 'sessions'",
            (schema,),
        ).fetchone()
    assert before is not None and after is not None
    assert after[0] > before[0] and after[1] >= 1
