"""Scenarios that are not one timed call: several writer processes, a writer beside maintenance.

Each runs on a sqlite store of its own, filled through the backend's own row encoding, and
returns a :class:`~.measure.Scenario` whose figures :mod:`.targets` checks. Writers are
separate processes (``python -c``), started together, each updating its own sessions; a
write that fails with a busy or lock error is counted, never retried.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from ..clock import now_ms
from ..store import SessionStore, open_store
from .measure import Scenario, quiet
from .responsiveness import child_env

__all__ = ["run_long_lived", "run_maintenance_writer", "run_writers"]

_DAY_MS: Final = 86_400_000

# One writer process: argv state_dir, first key, count, start (epoch s), seconds, spacing (s),
# stop file (it stops early when the file exists). Prints {"done", "busy", "waits"}: each
# update's [start (epoch ns), wait (ns)].
_WRITER: Final = r"""
import json, os, sys, time
from sessionstore import open_store
from sessionstore.errors import SessionStoreError
state_dir, first, count, start, seconds, spacing, stop = sys.argv[1:8]
first, count, start = int(first), int(count), float(start)
seconds, spacing = float(seconds), float(spacing)
store = open_store(state_dir=state_dir, store_type="sqlite")
keys = [f"agent:main:bench:{i:07d}" for i in range(first, first + count)]
store.get(keys[0])
while time.time() < start:
    time.sleep(0.0005)
waits, busy, i = [], 0, 0
clock = time.perf_counter_ns
end = time.perf_counter() + seconds
while time.perf_counter() < end and not (stop and i % 16 == 0 and os.path.exists(stop)):
    at = time.time_ns()
    t0 = clock()
    try:
        store.update(keys[i % count], {"inputTokens": i, "totalTokens": 2 * i}, fields=())
    except SessionStoreError as exc:
        text = str(exc).lower()
        if "lock" in text or "busy" in text:
            busy += 1
        else:
            raise
    waits.append((at, clock() - t0))
    i += 1
    if spacing:
        time.sleep(spacing)
store.close()
print(json.dumps({"done": len(waits), "busy": busy, "waits": waits}))
"""


def _fill(state_dir: Path, sessions: int, *, old: int = 0) -> None:
    """``sessions`` small sessions ``agent:main:bench:NNNNNNN``; the first ``old`` 40 days idle."""
    from ..index import sqlite as backend

    now = now_ms()
    store = open_store(state_dir=state_dir, store_type="sqlite")
    with store:
        store.put("agent:main:main", {"sessionId": "bench-main"})
        sql = (
            f"INSERT INTO sessions ({backend._ROW_COLUMNS})"
            f" VALUES ({', '.join('?' * len(backend._ROW_NAMES))})"
        )
        rows = (
            backend._encode(
                f"agent:main:bench:{i:07d}",
                {
                    "sessionId": f"bench-{i:07d}",
                    "updatedAt": now - 40 * _DAY_MS - i if i < old else now - i,
                    "chatType": "direct",
                    "lastChannel": "telegram",
                    "model": "claude-opus-4-6",
                    "inputTokens": i,
                },
                now=now,
            ).params
            for i in range(sessions)
        )
        with store.index.write_transaction() as conn:  # type: ignore[attr-defined]
            conn.executemany(sql, rows)


def _start_writers(
    state_dir: Path,
    plan: list[tuple[int, int]],
    start: float,
    seconds: float,
    spacing: float,
    stop: Path | None = None,
) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(state_dir),
                str(first),
                str(count),
                repr(start),
                repr(seconds),
                repr(spacing),
                str(stop or ""),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for first, count in plan
    ]


def _collect(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        if p.returncode != 0:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"a writer process failed: {last}"[:300])
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _p99(waits: list[int]) -> float:
    waits = sorted(waits)
    return float(waits[max(0, -(-len(waits) * 99 // 100) - 1)]) if waits else 0.0


def run_writers(
    work: Path,
    *,
    sessions: int = 10_000,
    processes: int = 4,
    seconds: float = 3.0,
    log: Callable[[str], None] = quiet,
) -> Scenario:
    """Aggregate update throughput of ``processes`` writers on distinct sessions vs one.

    Args:
        work: An empty directory for the store.
        sessions: Sessions in the store (each writer updates its own share).
        processes: Writer processes in the second round.
        seconds: How long each round writes.
        log: Progress lines.
    """
    scenario = Scenario("writers4", note=f"{sessions:,} sessions, {seconds:g} s per round")
    try:
        _fill(work, sessions)
        share = sessions // processes
        rounds = {}
        for n in (1, processes):
            start = time.time() + 1.5  # every writer opened and waiting
            procs = _start_writers(
                work, [(i * share, share) for i in range(n)], start, seconds, 0.0
            )
            results = _collect(procs, timeout=seconds + 120)
            waits = [w for r in results for _, w in r["waits"]]
            rounds[n] = (
                sum(r["done"] for r in results) / seconds,
                sum(r["busy"] for r in results),
                _p99(waits),
            )
        one, four = rounds[1], rounds[processes]
        scenario.figures = {
            "processes": processes,
            "one_per_s": round(one[0], 1),
            "four_per_s": round(four[0], 1),
            "busy_errors": one[1] + four[1],
            "p99_ns": four[2],
            "one_p99_ns": one[2],
        }
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        scenario.status, scenario.note = "failed", str(exc)[:300]
    log(f"[scenarios] {processes} writers: {scenario.figures or scenario.note}")
    return scenario


def run_maintenance_writer(
    work: Path,
    *,
    sessions: int = 200_000,
    log: Callable[[str], None] = quiet,
) -> Scenario:
    """One writer process updating while ``maintain()`` prunes half of ``sessions``.

    The writer updates its own fresh session about every millisecond from before a dry run
    until after the real run; its waits during each are reported (p99 and longest).

    Args:
        work: An empty directory for the store.
        sessions: Sessions in the store; the older half is 40 days idle (pruned).
        log: Progress lines.
    """
    scenario = Scenario(
        "maintenance", note=f"maintain() prunes {sessions // 2:,} of {sessions:,} sessions"
    )
    try:
        _fill(work, sessions, old=sessions // 2)
        store = open_store(state_dir=work, store_type="sqlite")
        with store:
            store.config = replace(
                store.config,
                maintenance=replace(
                    store.config.maintenance, mode="enforce", max_entries=10 * sessions
                ),
            )
            stop = work / "stop-writer"
            start = time.time() + 1.5
            (proc,) = _start_writers(work, [(sessions - 10, 10)], start, 3_600.0, 0.001, stop)
            time.sleep(max(0.0, start - time.time()) + 0.3)
            dry = (time.time_ns(), store.maintain(dry_run=True), time.time_ns())
            time.sleep(0.3)
            real = (time.time_ns(), store.maintain(), time.time_ns())
            time.sleep(0.3)
            stop.touch()
            (result,) = _collect([proc], timeout=120)

        def during(span: tuple[int, Any, int]) -> list[int]:
            # an update that started before the span ended and ended after it started
            return [w for at, w in result["waits"] if at <= span[2] and at + w >= span[0]]

        dry_waits, real_waits = during(dry), during(real)
        scenario.figures = {
            "sessions": sessions,
            "pruned": real[1].pruned,
            "dry_run_ns": dry[2] - dry[0],
            "maintain_ns": real[2] - real[0],
            "writer_updates": result["done"],
            "writer_p99_ns": _p99(real_waits),
            "busy_errors": result["busy"],
            "dry_run_max_hold_ns": max(dry_waits, default=0),
            "batch_max_hold_ns": max(real_waits, default=0),
        }
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        scenario.status, scenario.note = "failed", str(exc)[:300]
    log(f"[scenarios] maintenance: {scenario.figures or scenario.note}")
    return scenario


def run_long_lived(
    work: Path,
    *,
    sessions: int = 10_000,
    updates: int = 1_000_000,
    samples: int = 2_000,
    rounds: int = 10,
    log: Callable[[str], None] = quiet,
) -> Scenario:
    """get/update/list top-50 after ``updates`` updates on one store, beside a fresh twin.

    The store is timed before the updates and after them; after them it is timed in
    alternating rounds with a freshly filled store of the same sessions, so that a drifting
    machine moves both sides of the ratio alike (the ratios compare these two; the before
    figures are kept for reference). The WAL file's size is sampled every 1,000 updates;
    its bound is the store's ``journal_size_limit``
    (:data:`~sessionstore.index.sqlite.WAL_LIMIT_BYTES`), kept by SQLite's automatic
    checkpoints.

    Args:
        work: An empty directory for the stores.
        sessions: Sessions in the store.
        updates: Updates between the two measurements (spread over every session).
        samples: Timed calls of each operation per store and measurement (medians compared).
        rounds: Alternating rounds the after/fresh samples are split into.
        log: Progress lines.
    """
    from statistics import median

    from ..index.sqlite import WAL_LIMIT_BYTES

    scenario = Scenario("long_lived", note=f"{sessions:,} sessions, {updates:,} updates")
    try:
        _fill(work / "old", sessions)
        store = open_store(state_dir=work / "old", store_type="sqlite")
        keys = [f"agent:main:bench:{i:07d}" for i in range(sessions)]
        wal = Path(str(store.paths.sqlite_path) + "-wal")
        clock = time.perf_counter_ns
        Times = dict[str, list[int]]

        def timed(subject: SessionStore, calls: int, first: int, out: Times) -> None:
            for i in range(first, first + calls):
                key = keys[(i * 7919) % sessions]
                t0 = clock()
                subject.get(key)
                t1 = clock()
                subject.update(key, {"outputTokens": i})
                t2 = clock()
                subject.list(limit=50)
                t3 = clock()
                out["get"].append(t1 - t0)
                out["update"].append(t2 - t1)
                out["list50"].append(t3 - t2)

        def medians(times: Times) -> dict[str, float]:
            return {op: float(median(v)) for op, v in times.items()}

        def new_times() -> Times:
            return {"get": [], "update": [], "list50": []}

        with store:
            before = new_times()
            timed(store, samples, 0, before)
            wal_max = 0
            started = time.perf_counter()
            for i in range(updates):
                store.update(
                    keys[i % sessions], {"inputTokens": i, "totalTokens": 2 * i}, fields=()
                )
                if i % 1_000 == 0:
                    wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
            spent = time.perf_counter() - started
            _fill(work / "fresh", sessions)
            with open_store(state_dir=work / "fresh", store_type="sqlite") as twin:
                after, fresh = new_times(), new_times()
                per_round = max(1, samples // rounds)
                for r in range(rounds):
                    pair = ((store, after), (twin, fresh))
                    for subject, out in pair if r % 2 == 0 else pair[::-1]:
                        timed(subject, per_round, r * per_round, out)
        after_m, fresh_m = medians(after), medians(fresh)
        scenario.figures = {
            "updates": updates,
            **{f"{op}_before_ns": v for op, v in medians(before).items()},
            **{f"{op}_fresh_ns": v for op, v in fresh_m.items()},
            **{f"{op}_after_ns": v for op, v in after_m.items()},
            **{f"{op}_ratio": after_m[op] / fresh_m[op] for op in fresh_m},
            "wal_max_bytes": wal_max,
            "wal_bound_bytes": WAL_LIMIT_BYTES,
            "updates_per_s": round(updates / spent, 1),
        }
    except (RuntimeError, OSError) as exc:
        scenario.status, scenario.note = "failed", str(exc)[:300]
    log(f"[scenarios] long-lived: {scenario.figures or scenario.note}")
    return scenario
