"""The postgres benchmark: its floor reads what the store reads, its run and its report.

Benchmarks are not tests: nothing here asserts a time. The checks are on what the floor
reads and writes, and on the structure of what a postgres-only run reports and writes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import sessionstore
from pgtest import pg_connect
from sessionstore import bench
from sessionstore.bench.generate import generate_state_dir
from sessionstore.bench.scenarios_pg import run_pg_writers
from sessionstore.entry import json_equal

TINY = bench.Budget(seconds=0.01, min_iterations=3, max_iterations=5, warmup=1, op_limit_s=60)


@pytest.fixture
def pg_dsn(pg_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server; the schema comes from each store's settings file, as in the benchmark."""
    monkeypatch.delenv("SESSIONSTORE_PG_SCHEMA")
    monkeypatch.delenv("SESSIONSTORE_PG_DSN")
    return pg_env


def _store(state: Path, dsn: str, schema: str) -> sessionstore.SessionStore:
    state.mkdir(parents=True, exist_ok=True)
    (state / "sessionstore.json").write_text(json.dumps({"postgres": {"schema": schema}}))
    return sessionstore.open_store("main", state, "postgres", dsn=dsn)


def _drop(dsn: str, schema: str) -> None:
    conn = pg_connect(dsn)
    try:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        conn.close()


def test_bare_psycopg_reads_and_writes_what_the_store_does(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    schema = pg_schema + "_floor"
    entries = (
        generate_state_dir(
            tmp_path / "gen", sessions=6, bloated_ratio=1.0, seed=3, transcripts=False
        )
        .agents["main"]
        .entries
    )
    keys = sorted(entries)
    store = _store(tmp_path / "state", pg_dsn, schema)
    bare = bench.BarePsycopg(pg_dsn, schema)
    try:
        store.mutate(lambda current: current.update(entries))
        for key in keys:
            entry = store.get(key)
            assert entry is not None and "skillsSnapshot" in entry
            assert json_equal(bare.get(key), entry)
        assert bare.count() == store.count() == 6
        newest = [r["sessionId"] for r in store.list(limit=4)]
        assert [r["sessionId"] for r in bare.list(4)] == newest and len(newest) == 4

        oldest = store.list().rows[-1]["key"]  # a listed session, the last in the list
        returned = bare.update(oldest, {"inputTokens": 42, "totalTokens": 43})
        changed = store.get(oldest)
        assert changed is not None and json_equal(returned, changed)
        assert changed["inputTokens"] == 42 and changed["totalTokens"] == 43
        assert changed["updatedAt"] > entries[oldest].get("updatedAt", 0)
        # the list columns moved with it: the updated session is now the newest
        assert store.list(limit=1).rows[0]["key"] == oldest
        assert bare.list(1)[0]["sessionId"] == changed["sessionId"]
        assert bare.list(1)[0]["updatedAt"] == changed["updatedAt"]
        with pytest.raises(KeyError):
            bare.update("agent:main:nope", {"inputTokens": 1})
    finally:
        bare.close()
        store.close()
        _drop(pg_dsn, schema)


def test_a_postgres_store_serves_repeated_blobs_from_its_cache(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """More sessions than the old 256-item cache held, each with its own prompt report.

    After one round of gets every blob is cached: with the blob rows deleted on the server,
    a second round still returns every entry whole (the old cache, cleared whenever it
    reached 256 items, went back to the server and found them gone).
    """
    schema = pg_schema + "_blobs"
    report = {"systemPrompt": {"chars": 9000}, "tools": [{"name": f"t{i}"} for i in range(40)]}
    entries = {
        f"agent:main:s{i:04d}": {
            "sessionId": f"s{i:04d}",
            "updatedAt": 1_000 + i,
            "systemPromptReport": {**report, "n": i},
        }
        for i in range(300)
    }
    store = _store(tmp_path / "state", pg_dsn, schema)
    try:
        store.mutate(lambda current: current.update(entries))
        order = list(entries)
        random.Random(5).shuffle(order)
        for key in order:
            assert store.get(key) is not None
        conn = pg_connect(pg_dsn)
        try:
            assert conn.execute(f"DELETE FROM {schema}.blobs").rowcount == 300
        finally:
            conn.close()
        for key in order:
            got = store.get(key)
            assert (
                got is not None
                and got["systemPromptReport"]["n"] == entries[key]["systemPromptReport"]["n"]
            )
    finally:
        store.close()
        _drop(pg_dsn, schema)


def test_postgres_only_run_writes_its_own_report(pg_dsn: str, tmp_path: Path) -> None:
    settings = bench.BenchSettings(
        sizes=[bench.Size(20, "bloated")],
        budget=TINY,
        postgres_dsn=pg_dsn,
        postgres_only=True,
        pg_writer_sessions=16,
        sample_keys=8,
    )
    report = bench.run_benchmark(settings)
    size = report.size("20b")
    assert size is not None
    assert {m.backend for m in size.measurements} == {"postgres", "bare-psycopg"}
    for op in ("get", "update", "list50", "count"):
        for backend in ("postgres", "bare-psycopg"):
            m = size.get(backend, op)
            assert m is not None and m.ok, (backend, op, m)
    assert report.peers == [] and report.imports == []
    (writers,) = report.scenarios
    assert writers.name == "pg_writers8" and writers.ok, writers.note
    assert writers.figures["conflicts"] == writers.figures["bare_conflicts"] == 0
    for name in ("one_per_s", "many_per_s", "bare_one_per_s", "bare_many_per_s"):
        assert writers.figures[name] > 0, name
    # only the postgres targets; their sizes were not run, the scenario was
    assert [t.target for t in report.targets] == [t.target for t in bench.postgres_targets(report)]
    statuses = {t.target.split(":")[0]: t.status for t in report.targets}
    assert statuses["1,000 bloated"] == "not measured"
    assert statuses["8 processes updating distinct sessions on postgres"] in ("met", "missed")

    written = bench.write_report(report, tmp_path / "docs")
    assert {p.name for p in written} == {"benchmarks-postgres.md", "benchmarks-postgres.json"}
    md = (tmp_path / "docs" / "benchmarks-postgres.md").read_text(encoding="utf-8")
    assert "### 20 bloated sessions" in md and "pg_writers8 (ok)" in md
    assert "| get (full entry) |" in md and "benchmarks.md" in md
    data = json.loads((tmp_path / "docs" / "benchmarks-postgres.json").read_text())
    again = bench.BenchReport.from_dict(data)
    assert bench.render_postgres_markdown(again) == bench.render_postgres_markdown(report)


def test_pg_writers_drops_its_schema(pg_dsn: str, tmp_path: Path) -> None:
    scenario = run_pg_writers(tmp_path / "w", pg_dsn, sessions=4, processes=2, seconds=0.1)
    assert scenario.ok, scenario.note
    assert scenario.figures["processes"] == 2
    conn = pg_connect(pg_dsn)
    try:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sessionstore_bench_w%%'"
        ).fetchone()
    finally:
        conn.close()
    assert left == (0,)
