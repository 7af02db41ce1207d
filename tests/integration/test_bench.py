"""Smoke tests of the benchmark engine, ``sessionstore bench`` and ``sessionstore demo``.

Benchmarks are not tests: nothing here asserts a time. The engine runs at a tiny N with a
tiny budget, and the checks are on the structure of what it reports and writes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import sessionstore
from sessionstore import bench
from sessionstore.bench import generate as bench_generate
from sessionstore.bench.generate import generate_state_dir
from sessionstore.bench.peers import ADAPTERS_NOTE
from sessionstore.cli import demo as demo_module
from sessionstore.cli.app import app
from sessionstore.entry import json_equal
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

TINY = bench.Budget(seconds=0.01, min_iterations=3, max_iterations=5, warmup=1, op_limit_s=60)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fast_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "DEMO_BUDGET_S", 0.01)


def cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# --- the engine --------------------------------------------------------------------------------


def test_engine_smoke_run_and_report(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = bench.BenchSettings(
        sizes=[bench.Size(30, "bloated")],
        budget=TINY,
        memory_gets=20,
        memory_budget_s=10,
        peers=False,
        sample_keys=8,
        work_dir=tmp_path / "work",
        cli_runs=1,
        scenarios=False,
    )
    with caplog.at_level(logging.WARNING, logger="sessionstore"):
        report = bench.run_benchmark(settings)

    # sqlite is timed beside the sessions.json it was migrated from, never on a split store
    assert not [r.getMessage() for r in caplog.records if "sessionstore" in r.name]
    assert [s.size.label for s in report.sizes] == ["30b"]
    size = report.sizes[0]
    for backend in ("legacy", "json", "sqlite", "whole-store"):
        for op in bench.OPS:
            m = size.get(backend, op)
            assert m is not None, (backend, op)
            not_applicable = (backend in ("json", "legacy") and op == "migrate") or (
                backend in ("whole-store", "legacy")
                and op in ("append", "tail", "get_fields", "update_fields")
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
    assert [t.command for t in size.cli] == ["baseline", "list", "show"]
    for timing in size.cli:
        assert timing.ok and timing.runs == 1, timing
        assert timing.min_ns == timing.median_ns == timing.max_ns
    assert [t.statement for t in report.imports] == list(bench.IMPORT_STATEMENTS)
    for imported in report.imports:
        assert imported.median_us is not None and imported.median_us > 0, imported.note
        assert imported.modules > 0 and imported.runs == 1
    assert report.peers == []
    # the index size is checked at every size run; the rest needs 1000b/100000t, not run here
    own = [t for t in report.targets if t.target.startswith("30 bloated")]
    assert [t.target for t in own] == ["30 bloated: sessions.sqlite <= 75% of sessions.json"]
    assert own[0].status in ("met", "missed")
    assert {t.status for t in report.targets if t not in own} == {"not measured"}
    assert not (tmp_path / "work" / "30b").exists()  # datasets are removed

    written = bench.write_report(report, tmp_path / "docs", charts=False)
    assert {p.name for p in written} == {"benchmarks.md", "benchmarks.json"}
    md = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for label in bench.OPS.values():
        assert label in md
    for backend in ("legacy", "json", "sqlite", "whole-store", "bare-apsw"):
        assert bench.BACKENDS[backend] in md
    assert "## Targets" in md and "## Reproduce" in md and "## 30 bloated sessions" in md
    assert "## Import time" in md and "| `import sessionstore.cli.app` |" in md
    for command in bench.CLI_COMMANDS.values():
        assert f"| `{command}`" in md

    data = json.loads((tmp_path / "docs" / "benchmarks.json").read_text(encoding="utf-8"))
    assert data["sizes"][0]["size"]["label"] == "30b"
    assert [t["command"] for t in data["sizes"][0]["cli"]] == ["baseline", "list", "show"]
    assert [t["statement"] for t in data["imports"]] == list(bench.IMPORT_STATEMENTS)
    again = bench.BenchReport.from_dict(data)
    assert bench.render_markdown(again) == bench.render_markdown(report)


def test_a_large_tier_skips_the_whole_file_backends_and_most_transcripts(
    tmp_path: Path,
) -> None:
    # the 1,000,000 tier's path, at 60 sessions: above both limits
    settings = bench.BenchSettings(
        sizes=[bench.Size(60, "typical")],
        budget=TINY,
        memory_gets=20,
        memory_budget_s=10,
        peers=False,
        sample_keys=8,
        work_dir=tmp_path / "work",
        keep_data=True,
        cli_runs=1,
        scenarios=False,
        whole_file_max_sessions=50,
        all_transcripts_max_sessions=50,
    )
    report = bench.run_benchmark(settings)
    size = report.sizes[0]
    for backend in ("legacy", "json", "whole-store"):
        for op in bench.OPS:
            m = size.get(backend, op)
            assert m is not None and not m.ok, (backend, op)
            assert m.note and "above 50" in m.note
    for op in bench.OPS:
        m = size.get("sqlite", op)
        assert m is not None and m.ok, (op, m and m.note)
    migrate = size.get("sqlite", "migrate")
    assert migrate is not None and migrate.iterations == 1 and migrate.note
    for op in bench.BARE_OPS:
        bare = size.get("bare-apsw", op)
        assert bare is not None and bare.ok, (op, bare)
    assert size.whole_store_bytes is None and size.json_bytes and size.sqlite_bytes
    assert [m.backend for m in size.memory] == ["json", "sqlite", "whole-store"]
    assert size.memory[0].total_kib is None and size.memory[0].note
    assert size.memory[2].total_kib is None and size.memory[2].note
    # transcripts only for the 8 sampled keys and the 48-key pool (repeats written once)
    sessions_dir = tmp_path / "work" / "60t" / "state" / "agents" / "main" / "sessions"
    written = sorted(p.name for p in sessions_dir.glob("*.jsonl"))
    assert 0 < size.transcripts == len(written) < 60
    assert any("transcripts: written for" in n for n in size.notes)
    assert any("legacy, json and whole-store: not run" in n for n in size.notes)
    md = bench.render_markdown(report)
    assert "above 50" in md


def test_transcripts_of_only_some_keys(tmp_path: Path) -> None:
    state = generate_state_dir(tmp_path / "state", sessions=20, bloated_ratio=0.0, seed=3)
    agent = state.agents["main"]
    assert agent.transcripts == []
    keys = sorted(agent.entries)[:5]
    written = bench_generate.write_transcripts(state, "main", [*keys, keys[0]], seed=1)
    assert len(written) == 5 and agent.transcripts == written
    assert sorted(p.name for p in agent.sessions_dir.glob("*.jsonl")) == sorted(
        p.name for p in written
    )
    for key, path in zip(keys, written, strict=True):
        header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        assert header["type"] == "session" and header["id"] == agent.entries[key]["sessionId"]
    with sessionstore.open_store(state_dir=tmp_path / "state", store_type="json") as store:
        assert all(store.transcript(key).tail(20) for key in keys)


def test_generated_labels_take_the_smallest_free_suffix() -> None:
    st = bench_generate._AgentState("main")
    assert [st.label("standup") for _ in range(3)] == ["standup", "standup-2", "standup-3"]
    assert st.label("standup-5") == "standup-5"  # taken before its base gets there
    assert [st.label("standup") for _ in range(3)] == ["standup-4", "standup-6", "standup-7"]


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


def test_list_floor_returns_the_rows_the_store_returns(tmp_path: Path) -> None:
    # A floor that fetched tuples would skip the dicts list() must build.
    generate_state_dir(tmp_path / "state", sessions=40, bloated_ratio=0.5, seed=3)
    paths = resolve_store_paths(tmp_path / "state", "main")
    migrate_agent(paths)
    bare = bench.BareApsw(paths.sqlite_path)
    try:
        with sessionstore.open_store("main", tmp_path / "state", "sqlite") as store:
            rows = store.list().rows
            assert len(rows) >= 30 and bare.list(None) == rows
            assert bare.list(7) == store.list(limit=7).rows
            assert bare.count() == store.count()
    finally:
        bare.close()


def test_append_and_tail_floors_do_the_work_the_store_guarantees(tmp_path: Path) -> None:
    state = generate_state_dir(
        tmp_path / "state", sessions=3, bloated_ratio=1.0, seed=3, transcripts=True
    )
    paths = resolve_store_paths(tmp_path / "state", "main")
    migrate_agent(paths)
    key = sorted(state.agents["main"].entries)[0]
    path = Path(state.agents["main"].entries[key]["sessionFile"])
    with sessionstore.open_store("main", tmp_path / "state", "sqlite") as store:
        entry = store.get(key)
        assert entry is not None
        count = int(entry.get("messageCount") or 0)
    last_id = json.loads(path.read_bytes().splitlines()[-1])["id"]
    message = {"role": "user", "content": "hi", "timestamp": 1}
    bare = bench.BareApsw(paths.sqlite_path)
    try:
        bare.append(key, path, json.dumps(message).encode())
        row, lines = bare.tail(key, path)
    finally:
        bare.close()
    written = json.loads(path.read_bytes().splitlines()[-1])
    assert written["type"] == "message" and written["message"] == message
    assert written["parentId"] == last_id  # chained, as a pi v3 line must be
    assert not Path(f"{path}.lock").exists()  # OpenClaw's lock file taken and let go
    with sessionstore.open_store("main", tmp_path / "state", "sqlite") as store:
        entry = store.get(key)
        assert entry is not None
        assert entry["messageCount"] == count + 1  # inside the entry, not only a column
        conn = store.index.connection()  # type: ignore[attr-defined]
        stored = conn.execute(
            "SELECT message_count, updated_at FROM sessions WHERE session_key = ?", (key,)
        ).fetchone()
        assert stored == (count + 1, entry["updatedAt"])
    assert row == (count + 1,)
    assert lines[-1] == written and len(lines) == min(20, len(path.read_bytes().splitlines()))


def test_adk_peer_at_tiny_n(tmp_path: Path) -> None:
    pytest.importorskip("google.adk.sessions")
    pytest.importorskip("sqlalchemy.ext.asyncio")
    settings = bench.BenchSettings(budget=TINY, peer_sessions=12, seed=5, work_dir=tmp_path)
    lines: list[str] = []
    peers = {p.name.split()[0]: p for p in bench.run_peers(settings, tmp_path, lines.append)}
    assert peers["OpenAI"].outcome == "not measured"
    assert peers["OpenAI"].note == ADAPTERS_NOTE
    assert f"[peers] OpenAI Agents SDK SQLiteSession: not measured ({ADAPTERS_NOTE})" in lines
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


def _fake_report(get_ns: float, floor_ns: float) -> bench.BenchReport:
    sizes = []
    for size, sqlite_bytes in (
        (bench.Size(1000, "bloated"), 751),
        (bench.Size(1000, "typical"), 750),
    ):
        result = bench.SizeResult(size, json_bytes=1000, sqlite_bytes=sqlite_bytes)
        result.measurements = [
            bench.Measurement("sqlite", "get", get_ns, get_ns, get_ns, 10),
            bench.Measurement("bare-apsw", "get", floor_ns, floor_ns, floor_ns, 10),
        ]
        sizes.append(result)
    return bench.BenchReport(machine={}, settings={}, sizes=sizes)


def test_targets_are_computed_from_the_data() -> None:
    get = "1,000 bloated: get (full entry) <= 1.5x the bare-apsw floor"
    checks = {t.target: t for t in bench.evaluate_targets(_fake_report(30_000, 20_000))}
    assert checks[get].status == "met"
    assert checks[get].measured == "1.5x (30.0 µs vs 20.0 µs)"
    assert checks["1,000 bloated: sessions.sqlite <= 75% of sessions.json"].status == "missed"
    assert checks["1,000 typical: sessions.sqlite <= 75% of sessions.json"].status == "met"
    update = checks["1,000 bloated: update (durability normal) <= 1.5x the bare-apsw floor"]
    assert update.status == "not measured" and update.measured.startswith("sqlite update")
    assert (
        checks["100,000 typical: get (full entry) <= 1.5x the bare-apsw floor"].measured
        == "size 100000t not run"
    )
    assert (
        checks[
            get.replace("get (full entry)", "list all rows (metadata)").replace("1.5x", "1.2x")
        ].status
        == "not measured"
    )

    checks = {t.target: t for t in bench.evaluate_targets(_fake_report(30_100, 20_000))}
    assert checks[get].status == "missed"


def test_scenarios_run_and_report_their_figures(tmp_path: Path) -> None:
    from sessionstore.bench import scenarios

    writers = scenarios.run_writers(tmp_path / "w", sessions=40, processes=2, seconds=0.2)
    assert writers.ok, writers.note
    assert writers.figures["busy_errors"] == 0
    assert writers.figures["one_per_s"] > 0 and writers.figures["four_per_s"] > 0

    maintenance = scenarios.run_maintenance_writer(tmp_path / "m", sessions=200)
    assert maintenance.ok, maintenance.note
    assert maintenance.figures["pruned"] == 100  # the older half
    assert maintenance.figures["busy_errors"] == 0 and maintenance.figures["writer_updates"] > 0

    long_lived = scenarios.run_long_lived(tmp_path / "l", sessions=50, updates=300, samples=5)
    assert long_lived.ok, long_lived.note
    assert set(long_lived.figures) >= {"get_ratio", "update_ratio", "list50_ratio", "get_before_ns"}
    assert long_lived.figures["get_ratio"] == pytest.approx(
        long_lived.figures["get_after_ns"] / long_lived.figures["get_fresh_ns"]
    )
    assert 0 < long_lived.figures["wal_max_bytes"] <= long_lived.figures["wal_bound_bytes"]

    report = bench.BenchReport(machine={}, settings={}, scenarios=[writers, maintenance])
    checks = {t.target.split(":")[0]: t for t in bench.evaluate_targets(report)}
    assert checks["4 processes updating distinct sessions"].status in ("met", "missed")
    assert checks["writer during maintain()"].status in ("met", "missed")
    again = bench.BenchReport.from_dict(report.to_dict())
    assert again.scenarios == report.scenarios


def test_scenario_targets_are_computed_from_the_data() -> None:
    report = _fake_report(1, 1)
    report.scenarios = [
        bench.Scenario(
            "writers4",
            figures={"one_per_s": 1000.0, "four_per_s": 1500.0, "busy_errors": 0, "p99_ns": 2e6},
        ),
        bench.Scenario(
            "maintenance",
            figures={
                "writer_p99_ns": 60e6,
                "busy_errors": 0,
                "dry_run_max_hold_ns": 1e6,
                "batch_max_hold_ns": 2e6,
            },
        ),
        bench.Scenario("long_lived", "skipped", note="not asked for (--long-lived-updates 0)"),
    ]
    checks = {t.target.split(":")[0]: t for t in bench.evaluate_targets(report)}
    assert checks["4 processes updating distinct sessions"].status == "met"
    assert checks["4 processes updating distinct sessions"].measured.startswith("1.50x")
    assert checks["writer during maintain()"].status == "missed"  # p99 60 ms
    long_lived = checks["after 1,000,000 updates"]
    assert long_lived.status == "not measured"
    assert long_lived.measured == "not asked for (--long-lived-updates 0)"
    report.scenarios[0].figures["busy_errors"] = 1
    checks = {t.target.split(":")[0]: t for t in bench.evaluate_targets(report)}
    assert checks["4 processes updating distinct sessions"].status == "missed"


def _cli_report(baseline_ns: float, list_ns: float, show_ns: float) -> bench.BenchReport:
    size = bench.SizeResult(bench.Size(100_000, "typical"))
    size.cli = [
        bench.CommandTiming("baseline", baseline_ns, baseline_ns, baseline_ns, 5),
        bench.CommandTiming("list", list_ns, list_ns, list_ns, 5),
        bench.CommandTiming("show", show_ns, show_ns, show_ns, 5),
    ]
    return bench.BenchReport(machine={}, settings={}, sizes=[size])


def test_cli_targets_are_computed_from_the_data() -> None:
    list_target = (
        "100,000 typical: `sessionstore list --limit 20`, whole process, within 1.5x of"
        ' `python -c "import typer, rich"`'
    )
    show_target = list_target.replace("list --limit 20", "show KEY")
    checks = {t.target: t for t in bench.evaluate_targets(_cli_report(80e6, 100e6, 130e6))}
    assert checks[list_target].status == "met"
    assert checks[list_target].measured == "1.25x (100 ms vs 80.0 ms)"
    assert checks[show_target].status == "missed"
    assert checks[show_target].measured.startswith("1.62x")

    failed = _cli_report(80e6, 100e6, 130e6)
    failed.sizes[0].cli[2] = bench.CommandTiming("show", note="exit code 1: error: no session")
    checks = {t.target: t for t in bench.evaluate_targets(failed)}
    assert checks[show_target].status == "not measured"
    assert checks[show_target].measured == "exit code 1: error: no session"

    checks = {t.target: t for t in bench.evaluate_targets(_fake_report(40_000, 20_000))}
    assert checks[list_target].measured == "size 100000t not run"


def test_importtime_total_sums_the_top_level_entries() -> None:
    mark = bench.responsiveness._MARK
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       300 |        900 | site",
            mark,
            "import time:        50 |         50 |     orjson.orjson",
            "import time:        20 |         70 |   orjson",
            "import time:       100 |        400 | sessionstore",
            "import time:        30 |         30 | json",
        ]
    )
    assert bench.responsiveness.importtime_total(stderr) == (430, 4)
    with pytest.raises(ValueError):
        bench.responsiveness.importtime_total("import time:  1 |  1 | site")


def test_peers_say_what_is_measured_and_what_is_not(tmp_path: Path) -> None:
    settings = bench.BenchSettings(budget=TINY, peer_sessions=12, seed=5, work_dir=tmp_path)
    lines: list[str] = []
    peers = bench.run_peers(settings, tmp_path, lines.append)
    openai = peers[0]
    assert openai.status == "skipped" and openai.outcome == "not measured"
    assert openai.note == ADAPTERS_NOTE
    assert f"[peers] OpenAI Agents SDK SQLiteSession: not measured ({ADAPTERS_NOTE})" in lines
    adk = peers[1]
    expected = f"[peers] {adk.name}: {adk.outcome}"
    if adk.status != "ok":
        expected += f" ({adk.note})"
    assert expected in lines
    assert not any("does not exist" in line or "yet" in line for line in lines)
    md = bench.render_markdown(bench.BenchReport(machine={}, settings={}, peers=peers))
    assert f"### OpenAI Agents SDK SQLiteSession\n\nNot measured: {ADAPTERS_NOTE}." in md


# --- what loads the benchmark ------------------------------------------------------------------


def test_only_demo_and_bench_import_the_benchmark_package(tmp_path: Path) -> None:
    """`import sessionstore`, the CLI app and a `list` run leave sessionstore.bench unloaded."""
    probe = (
        "import sys\n"
        "{statement}\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('sessionstore.bench'))))\n"
    )
    run_list = (
        "from sessionstore.cli import main\n"
        f"sys.argv = ['sessionstore', 'list', '--state-dir', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code"
    )
    generate_state_dir(tmp_path, sessions=3)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for statement in ("import sessionstore", "import sessionstore.cli.app", run_list):
        proc = subprocess.run(
            [sys.executable, "-c", probe.format(statement=statement)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1] == "", (statement, proc.stdout)


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


def test_bench_pg_only_needs_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bench.PG_DSN_ENV, raising=False)
    result = cli("bench", "--pg-only", "--out", tmp_path / "out")
    assert result.exit_code != 0
    assert "--pg-dsn" in result.stderr and bench.PG_DSN_ENV in result.stderr
    assert not list((tmp_path / "out").iterdir())  # nothing measured, nothing written


def _tiny_quick_settings(**overrides: Any) -> bench.BenchSettings:
    """`--quick` shrunk further: the test is about where the results go, not the numbers."""
    settings = bench.BenchSettings(
        sizes=[bench.Size(12, "typical")],
        budget=TINY,
        memory=False,
        peers=False,
        sample_keys=4,
        quick=True,
        cli=False,
        scenarios=False,
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    return settings


def _docs_bytes() -> dict[str, bytes]:
    docs = REPO / "docs"
    return {str(p.relative_to(docs)): p.read_bytes() for p in docs.rglob("*") if p.is_file()}


def _bench_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_script", REPO / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _only_new_folder(cwd: Path) -> Path:
    made = list(cwd.iterdir())
    assert len(made) == 1 and made[0].is_dir(), made
    assert made[0].name.startswith("sessionstore-bench-")
    assert {p.name for p in made[0].iterdir()} == {"benchmarks.md", "benchmarks.json"}
    return made[0]


def test_bench_quick_writes_a_new_folder_here_and_never_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "quick_settings", _tiny_quick_settings)
    before = _docs_bytes()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    # --no-peers: the peers' own speed is not what this test is about (with the dev extra's
    # google-adk installed they would run).
    result = cli("bench", "--quick", "--no-charts", "--no-peers")
    assert result.exit_code == 0, result.output
    folder = _only_new_folder(cwd)
    assert f"  {folder}" in result.stdout
    again = cli("bench", "--quick", "--no-charts", "--no-peers")  # another new folder
    assert again.exit_code == 0, again.output
    assert len(list(cwd.iterdir())) == 2

    for path in cwd.iterdir():
        path.rename(tmp_path / path.name)
    assert _bench_script().main(["--quick", "--no-charts", "--no-peers"]) == 0
    _only_new_folder(cwd)
    assert _docs_bytes() == before


def test_bench_removes_its_new_folder_when_the_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "quick_settings", _tiny_quick_settings)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "file").write_text("not a directory")
    result = CliRunner().invoke(app, ["bench", "--quick", "--work-dir", "file"])
    assert result.exit_code != 0
    assert sorted(p.name for p in cwd.iterdir()) == ["file"]


def test_a_list_run_loads_only_what_list_needs(tmp_path: Path) -> None:
    """`sessionstore list` loads neither asyncio nor the other commands' modules.

    Each costs the command's start-up (asyncio alone ~40 ms); ``import sessionstore.cli``
    once built every command, and ``import sessionstore`` imported the async API.
    """
    generate_state_dir(tmp_path, sessions=3)
    unwanted = ("asyncio", "sessionstore.aio", "sessionstore.doctor", "sessionstore.maintenance")
    probe = (
        "import sys\n"
        "from sessionstore.cli import main\n"
        f"sys.argv = ['sessionstore', 'list', '--state-dir', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        f"print(','.join(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == ""
    import sessionstore

    assert sessionstore.open_async_store.__module__ == "sessionstore.aio"
    assert set(sessionstore.__all__) >= {"AsyncSessionStore", "AsyncTranscript", "open_async_store"}


def _pg_report(ours_ns: float, floor_ns: float, list50_ns: float) -> bench.BenchReport:
    sizes = []
    for label_size in (bench.Size(1_000, "bloated"), bench.Size(100_000, "typical")):
        size = bench.SizeResult(label_size)
        for op in ("get", "update", "list50", "count"):
            value = list50_ns if op == "list50" else ours_ns
            size.measurements += [
                bench.Measurement("postgres", op, value, value, value, 10),
                bench.Measurement("bare-psycopg", op, floor_ns, floor_ns, floor_ns, 10),
            ]
        sizes.append(size)
    writers = bench.Scenario(
        "pg_writers8",
        figures={
            "one_per_s": 100.0,
            "many_per_s": 250.0,
            "bare_one_per_s": 200.0,
            "bare_many_per_s": 600.0,
            "conflicts": 0,
            "p99_ns": 5e6,
        },
    )
    return bench.BenchReport(machine={}, settings={}, sizes=sizes, scenarios=[writers])


def test_postgres_targets_are_computed_from_the_data() -> None:
    checks = {t.target: t for t in bench.postgres_targets(_pg_report(400_000, 200_000, 900_000))}
    get = "1,000 bloated: postgres get (full entry) <= 2x bare psycopg"
    assert checks[get].status == "met" and checks[get].measured == "2.0x (400 µs vs 200 µs)"
    list50 = "100,000 typical: postgres list top-50 <= 2x bare psycopg"
    assert checks[list50].status == "missed"  # 900 µs vs 200 µs
    assert checks["100,000 typical: postgres list top-50 < 1 ms"].status == "met"
    scaling = checks[
        "8 processes updating distinct sessions on postgres: >= 4x one process's throughput"
    ]
    assert scaling.status == "missed"
    assert scaling.measured.startswith("2.50x (250 vs 100 updates/s")
    assert "bare psycopg reaches 3.00x" in scaling.measured

    checks = {t.target: t for t in bench.postgres_targets(_pg_report(400_100, 200_000, 1e6))}
    assert checks[get].status == "missed"
    assert checks["100,000 typical: postgres list top-50 < 1 ms"].status == "missed"
    # without a DSN every postgres target says it was not measured, and why
    empty = bench.postgres_targets(bench.BenchReport(machine={}, settings={}))
    assert {t.status for t in empty} == {"not measured"}
    assert empty[0].measured == "size 1000b not run"
    # and they are part of the whole run's targets
    whole = {t.target for t in bench.evaluate_targets(_pg_report(1, 1, 1))}
    assert get in whole


def test_cli_timings_run_with_bytecode_in_a_private_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHONDONTWRITEBYTECODE (set on this machine) would time source compilation."""
    from sessionstore.bench.responsiveness import bytecode_env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    with bytecode_env() as env:
        cache = Path(env["PYTHONPYCACHEPREFIX"])
        assert "PYTHONDONTWRITEBYTECODE" not in env
        # `import sessionstore` alone loads the store on first use: name something of it
        code = "from sessionstore import open_store"
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        written = {p.name.split(".")[0] for p in cache.rglob("*.pyc")}
        assert {"store", "entry", "keys"} <= written
    assert not cache.exists()
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # the caller's own is untouched
