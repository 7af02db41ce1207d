"""Which stores a command acts on: ``--state-dir``, ``--agent``, ``--all-agents``, ``--store``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import SessionConfig, load_config
from ..keys import normalize_agent_id
from ..layout import (
    StorePaths,
    config_path,
    discover_agent_ids,
    resolve_state_dir,
    resolve_store_paths,
)

__all__ = ["Selection", "Target", "TargetError", "select_targets"]


class TargetError(Exception):
    """A usage error in the store selection (exit code 2)."""


@dataclass(frozen=True)
class Target:
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


@dataclass(frozen=True)
class Selection:
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


def select_targets(
    state_dir: Path | None,
    agent: str | None,
    all_agents: bool,
    store: str | None,
) -> Selection:
    """Resolve the selection like ``openclaw sessions`` does.

    Raises:
        TargetError: Conflicting selectors or an unknown agent.
        ConfigError: openclaw.json is invalid.
    """
    if agent is not None and all_agents:
        raise TargetError("--agent and --all-agents cannot be used together")
    if store is not None and (agent is not None or all_agents):
        raise TargetError("--store cannot be combined with --agent or --all-agents")
    root = resolve_state_dir(state_dir)
    config = load_config(config_path(root))
    if store is not None:
        paths = resolve_store_paths(root, config.default_agent, store)
        return Selection(root, config, [Target(paths, store)], False)
    if all_agents:
        ids = discover_agent_ids(root, [config.default_agent, *config.agents])
        targets: list[Target] = []
        seen: set[Path] = set()
        for agent_id in ids:
            paths = resolve_store_paths(root, agent_id, config.store)
            if paths.json_path not in seen:
                seen.add(paths.json_path)
                targets.append(Target(paths))
        return Selection(root, config, targets, True)
    agent_id = normalize_agent_id(agent) if agent is not None else config.default_agent
    known = set(discover_agent_ids(root, [config.default_agent, *config.agents]))
    if agent is not None and agent_id not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise TargetError(f"Unknown agent id {agent!r} (known agents: {listed})")
    return Selection(
        root, config, [Target(resolve_store_paths(root, agent_id, config.store))], False
    )
