#!/usr/bin/env python3
"""The async facade's overhead and the framework adapters against the frameworks' backends.

    python bench/adapters.py                      # 1,000 and 10,000 sessions, SQLite
    python bench/adapters.py --dsn postgresql://postgres@127.0.0.1/test   # also PostgreSQL
    python bench/adapters.py --sizes 200 --out /tmp   # a quick look
    python bench/adapters.py --merge a.json b.json --out docs   # one report of two runs
    python bench/adapters.py --dsn ... --postgres-only --name pg-10k --sizes 10000
        # only the PostgreSQL rows (this store and the frameworks'), merged in afterwards

Writes benchmarks-adapters.md and .json into --out (default: the current dir; `--out docs`
publishes). Needs the bench extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sessionstore.bench.adapters import main as run
from sessionstore.bench.adapters import merge, render


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="session counts (1000,10000)")
    p.add_argument(
        "--dsn",
        help="PostgreSQL DSN: the postgres overhead rows and the frameworks' SQLAlchemy backends",
    )
    p.add_argument("--out", type=Path, default=Path("."), help="output dir (.); docs/ publishes")
    p.add_argument("--calls", type=int, default=2000, help="calls per overhead row (2000)")
    p.add_argument("--merge", type=Path, nargs="+", help="render these runs' .json as one")
    p.add_argument(
        "--postgres-only",
        action="store_true",
        help="only the backends on PostgreSQL (this store's and the frameworks'); needs --dsn",
    )
    p.add_argument(
        "--name", default="benchmarks-adapters", help="output file name without .md/.json"
    )
    args = p.parse_args(argv)
    if args.merge:
        (args.out / "benchmarks-adapters.md").write_text(render(merge(args.merge)))
        print(f"wrote {args.out / 'benchmarks-adapters.md'}")
        return 0
    if args.postgres_only and not args.dsn:
        p.error("--postgres-only needs --dsn")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = run(
        args.out, sizes, args.dsn, args.calls, postgres_only=args.postgres_only, name=args.name
    )
    print(f"wrote {args.out / (args.name + '.md')} ({len(results.adapters)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
