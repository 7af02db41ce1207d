"""The postgres several-writers scenario: 1 process against 8 updating distinct sessions.

Each round starts its writer processes (``python -c``, each with its own pool) together;
every writer updates its own share of the sessions for a fixed time. The same rounds run
with :class:`~.models.BarePsycopg`'s update, the floor no store can beat on this server and
machine. Every writer also reports the CPU time it and its server backend used during the
round (``/proc/<pid>/stat``; the server runs on this machine), which says where the time
goes when the processes do not scale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from ..clock import now_ms
from ..errors import SessionStoreError
from ..store import open_store
from .measure import Scenario, quiet
from .responsiveness import child_env
from .scenarios import _collect, _p99

__all__ = ["PG_WRITERS", "run_pg_writers"]

PG_WRITERS: Final = 8
"""Writer processes in the second round (the issue's 8)."""

# One writer: argv mode (store|bare), state_dir, dsn, schema, first, count, start (epoch s),
# seconds. Prints {"done", "conflicts", "waits", "client_cpu_s", "server_cpu_s"}.
_WRITER: Final = r"""
import json, os, sys, time
from sessionstore import open_store
from sessionstore.errors import WriteConflictError
from sessionstore.bench.models import BarePsycopg
mode, state_dir, dsn, schema, first, count, start, seconds = sys.argv[1:9]
first, count, start, seconds = int(first), int(count), float(start), float(seconds)
keys = [f"agent:main:bench:{i:07d}" for i in range(first, first + count)]
tick = os.sysconf("SC_CLK_TCK")
if mode == "bare":
    bare = BarePsycopg(dsn, schema)
    update = lambda key, patch: bare.update(key, patch)
    backends = lambda: [bare.backend_pid()]
else:
    store = open_store("main", state_dir, "postgres", dsn=dsn)
    update = lambda key, patch: store.update(key, patch, fields=())
    index = store.index
    backends = lambda: [r[0] for r in index.run(lambda c: c.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        (index.application_name(),)).fetchall(), write=False)]
def server_cpu(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick
update(keys[0], {"inputTokens": 0})
pids = backends()
while time.time() < start:
    time.sleep(0.0005)
waits, conflicts, i = [], 0, 0
clock = time.perf_counter_ns
cpu0, server0 = os.times(), server_cpu(pids)
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = clock()
    try:
        update(keys[i % count], {"inputTokens": i, "totalTokens": 2 * i})
    except WriteConflictError:
        conflicts += 1
    waits.append(clock() - t0)
    i += 1
cpu1, server1 = os.times(), server_cpu(pids)
print(json.dumps({"done": len(waits), "conflicts": conflicts, "waits": waits,
                  "client_cpu_s": cpu1.user + cpu1.system - cpu0.user - cpu0.system,
                  "server_cpu_s": server1 - server0}))
"""


def _fill(state_dir: Path, dsn: str, sessions: int) -> None:
    """``sessions`` small sessions ``agent:main:bench:NNNNNNN`` in one transaction."""
    now = now_ms()
    entries = {
        f"agent:main:bench:{i:07d}": {
            "sessionId": f"bench-{i:07d}",
            "updatedAt": now - i,
            "chatType": "direct",
            "lastChannel": "telegram",
            "model": "claude-opus-4-6",
            "inputTokens": i,
        }
        for i in range(sessions)
    }
    with open_store("main", state_dir, "postgres", dsn=dsn) as store:
        store.mutate(lambda current: current.update(entries))


def _round(
    mode: str, state_dir: Path, dsn: str, schema: str, plan: list[tuple[int, int]], seconds: float
) -> dict[str, float]:
    start = time.time() + 2.0  # every writer imported, connected and waiting
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                mode,
                str(state_dir),
                dsn,
                schema,
                str(first),
                str(count),
                repr(start),
                repr(seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**child_env(), "SESSIONSTORE_PG_SCHEMA": schema},  # as _fill's settings file
        )
        for first, count in plan
    ]
    results = _collect(procs, timeout=seconds + 120)
    done = sum(r["done"] for r in results)
    return {
        "per_s": round(done / seconds, 1),
        "p99_ns": _p99([w for r in results for w in r["waits"]]),
        "conflicts": sum(r["conflicts"] for r in results),
        # CPU per update, in microseconds: this process's and its server backend's
        "client_cpu_us": round(sum(r["client_cpu_s"] for r in results) / max(done, 1) * 1e6, 1),
        "server_cpu_us": round(sum(r["server_cpu_s"] for r in results) / max(done, 1) * 1e6, 1),
    }


def run_pg_writers(
    work: Path,
    dsn: str,
    *,
    sessions: int = 8_000,
    processes: int = PG_WRITERS,
    seconds: float = 3.0,
    log: Callable[[str], None] = quiet,
) -> Scenario:
    """Aggregate update throughput of ``processes`` writers on distinct sessions vs one.

    Runs in a throw-away schema (dropped afterwards). Figures: updates/s of one and of
    ``processes`` writers, their ratio, p99 per update, write conflicts that survived the
    store's retries, and CPU per update (client process and server backend); the same
    for the bare-psycopg floor (``bare_*``).

    Args:
        work: An empty directory (the store's settings file).
        dsn: The PostgreSQL server.
        sessions: Sessions in the store (each writer updates its own share).
        processes: Writer processes in the second round.
        seconds: How long each round writes.
        log: Progress lines.
    """
    schema = f"sessionstore_bench_w{os.getpid()}"
    scenario = Scenario(
        "pg_writers8",
        note=f"{sessions:,} sessions, {seconds:g} s per round, {os.cpu_count()} cores shared"
        " with the server",
    )
    work.mkdir(parents=True, exist_ok=True)
    (work / "sessionstore.json").write_bytes(orjson.dumps({"postgres": {"schema": schema}}))
    try:
        _fill(work, dsn, sessions)
        share = sessions // processes
        figures: dict[str, Any] = {"processes": processes}
        for mode, prefix in (("store", ""), ("bare", "bare_")):
            one = _round(mode, work, dsn, schema, [(0, share)], seconds)
            many = _round(
                mode, work, dsn, schema, [(i * share, share) for i in range(processes)], seconds
            )
            figures |= {
                f"{prefix}one_per_s": one["per_s"],
                f"{prefix}many_per_s": many["per_s"],
                f"{prefix}scaling_ratio": round(many["per_s"] / one["per_s"], 2),
                f"{prefix}one_p99_ns": one["p99_ns"],
                f"{prefix}p99_ns": many["p99_ns"],
                f"{prefix}conflicts": one["conflicts"] + many["conflicts"],
                f"{prefix}client_cpu_us": many["client_cpu_us"],
                f"{prefix}server_cpu_us": many["server_cpu_us"],
            }
        scenario.figures = figures
    except (RuntimeError, subprocess.TimeoutExpired, OSError, SessionStoreError) as exc:
        scenario.status, scenario.note = "failed", str(exc)[:300]
    finally:
        from .measure import _drop_schema

        _drop_schema(dsn, schema)
    log(f"[scenarios] {processes} postgres writers: {scenario.figures or scenario.note}")
    return scenario
