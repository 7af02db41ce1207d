#!/usr/bin/env python3
"""Write a realistic OpenClaw state dir (a thin CLI over ``sessionstore.bench.generate``).

    python bench/generate.py /tmp/state --sessions 1000 --bloated-ratio 1.0 --transcripts
    python bench/generate.py /tmp/state --sessions 100000 --bloated-ratio 0 --agents main,ops

Deterministic: the same arguments (and ``--now-ms``) write byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sessionstore.bench.generate import generate_state_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="the state dir to write (created if missing)")
    p.add_argument("--sessions", type=int, default=1_000, help="sessions per agent (1000)")
    p.add_argument("--agents", default="main", help="comma-separated agent ids (main)")
    p.add_argument(
        "--bloated-ratio",
        type=float,
        default=0.3,
        help="share of entries with a ~35-40 KB skillsSnapshot + systemPromptReport (0.3)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--transcripts", action="store_true", help="write a transcript per session")
    p.add_argument(
        "--legacy-fields", action="store_true", help="some provider/lastProvider/room fields"
    )
    p.add_argument(
        "--mixed-case", type=int, default=0, help="mixed-case duplicate keys per agent (0)"
    )
    p.add_argument("--now-ms", type=int, help="reference time in ms (default: now)")
    args = p.parse_args(argv)
    agents = tuple(a.strip() for a in args.agents.split(",") if a.strip())
    started = time.perf_counter()
    try:
        state = generate_state_dir(
            args.root,
            sessions=args.sessions,
            agents=agents,
            bloated_ratio=args.bloated_ratio,
            seed=args.seed,
            legacy_fields=args.legacy_fields,
            mixed_case_duplicates=args.mixed_case,
            transcripts=args.transcripts,
            now_ms=args.now_ms,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for agent in state.agents.values():
        size = agent.json_path.stat().st_size
        print(
            f"{agent.agent_id}: {len(agent.entries):,} entries, {size / 1e6:.1f} MB"
            f" {agent.json_path}, {len(agent.transcripts):,} transcripts"
        )
    print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
