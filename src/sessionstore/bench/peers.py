"""Peers: other projects' session stores, measured against this library when installed.

Google ADK's ``DatabaseSessionService`` (SQLite through aiosqlite) is measured when the
``bench`` extra is installed; the OpenAI Agents SDK's ``SQLiteSession`` is compared through
the adapter by ``bench/adapters.py`` (docs/benchmarks-adapters.md), not here. A peer that is
not measured says why.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..layout import resolve_store_paths
from ..migrate import migrate_agent
from ..store import open_store
from .generate import generate_state_dir
from .measure import INSTALL_HINT, BenchSettings, PeerResult, discard, log_measurement, measure
from .models import AGENT

__all__ = ["run_peers"]


def _peer_adk(settings: BenchSettings, root: Path, log: Callable[[str], None]) -> PeerResult:
    import asyncio  # here, not at the top: asyncio alone adds ~10 MB to the memory probe

    name = "Google ADK DatabaseSessionService (SQLite via aiosqlite)"
    n = settings.peer_sessions
    try:
        sessions_module = importlib.import_module("google.adk.sessions")
        importlib.import_module("sqlalchemy.ext.asyncio")
        importlib.import_module("aiosqlite")
    except ImportError as exc:
        return PeerResult(name, "skipped", f"not installed ({INSTALL_HINT}): {exc}", n)
    log(f"[peers] ADK: generating {n:,} typical sessions")
    state_dir = root / "state"
    generate_state_dir(state_dir, sessions=n, bloated_ratio=0.0, seed=settings.seed)
    migrate_agent(resolve_store_paths(state_dir, AGENT, None))
    result = PeerResult(name, "ok")
    store = open_store(AGENT, state_dir, "sqlite")
    loop = asyncio.new_event_loop()
    service: Any = None
    try:
        rows = store.list().rows
        result.sessions = len(rows)  # cron run keys are never listed, so never compared
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            service = sessions_module.DatabaseSessionService(
                db_url=f"sqlite+aiosqlite:///{root / 'adk.sqlite'}"
            )

            async def create_all() -> None:
                for row in rows:
                    state = {k: v for k, v in row.items() if v is not None}
                    await service.create_session(
                        app_name="openclaw",
                        user_id=AGENT,
                        session_id=str(row["sessionId"]),
                        state=state,
                    )

            log(f"[peers] ADK: creating {len(rows):,} sessions through create_session")
            t0 = time.perf_counter()
            loop.run_until_complete(create_all())
            result.details["adkCreateSeconds"] = round(time.perf_counter() - t0, 1)
            log(f"[peers] ADK: created in {result.details['adkCreateSeconds']} s")
            listed = loop.run_until_complete(
                service.list_sessions(app_name="openclaw", user_id=AGENT)
            )
            result.details["adkListedSessions"] = len(listed.sessions)
            adk = measure(
                "google-adk",
                "list_all",
                lambda i: discard(
                    loop.run_until_complete(
                        service.list_sessions(app_name="openclaw", user_id=AGENT)
                    )
                ),
                settings.budget,
            )
        ours_all = measure("sqlite", "list_all", lambda i: discard(store.list()), settings.budget)
        ours_50 = measure(
            "sqlite", "list50", lambda i: discard(store.list(limit=50)), settings.budget
        )
        result.measurements = [adk, ours_all, ours_50]
        for m in result.measurements:
            log_measurement(log, m)
        result.note = (
            "ADK's list_sessions returns every session of a user (no limit or order option);"
            " compared with our list() of all rows and our top-50 page"
        )
    except Exception as exc:  # a peer's failure is reported, not fatal to the run
        result.status = "failed"
        result.note = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
    finally:
        if service is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(service.close())
        loop.close()
        store.close()
    return result


ADAPTERS_NOTE = "compared by bench/adapters.py (docs/benchmarks-adapters.md)"


def _peer_openai_agents() -> PeerResult:
    name = "OpenAI Agents SDK SQLiteSession"
    try:
        importlib.import_module("sessionstore.adapters.openai_agents")
    except ImportError:
        return PeerResult(name, "skipped", "no adapter in this version")
    try:
        importlib.import_module("agents.memory")
    except ImportError as exc:
        return PeerResult(name, "skipped", f"not installed (pip install openai-agents): {exc}")
    return PeerResult(name, "skipped", ADAPTERS_NOTE)


def run_peers(settings: BenchSettings, root: Path, log: Callable[[str], None]) -> list[PeerResult]:
    """Compare with every peer: those whose packages are installed are measured.

    Args:
        settings: ``peer_sessions``, ``seed``, ``budget`` and ``keep_data`` are used.
        root: Where the peers' datasets are written (removed afterwards unless kept).
        log: Progress lines; one per peer says whether it was measured, and if not, why.

    Returns:
        One result per peer, measured or not.
    """
    peers = [_peer_openai_agents()]
    adk_root = root / "peers-adk"
    adk_root.mkdir(parents=True, exist_ok=True)
    try:
        peers.append(_peer_adk(settings, adk_root, log))
    finally:
        if not settings.keep_data:
            shutil.rmtree(adk_root, ignore_errors=True)
    for p in peers:
        log(f"[peers] {p.name}: {p.outcome}" + (f" ({p.note})" if p.status != "ok" else ""))
    return peers
