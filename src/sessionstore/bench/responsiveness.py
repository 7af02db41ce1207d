"""CLI responsiveness: whole ``sessionstore`` processes, and the import time behind them.

What a user waits for is the whole process: the interpreter's start, the imports, opening the
store, the query and the printing. :func:`measure_commands` times ``sessionstore list --limit
20`` and ``sessionstore show KEY`` on a state dir in fresh processes, interleaved with
``python -c "import typer, rich"``, the least any command built on typer and rich costs,
measured in the same minutes. :func:`measure_import` totals ``python -X importtime`` for one
import statement.

Both run their children with bytecode, as an installed package runs: with
``PYTHONDONTWRITEBYTECODE`` set (as on some machines, this one included) an editable install
compiles every module from source in every process, ~60 ms that no user of a wheel pays.
An untimed warm-up run writes the bytecode of everything imported (the baseline's typer and
rich too) under a private ``PYTHONPYCACHEPREFIX``, so the install tree is never written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "CLI_COMMANDS",
    "IMPORT_STATEMENTS",
    "CommandTiming",
    "ImportTime",
    "child_env",
    "cli_argv",
    "importtime_total",
    "measure_commands",
    "measure_import",
]

CLI_COMMANDS: Final[dict[str, str]] = {
    "baseline": 'python -c "import typer, rich"',
    "list": "sessionstore list --limit 20",
    "show": "sessionstore show KEY",
}
"""The commands timed as whole processes, by short name; ``baseline`` is the reference."""

IMPORT_STATEMENTS: Final = ("import sessionstore", "import sessionstore.cli.app")
"""The statements whose import time is reported."""

PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])
"""The directory that holds the ``sessionstore`` package (put on a child's ``PYTHONPATH``)."""

_MARK: Final = "-- sessionstore bench: the statement starts here --"
_TIMEOUT_S: Final = 600.0


@dataclass
class CommandTiming:
    """Wall time of one command run as a whole process, from start to exit.

    Attributes:
        command: A key of :data:`CLI_COMMANDS`.
        median_ns: Median over the runs; None when not measured.
        min_ns: Fastest run.
        max_ns: Slowest run.
        runs: Runs timed (after one untimed warm-up run).
        note: Why it is n/a.
    """

    command: str
    median_ns: float | None = None
    min_ns: float | None = None
    max_ns: float | None = None
    runs: int = 0
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether there is a number."""
        return self.median_ns is not None


@dataclass
class ImportTime:
    """``python -X importtime`` of one import statement in fresh interpreters.

    Attributes:
        statement: The statement, e.g. ``import sessionstore``.
        median_us: Median over the runs of the total: the sum of the cumulative times of the
            top-level entries (the modules the statement itself imported, each with
            everything it imported); None when not measured.
        min_us: Smallest total.
        modules: Modules the statement imported (those the interpreter's start had not).
        runs: Runs measured.
        note: Why it is n/a.
    """

    statement: str
    median_us: float | None = None
    min_us: float | None = None
    modules: int = 0
    runs: int = 0
    note: str | None = None


def child_env() -> dict[str, str]:
    """The environment of a child interpreter that must import this very package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


@contextlib.contextmanager
def bytecode_env() -> Iterator[dict[str, str]]:
    """:func:`child_env` with bytecode written and read under a private cache dir."""
    with tempfile.TemporaryDirectory(prefix="sessionstore-bench-pycache-") as cache:
        env = child_env()
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        yield env


def cli_argv() -> list[str]:
    """How a user runs ``sessionstore`` here: the console script beside this interpreter.

    Falls back to ``python -m sessionstore`` when there is no such script (a source tree).
    """
    script = Path(sys.executable).with_name("sessionstore")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "sessionstore"]


def _failure(stderr: bytes, returncode: int) -> str:
    last = (stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    return f"exit code {returncode}: {' '.join(last.split())}"[:300]


def measure_commands(state_dir: Path, key: str, *, runs: int) -> list[CommandTiming]:
    """Time the commands of :data:`CLI_COMMANDS` as whole processes on ``state_dir``.

    Each round runs the baseline, ``list`` and ``show`` once, in that order, so a drift of
    the machine's speed touches all three alike; the first round warms the page cache and is
    not timed. A command that fails is n/a with its last line of stderr.

    Args:
        state_dir: An OpenClaw state dir whose default agent has a store.
        key: The key ``show`` prints.
        runs: Timed rounds.

    Returns:
        One timing per command, the baseline first.
    """
    # here, not at the top: the whole-store memory probe imports this module
    import statistics

    base = cli_argv()
    argvs = {
        "baseline": [sys.executable, "-c", "import typer, rich"],
        "list": [*base, "list", "--limit", "20", "--state-dir", str(state_dir)],
        "show": [*base, "show", key, "--state-dir", str(state_dir)],
    }
    samples: dict[str, list[int]] = {name: [] for name in argvs}
    notes: dict[str, str] = {}
    with bytecode_env() as env:
        _run_rounds(argvs, env, runs, samples, notes)
    timings = []
    for name in argvs:
        got = samples[name]
        if name in notes or not got:
            timings.append(CommandTiming(name, note=notes.get(name, "no run")))
            continue
        timings.append(
            CommandTiming(
                name,
                median_ns=float(statistics.median(got)),
                min_ns=float(min(got)),
                max_ns=float(max(got)),
                runs=len(got),
            )
        )
    return timings


def _run_rounds(
    argvs: dict[str, list[str]],
    env: dict[str, str],
    runs: int,
    samples: dict[str, list[int]],
    notes: dict[str, str],
) -> None:
    """``runs`` timed rounds after an untimed one (page cache and bytecode warm)."""
    import subprocess

    for round_number in range(runs + 1):
        for name, argv in argvs.items():
            if name in notes:
                continue
            t0 = time.perf_counter_ns()
            try:
                proc = subprocess.run(
                    argv, capture_output=True, env=env, timeout=_TIMEOUT_S, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                notes[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
                continue
            elapsed = time.perf_counter_ns() - t0
            if proc.returncode != 0:
                notes[name] = _failure(proc.stderr, proc.returncode)
            elif round_number:
                samples[name].append(elapsed)


def importtime_total(stderr: str) -> tuple[int, int]:
    """Total µs and module count of the ``-X importtime`` lines after the statement's mark.

    The total is the sum of the cumulative times of the top-level entries; the entries
    nested under them (indented) are already inside those cumulative times.

    Raises:
        ValueError: The mark is missing (the statement did not run).
    """
    lines = stderr.splitlines()
    start = lines.index(_MARK) + 1
    total = modules = 0
    for line in lines[start:]:
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        try:
            cumulative = int(parts[1])
        except ValueError:  # the header line
            continue
        modules += 1
        if not parts[2].startswith("  "):  # one space after the bar: top level
            total += cumulative
    return total, modules


def measure_import(
    statement: str,
    *,
    runs: int,
    python: str | None = None,
    env: dict[str, str] | None = None,
) -> ImportTime:
    """``python -X importtime -c STATEMENT`` in ``runs`` fresh interpreters.

    Args:
        statement: The import statement.
        runs: Interpreters to run (the median is reported).
        python: The interpreter (default: this one).
        env: Its environment (default: :func:`bytecode_env`, after one untimed run that
            writes the bytecode; either way it imports this package).

    Returns:
        The totals; n/a with the reason when the statement fails.
    """
    # here, not at the top: the whole-store memory probe imports this module
    import statistics
    import subprocess

    result = ImportTime(statement)
    code = f"import sys; sys.stderr.write({_MARK!r} + '\\n'); sys.stderr.flush(); {statement}"
    argv = [python or sys.executable, "-X", "importtime", "-c", code]
    totals: list[int] = []
    with contextlib.ExitStack() as stack:
        if env is None:
            env = stack.enter_context(bytecode_env())
            # untimed: writes the bytecode the timed runs read (a failure shows in them)
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(argv, capture_output=True, env=env, timeout=_TIMEOUT_S, check=False)
        for _ in range(max(1, runs)):
            try:
                proc = subprocess.run(
                    argv, capture_output=True, env=env, timeout=_TIMEOUT_S, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                result.note = f"failed: {type(exc).__name__}: {exc}"[:300]
                return result
            if proc.returncode != 0:
                result.note = _failure(proc.stderr, proc.returncode)
                return result
            try:
                total, result.modules = importtime_total(proc.stderr.decode(errors="replace"))
            except ValueError:
                result.note = "no -X importtime output after the statement's mark"
                return result
            totals.append(total)
    result.median_us = float(statistics.median(totals))
    result.min_us = float(min(totals))
    result.runs = len(totals)
    return result
