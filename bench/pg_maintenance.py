#!/usr/bin/env python3
"""A writer's waits while maintenance prunes half of a PostgreSQL store, batched or not.

    python bench/pg_maintenance.py --dsn postgresql://postgres@127.0.0.1/test
    python bench/pg_maintenance.py --dsn ... --sessions 20000 --batches 500,1000000000

For each batch size: a throwaway schema with ``--sessions`` sessions (the older half 40
days idle), one writer process updating its own session about every millisecond, a dry
run, then ``maintain()`` in enforce mode. Prints one line per batch size: the run's times
and the longest and p99 wait of the writer's updates that overlapped it. The schema is
dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import uuid
from dataclasses import replace
from tempfile import TemporaryDirectory
from typing import Any

import psycopg

import sessionstore
from sessionstore.clock import now_ms
from sessionstore.index.postgres import PostgresIndex

DAY_MS = 86_400_000


def _writer(state: str, stop: Any, out: Any) -> None:
    waits = []
    with sessionstore.open_store(state_dir=state, store_type="postgres") as store:
        i = 0
        while not stop.is_set():
            began = time.perf_counter_ns()
            store.put("agent:main:writer", {"sessionId": "writer", "n": i})
            took = time.perf_counter_ns() - began
            waits.append((time.time_ns(), took))
            i += 1
            time.sleep(0.001)
    out.put(waits)


def _run(dsn: str, sessions: int, batch: int) -> str:
    schema = f"bench_pgmaint_{uuid.uuid4().hex[:8]}"
    os.environ.update(SESSIONSTORE_PG_DSN=dsn, SESSIONSTORE_PG_SCHEMA=schema)
    now = now_ms()
    try:
        with (
            TemporaryDirectory() as state,
            sessionstore.open_store(state_dir=state, store_type="postgres") as store,
        ):
            index = store.index
            assert isinstance(index, PostgresIndex)
            old = sessions // 2
            entries = {
                f"agent:main:s{i}": {
                    "sessionId": f"s{i}",
                    "updatedAt": now - 40 * DAY_MS if i < old else now,
                }
                for i in range(sessions)
            }
            index.import_entries(entries, record=None)
            store.config = replace(
                store.config,
                maintenance=replace(
                    store.config.maintenance, mode="enforce", max_entries=10 * sessions
                ),
            )
            index.maintenance_batch_rows = batch
            ctx = multiprocessing.get_context("fork")
            stop, out = ctx.Event(), ctx.Queue()
            proc = ctx.Process(target=_writer, args=(state, stop, out))
            proc.start()
            time.sleep(1.0)  # the writer is under way
            dry_at = time.time_ns()
            store.maintain(dry_run=True)
            dry_end = time.time_ns()
            time.sleep(0.3)
            real_at = time.time_ns()
            report = store.maintain()
            real_end = time.time_ns()
            time.sleep(0.3)
            stop.set()
            waits = out.get(timeout=120)
            proc.join()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def during(start: int, end: int) -> list[int]:
        return sorted(w for at, w in waits if at - w <= end and at >= start)

    dry, real = during(dry_at, dry_end), during(real_at, real_end)
    p99 = real[max(int(len(real) * 0.99) - 1, 0)] if real else 0
    return (
        f"batch={batch} sessions={sessions} pruned={report.pruned}"
        f" dry_run={(dry_end - dry_at) / 1e6:.0f}ms maintain={(real_end - real_at) / 1e6:.0f}ms"
        f" writer_updates={len(real)} max_wait={max(real, default=0) / 1e6:.1f}ms"
        f" p99_wait={p99 / 1e6:.1f}ms dry_run_max_wait={max(dry, default=0) / 1e6:.1f}ms"
    )


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="a server the run may create schemas on")
    p.add_argument("--sessions", type=int, default=100_000, help="sessions (100000)")
    p.add_argument("--batches", default="500,1000000000", help="batch sizes (500,1000000000)")
    args = p.parse_args(argv)
    print(os.getloadavg())
    for batch in (int(b) for b in args.batches.split(",")):
        print(_run(args.dsn, args.sessions, batch), flush=True)
    print(os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
