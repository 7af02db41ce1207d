"""Benchmarks: this library's backends against OpenClaw's design, PR #58550's wiring and peers.

The engine behind ``sessionstore bench`` and ``bench/run.py``; it lives in the package so a
benchmark runs from an installed wheel, and only the ``demo`` and ``bench`` commands import
it. One module per job:

- :mod:`.generate`: realistic, seeded OpenClaw state dirs (also used by tests and the demo);
- :mod:`.models`: the reference models: OpenClaw's ``sessions.json`` design, PR #58550's
  whole-store SQLite and the bare-apsw floor;
- :mod:`.measure`: settings, results, timing, memory and the run of one dataset;
- :mod:`.responsiveness`: whole ``sessionstore`` commands and import times;
- :mod:`.peers`: other projects' session stores;
- :mod:`.scenarios`, :mod:`.scenarios_pg`: several writer processes, maintenance beside a
  writer, a long-lived store; 1 against 8 writers on postgres;
- :mod:`.targets`: the issue's targets against the results;
- :mod:`.report`: ``benchmarks.md``, ``benchmarks.json`` and charts;
- :mod:`.runner`: the whole run.

:func:`run_benchmark` returns a JSON-serialisable :class:`BenchReport`;
:func:`write_report` writes it into a folder (by default a new one, :func:`new_out_dir`).
"""

from .generate import GeneratedAgent, GeneratedState, generate_state_dir
from .measure import (
    BACKENDS,
    BARE_OPS,
    INSTALL_HINT,
    OPS,
    PG_DSN_ENV,
    PG_ONLY_SIZES,
    BenchReport,
    BenchSettings,
    Budget,
    Measurement,
    MemoryResult,
    PeerResult,
    Scenario,
    Size,
    SizeResult,
    TargetCheck,
    default_sizes,
    measure,
    measure_legacy_ops,
    measure_memory,
    measure_store_ops,
    parse_sizes,
    quick_settings,
)
from .models import AGENT, BareApsw, BarePsycopg, LegacyJsonStore, WholeStoreSqlite
from .peers import run_peers
from .report import (
    OUT_PREFIX,
    POSTGRES_NAME,
    new_out_dir,
    render_markdown,
    render_postgres_markdown,
    write_charts,
    write_report,
)
from .responsiveness import (
    CLI_COMMANDS,
    IMPORT_STATEMENTS,
    CommandTiming,
    ImportTime,
    measure_commands,
    measure_import,
)
from .runner import machine_facts, run_benchmark
from .scenarios_pg import run_pg_writers
from .targets import CLI_FACTOR, evaluate_targets, postgres_targets
from .units import format_bytes, format_duration, format_ratio

__all__ = [
    "AGENT",
    "BACKENDS",
    "BARE_OPS",
    "CLI_COMMANDS",
    "CLI_FACTOR",
    "IMPORT_STATEMENTS",
    "INSTALL_HINT",
    "OPS",
    "OUT_PREFIX",
    "PG_DSN_ENV",
    "PG_ONLY_SIZES",
    "POSTGRES_NAME",
    "BareApsw",
    "BarePsycopg",
    "BenchReport",
    "BenchSettings",
    "Budget",
    "CommandTiming",
    "GeneratedAgent",
    "GeneratedState",
    "ImportTime",
    "LegacyJsonStore",
    "Measurement",
    "MemoryResult",
    "PeerResult",
    "Scenario",
    "Size",
    "SizeResult",
    "TargetCheck",
    "WholeStoreSqlite",
    "default_sizes",
    "evaluate_targets",
    "format_bytes",
    "format_duration",
    "format_ratio",
    "generate_state_dir",
    "machine_facts",
    "measure",
    "measure_commands",
    "measure_import",
    "measure_legacy_ops",
    "measure_memory",
    "measure_store_ops",
    "new_out_dir",
    "parse_sizes",
    "postgres_targets",
    "quick_settings",
    "render_markdown",
    "render_postgres_markdown",
    "run_benchmark",
    "run_peers",
    "run_pg_writers",
    "write_charts",
    "write_report",
]
