"""Integration tests of the ``sessionstore`` command, in-process and as a subprocess.

In-process runs go through ``typer.testing.CliRunner`` on ``sessionstore.cli.app.app``;
subprocess runs use the installed console script, whose errors must be exactly one line on
stderr with no traceback. Every run passes ``--state-dir`` to a temporary dir, with
``HOME`` pointed at a temporary dir and ``OPENCLAW_CONFIG_PATH`` unset.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

import sessionstore
from hermetic import clean_env
from model.openclaw_rules import load_entry
from sessionstore.bench.generate import GeneratedState, generate_state_dir, mixed_case_variant
from sessionstore.cli.app import app
from sessionstore.clock import now_ms
from sessionstore.entry import json_equal
from sessionstore.files import dumps_pretty

Entry = dict[str, Any]
SCRIPT = Path(sys.executable).parent / "sessionstore"
SESSIONS = 40
MIGRATE_KEYS = {
    "agentId",
    "jsonPath",
    "sqlitePath",
    "status",
    "migratedCount",
    "existingCount",
    "message",
}
INFO_KEYS = {
    "storeType",
    "effectiveStoreType",
    "fallbackReason",
    "sqliteAvailable",
    "sqliteVersion",
    "sessionCount",
    "jsonPath",
    "sqlitePath",
    "migration",
    "sourceChangedSinceMigration",
}


@pytest.fixture
def state(tmp_path: Path) -> GeneratedState:
    return generate_state_dir(
        tmp_path / "state",
        sessions=SESSIONS,
        agents=("main", "ops"),
        bloated_ratio=0.25,
        seed=21,
        legacy_fields=True,
    )


# --- helpers -----------------------------------------------------------------------------------


def cli(*args: str | Path) -> Result:
    """Run the app in-process; an exception other than an exit is re-raised."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_json(*args: str | Path, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


def proc(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script as a subprocess."""
    base = clean_env()
    return subprocess.run(
        [str(SCRIPT), *[str(a) for a in args]],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def assert_one_line_error(stderr: str, stdout: str = "", pattern: str = "") -> str:
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: ")
    if pattern:
        assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = ("dir" if p.is_dir() else sha256(p), st.st_mode)
    return out


def expected_entries(state: GeneratedState, agent: str = "main") -> dict[str, Entry]:
    best: dict[str, Entry] = {}
    for key, entry in state.agents[agent].entries.items():
        canonical = key.lower()
        if canonical not in best or entry["updatedAt"] > best[canonical]["updatedAt"]:
            best[canonical] = entry
    return {k: load_entry(copy.deepcopy(e)) for k, e in best.items()}


_CRON_RUN = re.compile(r":cron:[^:]+:run:[^:]+$")
_KEY_CHANNEL = re.compile(r"^agent:[^:]+:([^:]+):(?:[^:]+:)?(?:direct|group|channel):")


def listed_order(entries: dict[str, Entry]) -> list[str]:
    """Visible keys (cron run keys are hidden), newest first."""
    visible = [k for k in entries if not _CRON_RUN.search(k)]
    return sorted(visible, key=lambda k: (entries[k]["updatedAt"], k), reverse=True)


def row_channel(key: str, entry: Entry) -> str | None:
    for value in (entry.get("channel"), entry.get("lastChannel")):
        if isinstance(value, str) and value:
            return value
    match = _KEY_CHANNEL.match(key)
    return match.group(1) if match else None


def migrate_all(root: Path) -> None:
    doc = cli_json("migrate", "--state-dir", root, "--all-agents")
    assert doc["success"] is True
    assert {r["status"] for r in doc["results"]} == {"migrated"}


def write_config(root: Path, doc: Any) -> None:
    (root / "openclaw.json").write_text(json.dumps(doc))


# --- migrate -----------------------------------------------------------------------------------


def test_migrate_dry_run_then_migrate_then_skip_then_force(state: GeneratedState) -> None:
    root = state.root
    json_path = state.agents["main"].json_path
    sqlite_path = json_path.with_name("sessions.sqlite")
    before = tree_state(root)

    text = cli("migrate", "--state-dir", root, "--dry-run")
    assert text.exit_code == 0, text.stderr
    assert "Session Store Migration (dry run)" in text.stdout
    assert re.search(r"WOULD_MIGRATE\s+main\s+Would migrate 40 sessions", text.stdout)
    doc = cli_json("migrate", "--state-dir", root, "--dry-run")
    assert doc["success"] is True
    [row] = doc["results"]
    assert row.keys() >= MIGRATE_KEYS
    assert row["status"] == "would_migrate" and row["migratedCount"] == SESSIONS
    assert tree_state(root) == before  # not a byte written anywhere

    doc = cli_json("migrate", "--state-dir", root)
    [row] = doc["results"]
    assert doc["success"] is True
    assert row["agentId"] == "main"
    assert row["jsonPath"] == str(json_path)
    assert row["sqlitePath"] == str(sqlite_path)
    assert row["status"] == "migrated"
    assert row["migratedCount"] == SESSIONS
    assert row["existingCount"] == 0
    assert "Migrated 40 sessions" in row["message"]
    assert sqlite_path.exists()

    db_before = tree_state(root)
    text = cli("migrate", "--state-dir", root)
    assert text.exit_code == 0
    assert re.search(r"SKIPPED\s+main\s+Already migrated", text.stdout)
    assert "Skipped 1 agent." in text.stdout
    doc = cli_json("migrate", "--state-dir", root)
    [row] = doc["results"]
    assert row["status"] == "skipped"
    assert row["existingCount"] == SESSIONS
    assert row["sourceChanged"] is False
    assert tree_state(root) == db_before

    # --force re-imports; identical entries are not rewritten, and the report says so
    doc = cli_json("migrate", "--state-dir", root, "--force")
    [row] = doc["results"]
    assert row["status"] == "migrated" and row["existingCount"] == SESSIONS
    assert row["migratedCount"] == 0
    assert "40 of 40 were already up to date" in row["message"]
    text = cli("migrate", "--state-dir", root, "--force")
    assert text.exit_code == 0
    assert re.search(r"MIGRATED\s+main\s+Migrated 0 sessions; 40 of 40", text.stdout)
    assert sha256(json_path) == before["agents/main/sessions/sessions.json"][0]


def test_migrate_all_agents(state: GeneratedState) -> None:
    root = state.root
    write_config(root, {"agents": {"list": [{"id": "main"}, {"id": "ops"}, {"id": "ghost"}]}})
    doc = cli_json("migrate", "--state-dir", root, "--all-agents", "--dry-run")
    assert [r["status"] for r in doc["results"]] == ["would_migrate", "would_migrate", "no_data"]
    text = cli("migrate", "--state-dir", root, "--all-agents")
    assert text.exit_code == 0, text.stderr
    assert "Migrated 80 sessions across 2 agents." in text.stdout
    assert "1 agent had no sessions to migrate." in text.stdout
    doc = cli_json("migrate", "--state-dir", root, "--all-agents")
    assert doc["success"] is True
    assert [(r["agentId"], r["status"]) for r in doc["results"]] == [
        ("main", "skipped"),
        ("ops", "skipped"),
        ("ghost", "no_data"),
    ]
    for r in doc["results"]:
        assert r.keys() >= MIGRATE_KEYS
    assert not (root / "agents" / "ghost").exists()
    for agent in ("main", "ops"):
        with sessionstore.open_store(agent=agent, state_dir=root) as store:
            assert store.store_type == "sqlite"
            loaded = store.load_all()
            expected = expected_entries(state, agent)
            assert sorted(loaded) == sorted(expected)
            assert all(json_equal(loaded[k], expected[k]) for k in expected)


def test_migrate_corrupt_source_fails(state: GeneratedState) -> None:
    root = state.root
    json_path = state.agents["main"].json_path
    json_path.write_bytes(json_path.read_bytes().replace(b'"updatedAt": ', b'"updatedAt" ', 1))
    before = tree_state(root)
    doc = cli_json("migrate", "--state-dir", root, code=1)
    assert doc["success"] is False
    [row] = doc["results"]
    assert row.keys() >= MIGRATE_KEYS
    assert row["status"] == "failed"
    assert str(json_path) in row["message"] and "line 4" in row["message"]
    text = cli("migrate", "--state-dir", root)
    assert text.exit_code == 1
    assert "FAILED" in text.stdout
    assert text.stderr.strip() == "1 agent failed to migrate; nothing was written for them."
    assert tree_state(root) == before
    assert not json_path.with_name("sessions.sqlite").exists()
    # with --all-agents the healthy agent is migrated and the run still fails
    doc = cli_json("migrate", "--state-dir", root, "--all-agents", code=1)
    assert [(r["agentId"], r["status"]) for r in doc["results"]] == [
        ("main", "failed"),
        ("ops", "migrated"),
    ]
    assert doc["success"] is False


# --- store-info --------------------------------------------------------------------------------


def test_store_info_before_and_after_migration(state: GeneratedState) -> None:
    root = state.root
    json_path = state.agents["main"].json_path
    info = cli_json("store-info", "--state-dir", root)
    assert info.keys() >= INFO_KEYS
    assert info["storeType"] == "auto"
    assert info["effectiveStoreType"] == "json"
    assert info["fallbackReason"] is None
    assert info["sqliteAvailable"] is True
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", info["sqliteVersion"])
    assert info["sessionCount"] == SESSIONS
    assert info["jsonPath"] == str(json_path)
    assert info["sqlitePath"] == str(json_path.with_name("sessions.sqlite"))
    assert info["migration"] is None
    assert info["sourceChangedSinceMigration"] is None

    migrate_all(root)
    info = cli_json("store-info", "--state-dir", root, "--agent", "main")
    assert info.keys() >= INFO_KEYS
    assert info["effectiveStoreType"] == "sqlite"
    assert info["sessionCount"] == SESSIONS
    assert info["migration"]["sha256"] == sha256(json_path)
    assert info["migration"]["entryCount"] == SESSIONS
    assert info["sourceChangedSinceMigration"] is False
    text = cli("store-info", "--state-dir", root)
    assert text.exit_code == 0
    assert "Session Store Info: main" in text.stdout
    assert re.search(r"Effective Type\s+sqlite", text.stdout)
    assert re.search(r"Session Count\s+40", text.stdout)
    assert re.search(r"sessions\.json Changed\s+no", text.stdout)

    # OpenClaw (or anyone) writes sessions.json after the migration
    entries = dict(state.agents["main"].entries)
    entries["agent:main:telegram:direct:999"] = {"sessionId": "late", "updatedAt": now_ms()}
    json_path.write_bytes(dumps_pretty(entries))
    info = cli_json("store-info", "--state-dir", root)
    assert info["sourceChangedSinceMigration"] is True
    text = cli("store-info", "--state-dir", root)
    assert "migrate --force" in text.stdout
    doc = cli_json("migrate", "--state-dir", root)
    assert doc["results"][0]["status"] == "skipped"
    assert doc["results"][0]["sourceChanged"] is True
    assert "--force" in doc["results"][0]["message"]
    doc = cli_json("migrate", "--state-dir", root, "--force")
    assert doc["results"][0]["status"] == "migrated"
    assert doc["results"][0]["migratedCount"] == 1  # only the new entry differed
    info = cli_json("store-info", "--state-dir", root)
    assert info["sourceChangedSinceMigration"] is False
    assert info["sessionCount"] == SESSIONS + 1
    assert info["migration"]["sha256"] == sha256(json_path)


def test_store_info_all_agents_and_missing_store(state: GeneratedState) -> None:
    root = state.root
    doc = cli_json("store-info", "--state-dir", root, "--all-agents")
    assert [s["agentId"] for s in doc["stores"]] == ["main", "ops"]
    for s in doc["stores"]:
        assert s.keys() >= INFO_KEYS
        assert s["sessionCount"] == SESSIONS
    empty = root.parent / "empty"
    empty.mkdir()
    info = cli_json("store-info", "--state-dir", empty)
    assert info.keys() >= INFO_KEYS
    assert info["sessionCount"] == 0 and info["effectiveStoreType"] is None
    assert list(empty.iterdir()) == []  # looking creates nothing


# --- list ---------------------------------------------------------------------------------------


@pytest.fixture(params=["json", "sqlite"])
def listed(request: pytest.FixtureRequest, state: GeneratedState) -> GeneratedState:
    if request.param == "sqlite":
        migrate_all(state.root)
    info = cli_json("store-info", "--state-dir", state.root)
    assert info["effectiveStoreType"] == request.param
    return state


def test_list_json_filters(listed: GeneratedState) -> None:
    root = listed.root
    entries = expected_entries(listed)
    order = listed_order(entries)

    doc = cli_json("list", "--state-dir", root)
    assert doc["path"] == str(listed.agents["main"].sessions_dir)
    assert doc["activeMinutes"] is None
    assert doc["count"] == len(order) == len(doc["sessions"])
    assert [r["key"] for r in doc["sessions"]] == order
    assert len(order) < SESSIONS  # cron run keys are hidden
    for row in doc["sessions"]:
        entry = entries[row["key"]]
        assert row["agentId"] == "main"
        assert row["sessionId"] == entry["sessionId"]
        assert row["updatedAt"] == entry["updatedAt"]
        assert row["kind"] in ("direct", "group")
        assert "skillsSnapshot" not in row and "systemPromptReport" not in row
        if "lastThreadId" in entry:
            assert type(row["lastThreadId"]) is type(entry["lastThreadId"])

    doc = cli_json("list", "--state-dir", root, "--limit", "5")
    assert [r["key"] for r in doc["sessions"]] == order[:5]

    channels = {row_channel(k, entries[k]) for k in order} - {None}
    assert {"telegram", "whatsapp", "slack"} <= channels
    for channel in ("telegram", "slack"):
        doc = cli_json("list", "--state-dir", root, "--channel", channel)
        want = [k for k in order if row_channel(k, entries[k]) == channel]
        assert want and [r["key"] for r in doc["sessions"]] == want
    doc = cli_json("list", "--state-dir", root, "--channel", "telegram", "--limit", "2")
    assert [r["key"] for r in doc["sessions"]] == want_for(entries, order, "telegram")[:2]

    labelled = [k for k in order if entries[k].get("label")]
    assert labelled
    doc = cli_json("list", "--state-dir", root, "--label", entries[labelled[-1]]["label"])
    assert [r["key"] for r in doc["sessions"]] == [labelled[-1]]
    doc = cli_json("list", "--state-dir", root, "--label", "no-such-label")
    assert doc["count"] == 0 and doc["sessions"] == []

    for needle in ("acme", entries[order[3]]["sessionId"][:8], "subagent"):
        doc = cli_json("list", "--state-dir", root, "--search", needle)
        want = [
            k
            for k in order
            if any(
                needle in str(entries[k].get(f, "")).lower()
                for f in ("displayName", "label", "subject", "sessionId")
            )
            or needle in k
        ]
        assert want and [r["key"] for r in doc["sessions"]] == want, needle

    day = 24 * 60
    doc = cli_json("list", "--state-dir", root, "--active", str(day))
    now = now_ms()
    keys = [r["key"] for r in doc["sessions"]]
    assert doc["activeMinutes"] == day
    assert all(entries[k]["updatedAt"] >= now - day * 60_000 - 120_000 for k in keys)
    surely_active = [k for k in order if entries[k]["updatedAt"] >= now - day * 60_000 + 120_000]
    assert set(surely_active) <= set(keys)
    assert 0 < len(keys) < len(order)
    assert keys == [k for k in order if k in keys]


def want_for(entries: dict[str, Entry], order: list[str], channel: str) -> list[str]:
    return [k for k in order if row_channel(k, entries[k]) == channel]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> GeneratedState:
    """More sessions than a default page holds."""
    return generate_state_dir(tmp_path_factory.mktemp("many") / "state", sessions=130, seed=12)


def test_list_piped_prints_whole_keys_as_tab_separated_rows(many: GeneratedState) -> None:
    root = many.root
    entries = expected_entries(many)
    order = listed_order(entries)
    assert len(order) > 50
    result = cli("list", "--state-dir", root)  # stdout is not a terminal here
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 50  # the default page
    assert all(len(r) == 8 for r in rows)
    assert [r[0] for r in rows] == order[:50]  # whole keys, newest first, copyable
    first = rows[0]
    assert first[1] == "main"
    assert first[3] == str(entries[order[0]]["updatedAt"])
    # the footer goes to stderr (stdout carries only rows): how many more, and how
    footer = result.stderr.strip()
    assert footer.startswith(f"50 sessions shown, {len(order) - 50:,} more; next page:")
    assert "--cursor" in footer and "(or --all for every row)" in footer
    everything = cli("list", "--state-dir", root, "--all")
    assert [line.split("\t")[0] for line in everything.stdout.splitlines()] == order
    assert everything.stderr == ""
    result = cli("list", "--state-dir", root, "--search", "zzz-nothing")
    assert result.exit_code == 0 and result.stdout == ""
    assert "No sessions found." in result.stderr


def test_list_pages_round_trip_through_the_cursor(many: GeneratedState) -> None:
    root = many.root
    order = listed_order(expected_entries(many))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        args = ["list", "--state-dir", root, "--limit", "7"]
        if cursor is not None:
            args += ["--cursor", cursor]
        doc = cli_json(*args)
        seen += [r["key"] for r in doc["sessions"]]
        assert doc["remaining"] == len(order) - len(seen)
        cursor = doc["nextCursor"]
        if cursor is None:
            break
    assert seen == order
    # the next-page command the footer prints runs as printed
    result = cli("list", "--state-dir", root, "--limit", "5")
    command = result.stderr.split("next page: ", 1)[1].split(" (or --all", 1)[0]
    argv = shlex.split(command)
    assert argv[0] == "sessionstore"
    page2 = cli(*argv[1:])
    assert [line.split("\t")[0] for line in page2.stdout.splitlines()] == order[5:10]
    result = cli("list", "--state-dir", root, "--all", "--cursor", "x")
    assert result.exit_code == 2
    result = cli("list", "--state-dir", root, "--cursor", "not-a-cursor")
    assert result.exit_code == 1 and "invalid list cursor" in result.stderr


def run_in_terminal(args: list[str], columns: int) -> str:
    """The console script's output in a real pseudo-terminal ``columns`` wide."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**clean_env(), "TERM": "xterm", "COLUMNS": str(columns), "NO_COLOR": "1"}
    child = subprocess.Popen([str(SCRIPT), *args], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    child.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [80, 250])
def test_list_on_a_terminal_never_shortens_keys(many: GeneratedState, columns: int) -> None:
    root = many.root
    order = listed_order(expected_entries(many))
    text = run_in_terminal(["list", "--state-dir", str(root), "--limit", "20"], columns)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # styles (bold headers)
    lines = text.splitlines()
    assert lines[0] == f"Session store: {many.agents['main'].sessions_dir}"
    header = lines[1].split()
    assert header[0] == "Key"
    if columns == 250:
        assert header == ["Key", "Kind", "Updated", "Model", "Tokens", "Channel", "Label"]
    else:
        assert len(header) < 7  # the least important columns gave way
    assert "…" not in text and "..." not in text.split("next page")[0]
    joined = "".join(text.split())  # a key longer than the terminal folds onto more lines
    for key in order[:20]:
        assert key in joined
        if len(key) < columns:
            assert any(line.startswith(key) for line in lines), key
    table = lines[1 : lines.index(next(line for line in lines if "sessions shown" in line))]
    assert all(len(line) <= columns for line in table)
    assert "20 sessions shown" in text and "--cursor" in text


def test_list_all_agents_and_store_path(state: GeneratedState) -> None:
    root = state.root
    doc = cli_json("list", "--state-dir", root, "--all-agents", "--all")
    assert doc["allAgents"] is True
    assert doc["path"] is None
    assert [s["agentId"] for s in doc["stores"]] == ["main", "ops"]
    main, ops = listed_order(expected_entries(state)), listed_order(expected_entries(state, "ops"))
    assert doc["count"] == len(main) + len(ops)
    assert {r["agentId"] for r in doc["sessions"]} == {"main", "ops"}
    times = [r["updatedAt"] for r in doc["sessions"]]
    assert times == sorted(times, reverse=True)
    # --store points at one file directly (here with an {agentId} template)
    template = str(root / "agents" / "{agentId}" / "sessions" / "sessions.json")
    doc = cli_json("list", "--state-dir", root, "--store", template, "--all")
    assert [r["key"] for r in doc["sessions"]] == main
    ops_file = state.agents["ops"].json_path
    doc = cli_json("list", "--state-dir", root, "--store", ops_file, "--all")
    assert [r["key"] for r in doc["sessions"]] == ops


# --- show ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("migrated", [False, True], ids=["json", "sqlite"])
def test_show(state: GeneratedState, migrated: bool) -> None:
    root = state.root
    if migrated:
        migrate_all(root)
    entries = expected_entries(state)
    bloated = next(k for k, e in entries.items() if "skillsSnapshot" in e)
    topic = next(k for k, e in entries.items() if type(e.get("lastThreadId")) is int)
    for key in (bloated, topic, "agent:main:main"):
        for spelled in (key, mixed_case_variant(key), f"  {key.upper()} "):
            result = cli("show", spelled, "--state-dir", root)
            assert result.exit_code == 0, result.stderr
            assert json_equal(orjson.loads(result.stdout), entries[key])
        doc = cli_json("show", mixed_case_variant(key), "--state-dir", root)
        assert doc["key"] == key and doc["agentId"] == "main"
        assert json_equal(doc["entry"], entries[key])
    # A key names its agent: it is looked up in that agent's store, as OpenClaw does.
    ops_key = next(iter(expected_entries(state, "ops")))
    doc = cli_json("show", ops_key, "--state-dir", root, "--all-agents")
    assert doc["agentId"] == "ops"
    doc = cli_json("show", ops_key, "--state-dir", root)
    assert doc["agentId"] == "ops"
    assert json_equal(doc["entry"], expected_entries(state, "ops")[ops_key])
    result = cli("show", ops_key, "--state-dir", root, "--agent", "main")
    assert result.exit_code == 2
    assert "belongs to agent ops, not to --agent main" in result.stderr
    result = cli("show", "agent:main:no-such-session", "--state-dir", root)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: no session agent:main:no-such-session in agent main's store"
        f" ({state.agents['main'].sessions_dir}); list keys with"
        " `sessionstore list --agent main`"
    )
    result = cli("show", "agent:ghost:x", "--state-dir", root)
    assert result.exit_code == 1 and "unknown agent ghost" in result.stderr


# --- export -------------------------------------------------------------------------------------


def test_export(state: GeneratedState, tmp_path: Path) -> None:
    root = state.root
    migrate_all(root)
    out = tmp_path / "out" / "sessions.json"
    result = cli("export", "--state-dir", root, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"Exported {SESSIONS} sessions of main to {out}"
    with sessionstore.open_store(agent="main", state_dir=root) as store:
        assert store.store_type == "sqlite"
        stored = store.load_all()
    raw = out.read_bytes()
    assert raw == dumps_pretty(stored)
    assert out.stat().st_mode & 0o777 == 0o600
    expected = expected_entries(state)
    parsed = orjson.loads(raw)
    assert sorted(parsed) == sorted(expected)
    assert all(json_equal(parsed[k], expected[k]) for k in expected)

    out.write_bytes(b"{}")
    result = cli("export", "--state-dir", root, "--out", out)
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_bytes() == b"{}"
    doc = cli_json("export", "--state-dir", root, "--out", out, "--force")
    assert doc == {"success": True, "exports": [{"agentId": "main", "path": str(out), "count": 40}]}
    assert out.read_bytes() == raw

    result = cli("export", "--state-dir", root, "--all-agents", "--out", out)
    assert result.exit_code == 2
    assert "{agentId}" in result.stderr
    pattern = tmp_path / "all" / "{agentId}.json"
    doc = cli_json("export", "--state-dir", root, "--all-agents", "--out", pattern)
    assert [(e["agentId"], e["count"]) for e in doc["exports"]] == [("main", 40), ("ops", 40)]
    assert (tmp_path / "all" / "ops.json").read_bytes() != (
        tmp_path / "all" / "main.json"
    ).read_bytes()


def test_export_then_migrate_round_trip(state: GeneratedState, tmp_path: Path) -> None:
    root = state.root
    migrate_all(root)
    fresh = tmp_path / "fresh"
    out = fresh / "agents" / "main" / "sessions" / "sessions.json"
    assert cli("export", "--state-dir", root, "--out", out).exit_code == 0
    doc = cli_json("migrate", "--state-dir", fresh)
    assert doc["results"][0]["status"] == "migrated"
    assert doc["results"][0]["migratedCount"] == SESSIONS
    first = cli_json("list", "--state-dir", root)
    second = cli_json("list", "--state-dir", fresh)
    assert first["sessions"] == second["sessions"]
    with (
        sessionstore.open_store(agent="main", state_dir=root) as a,
        sessionstore.open_store(agent="main", state_dir=fresh) as b,
    ):
        assert b.store_type == "sqlite"
        left, right = a.load_all(), b.load_all()
        assert sorted(left) == sorted(right)
        assert all(json_equal(left[k], right[k]) for k in left)


def test_export_from_json_backend_is_byte_identical(state: GeneratedState, tmp_path: Path) -> None:
    # a store OpenClaw wrote (already normalised, no legacy fields) exports byte for byte
    plain = generate_state_dir(tmp_path / "plain", sessions=25, seed=5)
    out = tmp_path / "copy.json"
    assert cli("export", "--state-dir", plain.root, "--out", out).exit_code == 0
    assert out.read_bytes() == plain.agents["main"].json_path.read_bytes()


# --- usage and error paths (in-process) --------------------------------------------------------

COMMANDS: list[list[str]] = [
    ["migrate"],
    ["store-info"],
    ["list"],
    ["show", "agent:main:main"],
    ["export", "--out", "{tmp}/x.json"],
]


def _cmd(command: Sequence[str], tmp_path: Path) -> list[str]:
    return [part.replace("{tmp}", str(tmp_path)) for part in command]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (["--agent", "main", "--all-agents"], "--agent and --all-agents cannot be used together"),
        (["--store", "{tmp}/s.json", "--agent", "main"], "--store cannot be combined"),
        (["--store", "{tmp}/s.json", "--all-agents"], "--store cannot be combined"),
        (["--agent", "nobody"], "unknown agent nobody"),
        (["--no-such-option"], "No such option"),
    ],
    ids=["agent+all", "store+agent", "store+all", "unknown-agent", "unknown-option"],
)
def test_usage_errors_exit_2(
    state: GeneratedState,
    tmp_path: Path,
    command: list[str],
    selector: list[str],
    message: str,
) -> None:
    before = tree_state(state.root)
    args = [*_cmd(command, tmp_path), "--state-dir", str(state.root), *_cmd(selector, tmp_path)]
    result = cli(*args)
    assert result.exit_code == 2, (args, result.stdout, result.stderr)
    if command[0] == "show" and message == "unknown agent nobody":
        message = "belongs to agent main, not to --agent nobody"  # the key names its agent
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_state(state.root) == before
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_invalid_store_type_in_config_exits_1(
    state: GeneratedState, tmp_path: Path, command: list[str]
) -> None:
    write_config(state.root, {"session": {"storeType": "postgresql"}})
    before = tree_state(state.root)
    result = cli(*_cmd(command, tmp_path), "--state-dir", state.root)
    assert result.exit_code == 1, result.stdout
    line = assert_one_line_error(result.stderr)
    assert "session.storeType" in line and "'postgresql'" in line
    assert tree_state(state.root) == before


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] != "migrate"], ids=lambda c: c[0])
def test_commands_accept_every_selector_option(
    state: GeneratedState, tmp_path: Path, command: list[str]
) -> None:
    args = _cmd(command, tmp_path)
    if args[0] == "export":
        args[-1] = str(tmp_path / "{agentId}.json")
    result = cli(*args, "--state-dir", state.root, "--all-agents", "--json")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)
    if args[0] == "export":
        args[-1] = str(tmp_path / "ops-only-{agentId}.json")
    result = cli(*args, "--state-dir", state.root, "--agent", "ops", "--json")
    # show: the key agent:main:main names agent main, not ops
    assert result.exit_code == (2 if args[0] == "show" else 0), result.stderr
    store = str(state.agents["main"].json_path)
    if args[0] == "export":
        args[-1] = str(tmp_path / "via-store.json")
    result = cli(*args, "--state-dir", state.root, "--store", store, "--json")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)


def test_other_argument_errors(state: GeneratedState) -> None:
    root = state.root
    result = cli("list", "--state-dir", root, "--active", "0")
    assert result.exit_code == 2
    result = cli("list", "--state-dir", root, "--limit", "0")
    assert result.exit_code == 2
    result = cli("export", "--state-dir", root)
    assert result.exit_code == 2 and "--out" in result.stderr
    result = cli("show", "--state-dir", root)
    assert result.exit_code == 2
    result = cli("no-such-command")
    assert result.exit_code == 2
    for command in ("migrate", "store-info", "list", "show", "export"):
        result = cli(command, "--help")
        assert result.exit_code == 0
        for option in ("--state-dir", "--agent", "--all-agents", "--store", "--json"):
            assert option in result.stdout, (command, option)


def test_show_missing_key_exits_1(state: GeneratedState) -> None:
    result = cli("show", "agent:main:nope", "--state-dir", state.root)
    assert result.exit_code == 1
    line = assert_one_line_error(result.stderr)
    assert "agent:main:nope" in line
    result = cli("show", "agent:main:nope", "--state-dir", state.root, "--json")
    assert result.exit_code == 1 and result.stdout == ""


# --- as a subprocess ----------------------------------------------------------------------------


def test_subprocess_success_paths(state: GeneratedState, tmp_path: Path) -> None:
    root = state.root
    assert SCRIPT.exists()
    version = proc("--version")
    assert (
        version.returncode == 0
        and version.stdout.strip() == f"sessionstore {sessionstore.__version__}"
    )
    done = proc("migrate", "--state-dir", root, "--all-agents", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["success"] is True
    assert [(r["agentId"], r["status"], r["migratedCount"]) for r in doc["results"]] == [
        ("main", "migrated", SESSIONS),
        ("ops", "migrated", SESSIONS),
    ]
    assert done.stderr == ""
    info = proc("store-info", "--state-dir", root, "--json")
    assert info.returncode == 0
    assert json.loads(info.stdout)["effectiveStoreType"] == "sqlite"
    listed = proc("list", "--state-dir", root, "--channel", "telegram", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)["sessions"]
    assert rows and all(r["channel"] == "telegram" for r in rows)
    text = proc("list", "--state-dir", root)
    assert text.returncode == 0 and text.stderr == ""
    for line in text.stdout.splitlines()[3:]:
        assert len(line.split()) >= 6  # one row per line, never wrapped
    shown = proc("show", "Agent:Main:Main", "--state-dir", root)
    assert shown.returncode == 0
    assert json_equal(orjson.loads(shown.stdout), expected_entries(state)["agent:main:main"])
    out = tmp_path / "exported.json"
    exported = proc("export", "--state-dir", root, "--out", out)
    assert exported.returncode == 0 and out.exists()


def test_subprocess_errors_are_one_line(state: GeneratedState, tmp_path: Path) -> None:
    root = state.root
    json_path = state.agents["main"].json_path
    cases: list[tuple[list[str | Path], int, str]] = [
        (["list", "--state-dir", root, "--agent", "main", "--all-agents"], 2, "--all-agents"),
        (["migrate", "--state-dir", root, "--store", json_path, "--agent", "ops"], 2, "--store"),
        (["store-info", "--state-dir", root, "--agent", "nobody"], 2, "unknown agent nobody"),
        (["list", "--state-dir", root, "--bogus"], 2, "No such option: --bogus"),
        (["list", "--state-dir", root, "--active", "0"], 2, "--active"),
        (["show", "agent:main:" + "x" * 120, "--state-dir", root], 1, "no session"),
        (["frobnicate"], 2, "No such command"),
    ]
    for args, code, pattern in cases:
        run = proc(*args)
        assert run.returncode == code, (args, run.stderr)
        assert_one_line_error(run.stderr, run.stdout, re.escape(pattern))

    out = tmp_path / "taken.json"
    out.write_text("{}")
    run = proc("export", "--state-dir", root, "--out", out)
    assert run.returncode == 1
    assert_one_line_error(run.stderr, run.stdout, "already exists")

    json_path.write_bytes(json_path.read_bytes().replace(b'"updatedAt": ', b'"updatedAt" ', 1))
    run = proc("migrate", "--state-dir", root, "--json")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    assert doc["success"] is False and doc["results"][0]["status"] == "failed"
    run = proc("migrate", "--state-dir", root)
    assert run.returncode == 1
    assert_one_line_error_or_summary(run.stderr, run.stdout)
    run = proc("list", "--state-dir", root)  # the json backend refuses a corrupt file
    assert run.returncode == 1
    assert_one_line_error(run.stderr, run.stdout, r"sessions\.json is not valid JSON")
    assert not json_path.with_name("sessions.sqlite").exists()

    write_config(root, {"session": {"storeType": "mongo"}})
    run = proc("store-info", "--state-dir", root)
    assert run.returncode == 1
    assert_one_line_error(run.stderr, run.stdout, r"session\.storeType")
    (root / "openclaw.json").write_text("{ session: { storeType: ")
    run = proc("list", "--state-dir", root)
    assert run.returncode == 1
    assert_one_line_error(run.stderr, run.stdout, r"openclaw\.json")


def assert_one_line_error_or_summary(stderr: str, stdout: str) -> None:
    """Text-mode migrate failures: the reason is in the report, one summary line on stderr."""
    assert "Traceback" not in stderr + stdout
    assert stderr.splitlines() == ["1 agent failed to migrate; nothing was written for them."]
    assert "FAILED" in stdout


def test_subprocess_no_arguments_prints_help(tmp_path: Path) -> None:
    run = proc()
    assert run.returncode in (0, 2)
    assert "Usage" in run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert all(line.strip() != "error:" for line in run.stderr.splitlines())
