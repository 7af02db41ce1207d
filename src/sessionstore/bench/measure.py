"""Measurement: settings, results, timing, memory, and the run of one dataset.

One dataset (:func:`run_size`) is generated (:mod:`sessionstore.bench.generate`) and
migrated, the CLI is timed on it as whole processes (:mod:`.responsiveness`), every operation
is timed on every backend side by side, then memory is measured in fresh processes. Backends:

- ``legacy``: OpenClaw's ``sessions.json`` design (:class:`~.models.LegacyJsonStore`);
- ``json``: ``sessions.json`` through ``open_store(store_type="json")``, the legacy
  format (every write re-serialises and atomically replaces the whole file; reads are served
  from an in-process copy validated by ``stat``, so "open + first get" is the cold read);
- ``sqlite``: the hot index (``store_type="sqlite"``);
- ``postgres``: run only when a DSN is given (this version has no postgres backend, so it is
  reported as n/a with the reason);
- ``whole-store``: :class:`~.models.WholeStoreSqlite`, PR #58550's table wired as the PR
  wired it (every operation loads every row, every write deletes and re-inserts every row);
- ``bare-apsw``: :class:`~.models.BareApsw`, the floor for ``get`` and ``update``: the same
  row I/O with no library around it.

Large datasets (above ``BenchSettings.whole_file_max_sessions``, 100,000 by default: the
1,000,000 tier) run only sqlite and its floor; the backends whose every call reads or
rewrites the whole store are n/a with the reason, the sqlite migration is timed once (the
one that makes the measured store), and transcripts are written only for the sessions the
timed operations touch (``all_transcripts_max_sessions``).

Timing: ``time.perf_counter_ns`` around each call, a warm-up first, the garbage collector
paused while sampling, then as many iterations as fit a time budget (at least
``min_iterations``, at most ``max_iterations``); medians and nearest-rank p99. An operation
whose ``min_iterations`` runs would exceed ``op_limit_s``, or that fails, is reported as
n/a with the reason, never with an estimate.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal

import apsw
import orjson

from ..errors import SessionStoreError
from ..layout import StorePaths, resolve_store_paths
from ..migrate import migrate_agent
from ..store import SessionStore, open_store
from .generate import generate_state_dir, write_transcripts
from .models import AGENT, BareApsw, BarePsycopg, Entry, LegacyJsonStore, WholeStoreSqlite
from .responsiveness import CLI_COMMANDS, CommandTiming, ImportTime, child_env, measure_commands
from .units import format_duration, kib_mb

__all__ = [
    "BACKENDS",
    "BARE_OPS",
    "INSTALL_HINT",
    "OPS",
    "PG_DSN_ENV",
    "PG_ONLY_SIZES",
    "BenchReport",
    "BenchSettings",
    "Budget",
    "Measurement",
    "MemoryResult",
    "PeerResult",
    "Scenario",
    "Size",
    "SizeResult",
    "TargetCheck",
    "default_sizes",
    "discard",
    "log_command",
    "log_measurement",
    "measure",
    "measure_interleaved",
    "measure_legacy_ops",
    "measure_memory",
    "measure_store_ops",
    "parse_sizes",
    "quick_settings",
    "quiet",
    "run_size",
]

Timed = Callable[[int], Callable[[], None] | None]
"""One timed call: gets the iteration number, may return an untimed cleanup."""

Kind = Literal["bloated", "typical"]

OPS: Final[dict[str, str]] = {
    "open_get": "open + first get",
    "get": "get (full entry)",
    "get_fields": "get (fields=: 4 hot fields)",
    "update": "update (durability normal)",
    "update_power": "update (durability power)",
    "update_fields": "update (fields=(): no entry returned)",
    "list50": "list top-50",
    "list_filtered": "filtered list (channel, top-50)",
    "list_all": "list all rows (metadata)",
    "count": "count",
    "append": "transcript append",
    "tail": "transcript tail(20)",
    "migrate": "migration of the whole store",
}
BACKENDS: Final[dict[str, str]] = {
    "legacy": "legacy sessions.json (OpenClaw's design)",
    "json": "json backend (this library)",
    "sqlite": "sqlite",
    "postgres": "postgres",
    "whole-store": "whole-store SQLite (PR #58550)",
    "bare-apsw": "bare apsw",
    "bare-psycopg": "bare psycopg",
}
STORE_OPS: Final = tuple(OPS)
# Reads before writes: a write by one store object makes the json backend's other objects
# re-read the file, and moves rows to the top of the lists.
MEASURE_ORDER: Final = (
    "open_get",
    "get",
    "get_fields",
    "list50",
    "list_filtered",
    "list_all",
    "count",
    "tail",
    "update",
    "update_fields",
    "update_power",
    "append",
)
BARE_OPS: Final = (
    "open_get",
    "get",
    "update",
    "update_power",
    "list50",
    "list_all",
    "count",
    "tail",
    "append",
)
# Writes: timed in turn with their floor in blocks (see _run_with_floor).
WRITE_OPS: Final = ("update", "update_power", "append")
WRITE_BLOCK: Final = 16
LIST_CHANNEL: Final = "telegram"
INSTALL_HINT: Final = "pip install 'sessionstore[bench]'"
PG_DSN_ENV: Final = "SESSIONSTORE_BENCH_PG_DSN"
PG_ONLY_SIZES: Final = "1000b,100000t"
"""The datasets of a postgres-only run: issue 13's two sizes."""


def quiet(_message: str) -> None:
    """A ``log`` that drops its lines."""


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """One dataset: ``sessions`` entries in one agent's store, all bloated or all typical.

    Attributes:
        sessions: Number of sessions.
        kind: ``bloated`` (every entry carries a ~35-40 KB ``skillsSnapshot`` and a
            ``systemPromptReport``) or ``typical`` (~1.5 KB entries).
    """

    sessions: int
    kind: Kind

    @property
    def label(self) -> str:
        """``1000b`` or ``100000t``."""
        return f"{self.sessions}{self.kind[0]}"

    @property
    def title(self) -> str:
        """``1,000 bloated``."""
        return f"{self.sessions:,} {self.kind}"

    @property
    def bloated_ratio(self) -> float:
        """The generator's ``bloated_ratio`` for this kind."""
        return 1.0 if self.kind == "bloated" else 0.0


def parse_sizes(text: str) -> list[Size]:
    """Parse ``1000b,10000b,100000t`` (``b`` bloated, ``t`` typical; ``_`` allowed in numbers).

    Raises:
        ValueError: An item is not a positive number followed by ``b`` or ``t``.
    """
    sizes: list[Size] = []
    for raw in text.split(","):
        item = raw.strip().lower().replace("_", "")
        if not item:
            continue
        number, suffix = item[:-1], item[-1:]
        if suffix not in ("b", "t") or not number.isdigit() or int(number) < 1:
            raise ValueError(
                f"invalid size {raw.strip()!r}: use a session count followed by b (bloated)"
                " or t (typical), e.g. 1000b,100000t"
            )
        size = Size(int(number), "bloated" if suffix == "b" else "typical")
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise ValueError("no sizes given: use e.g. 1000b,10000b,100000t")
    return sizes


def default_sizes(*, million: bool = False) -> list[Size]:
    """The issue's tiers, plus 1,000 typical as the reference the 100,000 tier scales from."""
    sizes = [
        Size(1_000, "bloated"),
        Size(10_000, "bloated"),
        Size(1_000, "typical"),
        Size(100_000, "typical"),
    ]
    if million:
        sizes.append(Size(1_000_000, "typical"))
    return sizes


@dataclass
class Budget:
    """How long each operation is sampled.

    Attributes:
        seconds: Wall-clock budget for the measured iterations of one operation on one
            backend (warm-up not included).
        min_iterations: Measured iterations whatever the budget.
        max_iterations: Measured iterations at most.
        warmup: Warm-up iterations at most (fewer when they use up a fifth of the budget).
        op_limit_s: An operation whose ``min_iterations`` runs would take longer than this
            (judged from its first run) is reported as n/a.
    """

    seconds: float = 2.0
    min_iterations: int = 3
    max_iterations: int = 5_000
    warmup: int = 10
    op_limit_s: float = 300.0


@dataclass
class BenchSettings:
    """What one benchmark run does.

    Attributes:
        sizes: The datasets.
        seed: Seed of the data generator and of the key samples.
        budget: Sampling budget per operation.
        memory: Measure memory in fresh processes.
        memory_gets: ``get`` calls in the memory probe.
        memory_budget_s: Time limit of the probe's gets and lists (slow backends do fewer).
        peers: Run the peer comparisons whose packages are installed.
        peer_sessions: Sessions in the peer comparisons.
        sample_keys: Keys the single-entry operations rotate through.
        work_dir: Where datasets are written (default: a new temporary dir).
        keep_data: Keep the datasets after the run.
        postgres_dsn: Run the postgres hook against this DSN (default: the
            ``SESSIONSTORE_BENCH_PG_DSN`` environment variable).
        quick: A tiny run for development and smoke tests.
        cli: Time whole ``sessionstore`` commands on every dataset, and the import times.
        cli_runs: Timed runs of each command and import statement (the median is reported).
        scenarios: Run the scenarios (several writers, a writer beside maintenance).
        writer_sessions: Sessions in the several-writers scenario.
        maintenance_sessions: Sessions in the maintenance scenario (half are pruned).
        long_lived_updates: Updates in the long-lived scenario (0: not run). Small by
            default; the issue's 1,000,000 takes about half an hour.
        postgres_only: Measure only the postgres backend and its bare-psycopg floor on each
            dataset, and only the postgres scenario (needs a DSN; the report is
            ``benchmarks-postgres.md``).
        pg_writer_sessions: Sessions in the postgres several-writers scenario.
        whole_file_max_sessions: The backends whose every call reads or rewrites the whole
            store (legacy, json, whole-store) are timed only on datasets up to this size;
            above it they are n/a with the reason, and the sqlite migration is timed once.
        all_transcripts_max_sessions: Datasets up to this size get a transcript for every
            session; larger ones only for the sessions the timed operations touch.
    """

    sizes: list[Size] = field(default_factory=default_sizes)
    seed: int = 7
    budget: Budget = field(default_factory=Budget)
    memory: bool = True
    memory_gets: int = 1_000
    memory_budget_s: float = 60.0
    peers: bool = True
    peer_sessions: int = 10_000
    sample_keys: int = 256
    work_dir: Path | None = None
    keep_data: bool = False
    postgres_dsn: str | None = None
    quick: bool = False
    cli: bool = True
    cli_runs: int = 7
    scenarios: bool = True
    writer_sessions: int = 10_000
    maintenance_sessions: int = 200_000
    long_lived_updates: int = 20_000
    postgres_only: bool = False
    pg_writer_sessions: int = 8_000
    whole_file_max_sessions: int = 100_000
    all_transcripts_max_sessions: int = 100_000


def quick_settings(**overrides: Any) -> BenchSettings:
    """Settings of a tiny run (seconds, not minutes): 200 bloated, 500 typical, no scenarios."""
    settings = BenchSettings(
        sizes=[Size(200, "bloated"), Size(500, "typical")],
        budget=Budget(seconds=0.25, max_iterations=500, warmup=3, op_limit_s=60.0),
        memory_gets=200,
        memory_budget_s=10.0,
        peer_sessions=300,
        quick=True,
        cli_runs=3,
        scenarios=False,  # seconds each; a smoke run stays under a minute
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    return settings


# --- results ---------------------------------------------------------------------------------


@dataclass
class Measurement:
    """Timings of one operation on one backend.

    Attributes:
        backend: A key of :data:`BACKENDS` (or a peer's name).
        op: A key of :data:`OPS` (or a peer operation).
        median_ns: Median time per call; None when not measured.
        p99_ns: 99th percentile (nearest rank) per call.
        min_ns: Fastest call.
        iterations: Measured calls.
        warmup: Warm-up calls before them.
        note: Why it is n/a, or what to know about it.
    """

    backend: str
    op: str
    median_ns: float | None = None
    p99_ns: float | None = None
    min_ns: float | None = None
    iterations: int = 0
    warmup: int = 0
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether there is a number."""
        return self.median_ns is not None


@dataclass
class MemoryResult:
    """Resident memory of a fresh process using one backend (``/proc/self/status``).

    All sizes are KiB above ``bare_kib``, the RSS of the interpreter before it imported
    anything (``python -c``, site initialisation only).

    Attributes:
        backend: A key of :data:`BACKENDS`.
        bare_kib: RSS of the bare interpreter.
        imports_kib: After importing the library (and apsw, orjson).
        total_kib: After opening the store, ``gets`` gets and ``lists`` lists.
        peak_kib: Peak RSS (``VmHWM``) over the whole process.
        gets: ``get`` calls made (fewer than asked when the time limit was reached).
        lists: ``list`` calls made.
        seconds: Time the probe took.
        note: Why it is n/a.
    """

    backend: str
    bare_kib: int | None = None
    imports_kib: int | None = None
    total_kib: int | None = None
    peak_kib: int | None = None
    gets: int = 0
    lists: int = 0
    seconds: float = 0.0
    note: str | None = None

    @property
    def data_kib(self) -> int | None:
        """What the open store holds beyond its code: ``total_kib - imports_kib``."""
        if self.total_kib is None or self.imports_kib is None:
            return None
        return self.total_kib - self.imports_kib


@dataclass
class SizeResult:
    """Everything measured on one dataset.

    Attributes:
        size: The dataset.
        generate_s: Time to generate it (with transcripts).
        json_bytes: Size of ``sessions.json``.
        sqlite_bytes: Size of ``sessions.sqlite`` (with its WAL) right after migration.
        whole_store_bytes: Size of the whole-store baseline's database.
        transcripts: Transcript files written.
        seconds: Time the whole dataset took (generation, timings, memory).
        measurements: Timings.
        memory: Memory probes.
        notes: Backends or checks that were skipped, and why.
        cli: Whole ``sessionstore`` commands on this dataset's sqlite store, and the
            baseline (``python -c "import typer, rich"``) timed in the same rounds.
    """

    size: Size
    generate_s: float = 0.0
    json_bytes: int | None = None
    sqlite_bytes: int | None = None
    whole_store_bytes: int | None = None
    transcripts: int = 0
    seconds: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cli: list[CommandTiming] = field(default_factory=list)

    def get(self, backend: str, op: str) -> Measurement | None:
        """The measurement of ``op`` on ``backend``, if any."""
        for m in self.measurements:
            if m.backend == backend and m.op == op:
                return m
        return None

    def memory_of(self, backend: str) -> MemoryResult | None:
        """The memory probe of ``backend``, if any."""
        for r in self.memory:
            if r.backend == backend:
                return r
        return None

    def command(self, name: str) -> CommandTiming | None:
        """The whole-process timing of the command ``name`` (``list``, ``baseline``), if any."""
        for t in self.cli:
            if t.command == name:
                return t
        return None


@dataclass
class PeerResult:
    """A comparison with another project's session store.

    Attributes:
        name: What was compared.
        status: ``ok`` (measured), ``skipped`` (not measured) or ``failed``.
        note: Why it was not measured or failed, or what to know.
        sessions: Sessions in the comparison.
        measurements: Timings (``backend`` is the peer's short name or ``sqlite``).
        details: Extra facts (setup times).
    """

    name: str
    status: Literal["ok", "skipped", "failed"]
    note: str = ""
    sessions: int = 0
    measurements: list[Measurement] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """``measured``, ``not measured`` or ``failed``: what the report says of this peer."""
        return {"ok": "measured", "skipped": "not measured"}.get(self.status, self.status)


@dataclass
class TargetCheck:
    """One target of the issue against what was measured.

    Attributes:
        target: The target, as a sentence.
        measured: The measured value (or why there is none).
        status: ``met``, ``missed`` or ``not measured``.
    """

    target: str
    measured: str
    status: Literal["met", "missed", "not measured"]


@dataclass
class Scenario:
    """A measurement that is not one timed call: several processes, a long run, maintenance.

    Attributes:
        name: ``writers4``, ``maintenance`` or ``long_lived``.
        status: ``ok`` (measured), ``skipped`` (not asked for) or ``failed``.
        figures: What was measured (numbers in ns, bytes or counts, named by their unit).
        note: Why it was not measured, or what to know about it (the size it ran at).
    """

    name: str
    status: Literal["ok", "skipped", "failed"] = "ok"
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        """Whether there are figures."""
        return self.status == "ok"


@dataclass
class BenchReport:
    """A whole run: machine, settings, import times, results per dataset, peers, targets.

    Attributes:
        machine: :func:`~.runner.machine_facts`.
        settings: The settings used (JSON form).
        sizes: Per-dataset results.
        peers: Peer comparisons.
        targets: The issue's targets, checked against the results.
        started_at: When the run started (UTC, ISO 8601).
        seconds: How long it took.
        imports: ``python -X importtime`` totals of the package and of the CLI.
        scenarios: Several writers, maintenance beside a writer, a long-lived store.
    """

    machine: dict[str, Any]
    settings: dict[str, Any]
    sizes: list[SizeResult] = field(default_factory=list)
    peers: list[PeerResult] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0
    imports: list[ImportTime] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)

    def size(self, label: str) -> SizeResult | None:
        """The results of the dataset labelled ``label`` (``1000b``), if it was run."""
        for s in self.sizes:
            if s.size.label == label:
                return s
        return None

    def scenario(self, name: str) -> Scenario | None:
        """The scenario ``name`` (``writers4``), if it was run."""
        for s in self.scenarios:
            if s.name == name:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``benchmarks.json``)."""
        data = asdict(self)
        for s, raw in zip(self.sizes, data["sizes"], strict=True):
            raw["size"]["label"] = s.size.label
            for m, m_raw in zip(s.memory, raw["memory"], strict=True):
                m_raw["data_kib"] = m.data_kib
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        """Rebuild a report from :meth:`to_dict` output (to re-render it)."""

        def build(kind: type[Any], raw: dict[str, Any]) -> Any:
            names = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in raw.items() if k in names})

        sizes = []
        for raw in data.get("sizes", []):
            result = build(SizeResult, raw)
            result.size = Size(raw["size"]["sessions"], raw["size"]["kind"])
            result.measurements = [build(Measurement, m) for m in raw.get("measurements", [])]
            result.memory = [build(MemoryResult, m) for m in raw.get("memory", [])]
            result.cli = [build(CommandTiming, t) for t in raw.get("cli", [])]
            sizes.append(result)
        peers = []
        for raw in data.get("peers", []):
            peer = build(PeerResult, raw)
            peer.measurements = [build(Measurement, m) for m in raw.get("measurements", [])]
            peers.append(peer)
        return cls(
            machine=data.get("machine", {}),
            settings=data.get("settings", {}),
            sizes=sizes,
            peers=peers,
            targets=[build(TargetCheck, t) for t in data.get("targets", [])],
            started_at=data.get("started_at", ""),
            seconds=data.get("seconds", 0.0),
            imports=[build(ImportTime, t) for t in data.get("imports", [])],
            scenarios=[build(Scenario, t) for t in data.get("scenarios", [])],
        )


# --- timing ----------------------------------------------------------------------------------


def _percentile(sorted_ns: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, math.ceil(fraction * len(sorted_ns)))
    return float(sorted_ns[rank - 1])


def _median(sorted_ns: Sequence[int]) -> float:
    n = len(sorted_ns)
    mid = n // 2
    return float(sorted_ns[mid]) if n % 2 else (sorted_ns[mid - 1] + sorted_ns[mid]) / 2


def measure(backend: str, op: str, fn: Timed, budget: Budget) -> Measurement:
    """Time ``fn`` as described in the module docstring.

    Args:
        backend: Recorded in the result.
        op: Recorded in the result.
        fn: Called with the iteration number (warm-up included); may return a cleanup
            callable, which runs outside the timed region.
        budget: The sampling budget.

    Returns:
        The measurement; n/a (with the reason) when the operation failed or would take
        longer than the budget's ``op_limit_s``.
    """
    clock = time.perf_counter_ns
    result = Measurement(backend, op)
    i = 0
    try:
        gc.collect()
        warm_deadline = time.perf_counter() + budget.seconds * 0.2
        while result.warmup < budget.warmup:
            t0 = clock()
            cleanup = fn(i)
            elapsed = clock() - t0
            if cleanup is not None:
                cleanup()
            i += 1
            result.warmup += 1
            if elapsed * budget.min_iterations > budget.op_limit_s * 1e9:
                result.note = (
                    f"one run took {format_duration(elapsed)}; {budget.min_iterations} runs would"
                    f" exceed the limit of {budget.op_limit_s:.0f} s per operation"
                )
                return result
            if time.perf_counter() > warm_deadline:
                break
        samples: list[int] = []
        deadline = time.perf_counter() + budget.seconds
        gc.disable()
        try:
            while len(samples) < budget.max_iterations and (
                len(samples) < budget.min_iterations or time.perf_counter() < deadline
            ):
                t0 = clock()
                cleanup = fn(i)
                samples.append(clock() - t0)
                if cleanup is not None:
                    cleanup()
                i += 1
        finally:
            gc.enable()
    except Exception as exc:  # any failure is reported as n/a with its reason, never hidden
        result.note = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        return result
    samples.sort()
    result.iterations = len(samples)
    result.median_ns = _median(samples)
    result.p99_ns = _percentile(samples, 0.99)
    result.min_ns = float(samples[0])
    return result


def measure_interleaved(
    op: str, fns: dict[str, Timed], budget: Budget, *, block: int = 1
) -> list[Measurement]:
    """Time several backends' ``op`` call by call in turn (see :func:`measure`).

    Each round calls every function ``block`` times, in the order given; the budget covers
    the rounds, so each backend gets the same number of samples, taken at the same moments.

    Args:
        op: Recorded in the results.
        fns: Backend name to its timed call (cleanups run outside the timed region).
        budget: The sampling budget.
        block: Consecutive calls of one backend per round.

    Returns:
        One measurement per backend, in the order given; all n/a with the reason when any
        call fails.
    """
    clock = time.perf_counter_ns
    names = list(fns)
    samples: dict[str, list[int]] = {name: [] for name in names}
    block = max(1, min(block, budget.max_iterations // 2))
    warm = 0

    def one_round(i: int, record: bool) -> None:
        for name in names:
            for j in range(i * block, (i + 1) * block):
                t0 = clock()
                cleanup = fns[name](j)
                elapsed = clock() - t0
                if record:
                    samples[name].append(elapsed)
                if cleanup is not None:
                    cleanup()

    i = 0
    try:
        gc.collect()
        warm_deadline = time.perf_counter() + budget.seconds * 0.2
        while warm < budget.warmup and time.perf_counter() < warm_deadline:
            one_round(i, False)
            i += 1
            warm += 1
        deadline = time.perf_counter() + budget.seconds * len(names)
        gc.disable()
        try:
            while len(samples[names[0]]) < budget.max_iterations and (
                len(samples[names[0]]) < budget.min_iterations or time.perf_counter() < deadline
            ):
                one_round(i, True)
                i += 1
        finally:
            gc.enable()
    except Exception as exc:  # any failure is reported as n/a with its reason, never hidden
        note = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        return [Measurement(name, op, note=note) for name in names]
    out = []
    for name in names:
        ordered = sorted(samples[name][: budget.max_iterations])
        m = Measurement(name, op, iterations=len(ordered), warmup=warm)
        m.median_ns, m.p99_ns = _median(ordered), _percentile(ordered, 0.99)
        m.min_ns = float(ordered[0])
        others = ", ".join(n for n in names if n != name)
        m.note = (
            f"interleaved call by call with {others}"
            if block == 1
            else f"interleaved with {others} in blocks of {block} calls"
        )
        out.append(m)
    return out


def _not_applicable(backend: str, op: str, reason: str) -> Measurement:
    return Measurement(backend, op, note=reason)


# --- one backend's operations ----------------------------------------------------------------


def _patch(i: int) -> dict[str, Any]:
    """A post-turn token update, different on every call (so every call writes)."""
    return {"inputTokens": 2_000 + i, "outputTokens": 300 + i, "totalTokens": 2_300 + 2 * i}


# What the projected get asks for: fields a list row also has (the sqlite store answers
# them from its columns).
GET_FIELDS: Final = ("sessionId", "updatedAt", "totalTokens", "model")
# Operations of the library's API that the legacy designs do not have.
PROJECTED_OPS: Final = ("get_fields", "update_fields")


def discard(_value: object) -> None:
    """Timed calls return nothing (a returned value would be taken for a cleanup)."""


def _message(i: int) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "text", "text": f"Benchmark turn {i}: what is on my calendar?"}],
    }


def _index_op(s: Any, op: str, keys: Sequence[str]) -> Timed:
    """The timed call of an index operation on anything with get/update/list/count."""
    n = len(keys)
    calls: dict[str, Timed] = {
        "get": lambda i: discard(s.get(keys[i % n])),
        "get_fields": lambda i: discard(s.get(keys[i % n], fields=GET_FIELDS)),
        "update": lambda i: discard(s.update(keys[i % n], _patch(i))),
        "update_fields": lambda i: discard(s.update(keys[i % n], _patch(i), fields=())),
        "update_power": lambda i: discard(s.update(keys[i % n], _patch(i))),
        "list50": lambda i: discard(s.list(limit=50)),
        "list_filtered": lambda i: discard(s.list(channel=LIST_CHANNEL, limit=50)),
        "list_all": lambda i: discard(s.list()),
        "count": lambda i: discard(s.count()),
    }
    return calls[op]


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _db_bytes(path: Path) -> int | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    with contextlib.suppress(FileNotFoundError):
        size += Path(f"{path}-wal").stat().st_size
    return size


class _StoreOps:
    """The timed operations of one ``open_store`` backend (json, sqlite, postgres)."""

    def __init__(
        self,
        backend: str,
        state_dir: Path,
        keys: Sequence[str],
        transcript_keys: Sequence[str],
        *,
        scratch: Path,
        dsn: str | None = None,
        agent: str = AGENT,
    ) -> None:
        self.backend = backend
        self.state_dir = state_dir
        self.keys = list(keys)
        self.transcript_keys = list(transcript_keys)
        self.scratch = scratch
        self.dsn = dsn
        self.agent = agent
        self._stores: dict[str, SessionStore] = {}

    def open(self, durability: Literal["normal", "power"] = "normal") -> SessionStore:
        return open_store(
            agent=self.agent,
            state_dir=self.state_dir,
            store_type=self.backend,  # type: ignore[arg-type]
            dsn=self.dsn,
            durability=durability,
        )

    def store(self, durability: Literal["normal", "power"] = "normal") -> SessionStore:
        if durability not in self._stores:
            self._stores[durability] = self.open(durability)
        return self._stores[durability]

    def close(self) -> None:
        for s in self._stores.values():
            with contextlib.suppress(SessionStoreError):
                s.close()
        self._stores.clear()

    def timed(self, op: str) -> Timed | str:
        """The timed call of ``op``, or the reason it does not apply."""
        keys, n = self.keys, len(self.keys)
        if op == "open_get":

            def open_get(i: int) -> Callable[[], None]:
                s = self.open()
                s.get(keys[i % n])
                return s.close

            return open_get
        if op == "migrate":
            if self.backend != "sqlite":
                return (
                    "the source format: nothing to migrate"
                    if self.backend == "json"
                    else "migration into this backend is not implemented yet"
                )
            source = resolve_store_paths(self.state_dir, self.agent, None)

            def migrate(i: int) -> Callable[[], None]:
                target = self.scratch / f"migrate-{i}.sqlite"
                paths = StorePaths(source.agent_id, source.sessions_dir, source.json_path, target)
                result = migrate_agent(paths)
                if result.status != "migrated":
                    raise SessionStoreError(f"migration returned {result.status}: {result.message}")
                return lambda: _remove_db(target)

            return migrate
        if op in ("append", "tail"):
            if not self.transcript_keys:
                return "no transcript keys"
            s = self.store()
            handles = [s.transcript(k) for k in self.transcript_keys]
            h = len(handles)
            if op == "append":
                return lambda i: discard(handles[i % h].append(_message(i)))
            return lambda i: discard(handles[i % h].tail(20))
        s = self.store("power" if op == "update_power" else "normal")
        return _index_op(s, op, keys)


class _LegacyOps:
    """The timed operations of :class:`LegacyJsonStore`."""

    backend = "legacy"

    def __init__(self, json_path: Path, keys: Sequence[str]) -> None:
        self.json_path = json_path
        self.keys = list(keys)

    def close(self) -> None:
        """Nothing to release."""

    def timed(self, op: str) -> Timed | str:
        keys, n = self.keys, len(self.keys)
        if op in PROJECTED_OPS:
            return "no fields= projection in this design"
        if op in ("append", "tail"):
            return "the same .jsonl transcripts: see the json backend"
        if op == "migrate":
            return "the source format: nothing to migrate"
        if op == "open_get":
            return lambda i: discard(LegacyJsonStore(self.json_path).get(keys[i % n]))
        s = LegacyJsonStore(self.json_path, durable=op == "update_power")
        return _index_op(s, op, keys)


class _WholeStoreOps:
    """The timed operations of :class:`WholeStoreSqlite`."""

    backend = "whole-store"

    def __init__(self, db: Path, json_path: Path, keys: Sequence[str], *, scratch: Path) -> None:
        self.db = db
        self.json_path = json_path
        self.keys = list(keys)
        self.scratch = scratch
        self._open: dict[str, WholeStoreSqlite] = {}

    def store(self, synchronous: str = "NORMAL") -> WholeStoreSqlite:
        if synchronous not in self._open:
            self._open[synchronous] = WholeStoreSqlite(self.db, synchronous=synchronous)
        return self._open[synchronous]

    def close(self) -> None:
        for s in self._open.values():
            with contextlib.suppress(apsw.Error):
                s.close()
        self._open.clear()

    def timed(self, op: str) -> Timed | str:
        keys, n = self.keys, len(self.keys)
        if op in PROJECTED_OPS:
            return "no fields= projection in this design"
        if op in ("append", "tail"):
            return "index only, not modelled"
        if op == "open_get":

            def open_get(i: int) -> Callable[[], None]:
                s = WholeStoreSqlite(self.db)
                s.get(keys[i % n])
                return s.close

            return open_get
        if op == "migrate":

            def migrate(i: int) -> Callable[[], None]:
                target = self.scratch / f"whole-store-{i}.sqlite"
                s = WholeStoreSqlite(target)
                try:
                    s.import_json(self.json_path)
                finally:
                    s.close()
                return lambda: _remove_db(target)

            return migrate
        s = self.store("FULL" if op == "update_power" else "NORMAL")
        return _index_op(s, op, keys)


def _timed_or_why(subject: _StoreOps | _WholeStoreOps | _LegacyOps, op: str) -> Timed | str:
    """The timed call of ``op`` on ``subject``, or why there is none."""
    try:
        return subject.timed(op)
    except Exception as exc:  # a backend that cannot even set up reports why
        return f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def _run_ops(
    subject: _StoreOps | _WholeStoreOps | _LegacyOps,
    ops: Sequence[str],
    budget: Budget,
    log: Callable[[str], None],
) -> list[Measurement]:
    out = []
    try:
        for op in ops:
            fn = _timed_or_why(subject, op)
            m = (
                _not_applicable(subject.backend, op, fn)
                if isinstance(fn, str)
                else measure(subject.backend, op, fn, budget)
            )
            log_measurement(log, m)
            out.append(m)
    finally:
        subject.close()
    return out


def log_measurement(log: Callable[[str], None], m: Measurement) -> None:
    """One progress line for a measurement."""
    if m.ok:
        log(
            f"  {m.backend:<12} {OPS.get(m.op, m.op):<32} median {format_duration(m.median_ns):>9}"
            f"  p99 {format_duration(m.p99_ns):>9}  n={m.iterations}"
        )
    else:
        log(f"  {m.backend:<12} {OPS.get(m.op, m.op):<32} n/a: {m.note}")


def log_command(log: Callable[[str], None], t: CommandTiming) -> None:
    """One progress line for a whole-process timing."""
    name = CLI_COMMANDS.get(t.command, t.command)
    if t.ok:
        log(
            f"  {name:<45} median {format_duration(t.median_ns):>9}"
            f"  min {format_duration(t.min_ns):>9}  n={t.runs}"
        )
    else:
        log(f"  {name:<45} n/a: {t.note}")


def measure_store_ops(
    backend: Literal["json", "sqlite", "postgres"],
    state_dir: Path,
    keys: Sequence[str],
    ops: Sequence[str],
    budget: Budget,
    *,
    transcript_keys: Sequence[str] = (),
    scratch: Path | None = None,
    dsn: str | None = None,
    agent: str = AGENT,
    log: Callable[[str], None] = quiet,
) -> list[Measurement]:
    """Time ``ops`` (keys of :data:`OPS`) on one ``open_store`` backend of a state dir.

    Args:
        backend: ``json``, ``sqlite`` or ``postgres``.
        state_dir: The state dir (the store must exist in it).
        keys: Keys the single-entry operations rotate through.
        ops: The operations, in order.
        budget: Sampling budget.
        transcript_keys: Keys whose transcripts ``append``/``tail`` use.
        scratch: Where ``migrate`` writes its throw-away databases.
        dsn: For ``postgres``.
        agent: The agent id.
        log: Progress lines.

    Returns:
        One measurement per operation.
    """
    with tempfile.TemporaryDirectory(prefix="sessionstore-bench-") as tmp:
        subject = _StoreOps(
            backend,
            state_dir,
            keys,
            transcript_keys,
            scratch=scratch or Path(tmp),
            dsn=dsn,
            agent=agent,
        )
        return _run_ops(subject, ops, budget, log)


def _run_with_floor(
    subject: _StoreOps,
    db: Path,
    keys: Sequence[str],
    ops: Sequence[str],
    budget: Budget,
    log: Callable[[str], None],
    *,
    transcripts: Sequence[tuple[str, Path]] = (),
    scratch: Path | None = None,
) -> list[Measurement]:
    """The sqlite store's ``ops``, each one with a floor timed in turn with its floor.

    Reads alternate call by call. Writes alternate in blocks of :data:`WRITE_BLOCK` calls:
    a write by one connection makes the other reload its page cache at its next call, a
    cost that neither has when it writes alone, so each side writes a block in turn and the
    median is of calls that follow a call of their own.
    """
    out: list[Measurement] = []
    try:
        for op in ops:
            ours = _timed_or_why(subject, op)
            if op not in BARE_OPS:
                found = [
                    _not_applicable(subject.backend, op, ours)
                    if isinstance(ours, str)
                    else measure(subject.backend, op, ours, budget)
                ]
            else:
                floor, release = _bare_timed(db, op, keys, transcripts, scratch)
                try:
                    if isinstance(ours, str) or isinstance(floor, str):
                        found = [
                            _not_applicable(subject.backend, op, ours)
                            if isinstance(ours, str)
                            else measure(subject.backend, op, ours, budget),
                            _not_applicable("bare-apsw", op, floor)
                            if isinstance(floor, str)
                            else measure("bare-apsw", op, floor, budget),
                        ]
                    else:
                        block = WRITE_BLOCK if op in WRITE_OPS else 1
                        found = measure_interleaved(
                            op, {subject.backend: ours, "bare-apsw": floor}, budget, block=block
                        )
                finally:
                    release()
            for m in found:
                log_measurement(log, m)
            out += found
    finally:
        subject.close()
    return out


def _bare_timed(
    db: Path,
    op: str,
    keys: Sequence[str],
    transcripts: Sequence[tuple[str, Path]],
    scratch: Path | None,
) -> tuple[Timed | str, Callable[[], None]]:
    """The floor's timed call of ``op`` (or why there is none), and what releases it."""
    n = len(keys)
    if op in ("append", "tail") and (not transcripts or scratch is None):
        return "no transcript keys", lambda: None
    if op == "open_get":

        def open_get(i: int) -> Callable[[], None]:
            b = BareApsw(db)
            b.get(keys[i % n])
            return b.close

        return open_get, lambda: None
    try:
        bare = BareApsw(db, synchronous="FULL" if op == "update_power" else "NORMAL")
    except apsw.Error as exc:
        return f"failed: {exc}", lambda: None
    t = len(transcripts)
    if op == "get":
        return lambda i: discard(bare.get(keys[i % n])), bare.close
    if op in ("update", "update_power"):
        return lambda i: discard(bare.update(keys[i % n], 2_300 + i)), bare.close
    if op in ("list50", "list_all"):
        limit = 50 if op == "list50" else None
        return lambda i: discard(bare.list(limit)), bare.close
    if op == "count":
        return lambda i: discard(bare.count()), bare.close
    if op == "tail":
        return lambda i: discard(bare.tail(*transcripts[i % t])), bare.close
    # Appends go to copies, so the store's own transcripts stay as its timings left
    # them; beside the originals, because creating and removing a lock file costs more
    # in the sessions dir (thousands of names) than in an empty scratch dir.
    copies = []
    for j, (key, path) in enumerate(transcripts):
        copy = path.with_name(f"bench-floor-{j}.jsonl")
        shutil.copyfile(path, copy)
        copies.append((key, copy))

    def append(i: int) -> None:
        key, path = copies[i % t]
        bare.append(key, path, orjson.dumps({**_message(i), "timestamp": i}))

    def release() -> None:
        bare.close()
        for _, copy in copies:
            copy.unlink(missing_ok=True)

    return append, release


# --- memory ----------------------------------------------------------------------------------

# Runs in a fresh interpreter: `python -c` with argv backend, state_dir, agent, keys_file,
# gets, seconds. The first RSS reading comes before any import.
_MEMORY_PROBE: Final = r"""
def _rss():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split()[:2]
                out[name[:-1]] = int(value)
    return out
bare = _rss()
import sys, time
backend, state_dir, agent, keys_file, gets, seconds = sys.argv[1:7]
import sessionstore
if backend == "json":
    import sessionstore.index.json
elif backend == "sqlite":
    import apsw, sessionstore.index.sqlite
else:
    import apsw
    from sessionstore.bench import WholeStoreSqlite
imported = _rss()
with open(keys_file) as f:
    keys = [k for k in f.read().split("\n") if k]
start = time.perf_counter()
deadline = start + float(seconds)
if backend == "whole-store":
    store = WholeStoreSqlite(__import__("pathlib").Path(state_dir))
    lists = [lambda: store.list(limit=50), lambda: store.list(channel="telegram", limit=50),
             lambda: store.list()]
else:
    store = sessionstore.open_store(agent, state_dir, backend)
    lists = [lambda: store.list(limit=50), lambda: store.list(channel="telegram", limit=50),
             lambda: store.list()]
done = 0
for i in range(int(gets)):
    store.get(keys[i % len(keys)])
    done += 1
    if time.perf_counter() > deadline:
        break
listed = 0
for fn, times in zip(lists, (10, 10, 1)):
    for j in range(times):
        fn()
        listed += 1
        if j and time.perf_counter() > deadline:
            break
after = _rss()
import json
print(json.dumps({"bare": bare["VmRSS"], "imported": imported["VmRSS"], "after": after["VmRSS"],
                  "peak": after["VmHWM"], "gets": done, "lists": listed,
                  "seconds": time.perf_counter() - start}))
"""


def measure_memory(
    backend: str,
    location: Path,
    keys: Sequence[str],
    *,
    gets: int = 1_000,
    seconds: float = 60.0,
    agent: str = AGENT,
) -> MemoryResult:
    """RSS of a fresh interpreter that opens ``backend`` and makes ``gets`` gets and lists.

    What is measured: ``VmRSS`` of ``python -c`` before any import (the bare interpreter),
    after the imports (``sessionstore`` and the backend's module: ``index.json``,
    ``index.sqlite`` with apsw, or :mod:`sessionstore.bench` with apsw for ``whole-store``,
    whose class lives there), and after
    opening the store, ``gets`` gets of ``keys`` in turn, 10 top-50 lists, 10 filtered
    top-50 lists and one list of all rows; and the process's peak (``VmHWM``). Results
    are KiB above the bare interpreter.

    Args:
        backend: ``json``, ``sqlite`` (``location`` is the state dir) or ``whole-store``
            (``location`` is its database).
        location: See ``backend``.
        keys: Keys to get.
        gets: Number of gets.
        seconds: Stop the gets (and lists) after this long; the result says how many ran.
        agent: The agent id.

    Returns:
        The result; n/a with the reason off Linux or when the probe fails.
    """
    import subprocess  # here, not at the top: the whole-store probe imports this module

    result = MemoryResult(backend)
    if not Path("/proc/self/status").exists():
        result.note = "needs /proc/self/status (Linux)"
        return result
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as f:
        f.write("\n".join(keys))
        keys_file = f.name
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _MEMORY_PROBE,
                backend,
                str(location),
                agent,
                keys_file,
                str(gets),
                str(seconds),
            ],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=seconds * 10 + 600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result.note = "the probe timed out"
        return result
    finally:
        os.unlink(keys_file)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        result.note = f"the probe failed: {last}"[:300]
        return result
    data = orjson.loads(proc.stdout.strip().splitlines()[-1])
    bare = int(data["bare"])
    result.bare_kib = bare
    result.imports_kib = int(data["imported"]) - bare
    result.total_kib = int(data["after"]) - bare
    result.peak_kib = int(data["peak"]) - bare
    result.gets = int(data["gets"])
    result.lists = int(data["lists"])
    result.seconds = float(data["seconds"])
    if result.gets < gets:
        result.note = f"{result.gets} of {gets} gets within the {seconds:.0f} s limit"
    return result


# --- one dataset -----------------------------------------------------------------------------


def measure_legacy_ops(
    json_path: Path,
    keys: Sequence[str],
    ops: Sequence[str],
    budget: Budget,
    *,
    log: Callable[[str], None] = quiet,
) -> list[Measurement]:
    """Time ``ops`` on OpenClaw's legacy ``sessions.json`` design (:class:`LegacyJsonStore`).

    Args:
        json_path: The ``sessions.json`` (its writes go there).
        keys: Keys the single-entry operations rotate through.
        ops: The operations, in order.
        budget: Sampling budget.
        log: Progress lines.

    Returns:
        One measurement per operation.
    """
    return _run_ops(_LegacyOps(json_path, keys), ops, budget, log)


def _sample(keys: Sequence[str], count: int, rng: random.Random) -> list[str]:
    return rng.sample(list(keys), min(count, len(keys)))


def run_size(
    size: Size, root: Path, settings: BenchSettings, log: Callable[[str], None]
) -> SizeResult:
    """Generate one dataset under ``root``, migrate it, and measure everything on it.

    Args:
        size: The dataset.
        root: An empty directory for its state dir, scratch files and baseline database.
        settings: What to measure and how long.
        log: Progress lines.

    Returns:
        The dataset's results.
    """
    started = time.perf_counter()
    result = SizeResult(size)
    budget = settings.budget
    state_dir = root / "state"
    scratch = root / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    every_transcript = size.sessions <= settings.all_transcripts_max_sessions
    whole_file = size.sessions <= settings.whole_file_max_sessions
    which = "transcripts" if every_transcript else "transcripts of the sampled sessions only"
    log(f"[{size.label}] generating {size.title} sessions with {which} in {root}")
    t0 = time.perf_counter()
    generated = generate_state_dir(
        state_dir,
        sessions=size.sessions,
        agents=(AGENT,),
        bloated_ratio=size.bloated_ratio,
        seed=settings.seed,
        transcripts=every_transcript,
    )
    result.generate_s = time.perf_counter() - t0
    agent = generated.agents[AGENT]
    rng = random.Random(settings.seed)
    all_keys = sorted(agent.entries)
    keys = _sample(all_keys, settings.sample_keys, rng)
    # disjoint transcript keys per backend: appends of one must not change another's files
    pool = _sample(all_keys, min(len(all_keys), 48), rng)
    transcript_keys = {"json": pool[0::3], "sqlite": pool[1::3], "postgres": pool[2::3]}
    if not every_transcript:
        # the sample keys too: the CLI's `show` and any get may look at the transcript
        t0 = time.perf_counter()
        write_transcripts(generated, AGENT, [*pool, *keys], seed=settings.seed)
        result.generate_s += time.perf_counter() - t0
        result.notes.append(
            f"transcripts: written for the {len(agent.transcripts):,} sessions the timed"
            f" operations touch, not for all {size.sessions:,} (above"
            f" {settings.all_transcripts_max_sessions:,} sessions); transcript append and tail"
            " run in a sessions dir of that many files"
        )
    result.transcripts = len(agent.transcripts)
    paths = resolve_store_paths(state_dir, AGENT, None)
    result.json_bytes = paths.json_path.stat().st_size
    log(
        f"[{size.label}] generated in {result.generate_s:.1f} s; sessions.json"
        f" {result.json_bytes / 1e6:.1f} MB; {result.transcripts:,} transcripts"
    )
    if settings.postgres_only:
        # the same dataset and key samples as a full run, the other backends left out
        result.measurements = _postgres_hook(
            settings, agent.entries, keys, transcript_keys["postgres"], result, log
        )
        result.seconds = round(time.perf_counter() - started, 1)
        log(f"[{size.label}] done in {result.seconds:.0f} s")
        return result

    whole_db = root / "whole-store.sqlite"
    skipped = f"not run above {settings.whole_file_max_sessions:,} sessions: see the note"
    skipped_why = (
        f"legacy, json and whole-store: not run at {size.sessions:,} sessions (above"
        f" {settings.whole_file_max_sessions:,}): each of their calls reads or rewrites the"
        f" whole {result.json_bytes / 1e6:,.0f} MB store (seconds a call already at 100,000"
        " sessions), and the json and whole-store memory probes would load all of it"
    )
    # migrations first, from the untouched sessions.json
    log(f"[{size.label}] migration")
    if whole_file:
        for backend in ("json", "sqlite"):
            subject = _StoreOps(backend, state_dir, keys, (), scratch=scratch)
            result.measurements += _run_ops(subject, ["migrate"], budget, log)
        result.measurements += _run_ops(_LegacyOps(paths.json_path, keys), ["migrate"], budget, log)
        whole_ops = _WholeStoreOps(whole_db, paths.json_path, keys, scratch=scratch)
        result.measurements += _run_ops(whole_ops, ["migrate"], budget, log)

    t0 = time.perf_counter_ns()
    migration = migrate_agent(paths)
    migrate_ns = time.perf_counter_ns() - t0
    if migration.status != "migrated":
        raise SessionStoreError(
            f"benchmark setup: migration {migration.status}: {migration.message}"
        )
    result.sqlite_bytes = _db_bytes(paths.sqlite_path)
    if not whole_file:
        # one migration, the store's own: each takes minutes at this size
        once = Measurement("sqlite", "migrate", median_ns=float(migrate_ns), iterations=1)
        once.p99_ns = once.min_ns = once.median_ns
        once.note = "one run: the migration that made the measured store"
        log_measurement(log, once)
        result.measurements.append(once)
        result.measurements += [
            _not_applicable(backend, op, skipped)
            for backend in ("legacy", "json", "whole-store")
            for op in ("migrate", *MEASURE_ORDER)
        ]
        result.notes.append(skipped_why)
        log(f"  {skipped_why}")
    else:
        baseline = WholeStoreSqlite(whole_db)
        try:
            baseline.import_json(paths.json_path)
        finally:
            baseline.close()
        result.whole_store_bytes = _db_bytes(whole_db)
    # The legacy and json timings rewrite sessions.json. sqlite is timed beside the
    # sessions.json it was migrated from, as a migrated store is: beside a changed one it
    # would be a split store, whose every open re-checks the file and logs a warning.
    migrated_json = scratch / "sessions.json.migrated"
    if whole_file:
        shutil.copy2(paths.json_path, migrated_json)

    if settings.cli:
        # on the store as a migration leaves it, before the timings write to it
        log(f"[{size.label}] CLI, whole processes ({settings.cli_runs} runs each)")
        result.cli = measure_commands(state_dir, keys[0], runs=settings.cli_runs)
        for t in result.cli:
            log_command(log, t)

    ops = MEASURE_ORDER
    if whole_file:
        log(f"[{size.label}] {BACKENDS['legacy']}")
        result.measurements += _run_ops(_LegacyOps(paths.json_path, keys), ops, budget, log)
    entries = agent.entries
    floor_transcripts = [
        (k, Path(entries[k]["sessionFile"]))
        for k in transcript_keys["sqlite"]
        if isinstance(entries[k].get("sessionFile"), str)
        and Path(entries[k]["sessionFile"]).is_file()
    ]
    for backend in ("json", "sqlite") if whole_file else ("sqlite",):
        subject = _StoreOps(backend, state_dir, keys, transcript_keys[backend], scratch=scratch)
        if backend == "json":
            log(f"[{size.label}] {BACKENDS[backend]}")
            result.measurements += _run_ops(subject, ops, budget, log)
            continue
        log(f"[{size.label}] {BACKENDS['sqlite']}, in turn with {BACKENDS['bare-apsw']}")
        if whole_file:
            shutil.copy2(migrated_json, paths.json_path)  # bytes, mode and mtime
        result.measurements += _run_with_floor(
            subject,
            paths.sqlite_path,
            keys,
            ops,
            budget,
            log,
            transcripts=floor_transcripts,
            scratch=scratch,
        )
    if whole_file:
        log(f"[{size.label}] {BACKENDS['whole-store']}")
        result.measurements += _run_ops(
            _WholeStoreOps(whole_db, paths.json_path, keys, scratch=scratch), ops, budget, log
        )
    result.measurements += _postgres_hook(
        settings, generated.agents[AGENT].entries, keys, transcript_keys["postgres"], result, log
    )

    if settings.memory:
        log(f"[{size.label}] memory (fresh processes)")
        for backend, location in (
            ("json", state_dir),
            ("sqlite", state_dir),
            ("whole-store", whole_db),
        ):
            if backend != "sqlite" and not whole_file:
                result.memory.append(MemoryResult(backend, note=skipped))
                continue
            mem = measure_memory(
                backend,
                location,
                keys,
                gets=settings.memory_gets,
                seconds=settings.memory_budget_s,
            )
            result.memory.append(mem)
            log(
                f"  {backend:<12} {kib_mb(mem.total_kib)} above the interpreter"
                f" (imports {kib_mb(mem.imports_kib)}, peak {kib_mb(mem.peak_kib)})"
                + (f"; {mem.note}" if mem.note else "")
            )
    result.seconds = round(time.perf_counter() - started, 1)
    log(f"[{size.label}] done in {result.seconds:.0f} s")
    return result


def _postgres_hook(
    settings: BenchSettings,
    entries: dict[str, Entry],
    keys: Sequence[str],
    transcript_keys: Sequence[str],
    result: SizeResult,
    log: Callable[[str], None],
) -> list[Measurement]:
    """The postgres backend and a bare-psycopg floor, when a DSN is given.

    Runs in a throw-away schema (``sessionstore_bench_<pid>``) dropped afterwards; n/a with
    the reason when the server cannot be used.
    """
    dsn = settings.postgres_dsn or os.environ.get(PG_DSN_ENV)
    if not dsn:
        result.notes.append(f"postgres: not measured (no DSN given: set {PG_DSN_ENV} to run it)")
        return []
    log(f"[{result.size.label}] postgres")
    schema = f"sessionstore_bench_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="sessionstore-bench-pg-") as tmp:
        (Path(tmp) / "sessionstore.json").write_bytes(
            orjson.dumps({"postgres": {"schema": schema}})
        )
        subject = _StoreOps(
            "postgres", Path(tmp), keys, transcript_keys, scratch=Path(tmp), dsn=dsn
        )
        try:
            store = subject.store()
            store.mutate(lambda current: current.update(entries))
            # as autovacuum leaves a store some time after a bulk load: statistics and the
            # visibility map in place, so neither side is timed beside a vacuum
            store.vacuum()
        except SessionStoreError as exc:
            subject.close()
            _drop_schema(dsn, schema)
            reason = f"unavailable: {' '.join(str(exc).split())}"[:300]
            log(f"  postgres     n/a: {reason}")
            return [_not_applicable("postgres", op, reason) for op in STORE_OPS]
        try:
            ops = [op for op in MEASURE_ORDER if op not in _PG_FLOOR_OPS]
            missing = "measured by the sqlite rows (migration reads the same source)"
            out = [
                *_run_ops(subject, ops, settings.budget, log),
                _not_applicable("postgres", "migrate", missing),
            ]
            out += _against_floor(subject, dsn, schema, keys, settings.budget, log)
            return out
        finally:
            subject.close()
            _drop_schema(dsn, schema)


def _drop_schema(dsn: str, schema: str) -> None:
    from ..index.postgres import load_driver

    psycopg, _ = load_driver()  # psycopg is imported only through the postgres backend
    with contextlib.suppress(psycopg.Error), psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


_PG_FLOOR_OPS: Final = ("get", "list50", "count", "update")


def _against_floor(
    subject: _StoreOps,
    dsn: str,
    schema: str,
    keys: Sequence[str],
    budget: Budget,
    log: Callable[[str], None],
) -> list[Measurement]:
    """The store's get/list50/count/update interleaved with the floor's (:class:`BarePsycopg`).

    A call of one, then of the other, in turn: drift of a shared machine or a busy server
    hits both alike, so their ratio holds even when the absolute times do not.
    """
    bare = BarePsycopg(dsn, schema)
    n = len(keys)
    floor: dict[str, Timed] = {
        "get": lambda i: discard(bare.get(keys[i % n])),
        "list50": lambda i: discard(bare.list(50)),
        "count": lambda i: discard(bare.count()),
        "update": lambda i: discard(bare.update(keys[i % n], _patch(i))),
    }
    out: list[Measurement] = []
    try:
        for op in _PG_FLOOR_OPS:
            ours = subject.timed(op)
            assert not isinstance(ours, str)
            pair = measure_interleaved(op, {"postgres": ours, "bare-psycopg": floor[op]}, budget)
            for m in pair:
                log_measurement(log, m)
            out += pair
    finally:
        bare.close()
        subject.close()
    return out
