"""``sessionstore cleanup`` (spec 9.2, issue 5): the dry-run summary and per-key action
table, the JSON shapes for one store and for ``--all-agents``, applying with ``--enforce``,
``--fix-missing``, ``--active-key``, and usage errors (one line, exit code 2).

Each test builds its stores through the library (both backends) with sessions of known
ages, writes ``openclaw.json`` into the state dir, and runs the app in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import sessionstore
from sessionstore.cli.app import app
from sessionstore.clock import now_ms

DAY = 86_400_000
HOUR = 3_600_000
# name -> age; with maxEntries 3: two stale sessions pruned, f4 capped, f1-f3 kept
SESSIONS = {
    "stale-a": 40 * DAY,
    "stale-b": 35 * DAY,
    "f1": HOUR,
    "f2": 2 * HOUR,
    "f3": 3 * HOUR,
    "f4": 4 * HOUR,
}
SUMMARY_KEYS = {
    "agentId",
    "storePath",
    "mode",
    "dryRun",
    "beforeCount",
    "afterCount",
    "missing",
    "reaped",
    "pruned",
    "capped",
    "diskBudget",
    "wouldMutate",
}
_ROW = re.compile(
    r"^(keep|prune-missing|prune-cron|prune-stale|cap-overflow|evict-budget)\s+(\S+)\s+(.*)$"
)


@pytest.fixture(params=["json", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_json(*args: str | Path) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def write_config(root: Path, session: dict[str, Any], agents: tuple[str, ...] = ()) -> None:
    doc: dict[str, Any] = {"session": session}
    if agents:
        doc["agents"] = {"list": [{"id": a} for a in agents]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "openclaw.json").write_text(json.dumps(doc))


def build(root: Path, backend: str, agent: str = "main") -> dict[str, str]:
    """The SESSIONS of one agent, each with a transcript its entry names (``sessionFile``,
    as the gateway records it); returns sessionIds by name."""
    now = now_ms()
    sids = {}
    with sessionstore.open_store(agent=agent, state_dir=root, store_type=backend) as s:  # type: ignore[arg-type]
        for name, age in SESSIONS.items():
            sid = str(uuid.uuid4())
            path = s.paths.sessions_dir / f"{sid}.jsonl"
            entry = {"sessionId": sid, "sessionFile": str(path), "model": f"gpt-{name}"}
            s.put(f"agent:{agent}:{name}", {**entry, "updatedAt": now - age})
            path.write_text('{"type":"session"}\n')
            sids[name] = sid
    return sids


def tree(root: Path) -> dict[str, str]:
    """Names and content hashes under ``root`` (SQLite's ``-shm`` read index left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
        if not p.name.endswith("-shm")
    }


def keys(root: Path, backend: str, agent: str = "main") -> list[str]:
    with sessionstore.open_store(agent=agent, state_dir=root, store_type=backend) as s:  # type: ignore[arg-type]
        return sorted(s.load_all())


def table(stdout: str) -> list[tuple[str, str, str]]:
    """(action, key, rest of the row) of the planned-actions table."""
    lines = stdout.splitlines()
    start = lines.index("Planned session actions:")
    assert re.match(r"^Action\s+Key\s+Age\s+Model\s+Flags\s*$", lines[start + 1]), lines[start + 1]
    rows = []
    for line in lines[start + 2 :]:
        match = _ROW.match(line)
        if match:
            rows.append((match.group(1), match.group(2), " ".join(match.group(3).split())))
    return rows


def store_path(root: Path, backend: str, agent: str = "main") -> str:
    name = "sessions.json" if backend == "json" else "sessions.sqlite"
    return str(root / "agents" / agent / "sessions" / name)


# --- dry runs -----------------------------------------------------------------------------


def test_dry_run_without_verbose_groups_actions_with_a_few_keys(
    tmp_path: Path, backend: str
) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    build(root, backend)
    result = cli("cleanup", "--state-dir", root, "--dry-run")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("Planned session actions (--verbose lists every key):")
    groups = [" ".join(line.split()) for line in lines[start + 1 :]]
    assert groups == [
        "prune-stale 2 e.g. agent:main:stale-a, agent:main:stale-b",
        "cap-overflow 1 e.g. agent:main:f4",
    ]


def test_dry_run_text_summary_and_action_table(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    build(root, backend)
    before = tree(root)

    result = cli("cleanup", "--state-dir", root, "--dry-run", "--verbose")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        f"Session store: {store_path(root, backend)}",
        "Maintenance mode: warn",
        "Entries: 6 -> 3 (remove 3)",
        "Would prune missing transcripts: 0",
        "Would prune stale: 2",
        "Would cap overflow: 1",
    ]
    assert "Would archive transcripts: 3" in lines
    assert not any(line.startswith("Applied maintenance") for line in lines)
    assert table(result.stdout) == [
        ("prune-stale", "agent:main:stale-a", "40d ago gpt-stale-a"),
        ("prune-stale", "agent:main:stale-b", "35d ago gpt-stale-b"),
        ("cap-overflow", "agent:main:f4", "4h ago gpt-f4"),
        ("keep", "agent:main:f1", "1h ago gpt-f1"),
        ("keep", "agent:main:f2", "2h ago gpt-f2"),
        ("keep", "agent:main:f3", "3h ago gpt-f3"),
    ]
    assert tree(root) == before


def test_dry_run_json_summary(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    sids = build(root, backend)
    before = tree(root)

    doc = cli_json("cleanup", "--state-dir", root, "--dry-run")

    assert set(doc) >= SUMMARY_KEYS and "applied" not in doc and "appliedCount" not in doc
    assert doc["agentId"] == "main" and doc["storePath"] == store_path(root, backend)
    assert (doc["mode"], doc["dryRun"], doc["wouldMutate"]) == ("warn", True, True)
    assert (doc["beforeCount"], doc["afterCount"]) == (6, 3)
    assert (doc["missing"], doc["pruned"], doc["capped"]) == (0, 2, 1)
    assert doc["diskBudget"] is None
    assert [(a["key"], a["action"], a["sessionId"]) for a in doc["actions"]] == [
        ("agent:main:stale-a", "prune-stale", sids["stale-a"]),
        ("agent:main:stale-b", "prune-stale", sids["stale-b"]),
        ("agent:main:f4", "cap-overflow", sids["f4"]),
    ]
    assert len(doc["archived"]) == 3
    assert tree(root) == before


def test_all_agents_json_and_text(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 4}}, agents=("main", "ops"))
    build(root, backend, "main")
    build(root, backend, "ops")
    before = tree(root)

    doc = cli_json("cleanup", "--state-dir", root, "--all-agents", "--dry-run")

    assert set(doc) == {"allAgents", "mode", "dryRun", "stores"}
    assert (doc["allAgents"], doc["mode"], doc["dryRun"]) == (True, "warn", True)
    assert [s["agentId"] for s in doc["stores"]] == ["main", "ops"]
    for summary in doc["stores"]:
        assert set(summary) >= SUMMARY_KEYS
        assert summary["storePath"] == store_path(root, backend, summary["agentId"])
        assert (summary["beforeCount"], summary["afterCount"]) == (6, 4)
        assert (summary["pruned"], summary["capped"]) == (2, 0)

    text = cli("cleanup", "--state-dir", root, "--all-agents", "--dry-run")
    assert text.exit_code == 0, text.stderr
    assert [line for line in text.stdout.splitlines() if line.startswith("Session store:")] == [
        f"Session store: {store_path(root, backend, 'main')}",
        f"Session store: {store_path(root, backend, 'ops')}",
    ]
    assert tree(root) == before

    doc = cli_json("cleanup", "--state-dir", root, "--all-agents", "--enforce")
    assert doc["mode"] == "enforce" and doc["dryRun"] is False
    assert [(s["applied"], s["appliedCount"]) for s in doc["stores"]] == [(True, 4), (True, 4)]
    assert keys(root, backend, "ops") == [
        "agent:ops:f1",
        "agent:ops:f2",
        "agent:ops:f3",
        "agent:ops:f4",
    ]


def test_warn_mode_without_dry_run_changes_nothing(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    build(root, backend)
    before = tree(root)
    result = cli("cleanup", "--state-dir", root)
    assert result.exit_code == 0, result.stderr
    assert "Maintenance mode: warn" in result.stdout
    assert "Would prune stale: 2" in result.stdout
    assert tree(root) == before
    doc = cli_json("cleanup", "--state-dir", root)
    assert doc["dryRun"] is False and "applied" not in doc and doc["afterCount"] == 3
    assert tree(root) == before


# --- applying -----------------------------------------------------------------------------


def test_enforce_applies(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    sids = build(root, backend)
    sessions_dir = root / "agents" / "main" / "sessions"

    result = cli("cleanup", "--state-dir", root, "--enforce")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Maintenance mode: enforce" in lines and "Entries: 6 -> 3 (remove 3)" in lines
    assert lines[-1] == "Applied maintenance. Current entries: 3"
    assert keys(root, backend) == ["agent:main:f1", "agent:main:f2", "agent:main:f3"]
    for name in ("stale-a", "stale-b", "f4"):
        assert not (sessions_dir / f"{sids[name]}.jsonl").exists()
        assert len(list(sessions_dir.glob(f"{sids[name]}.jsonl.deleted.*"))) == 1

    doc = cli_json("cleanup", "--state-dir", root, "--enforce")
    assert (doc["applied"], doc["appliedCount"], doc["mode"], doc["dryRun"]) == (
        True,
        3,
        "enforce",
        False,
    )
    assert (doc["beforeCount"], doc["afterCount"], doc["wouldMutate"]) == (3, 3, False)


def test_enforce_json_and_configured_enforce_mode(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3, "mode": "enforce"}})
    build(root, backend)
    dry = cli_json("cleanup", "--state-dir", root, "--dry-run")
    assert dry["mode"] == "enforce" and dry["dryRun"] is True and "applied" not in dry
    assert keys(root, backend) == sorted(f"agent:main:{n}" for n in SESSIONS)

    doc = cli_json("cleanup", "--state-dir", root)

    assert (doc["mode"], doc["applied"], doc["appliedCount"]) == ("enforce", True, 3)
    assert (doc["beforeCount"], doc["afterCount"], doc["pruned"], doc["capped"]) == (6, 3, 2, 1)
    assert sorted((a["key"], a["action"]) for a in doc["actions"]) == [
        ("agent:main:f4", "cap-overflow"),
        ("agent:main:stale-a", "prune-stale"),
        ("agent:main:stale-b", "prune-stale"),
    ]
    assert keys(root, backend) == ["agent:main:f1", "agent:main:f2", "agent:main:f3"]


def test_fix_missing(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    sids = build(root, backend)
    (root / "agents" / "main" / "sessions" / f"{sids['f1']}.jsonl").unlink()
    before = tree(root)

    dry = cli("cleanup", "--state-dir", root, "--fix-missing", "--dry-run", "--verbose")
    assert dry.exit_code == 0, dry.stderr
    assert "Would prune missing transcripts: 1" in dry.stdout.splitlines()
    assert ("prune-missing", "agent:main:f1", "1h ago gpt-f1") in table(dry.stdout)
    assert tree(root) == before

    # warn mode: --fix-missing is applied, the rest only reported
    doc = cli_json("cleanup", "--state-dir", root, "--fix-missing")
    assert (doc["mode"], doc["missing"], doc["pruned"]) == ("warn", 1, 2)
    assert doc["applied"] is True
    assert doc["appliedCount"] == 5  # the entries the store holds now
    assert keys(root, backend) == sorted(f"agent:main:{n}" for n in SESSIONS if n != "f1")
    assert [a["action"] for a in doc["actions"] if a["key"] == "agent:main:f1"] == ["prune-missing"]


def test_fix_missing_text(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    sids = build(root, backend)
    (root / "agents" / "main" / "sessions" / f"{sids['f2']}.jsonl").unlink()
    result = cli("cleanup", "--state-dir", root, "--fix-missing")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Applied maintenance. Current entries: 5" in lines
    # only --fix-missing was applied; the rest is what enforce would do
    assert "Did prune missing transcripts: 1" in lines
    assert "Would prune stale: 2" in lines and "Would cap overflow: 0" in lines
    assert len(keys(root, backend)) == 5

    # with --enforce it all happens
    os.unlink(root / "agents" / "main" / "sessions" / f"{sids['f3']}.jsonl")
    doc = cli_json("cleanup", "--state-dir", root, "--fix-missing", "--enforce")
    assert (doc["missing"], doc["pruned"], doc["capped"], doc["appliedCount"]) == (1, 2, 0, 2)
    assert keys(root, backend) == ["agent:main:f1", "agent:main:f4"]


def test_reap_cron(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 30}})
    (root / "openclaw.json").write_text(
        json.dumps(
            {"session": {"maintenance": {"maxEntries": 30}}, "cron": {"sessionRetention": "3h"}}
        )
    )
    sids = build(root, backend)
    sessions = root / "agents" / "main" / "sessions"
    now = now_ms()
    with sessionstore.open_store(agent="main", state_dir=root, store_type=backend) as s:  # type: ignore[arg-type]
        for name, age in (("old", 4 * HOUR), ("new", 2 * HOUR)):
            sid = str(uuid.uuid4())
            s.put(f"agent:main:cron:job:run:{name}", {"sessionId": sid, "updatedAt": now - age})
            (sessions / f"{sid}.jsonl").write_text('{"type":"session"}\n')
            sids[f"run-{name}"] = sid
    before = tree(root)

    dry = cli("cleanup", "--state-dir", root, "--reap-cron", "--dry-run", "--verbose")
    assert dry.exit_code == 0, dry.stderr
    assert "Would reap cron runs: 1" in dry.stdout.splitlines()
    assert ("prune-cron", "agent:main:cron:job:run:old", "4h ago -") in table(dry.stdout)
    assert tree(root) == before
    # without the flag the line is not there and nothing is reaped
    plain = cli("cleanup", "--state-dir", root)
    assert "reap cron" not in plain.stdout and tree(root) == before

    # warn mode: --reap-cron is applied, the rest only reported
    doc = cli_json("cleanup", "--state-dir", root, "--reap-cron")
    assert (doc["mode"], doc["reaped"], doc["pruned"], doc["applied"]) == ("warn", 1, 2, True)
    assert "agent:main:cron:job:run:old" not in keys(root, backend)
    assert "agent:main:cron:job:run:new" in keys(root, backend)
    assert not (sessions / f"{sids['run-old']}.jsonl").exists()
    [archive] = sessions.glob(f"{sids['run-old']}.jsonl.deleted.*")
    # the archive made, beside the stale sessions' archives that enforce would make
    assert str(archive) in doc["archived"] and len(doc["archived"]) == 3


def test_active_key(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    build(root, backend)

    dry = cli(
        "cleanup", "--state-dir", root, "--dry-run", "--verbose", "--active-key", " AGENT:MAIN:F4 "
    )
    assert dry.exit_code == 0, dry.stderr
    rows = table(dry.stdout)
    assert ("cap-overflow", "agent:main:f3", "3h ago gpt-f3") in rows
    assert ("keep", "agent:main:f4", "4h ago gpt-f4 active") in rows
    assert [r for r in rows if r[0] != "keep" and r[1] == "agent:main:f4"] == []

    # the active session is kept even when it is the stale one
    doc = cli_json(
        "cleanup", "--state-dir", root, "--enforce", "--active-key", "agent:main:stale-a"
    )
    assert sorted((a["key"], a["action"]) for a in doc["actions"]) == [
        ("agent:main:f3", "cap-overflow"),
        ("agent:main:f4", "cap-overflow"),
        ("agent:main:stale-b", "prune-stale"),
    ]
    assert keys(root, backend) == ["agent:main:f1", "agent:main:f2", "agent:main:stale-a"]


def test_store_option_and_missing_store(tmp_path: Path) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    result = cli("cleanup", "--state-dir", root, "--dry-run")
    assert result.exit_code == 0 and "No session store found." in result.stdout
    assert cli_json("cleanup", "--state-dir", root, "--dry-run") == {"stores": []}
    build(root, "json")
    path = store_path(root, "json")
    doc = cli_json("cleanup", "--state-dir", root, "--store", path, "--dry-run")
    assert doc["storePath"] == path and doc["afterCount"] == 3


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "main", "--all-agents"], "--agent and --all-agents cannot be used together"),
        (["--store", "{tmp}/s.json", "--agent", "main"], "--store cannot be combined"),
        (["--store", "{tmp}/s.json", "--all-agents"], "--store cannot be combined"),
        (["--agent", "nobody"], "unknown agent nobody"),
        (["--active-key", "  "], "session key is empty"),
        (["--active-key", "agent:main:\x07"], "contains control characters"),
    ],
    ids=["agent+all", "store+agent", "store+all", "unknown-agent", "blank-key", "control-key"],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    root = tmp_path / "state"
    write_config(root, {"maintenance": {"maxEntries": 3}})
    build(root, "sqlite")
    before = tree(root)
    for extra in ([], ["--json"], ["--dry-run"]):
        argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
        result = cli("cleanup", "--state-dir", root, *argv, *extra)
        assert result.exit_code == 2, (argv, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert message in lines[0], lines[0]
        assert "Traceback" not in result.stdout + result.stderr
    assert tree(root) == before


def test_unknown_option_exits_2(tmp_path: Path) -> None:
    result = cli("cleanup", "--state-dir", tmp_path, "--prune-everything")
    assert result.exit_code == 2 and "No such option" in result.stderr
