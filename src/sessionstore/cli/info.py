"""``store-info``: backend, paths, sizes, counts and migration state. It never writes."""

from __future__ import annotations

from typing import Any

from ..store import sqlite_driver
from .common import AgentOpt, AllAgentsOpt, JsonOpt, StateDirOpt, StoreOpt, handle_errors, opened
from .render import print_info, print_json
from .targets import Selection, Target, select_targets

__all__ = ["store_info", "target_info"]


def target_info(selection: Selection, target: Target) -> dict[str, Any]:
    """``store-info`` of one target, read-only (a missing store is described, not created)."""
    if selection.config.store_type != "postgres" and not target.exists():  # postgres: on the server
        from ..openclaw_import import openclaw_db_status

        available, version = sqlite_driver()
        return {
            "storeType": selection.config.store_type,
            "effectiveStoreType": None,
            "fallbackReason": None,
            "sqliteAvailable": available,
            "sqliteVersion": version,
            "sessionCount": 0,
            "jsonPath": str(target.paths.json_path),
            "sqlitePath": str(target.paths.sqlite_path),
            "migration": None,
            "sourceChangedSinceMigration": None,
            "splitWarning": None,
            "agentId": target.agent_id,
            "openclawDb": openclaw_db_status(selection.state_dir, target.agent_id, None),
            "exists": False,
        }
    with opened(selection, target, read_only=True) as store:
        info = store.info().to_dict()
    info["exists"] = True
    return info


@handle_errors
def store_info(
    state_dir: StateDirOpt = None,
    agent: AgentOpt = None,
    all_agents: AllAgentsOpt = False,
    store: StoreOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show the backend, paths, sizes, counts and migration state of a store (read-only)."""
    selection = select_targets(state_dir, agent, all_agents, store)
    infos = [target_info(selection, t) for t in selection.targets]
    if json_output:
        print_json({"stores": infos} if selection.all_agents else infos[0])
        return
    for info in infos:
        print_info(info)
