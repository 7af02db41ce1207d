#!/usr/bin/env python3
"""Run every scenario of the fault-injection suite and write docs/reliability.md.

    python bench/stress/run_all.py --out docs/reliability.md     # the full figures
    python bench/stress/run_all.py --quick --out /tmp/rel.md     # the short tier (minutes)
    python bench/stress/run_all.py --scenario kill9 --scenario forks --out /tmp/rel.md
    python bench/stress/run_all.py --from-json docs/reliability.json --out docs/reliability.md

With an ``.md`` output the raw figures go beside it as ``.json``. Every figure in the
document comes from this run; the scenarios are ``tests/reliability/faultkit``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson
from _cli import BACKENDS, hermetic_environ, run_scenario, select
from faultkit import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--quick", action="store_true", help="the short tier the tests run")
    p.add_argument("--runs", type=int, help="runs per variant for every scenario (overrides)")
    p.add_argument(
        "--scenario",
        action="append",
        choices=[m.NAME for m in report.SCENARIOS],
        help="only this scenario (repeatable)",
    )
    p.add_argument("--backend", action="append", choices=[*BACKENDS], help="only this backend")
    p.add_argument("--out", type=Path, help="docs/reliability.md (and .json beside it), or .json")
    p.add_argument("--workdir", type=Path, help="keep the state dirs here (default: a temp dir)")
    p.add_argument(
        "--from-json", type=Path, help="render --out from the figures of an earlier run (no run)"
    )
    args = p.parse_args(argv)
    if args.from_json:
        saved = orjson.loads(args.from_json.read_bytes())
        if not args.out or args.out.suffix != ".md":
            raise SystemExit("--from-json needs an --out ending in .md")
        command = saved["environment"].get("command", "python bench/stress/run_all.py")
        args.out.write_text(report.render(saved["results"], saved["environment"], command))
        print(f"written: {args.out}")
        return 0
    results: dict[str, list[dict[str, object]]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="stress-home-") as home:
        hermetic_environ(Path(home))
        for module in report.SCENARIOS:
            if args.scenario and module.NAME not in args.scenario:
                continue
            variants = select(module, args.backend, None)
            print(f"== {module.NAME}: {module.TITLE} ({', '.join(variants)})", flush=True)
            figures = run_scenario(
                module,
                seed=args.seed,
                variants=variants,
                quick=args.quick,
                runs=args.runs,
                workdir=args.workdir,
            )
            results[module.NAME] = [f.to_dict() for f in figures]
            failed = failed or any(f.failures for f in figures)
    env = report.environment("short" if args.quick else "full", args.seed)
    env["command"] = " ".join(
        ["python bench/stress/run_all.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        raw = orjson.dumps({"environment": env, "results": results}, option=orjson.OPT_INDENT_2)
        if args.out.suffix == ".md":
            args.out.write_text(report.render(results, env, env["command"]))
            args.out.with_suffix(".json").write_bytes(raw + b"\n")
            print(f"written: {args.out} and {args.out.with_suffix('.json')}")
        else:
            args.out.write_bytes(raw + b"\n")
            print(f"written: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
