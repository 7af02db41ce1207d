from __future__ import annotations

from pathlib import Path

from sessionstore.layout import (
    config_path,
    discover_agent_ids,
    resolve_home,
    resolve_state_dir,
    resolve_store_paths,
    sqlite_path_for,
)


def test_state_dir_precedence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    assert resolve_state_dir(None, env) == home / ".openclaw"
    (home / ".clawdbot").mkdir()
    assert resolve_state_dir(None, env) == home / ".clawdbot"  # legacy only when alone
    (home / ".openclaw").mkdir()
    assert resolve_state_dir(None, env) == home / ".openclaw"
    env2 = {**env, "OPENCLAW_STATE_DIR": " ~/elsewhere "}
    assert resolve_state_dir(None, env2) == home / "elsewhere"
    assert resolve_state_dir(tmp_path / "explicit", env2) == tmp_path / "explicit"


def test_home_and_ignored_values(tmp_path: Path) -> None:
    assert resolve_home({"OPENCLAW_HOME": str(tmp_path), "HOME": "/nowhere"}) == tmp_path
    assert resolve_home({"OPENCLAW_HOME": "undefined", "HOME": str(tmp_path)}) == tmp_path
    assert resolve_state_dir(None, {"OPENCLAW_STATE_DIR": "null", "HOME": str(tmp_path)}) == (
        tmp_path / ".openclaw"
    )


def test_config_path(tmp_path: Path) -> None:
    assert config_path(tmp_path, {}) == tmp_path / "openclaw.json"
    other = tmp_path / "c.json5"
    assert config_path(tmp_path, {"OPENCLAW_CONFIG_PATH": str(other)}) == other


def test_store_paths(tmp_path: Path) -> None:
    p = resolve_store_paths(tmp_path, "Main Bot")
    assert p.agent_id == "main-bot"
    assert p.json_path == tmp_path / "agents" / "main-bot" / "sessions" / "sessions.json"
    assert p.sqlite_path == p.json_path.with_name("sessions.sqlite")
    t = resolve_store_paths(tmp_path, "ops", "~/s/{agentId}/store.json", {"HOME": str(tmp_path)})
    assert t.json_path == tmp_path / "s" / "ops" / "store.json"
    assert t.sqlite_path == tmp_path / "s" / "ops" / "store.sqlite"
    assert sqlite_path_for(Path("/x/store")) == Path("/x/store.sqlite")


def test_discovery_dedupes_and_keeps_configured_first(tmp_path: Path) -> None:
    for agent in ("beta", "alpha"):
        (tmp_path / "agents" / agent / "sessions").mkdir(parents=True)
    (tmp_path / "agents" / "no-sessions-dir").mkdir(parents=True)
    assert discover_agent_ids(tmp_path, ["Main", "beta"]) == ["main", "beta", "alpha"]
