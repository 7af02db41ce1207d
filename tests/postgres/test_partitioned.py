"""The contract suite against tables created ``PARTITION BY HASH (agent_id)``.

Proves the layout a sharded deployment (Citus, by ``agent_id``) relies on: every key starts
with ``agent_id`` and every statement filters by it, so the same code runs unchanged on
hash-partitioned tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from hermetic import clean_env

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(900)  # the contract suite once more, in a child pytest
def test_the_contract_suite_passes_on_hash_partitioned_tables(pg_env: str) -> None:
    env = clean_env(
        HOME=os.environ["HOME"],
        SESSIONSTORE_TEST_PG_DSN=pg_env,
        SESSIONSTORE_TEST_PG_PARTITIONS="4",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",  # one process: this test already runs on a worker of its own
            "-x",
            str(ROOT / "tests" / "contract" / "test_contract.py"),
            "-k",
            "postgres",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout


def test_partitioned_tables_are_partitioned_by_agent(
    pg_env: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    import sessionstore

    schema = pg_schema + "_parts"
    monkeypatch.setenv("SESSIONSTORE_PG_SCHEMA", schema)
    monkeypatch.setenv("SESSIONSTORE_PG_PARTITIONS", "4")
    try:
        for agent in ("main", "ops", "a3", "a4", "a5"):
            with sessionstore.open_store(
                agent=agent, state_dir=state_dir, store_type="postgres"
            ) as s:
                s.put(f"agent:{agent}:x", {"sessionId": "x"})
                assert s.count() == 1
        with psycopg.connect(pg_env) as conn:
            kinds = dict(
                conn.execute(
                    "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relkind = 'p'",
                    (schema,),
                ).fetchall()
            )
            rows = conn.execute(
                f"SELECT count(DISTINCT tableoid) FROM {schema}.sessions"
            ).fetchone()
        assert kinds == {
            t: "HASH (agent_id)"
            for t in ("sessions", "blobs", "meta", "transcripts", "transcript_heads")
        }
        assert rows is not None and rows[0] > 1  # the agents landed in several partitions
    finally:
        with psycopg.connect(pg_env, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
