"""The PostgreSQL test server: its DSN, and emptying a test schema between tests."""

from __future__ import annotations

import os
from typing import Any

PG_DSN_ENV = "SESSIONSTORE_TEST_PG_DSN"
PG_DSN = os.environ.get(PG_DSN_ENV, "").strip() or None
PG_SKIP = (
    f"postgres backend not tested: set {PG_DSN_ENV}=postgresql://postgres@127.0.0.1:5432/test"
    " (a server the tests may create and drop schemas on; .ci/run sets it)"
)
PG_TABLES = ("sessions", "blobs", "meta", "transcripts", "transcript_heads")


def pg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def pg_empty(schema: str) -> None:
    """Empty the tables of ``schema`` (each test starts from an empty store)."""
    assert PG_DSN
    conn = pg_connect(PG_DSN)
    try:
        row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.sessions",)).fetchone()
        if row and row[0]:
            tables = ", ".join(f"{schema}.{t}" for t in PG_TABLES)
            conn.execute(f"TRUNCATE {tables}")
    finally:
        conn.close()
