"""Smoke tests of the benchmark engine, ``sessionstore bench`` and ``sessionstore demo``.

Benchmarks are not tests: nothing here asserts a time. The engine runs at a tiny N with a
tiny budget, and the checks are on the structure of what it reports and writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import sessionstore
from sessionstore import bench
from sessionstore.cli import demo as demo_module
from sessionstore.cli.app import app
from sessionstore.entry import json_equal
from sessionstore.generate import generate_state_dir
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

TINY = bench.Budget(seconds=0.01, min_iterations=3, max_iterations=5, warmup=1, op_limit_s=60)


@pytest.fixture(autouse=True)
def _fast_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "DEMO_BUDGET_S", 0.01)


def cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# --- the engine --------------------------------------------------------------------------------


def test_engine_smoke_run_and_report(tmp_path: Path) -> None:
    settings = bench.BenchSettings(
        sizes=[bench.Size(30, "bloated")],
        budget=TINY,
        memory_gets=20,
        memory_budget_s=10,
        peers=False,
        sample_keys=8,
        work_dir=tmp_path / "work",
    )
    report = bench.run_benchmark(settings)

    assert [s.size.label for s in report.sizes] == ["30b"]
    size = report.sizes[0]
    for backend in ("legacy", "json", "sqlite", "whole-store"):
        for op in bench.OPS:
            m = size.get(backend, op)
            assert m is not None, (backend, op)
            not_applicable = (backend in ("json", "legacy") and op == "migrate") or (
                backend in ("whole-store", "legacy") and op in ("append", "tail")
            )
            if not_applicable:
                assert not m.ok and m.note
                continue
            assert m.ok, (backend, op, m.note)
            assert m.median_ns is not None and m.p99_ns is not None and m.min_ns is not None
            assert 0 < m.min_ns <= m.median_ns <= m.p99_ns
            assert 3 <= m.iterations <= 5
    for op in bench.BARE_OPS:
        bare = size.get("bare-apsw", op)
        assert bare is not None and bare.ok, (op, bare)
    assert size.get("postgres", "get") is None
    assert any("postgres" in note for note in size.notes)
    assert size.json_bytes and size.sqlite_bytes and size.whole_store_bytes
    assert size.transcripts == 30
    assert [m.backend for m in size.memory] == ["json", "sqlite", "whole-store"]
    if Path("/proc/self/status").exists():
        for mem in size.memory:
            assert mem.total_kib is not None and mem.imports_kib is not None, mem.note
            assert mem.gets == 20 and mem.lists == 21
    assert report.peers == []
    assert len(report.targets) == 23
    assert {t.status for t in report.targets} == {"not measured"}  # no 1000b/100000t here
    assert not (tmp_path / "work" / "30b").exists()  # datasets are removed

    written = bench.write_report(report, tmp_path / "docs", charts=False)
    assert {p.name for p in written} == {"benchmarks.md", "benchmarks.json"}
    md = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for label in bench.OPS.values():
        assert label in md
    for backend in ("legacy", "json", "sqlite", "whole-store", "bare-apsw"):
        assert bench.BACKENDS[backend] in md
    assert "## Targets" in md and "## Reproduce" in md and "## 30 bloated sessions" in md

    data = json.loads((tmp_path / "docs" / "benchmarks.json").read_text(encoding="utf-8"))
    assert data["sizes"][0]["size"]["label"] == "30b"
    again = bench.BenchReport.from_dict(data)
    assert bench.render_markdown(again) == bench.render_markdown(report)


def test_references_read_what_the_store_reads(tmp_path: Path) -> None:
    state = generate_state_dir(tmp_path / "state", sessions=6, bloated_ratio=1.0, seed=3)
    paths = resolve_store_paths(tmp_path / "state", "main")
    migrate_agent(paths)
    keys = sorted(state.agents["main"].entries)
    bare = bench.BareApsw(paths.sqlite_path)
    whole = bench.WholeStoreSqlite(tmp_path / "whole.sqlite")
    try:
        assert whole.import_json(paths.json_path) == 6
        with sessionstore.open_store("main", tmp_path / "state", "sqlite") as store:
            for key in keys:
                entry = store.get(key)
                assert entry is not None and "skillsSnapshot" in entry
                assert json_equal(bare.get(key), entry)
                # the PR's row mapping turns a numeric lastThreadId into a string
                loaded, source = whole.get(key), state.agents["main"].entries[key]
                assert loaded is not None and loaded.keys() == source.keys()
                assert loaded["skillsSnapshot"] == source["skillsSnapshot"]
        bare.update(keys[0], 42)
        with sessionstore.open_store("main", tmp_path / "state", "sqlite") as store:
            changed = store.get(keys[0])
            assert changed is not None
            assert changed["totalTokens"] == changed["inputTokens"] == 42
            conn = store.index.connection()  # type: ignore[attr-defined]
            row = conn.execute(
                "SELECT total_tokens, updated_at FROM sessions WHERE session_key = ?", (keys[0],)
            ).fetchone()
            assert row == (42, changed["updatedAt"])
        assert whole.update(keys[0], {"totalTokens": 42}) is not None
        assert whole.count() == 6 and len(whole.list(limit=2)) == 2
    finally:
        bare.close()
        whole.close()


def test_adk_peer_at_tiny_n(tmp_path: Path) -> None:
    pytest.importorskip("google.adk.sessions")
    pytest.importorskip("sqlalchemy.ext.asyncio")
    settings = bench.BenchSettings(budget=TINY, peer_sessions=12, seed=5, work_dir=tmp_path)
    peers = {p.name.split()[0]: p for p in bench._run_peers(settings, tmp_path, lambda _: None)}
    assert peers["OpenAI"].status == "skipped" and "does not exist yet" in peers["OpenAI"].note
    adk = peers["Google"]
    assert adk.status == "ok", adk.note
    assert [(m.backend, m.op) for m in adk.measurements] == [
        ("google-adk", "list_all"),
        ("sqlite", "list_all"),
        ("sqlite", "list50"),
    ]
    assert all(m.ok for m in adk.measurements)
    assert adk.details["adkListedSessions"] == adk.sessions > 0


def test_parse_sizes() -> None:
    assert bench.parse_sizes("1000b, 100_000t,1000b") == [
        bench.Size(1000, "bloated"),
        bench.Size(100_000, "typical"),
    ]
    for bad in ("", "1000", "12x", "0b", "b"):
        with pytest.raises(ValueError):
            bench.parse_sizes(bad)


def test_measure_reports_failures_and_infeasible_ops_as_na() -> None:
    def boom(i: int) -> None:
        raise RuntimeError("disk on fire")

    failed = bench.measure("sqlite", "get", boom, TINY)
    assert not failed.ok and failed.note and "disk on fire" in failed.note

    slow = bench.Budget(seconds=0.01, min_iterations=3, op_limit_s=0.0)
    infeasible = bench.measure("json", "update", lambda i: None, slow)
    assert not infeasible.ok and infeasible.note and "limit" in infeasible.note


def _fake_report(get_ns: float, json_get_ns: float) -> bench.BenchReport:
    sizes = []
    for size, scale in ((bench.Size(1000, "bloated"), 1.0), (bench.Size(1000, "typical"), 1.0)):
        result = bench.SizeResult(size, json_bytes=1000, sqlite_bytes=150)
        result.measurements = [
            bench.Measurement("sqlite", "get", get_ns * scale, get_ns, get_ns, 10),
            bench.Measurement("legacy", "get", json_get_ns, json_get_ns, json_get_ns, 10),
            bench.Measurement("bare-apsw", "get", get_ns / 4, get_ns, get_ns / 4, 10),
        ]
        sizes.append(result)
    return bench.BenchReport(machine={}, settings={}, sizes=sizes)


def test_targets_are_computed_from_the_data() -> None:
    checks = {t.target: t for t in bench.evaluate_targets(_fake_report(40_000, 80_000_000))}
    assert checks["1,000 bloated: get (full entry) < 50 µs"].status == "met"
    assert checks["1,000 bloated: get >= 1,000x faster than the legacy json store"].status == "met"
    assert checks["1,000 bloated: get within 2x of bare apsw"].status == "missed"
    assert checks["1,000 bloated: sessions.sqlite <= 20% of sessions.json"].status == "met"
    assert checks["1,000 bloated: update < 200 µs"].status == "not measured"
    assert checks["100,000 typical: get < 20 µs"].measured == "size 100000t not run"

    checks = {t.target: t for t in bench.evaluate_targets(_fake_report(60_000, 1_000_000))}
    assert checks["1,000 bloated: get (full entry) < 50 µs"].status == "missed"
    assert (
        checks["1,000 bloated: get >= 1,000x faster than the legacy json store"].status == "missed"
    )


# --- the commands ------------------------------------------------------------------------------


def test_demo_shows_every_section_and_keeps_its_state_dir(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = cli("demo", "--sessions", "50", "--state-dir", root)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for section in (
        "Generating 50 sessions",
        "Migrating sessions.json -> sessions.sqlite",
        "Migrated 50 sessions",
        "Session Store Info: main",
        "The ten most recent sessions",
        "History of agent:main:",
        "sessions.json against sessions.sqlite",
        "open + first get",
        "list top-50",
        "speed-up",
        "Done in",
        f"The state dir is kept at {root}",
    ):
        assert section in text, section
    with sessionstore.open_store("main", root, "sqlite") as store:
        assert store.count() == 50
        # the json timings ran on a copy: the migrated sessions.json is untouched
        assert store.info().sourceChangedSinceMigration is False


def test_demo_json_in_a_temporary_dir() -> None:
    result = cli("demo", "--sessions", "20", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kept"] is False and not Path(doc["stateDir"]).exists()
    assert doc["migration"]["status"] == "migrated" and doc["migration"]["migratedCount"] == 20
    assert doc["info"]["sessionCount"] == 20
    assert len(doc["recent"]) == 10 and doc["history"]["key"] == doc["recent"][0]["key"]
    assert [t["op"] for t in doc["timings"]] == list(demo_module.DEMO_OPS)


def test_demo_refuses_a_state_dir_that_holds_a_store(tmp_path: Path) -> None:
    generate_state_dir(tmp_path / "state", sessions=3)
    result = cli("demo", "--state-dir", tmp_path / "state")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "already holds a session store" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_bench_rejects_bad_sizes(tmp_path: Path) -> None:
    result = cli("bench", "--sizes", "12x", "--out", tmp_path)
    assert result.exit_code == 2
    assert "invalid size" in result.stderr
    assert not (tmp_path / "benchmarks.md").exists()
