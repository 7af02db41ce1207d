"""Where things live: state dir, config file, per-agent store paths (OpenClaw's rules)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .keys import normalize_agent_id

__all__ = [
    "StorePaths",
    "config_path",
    "discover_agent_ids",
    "openclaw_db_path",
    "resolve_home",
    "resolve_state_dir",
    "resolve_store_paths",
]

SESSIONS_JSON = "sessions.json"
SESSIONS_SQLITE = "sessions.sqlite"
OPENCLAW_DB = "openclaw-agent.sqlite"  # OpenClaw 2026.8+: sessions and transcripts, per agent


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or value in ("undefined", "null"):
        return None
    return value


def resolve_home(environ: Mapping[str, str] | None = None) -> Path:
    """The home dir: ``OPENCLAW_HOME`` (``~`` expanded) > ``HOME`` > ``USERPROFILE`` > cwd."""
    env = os.environ if environ is None else environ
    explicit = _env("OPENCLAW_HOME", env)
    if explicit is not None:
        return Path(os.path.expanduser(explicit)).resolve()
    for name in ("HOME", "USERPROFILE"):
        value = _env(name, env)
        if value is not None:
            return Path(value)
    try:
        return Path.home()
    except RuntimeError:  # no home at all
        return Path.cwd()


def _expand(value: str, home: Path) -> Path:
    if value == "~":
        return home
    if value.startswith("~/"):
        return home / value[2:]
    return Path(value)


def resolve_state_dir(
    state_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The state dir: an explicit path, else ``OPENCLAW_STATE_DIR``, else ``~/.openclaw``.

    Like OpenClaw, the legacy ``~/.clawdbot`` is used when it exists and ``~/.openclaw``
    does not.
    """
    env = os.environ if environ is None else environ
    if state_dir is not None:
        value = os.fspath(state_dir)
        if not value.startswith("~"):
            # the home dir matters only to "~" (resolving it costs a few env reads)
            return Path(value).absolute()
        return _expand(value, resolve_home(env)).absolute()
    home = resolve_home(env)
    explicit = _env("OPENCLAW_STATE_DIR", env)
    if explicit is not None:
        return _expand(explicit, home).absolute()
    current = home / ".openclaw"
    legacy = home / ".clawdbot"
    if not current.exists() and legacy.exists():
        return legacy
    return current


def config_path(state_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """``OPENCLAW_CONFIG_PATH``, else ``<stateDir>/openclaw.json``."""
    env = os.environ if environ is None else environ
    explicit = _env("OPENCLAW_CONFIG_PATH", env)
    if explicit is not None:
        return _expand(explicit, resolve_home(env)).absolute()
    return state_dir / "openclaw.json"


@dataclass(frozen=True)
class StorePaths:
    """The files of one agent's store.

    Attributes:
        agent_id: The normalised agent id.
        sessions_dir: The directory holding the index and transcripts.
        json_path: The legacy ``sessions.json`` (also the migration source).
        sqlite_path: The SQLite hot index beside it.
    """

    agent_id: str
    sessions_dir: Path
    json_path: Path
    sqlite_path: Path


def sqlite_path_for(json_path: Path) -> Path:
    """``sessions.json`` -> ``sessions.sqlite``; a path without ``.json`` gets ``.sqlite``."""
    name = json_path.name
    stem = name[: -len(".json")] if name.endswith(".json") else name
    return json_path.with_name(stem + ".sqlite")


def resolve_store_paths(
    state_dir: Path,
    agent_id: str,
    store: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> StorePaths:
    """Paths of an agent's store (``resolveStorePath``).

    Args:
        state_dir: The resolved state dir.
        agent_id: The agent id (normalised here).
        store: The ``session.store`` setting or a ``--store`` path: a file path, possibly
            with ``{agentId}`` and a leading ``~``.
        environ: Environment for ``~`` expansion (tests).
    """
    agent = normalize_agent_id(agent_id)
    if store:
        value = store.replace("{agentId}", agent)
        json_path = _expand(value, resolve_home(environ)).absolute()
    else:
        return _default_store_paths(state_dir, agent)
    return StorePaths(
        agent_id=agent,
        sessions_dir=json_path.parent,
        json_path=json_path,
        sqlite_path=sqlite_path_for(json_path),
    )


@functools.lru_cache(maxsize=64)
def _default_store_paths(state_dir: Path, agent: str) -> StorePaths:
    """The per-agent default paths: a pure function of its arguments, so kept per process."""
    json_path = state_dir / "agents" / agent / "sessions" / SESSIONS_JSON
    return StorePaths(
        agent_id=agent,
        sessions_dir=json_path.parent,
        json_path=json_path,
        sqlite_path=sqlite_path_for(json_path),
    )


def openclaw_db_path(state_dir: Path, agent_id: str) -> Path:
    """OpenClaw 2026.8+'s database: ``<stateDir>/agents/<agentId>/agent/openclaw-agent.sqlite``."""
    return state_dir / "agents" / normalize_agent_id(agent_id) / "agent" / OPENCLAW_DB


def discover_agent_ids(state_dir: Path, configured: list[str] | None = None) -> list[str]:
    """Configured agents plus every agent dir found on disk, in a stable order.

    An agent dir is ``agents/<id>/`` with a ``sessions/`` dir or OpenClaw 2026.8+'s
    ``agent/openclaw-agent.sqlite``.
    """
    seen: dict[str, None] = {}
    for agent in configured or []:
        seen[normalize_agent_id(agent)] = None
    agents_dir = state_dir / "agents"
    if agents_dir.is_dir():
        for child in sorted(agents_dir.iterdir()):
            if (child / "sessions").is_dir() or (child / "agent" / OPENCLAW_DB).is_file():
                seen[normalize_agent_id(child.name)] = None
    return list(seen)
