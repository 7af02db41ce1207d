"""The command line shared by the stress scripts: one scenario, its variants, its figures.

The scenarios live in ``tests/reliability/faultkit`` (the tests run their short tier);
these scripts put that directory on ``sys.path`` and run the full figures, or a
``--quick`` tier, with a seed. They print counts and percentiles, can write the figures
as JSON, and exit with 1 when a promise broke.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from faultkit.harness import VARIANTS as BACKENDS  # noqa: E402
from faultkit.harness import Figures, hermetic_environ  # noqa: E402


def scenario(name: str) -> ModuleType:
    """The scenario module ``faultkit.<name>``."""
    return importlib.import_module(f"faultkit.{name}")


def backend_of(module: ModuleType, variant: str) -> str:
    """The backend a variant runs on (``any`` when the variant is not about one)."""
    if ":" in variant:
        return variant.split(":", 1)[1]
    if variant in BACKENDS:
        return variant
    return str(getattr(module, "BACKEND", "any"))


def select(module: ModuleType, backends: list[str] | None, variants: list[str] | None) -> list[str]:
    """The variants to run: by name, or those on the given backends (``sqlite`` includes
    ``sqlite-power``)."""
    chosen = []
    for variant in module.VARIANTS:
        backend = backend_of(module, variant)
        if variants and variant not in variants:
            continue
        if (
            backends
            and backend != "any"
            and not any(backend == b or backend.startswith(b + "-") for b in backends)
        ):
            continue
        chosen.append(variant)
    return chosen


def runs_for(module: ModuleType, variant: str, quick: bool, runs: int | None) -> int:
    if runs is not None:
        return runs
    value = module.SHORT_RUNS if quick else module.FULL_RUNS
    return int(value[variant]) if isinstance(value, dict) else int(value)


def run_scenario(
    module: ModuleType,
    *,
    seed: int,
    variants: list[str],
    quick: bool,
    runs: int | None,
    workdir: Path | None,
    echo: bool = True,
) -> list[Figures]:
    """Run the variants one after the other; print each one's figures as it ends."""
    out = []
    extra: dict[str, Any] = dict(getattr(module, "SHORT_KWARGS", {})) if quick else {}
    for variant in variants:
        base = None
        if workdir is not None:
            base = workdir / module.NAME / variant.replace(":", "_")
        fig = module.run(
            variant, seed=seed, runs=runs_for(module, variant, quick, runs), base=base, **extra
        )
        if echo:
            print(fig.summary(), flush=True)
        out.append(fig)
    return out


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument(
        "--runs",
        type=int,
        help="runs per variant (kill points, sweep points, operations...);"
        " default: the full figures (0 = every point, for the sweeps)",
    )
    p.add_argument(
        "--backend",
        action="append",
        choices=[*BACKENDS],
        help="only variants on this backend (repeatable; sqlite includes sqlite-power)",
    )
    p.add_argument("--variant", action="append", help="only this variant (repeatable)")
    p.add_argument("--quick", action="store_true", help="the short tier the tests run")
    p.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    p.add_argument("--workdir", type=Path, help="keep the state dirs here (default: a temp dir)")
    return p


def main(name: str, argv: list[str] | None = None) -> int:
    """``bench/stress/<name>.py``: run one scenario."""
    module = scenario(name)
    args = parser(str(module.__doc__).strip().splitlines()[0]).parse_args(argv)
    variants = select(module, args.backend, args.variant)
    if not variants:
        raise SystemExit(f"no variant of {name} matches; variants: {', '.join(module.VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="stress-home-") as home:
        hermetic_environ(Path(home))
        figures = run_scenario(
            module,
            seed=args.seed,
            variants=variants,
            quick=args.quick,
            runs=args.runs,
            workdir=args.workdir,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "scenario": name,
            "title": module.TITLE,
            "results": [f.to_dict() for f in figures],
        }
        args.out.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"figures written to {args.out}")
    return 1 if any(f.failures for f in figures) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("run one of the scenario scripts beside this file")
