#!/usr/bin/env python3
"""Run the benchmark and write benchmarks.md, benchmarks.json and img/*.png into a folder.

A thin wrapper over ``sessionstore.bench`` (``sessionstore bench`` is the same run). The
results go to a new folder ``sessionstore-bench-<UTC time>`` in the current directory; the
published ones in docs/ are rewritten only when asked with ``--out docs``:

    pip install -e '.[bench]'
    python bench/run.py                    # 1000b, 10000b, 1000t, 100000t (+ peers)
    python bench/run.py --out docs         # the same, published into docs/
    python bench/run.py --million          # adds 1,000,000 typical sessions (sqlite only)
    python bench/run.py --quick            # a tiny smoke run
    python bench/run.py --from-json docs/benchmarks.json --out docs  # re-render, no re-run
    python bench/run.py --pg-only --pg-dsn postgresql://postgres@127.0.0.1/test --out docs
        # only the postgres rows: docs/benchmarks-postgres.md, the sqlite figures untouched

Run it on a quiet machine: the numbers are only as steady as the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from sessionstore import bench


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        help="datasets: sessions + b (bloated) or t (typical), e.g. 1000b,10000b,100000t"
        " (default: 1000b,10000b,1000t,100000t)",
    )
    p.add_argument(
        "--million",
        action="store_true",
        help="add 1,000,000 typical sessions (sqlite and its floor only: above 100,000 the"
        " backends that read or rewrite the whole store are n/a; about 15 minutes)",
    )
    p.add_argument("--quick", action="store_true", help="tiny datasets and budgets (seconds)")
    p.add_argument(
        "--out",
        type=Path,
        help="output dir, e.g. docs (default: a new folder sessionstore-bench-<UTC time> here)",
    )
    p.add_argument("--no-charts", action="store_true", help="draw no PNG charts")
    p.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare with installed peers (google-adk); --no-peers to skip",
    )
    p.add_argument("--peer-sessions", type=int, help="sessions in the peer comparison (10000)")
    p.add_argument("--seed", type=int, help="seed of the data generator (7)")
    p.add_argument("--budget", type=float, help="seconds of sampling per operation (2.0)")
    p.add_argument("--work-dir", type=Path, help="where datasets go (default: a temp dir)")
    p.add_argument("--keep-data", action="store_true", help="keep the datasets")
    p.add_argument("--pg-dsn", help=f"run the postgres hook (default: ${bench.PG_DSN_ENV})")
    p.add_argument(
        "--pg-only",
        action="store_true",
        help="only the postgres rows, targets and 8-writer scenario (needs --pg-dsn; default"
        " sizes 1000b,100000t); writes benchmarks-postgres.md/.json",
    )
    p.add_argument("--from-json", type=Path, help="re-render a benchmarks.json instead of running")
    p.add_argument(
        "--scenarios",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the several-writers and maintenance scenarios (default: yes, but not with"
        " --quick); --no-scenarios to skip",
    )
    p.add_argument(
        "--maintenance-sessions",
        type=int,
        help="sessions in the maintenance scenario, half of them pruned (200000)",
    )
    p.add_argument(
        "--long-lived-updates",
        "--long-lived",
        dest="long_lived",
        type=int,
        metavar="N",
        help="updates in the long-lived scenario (default 20000; the issue's count, 1000000,"
        " takes about half an hour; 0 skips it)",
    )
    return p.parse_args(argv)


def out_dir(args: argparse.Namespace) -> Path:
    if args.out is None:
        return bench.new_out_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = bench.BenchReport.from_dict(orjson.loads(args.from_json.read_bytes()))
        report.targets = (
            bench.postgres_targets(report)
            if report.settings.get("postgres_only")
            else bench.evaluate_targets(report)
        )
    else:
        settings = bench.quick_settings() if args.quick else bench.BenchSettings()
        if args.pg_only:
            settings.postgres_only = True
            if not args.quick:
                settings.sizes = bench.parse_sizes(bench.PG_ONLY_SIZES)
        if args.sizes:
            try:
                settings.sizes = bench.parse_sizes(args.sizes)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        if args.million and all(s.sessions != 1_000_000 for s in settings.sizes):
            settings.sizes.append(bench.Size(1_000_000, "typical"))
        settings.peers = args.peers
        if args.scenarios is not None:
            settings.scenarios = args.scenarios
        if args.maintenance_sessions:
            settings.maintenance_sessions = args.maintenance_sessions
        if args.long_lived is not None:
            settings.long_lived_updates = args.long_lived
        if args.peer_sessions:
            settings.peer_sessions = args.peer_sessions
        if args.seed is not None:
            settings.seed = args.seed
        if args.budget:
            settings.budget.seconds = args.budget
        settings.work_dir = args.work_dir
        settings.keep_data = args.keep_data
        settings.postgres_dsn = args.pg_dsn
        print("sizes: " + ", ".join(s.label for s in settings.sizes), file=sys.stderr)
        report = bench.run_benchmark(settings, log=lambda line: print(line, file=sys.stderr))
    for path in bench.write_report(report, out_dir(args), charts=not args.no_charts):
        print(path)
    width = max((len(t.target) for t in report.targets), default=0)
    for t in report.targets:
        print(f"{t.status:>12}  {t.target:<{width}}  {t.measured}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
