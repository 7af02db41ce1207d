"""Integration tests of ``sessionstore doctor`` and ``sessionstore vacuum``.

In-process runs go through ``typer.testing.CliRunner``; one run uses the console script to
show that an unreadable database gives one line on stderr and no traceback. Every run
passes ``--state-dir`` to a temporary dir, with ``HOME`` pointed at a temporary dir.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apsw
import pytest
from typer.testing import CliRunner, Result

import sessionstore
from hermetic import clean_env
from sessionstore.bench.generate import generate_state_dir
from sessionstore.cli.app import app
from sessionstore.lockfile import process_start_time

SCRIPT = Path(sys.executable).parent / "sessionstore"
TORN = b'{"type":"message","id":"cafebabe","message":{"role":"us'
FINDING_KEYS = {"kind", "subject", "message", "severity", "fixed"}
STORE_KEYS = {"agentId", "storeType", "path", "findings", "unresolved"}


def cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_json(*args: str | Path, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def assert_one_line_error(stderr: str, stdout: str = "", pattern: str = "") -> str:
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: ")
    if pattern:
        assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def make_state(root: Path, backends: dict[str, str]) -> Path:
    """A generated state dir; agents mapped to ``sqlite`` are migrated."""
    generate_state_dir(root, sessions=8, agents=tuple(backends), transcripts=True, seed=5)
    for agent, backend in backends.items():
        if backend == "sqlite":
            sessionstore.open_store(agent=agent, state_dir=root, store_type="sqlite").close()
    return root


def sessions_dir(root: Path, agent: str = "main") -> Path:
    return root / "agents" / agent / "sessions"


def transcript_of_a_session(root: Path, agent: str = "main") -> tuple[str, Path]:
    """A key whose entry names its transcript file (sessionFile), and that file."""
    with sessionstore.open_store(agent=agent, state_dir=root) as store:
        for key, entry in sorted(store.load_all().items()):
            path = store.transcript(key).path
            if entry.get("sessionFile") and path.exists():
                return key, path
    raise AssertionError("no session with a transcript")


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert process_start_time(proc.pid) is None
    return proc.pid


@pytest.fixture(params=["json", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path, backend: str) -> Path:
    return make_state(tmp_path / "state", {"main": backend})


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_on_a_clean_store(root: Path, backend: str) -> None:
    result = cli("doctor", "--state-dir", root)
    assert result.exit_code == 0, result.stderr
    assert f"Session store: {sessions_dir(root)} ({backend})" in result.stdout
    assert "No problems found." in result.stdout
    doc = cli_json("doctor", "--state-dir", root)
    assert doc == {
        "agentId": "main",
        "storeType": backend,
        "path": str(sessions_dir(root)),
        "findings": [],
        "unresolved": 0,
    }
    doc = cli_json("doctor", "--state-dir", root, "--fix")
    assert doc["findings"] == [] and doc["unresolved"] == 0


def test_doctor_exits_1_while_a_problem_remains(root: Path) -> None:
    key, path = transcript_of_a_session(root)
    path.unlink()
    result = cli("doctor", "--state-dir", root, "--verbose")
    assert result.exit_code == 1, result.stderr
    assert re.search(r"Severity\s+Kind\s+Subject\s+Fixed\s+Message", result.stdout)
    assert re.search(rf"warning\s+missing-transcript\s+{re.escape(key)}\s+no\s", result.stdout)
    assert "1 finding, 0 repaired, 1 unresolved" in result.stdout
    summary = cli("doctor", "--state-dir", root)
    assert summary.exit_code == 1
    assert re.search(r"warning\s+missing-transcript\s+1\s+the transcript", summary.stdout)

    for fix in ((), ("--fix",)):  # nothing --fix may do about it
        doc = cli_json("doctor", "--state-dir", root, *fix, code=1)
        assert doc.keys() == STORE_KEYS
        [finding] = doc["findings"]
        assert finding.keys() == FINDING_KEYS
        assert finding["kind"] == "missing-transcript" and finding["subject"] == key
        assert finding["severity"] == "warning" and finding["fixed"] is False
        assert doc["unresolved"] == 1
    assert cli("doctor", "--state-dir", root, "--fix").exit_code == 1
    with sessionstore.open_store(state_dir=root) as store:
        assert store.get(key) is not None  # the entry stays


def test_doctor_fix_repairs_and_then_exits_0(root: Path, backend: str) -> None:
    _, path = transcript_of_a_session(root)
    whole = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(TORN)
    expected = {"torn-tail"}
    if backend == "sqlite":  # (opening a json store takes a dead owner's lock by itself)
        lock = sessions_dir(root) / "sessions.json.lock"
        owner = dead_pid()
        lock.write_text(
            json.dumps(
                {"pid": owner, "createdAt": datetime.now(timezone.utc).isoformat(), "starttime": 1}
            )
        )
        conn = apsw.Connection(str(sessions_dir(root) / "sessions.sqlite"))
        conn.execute("UPDATE stats SET row_count = row_count + 2")
        conn.close()
        expected |= {"stale-lock", "count-drift"}

    result = cli("doctor", "--state-dir", root)
    assert result.exit_code == 1
    count = f"{len(expected)} finding" + ("s" if len(expected) > 1 else "")
    assert f"{count}, 0 repaired, {len(expected)} unresolved" in result.stdout
    assert cli("doctor", "--state-dir", root).exit_code == 1  # a check alone repairs nothing

    doc = cli_json("doctor", "--state-dir", root, "--fix")
    assert {f["kind"] for f in doc["findings"]} == expected
    assert all(f["fixed"] is True for f in doc["findings"])
    assert doc["unresolved"] == 0
    assert path.read_bytes() == whole
    [torn] = [p for p in path.parent.iterdir() if p.name.startswith(path.name + ".torn.")]
    assert torn.read_bytes() == TORN

    result = cli("doctor", "--state-dir", root)
    assert result.exit_code == 0 and "No problems found." in result.stdout


def test_doctor_fix_text_reports_what_was_repaired(root: Path) -> None:
    _, path = transcript_of_a_session(root)
    with open(path, "ab") as fh:
        fh.write(TORN)
    result = cli("doctor", "--state-dir", root, "--fix", "--verbose")
    assert result.exit_code == 0, result.stdout
    assert re.search(r"warning\s+torn-tail\s+\S+\s+yes\s", result.stdout)
    assert "1 finding, 1 repaired, 0 unresolved" in result.stdout


def test_doctor_information_alone_exits_0(root: Path) -> None:
    orphan = sessions_dir(root) / f"{uuid.uuid4()}.jsonl"
    orphan.write_bytes(b'{"type":"session","version":3,"id":"o"}\n')
    result = cli("doctor", "--state-dir", root, "--fix", "--verbose")
    assert result.exit_code == 0
    assert re.search(r"info\s+orphan-transcript\s+\S+\s+no\s", result.stdout)
    assert "1 finding, 0 repaired, 0 unresolved" in result.stdout
    doc = cli_json("doctor", "--state-dir", root, "--fix")
    [finding] = doc["findings"]
    assert (finding["kind"], finding["subject"]) == ("orphan-transcript", str(orphan))
    assert finding["severity"] == "info" and finding["fixed"] is False
    assert doc["unresolved"] == 0
    assert orphan.exists()


def test_doctor_table_shows_keys_and_paths_verbatim(tmp_path: Path) -> None:
    root = tmp_path / "st[ate]" / "[red]x"  # rich markup in a path must not be interpreted
    root.mkdir(parents=True)
    key = "agent:main:discord:channel:[bold]room[/bold]"
    with sessionstore.open_store(state_dir=root, store_type="sqlite") as store:
        store.put(key, {"sessionId": str(uuid.uuid4()), "messageCount": 3})
        missing = store.transcript(key).path
    result = cli("doctor", "--state-dir", root, "--verbose")
    assert result.exit_code == 1
    assert f"Session store: {sessions_dir(root)} (sqlite)" in result.stdout
    assert re.search(rf"missing-transcript\s+{re.escape(key)}\s+no\s", result.stdout)
    assert str(missing) in result.stdout


def test_doctor_summary_groups_many_findings_by_kind(tmp_path: Path) -> None:
    root = tmp_path / "state"
    keys = [f"agent:main:telegram:direct:{i}" for i in range(40)]
    with sessionstore.open_store(state_dir=root, store_type="sqlite") as store:
        for key in keys:  # each claims a transcript that does not exist
            store.put(key, {"sessionId": str(uuid.uuid4()), "messageCount": 2})
    for _ in range(5):
        (sessions_dir(root) / f"{uuid.uuid4()}.jsonl").write_bytes(b"")
    result = cli("doctor", "--state-dir", root)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) < 12, lines  # 45 findings, a few lines
    text = " ".join(result.stdout.split())
    assert "warning missing-transcript 40" in text and "(+37 more)" in text
    assert "info orphan-transcript 5" in text and "(+2 more)" in text
    assert "45 findings, 0 repaired, 40 unresolved (--verbose lists every one)" in text
    verbose = cli("doctor", "--state-dir", root, "--verbose")
    assert all(key in verbose.stdout for key in keys)


def test_doctor_all_agents(tmp_path: Path) -> None:
    root = make_state(tmp_path / "state", {"main": "json", "ops": "sqlite"})
    _, path = transcript_of_a_session(root, "ops")
    path.unlink()
    doc = cli_json("doctor", "--state-dir", root, "--all-agents", code=1)
    assert doc.keys() == {"stores", "unresolved"}
    assert doc["unresolved"] == 1
    stores = {s["agentId"]: s for s in doc["stores"]}
    assert stores.keys() == {"main", "ops"}
    assert all(s.keys() == STORE_KEYS for s in stores.values())
    assert (stores["main"]["storeType"], stores["main"]["findings"]) == ("json", [])
    assert stores["ops"]["storeType"] == "sqlite" and stores["ops"]["unresolved"] == 1
    assert [f["kind"] for f in stores["ops"]["findings"]] == ["missing-transcript"]

    result = cli("doctor", "--state-dir", root, "--all-agents")
    assert result.exit_code == 1
    assert f"Session store: {sessions_dir(root, 'main')} (json)" in result.stdout
    assert f"Session store: {sessions_dir(root, 'ops')} (sqlite)" in result.stdout
    assert result.stdout.count("No problems found.") == 1

    doc = cli_json("doctor", "--state-dir", root, "--agent", "main")
    assert doc["agentId"] == "main" and doc["unresolved"] == 0


def test_doctor_without_a_store(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    result = cli("doctor", "--state-dir", root)
    assert result.exit_code == 0 and "No session store found." in result.stdout
    assert cli_json("doctor", "--state-dir", root) == {"stores": [], "unresolved": 0}
    assert not (root / "agents").exists()  # nothing created


def test_doctor_on_an_unreadable_database_reports_it_and_names_recover(tmp_path: Path) -> None:
    root = make_state(tmp_path / "state", {"main": "sqlite"})
    db = sessions_dir(root) / "sessions.sqlite"
    data = bytearray(db.read_bytes())
    data[:16] = b"not a database!\x00"
    db.write_bytes(bytes(data))
    result = cli("doctor", "--state-dir", root, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    (finding,) = doc["findings"]
    assert (finding["kind"], finding["severity"], finding["fixed"]) == ("integrity", "error", False)
    assert "not a valid SQLite" in finding["message"]
    assert "sessionstore recover" in finding["message"]
    env = clean_env()
    proc = subprocess.run(
        [str(SCRIPT), "doctor", "--state-dir", str(root), "--fix"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "sessionstore recover" in " ".join(proc.stdout.split())
    assert db.read_bytes() == bytes(data)


# --- vacuum ------------------------------------------------------------------------------------


def test_vacuum_text_and_json(tmp_path: Path) -> None:
    root = make_state(tmp_path / "state", {"main": "sqlite"})
    db = sessions_dir(root) / "sessions.sqlite"
    result = cli("vacuum", "--state-dir", root)
    assert result.exit_code == 0, result.stderr
    assert re.search(rf"Vacuumed {re.escape(str(db))}: \S+.* -> \S+", result.stdout)
    assert "reader" not in result.stdout
    doc = cli_json("vacuum", "--state-dir", root)
    assert doc.keys() == {"agentId", "path", "bytesBefore", "bytesAfter", "checkpointed"}
    assert (doc["agentId"], doc["path"], doc["checkpointed"]) == ("main", str(db), True)
    assert doc["bytesAfter"] == db.stat().st_size  # the WAL is gone once the CLI closed it
    assert 0 < doc["bytesAfter"] <= doc["bytesBefore"]
    assert cli_json("doctor", "--state-dir", root)["findings"] == []


def test_vacuum_of_a_json_store_is_a_one_line_error(tmp_path: Path) -> None:
    root = make_state(tmp_path / "state", {"main": "json"})
    before = (sessions_dir(root) / "sessions.json").read_bytes()
    for args in ((), ("--json",)):
        result = cli("vacuum", "--state-dir", root, *args)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert_one_line_error(result.stderr, pattern=r"main: vacuum applies to sqlite stores")
    assert (sessions_dir(root) / "sessions.json").read_bytes() == before
    assert not (sessions_dir(root) / "sessions.sqlite").exists()


def test_vacuum_all_agents_skips_json_stores(tmp_path: Path) -> None:
    root = make_state(tmp_path / "state", {"main": "json", "ops": "sqlite"})
    doc = cli_json("vacuum", "--state-dir", root, "--all-agents")
    [only] = doc["stores"]
    assert only["agentId"] == "ops" and only["checkpointed"] is True
    assert only["path"] == str(sessions_dir(root, "ops") / "sessions.sqlite")
    assert not (sessions_dir(root, "main") / "sessions.sqlite").exists()
