#!/usr/bin/env python3
"""Writers contending for one sessions.json: every update acknowledged, none lost.

N processes each run M read-modify-write updates (``store.update(key, fn)``) on random
sessions of a realistic store (``sessionstore.bench.generate``: ~30% bloated entries with shared
skill snapshots, about 5 MB at 300 sessions), all at the default lock timeout. Each worker
reports every update over a pipe after the call returns (acknowledged, or the error it
raised). The checker then compares the store with what was acknowledged: per session, the
``stressCount`` must equal the number of acknowledged updates of it, and each worker's
``stressW<n>`` field its last acknowledged value there.

    python bench/stress/json_contention.py                     # 4 x 500 on 300 sessions
    python bench/stress/json_contention.py --processes 8 --updates 100 --seed 7
    python bench/stress/json_contention.py --json              # one JSON object on stdout

Exit status 0 when every update was acknowledged and the final store is exact.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

import sessionstore
from sessionstore.bench.generate import generate_state_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=4, help="writer processes (default 4)")
    p.add_argument("--updates", type=int, default=500, help="updates per process (default 500)")
    p.add_argument("--sessions", type=int, default=300, help="sessions in the store (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the store and the key choice")
    p.add_argument(
        "--timeout-ms", type=int, default=10_000, help="lock timeout (default 10000, the default)"
    )
    p.add_argument("--state-dir", type=Path, help="where to build the store (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p.parse_args(argv)


def _worker(
    n: int, args: argparse.Namespace, keys: list[str], start: Any, conn: Connection
) -> None:
    try:
        rng = random.Random(f"{args.seed}:{n}")
        field = f"stressW{n}"
        store = sessionstore.open_store(
            state_dir=args.state_dir, store_type="json", lock_timeout_ms=args.timeout_ms
        )
        with store:
            if not start.wait(60):
                raise TimeoutError("no start signal")
            for i in range(1, args.updates + 1):
                key = rng.choice(keys)

                def bump(entry: Any, i: int = i) -> dict[str, Any]:
                    return {"stressCount": (entry.get("stressCount") or 0) + 1, field: i}

                began = time.perf_counter()
                try:
                    store.update(key, bump)
                except sessionstore.SessionStoreError as exc:
                    took = time.perf_counter() - began
                    conn.send(("failed", key, i, took, f"{type(exc).__name__}: {exc}"))
                else:
                    took = time.perf_counter() - began
                    conn.send(("ok", key, i, took, None))
        conn.send(("done", None, 0, 0.0, None))
    except BaseException:
        conn.send(("crashed", None, 0, 0.0, traceback.format_exc()))
    finally:
        conn.close()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the store, run the writers, check the result; returns the figures."""
    own_dir = args.state_dir is None
    if own_dir:
        args.state_dir = Path(tempfile.mkdtemp(prefix="json-contention-"))
    try:
        state = generate_state_dir(
            args.state_dir, sessions=args.sessions, seed=args.seed, transcripts=True
        )
        agent = state.agents["main"]
        keys = sorted(agent.entries)
        size = agent.json_path.stat().st_size
        ctx = mp.get_context("fork")
        start = ctx.Event()
        pipes = [ctx.Pipe(duplex=False) for _ in range(args.processes)]
        procs = [
            ctx.Process(target=_worker, args=(n, args, keys, start, pipes[n][1]))
            for n in range(args.processes)
        ]
        for p in procs:
            p.start()
        for _, w in pipes:
            w.close()
        began = time.perf_counter()
        start.set()
        acked: Counter[str] = Counter()
        last: dict[tuple[str, int], int] = {}
        latencies: list[float] = []
        failures: list[str] = []
        crashes: list[str] = []
        for n, (r, _) in enumerate(pipes):
            while True:
                try:
                    status, key, i, took, info = r.recv()
                except EOFError:
                    crashes.append(f"worker {n} ended without reporting")
                    break
                if status == "done":
                    break
                if status == "crashed":
                    crashes.append(info)
                    break
                latencies.append(took)
                if status == "ok":
                    acked[key] += 1
                    last[(key, n)] = i
                else:
                    failures.append(info)
        for p in procs:
            p.join()
        wall = time.perf_counter() - began
        with sessionstore.open_store(state_dir=args.state_dir, store_type="json") as store:
            final = store.load_all()
            problems = [str(f) for f in store.check()]
        wrong = []
        for key in keys:
            entry = final.get(key) or {}
            if (entry.get("stressCount") or 0) != acked[key]:
                wrong.append(f"{key}: stressCount {entry.get('stressCount')} != {acked[key]}")
            for n in range(args.processes):
                if entry.get(f"stressW{n}") != last.get((key, n)):
                    wrong.append(f"{key}: stressW{n} {entry.get(f'stressW{n}')}")
        leftovers = sorted(
            p.name
            for p in agent.json_path.parent.iterdir()
            if p.name.endswith((".lock", ".tmp")) or ".stale." in p.name
        )
        return {
            "processes": args.processes,
            "updatesPerProcess": args.updates,
            "sessions": args.sessions,
            "storeBytes": size,
            "seed": args.seed,
            "timeoutMs": args.timeout_ms,
            "attempted": args.processes * args.updates,
            "acknowledged": sum(acked.values()),
            "failed": len(failures),
            "failureKinds": dict(Counter(f.split(":", 1)[0] for f in failures)),
            "crashed": crashes,
            "wrongValues": wrong[:20],
            "wrongCount": len(wrong),
            "checkFindings": problems,
            "leftovers": leftovers,
            "wallSeconds": round(wall, 2),
            "latencyMs": {
                name: round(_percentile(latencies, q) * 1000, 1)
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
        }
    finally:
        if own_dir:
            shutil.rmtree(args.state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    ok = (
        result["acknowledged"] == result["attempted"]
        and not result["crashed"]
        and not result["wrongCount"]
        and not result["leftovers"]
        and not result["checkFindings"]
    )
    if args.json:
        print(orjson.dumps({"ok": ok, **result}).decode())
        return 0 if ok else 1
    lat = result["latencyMs"]
    print(
        f"{result['processes']} processes x {result['updatesPerProcess']} updates on"
        f" {result['sessions']} sessions ({result['storeBytes'] / 1e6:.1f} MB sessions.json),"
        f" lock timeout {result['timeoutMs']} ms, seed {result['seed']}"
    )
    print(
        f"acknowledged {result['acknowledged']}/{result['attempted']}, failed"
        f" {result['failed']} {result['failureKinds'] or ''}, crashed {len(result['crashed'])},"
        f" wrong values {result['wrongCount']}, leftovers {result['leftovers'] or 'none'},"
        f" check findings {len(result['checkFindings'])}"
    )
    print(
        f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']};"
        f" wall {result['wallSeconds']} s"
    )
    for line in result["wrongValues"][:5] + result["checkFindings"][:5] + result["crashed"][:2]:
        print("  " + line.strip())
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
