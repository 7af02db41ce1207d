"""Which stores a command acts on: ``--state-dir``, ``--agent``, ``--all-agents``, ``--store``.

One rule for agents, shared with the library: an agent id names a store, and a store that
does not exist yet reads as empty (``open_store`` creates nothing until a write). The CLI
acts only on agents that exist: configured in ``openclaw.json`` or with a directory under
``agents/``; any other ``--agent`` is an error that lists the known ones. A session key
names its agent (``agent:<id>:...``): commands that take a key act on that agent's store,
as OpenClaw does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..config import SessionConfig, load_settings
from ..keys import normalize_agent_id, parse_agent_session_key
from ..layout import (
    StorePaths,
    config_path,
    discover_agent_ids,
    resolve_state_dir,
    resolve_store_paths,
)

__all__ = ["Selection", "Target", "TargetError", "select_targets"]


class TargetError(Exception):
    """A store selection that cannot be acted on (exit code 2 for usage, 1 for state).

    Attributes:
        code: The exit code.
    """

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# NamedTuples, not frozen dataclasses: the same immutable records for the CLI's own use, at
# a third of a dataclass's ~0.4 ms to build at import (every command pays it).
class Target(NamedTuple):
    """One store a command acts on.

    Attributes:
        paths: The agent's store paths.
        store: The explicit ``--store`` path, if one was given.
    """

    paths: StorePaths
    store: str | None = None

    @property
    def agent_id(self) -> str:
        """The agent id."""
        return self.paths.agent_id

    def exists(self) -> bool:
        """Whether a store (sessions.json or sessions.sqlite) exists on disk."""
        return self.paths.json_path.exists() or self.paths.sqlite_path.exists()


class Selection(NamedTuple):
    """The resolved selection: state dir, config and targets.

    Attributes:
        state_dir: The state dir.
        config: The parsed ``openclaw.json``.
        targets: The stores, deduplicated by path.
        all_agents: Whether ``--all-agents`` was given.
    """

    state_dir: Path
    config: SessionConfig
    targets: list[Target]
    all_agents: bool


def key_agent(key: str) -> str | None:
    """The agent a session key names (``agent:<id>:...``), normalised; None for others."""
    parsed = parse_agent_session_key(key.strip().lower())
    return normalize_agent_id(parsed.agent_id) if parsed is not None else None


def select_targets(
    state_dir: Path | None,
    agent: str | None,
    all_agents: bool,
    store: str | None,
    *,
    key: str | None = None,
) -> Selection:
    """Resolve the selection like ``openclaw sessions`` does.

    Args:
        state_dir: ``--state-dir`` (else ``OPENCLAW_STATE_DIR``, else ``~/.openclaw``).
        agent: ``--agent``.
        all_agents: ``--all-agents``.
        store: ``--store``.
        key: The session key of a command that takes one: it picks its agent's store.

    Raises:
        TargetError: Conflicting selectors, an unknown agent, or a state dir that does not
            exist.
        ConfigError: openclaw.json is invalid.
    """
    if agent is not None and all_agents:
        raise TargetError("--agent and --all-agents cannot be used together")
    if store is not None and (agent is not None or all_agents):
        raise TargetError("--store cannot be combined with --agent or --all-agents")
    root = resolve_state_dir(state_dir)
    if not root.is_dir():
        if state_dir is not None:
            where = "--state-dir"
        elif os.environ.get("OPENCLAW_STATE_DIR", "").strip():
            where = "OPENCLAW_STATE_DIR"
        else:
            where = "the default state dir"
        raise TargetError(
            f"no OpenClaw state dir at {root} ({where}); pass the right --state-dir or set"
            " OPENCLAW_STATE_DIR",
            code=1,
        )
    config = load_settings(root, config_path(root))
    if store is not None:
        paths = resolve_store_paths(root, config.default_agent, store)
        return Selection(root, config, [Target(paths, store)], False)
    known = discover_agent_ids(root, [config.default_agent, *config.agents])
    if all_agents:
        targets: list[Target] = []
        seen: set[Path] = set()
        for agent_id in known:
            paths = resolve_store_paths(root, agent_id, config.store)
            if paths.json_path not in seen:
                seen.add(paths.json_path)
                targets.append(Target(paths))
        return Selection(root, config, targets, True)
    owner = key_agent(key) if key is not None else None
    if owner is not None and agent is not None and normalize_agent_id(agent) != owner:
        raise TargetError(f"the key {key} belongs to agent {owner}, not to --agent {agent}")
    agent_id = owner or (normalize_agent_id(agent) if agent is not None else config.default_agent)
    if (agent is not None or owner is not None) and agent_id not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise TargetError(
            f"unknown agent {agent_id} (known agents: {listed}); an agent is known when"
            " openclaw.json lists it or agents/<id>/ exists",
            code=1 if owner is not None else 2,
        )
    return Selection(
        root, config, [Target(resolve_store_paths(root, agent_id, config.store))], False
    )
