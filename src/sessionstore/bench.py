"""Benchmarks: this library's backends against the legacy store, PR #58550's wiring and peers.

The engine behind ``sessionstore bench`` and ``bench/run.py``; it lives in the package so a
benchmark runs from an installed wheel. One run generates realistic state dirs
(:mod:`sessionstore.generate`), times every operation on every backend side by side, measures
memory in fresh processes and file sizes, and returns a JSON-serialisable
:class:`BenchReport`; :func:`write_report` turns it into ``benchmarks.md``,
``benchmarks.json`` and PNG charts.

Backends:

- ``json``: ``sessions.json`` through ``open_store(store_type="json")``, the legacy design
  (every write re-serialises and atomically replaces the whole file; reads are served from
  an in-process copy validated by ``stat``, so "open + first get" is the cold read);
- ``sqlite``: the hot index (``store_type="sqlite"``);
- ``postgres``: a hook, run when a DSN is given (the backend does not exist yet);
- ``whole-store``: :class:`WholeStoreSqlite`, PR #58550's table wired as the PR wired it
  (every operation loads every row, every write deletes and re-inserts every row);
- ``bare-apsw``: :class:`BareApsw`, the floor for ``get`` and ``update``: the same row I/O
  with no library around it.

Timing: ``time.perf_counter_ns`` around each call, a warm-up first, the garbage collector
paused while sampling, then as many iterations as fit a time budget (at least
``min_iterations``, at most ``max_iterations``); medians and nearest-rank p99. An operation
whose ``min_iterations`` runs would exceed ``op_limit_s``, or that fails, is reported as
n/a with the reason, never with an estimate.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

import apsw
import orjson

from . import __version__
from .entry import load_normalize, merge_entry, now_ms, sort_time
from .errors import SessionStoreError
from .files import atomic_write, dumps_pretty
from .generate import generate_state_dir
from .index.base import derive_row, row_channel
from .index.json import parse_store_bytes, resolve_key
from .index.sqlite import PAGE_CACHE_KIB
from .layout import StorePaths, resolve_store_paths
from .lockfile import LockFile
from .migrate import migrate_agent
from .store import SessionStore, open_store

__all__ = [
    "BACKENDS",
    "OPS",
    "BareApsw",
    "BenchReport",
    "BenchSettings",
    "Budget",
    "Measurement",
    "MemoryResult",
    "PeerResult",
    "Size",
    "SizeResult",
    "TargetCheck",
    "WholeStoreSqlite",
    "default_sizes",
    "evaluate_targets",
    "format_duration",
    "machine_facts",
    "measure",
    "measure_legacy_ops",
    "measure_memory",
    "measure_store_ops",
    "parse_sizes",
    "quick_settings",
    "render_markdown",
    "run_benchmark",
    "write_charts",
    "write_report",
]

Entry = dict[str, Any]
Timed = Callable[[int], Callable[[], None] | None]
"""One timed call: gets the iteration number, may return an untimed cleanup."""

Kind = Literal["bloated", "typical"]

OPS: Final[dict[str, str]] = {
    "open_get": "open + first get",
    "get": "get (full entry)",
    "update": "update (durability normal)",
    "update_power": "update (durability power)",
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
}
STORE_OPS: Final = tuple(OPS)
# Reads before writes: a write by one store object makes the json backend's other objects
# re-read the file, and moves rows to the top of the lists.
MEASURE_ORDER: Final = (
    "open_get",
    "get",
    "list50",
    "list_filtered",
    "list_all",
    "count",
    "tail",
    "update",
    "update_power",
    "append",
)
BARE_OPS: Final = ("get", "update", "update_power")
LIST_CHANNEL: Final = "telegram"
AGENT: Final = "main"
INSTALL_HINT: Final = "pip install 'sessionstore[bench]'"
PG_DSN_ENV: Final = "SESSIONSTORE_BENCH_PG_DSN"


def _quiet(_message: str) -> None:
    pass


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


def quick_settings(**overrides: Any) -> BenchSettings:
    """Settings of a tiny run (seconds, not minutes): N = 200 bloated and 500 typical."""
    settings = BenchSettings(
        sizes=[Size(200, "bloated"), Size(500, "typical")],
        budget=Budget(seconds=0.25, max_iterations=500, warmup=3, op_limit_s=60.0),
        memory_gets=200,
        memory_budget_s=10.0,
        peer_sessions=300,
        quick=True,
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


@dataclass
class PeerResult:
    """A comparison with another project's session store.

    Attributes:
        name: What was compared.
        status: ``ok``, ``skipped`` or ``failed``.
        note: Why it was skipped or failed, or what to know.
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
class BenchReport:
    """A whole run: machine, settings, results per dataset, peers, targets.

    Attributes:
        machine: :func:`machine_facts`.
        settings: The settings used (JSON form).
        sizes: Per-dataset results.
        peers: Peer comparisons.
        targets: The issue's targets, checked against the results.
        started_at: When the run started (UTC, ISO 8601).
        seconds: How long it took.
    """

    machine: dict[str, Any]
    settings: dict[str, Any]
    sizes: list[SizeResult] = field(default_factory=list)
    peers: list[PeerResult] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0

    def size(self, label: str) -> SizeResult | None:
        """The results of the dataset labelled ``label`` (``1000b``), if it was run."""
        for s in self.sizes:
            if s.size.label == label:
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


def _not_applicable(backend: str, op: str, reason: str) -> Measurement:
    return Measurement(backend, op, note=reason)


# --- the whole-store baseline (PR #58550 as wired) -------------------------------------------

PR_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sessions (
  session_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, updated_at INTEGER NOT NULL,
  created_at INTEGER, channel TEXT, last_channel TEXT, last_to TEXT, last_account_id TEXT,
  last_thread_id TEXT, label TEXT, display_name TEXT, status TEXT, model TEXT,
  model_provider TEXT, total_tokens INTEGER, input_tokens INTEGER, output_tokens INTEGER,
  message_count INTEGER, archived INTEGER DEFAULT 0, entry_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_sessions_updated_at   ON sessions(updated_at);
CREATE INDEX IF NOT EXISTS idx_sessions_channel      ON sessions(channel);
CREATE INDEX IF NOT EXISTS idx_sessions_status       ON sessions(status);
CREATE INDEX IF NOT EXISTS idx_sessions_last_channel ON sessions(last_channel);
CREATE INDEX IF NOT EXISTS idx_sessions_archived     ON sessions(archived);
"""
_PR_UPSERT: Final = (
    "INSERT INTO sessions (session_key, session_id, updated_at, created_at, channel,"
    " last_channel, last_to, last_account_id, last_thread_id, label, display_name, status,"
    " model, model_provider, total_tokens, input_tokens, output_tokens, message_count,"
    " archived, entry_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(session_key) DO UPDATE SET session_id = excluded.session_id,"
    " updated_at = excluded.updated_at, created_at = excluded.created_at,"
    " channel = excluded.channel, last_channel = excluded.last_channel,"
    " last_to = excluded.last_to, last_account_id = excluded.last_account_id,"
    " last_thread_id = excluded.last_thread_id, label = excluded.label,"
    " display_name = excluded.display_name, status = excluded.status, model = excluded.model,"
    " model_provider = excluded.model_provider, total_tokens = excluded.total_tokens,"
    " input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,"
    " message_count = excluded.message_count, archived = excluded.archived,"
    " entry_json = excluded.entry_json"
)
# (entry field, column index in SELECT below) of the string columns the PR overlays
_PR_STRING_COLUMNS: Final = (
    ("channel", 2),
    ("lastChannel", 3),
    ("lastTo", 4),
    ("lastAccountId", 5),
    ("lastThreadId", 6),
    ("label", 7),
    ("displayName", 8),
    ("status", 9),
    ("model", 10),
    ("modelProvider", 11),
)
_PR_NUMBER_COLUMNS: Final = (("totalTokens", 12), ("inputTokens", 13), ("outputTokens", 14))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _whole_store_rows(
    store: dict[str, Any], agent_id: str, channel: str | None, limit: int | None
) -> list[Any]:
    """List rows computed from a whole store held in memory: filter, sort, slice."""
    hits = [
        (sort_time(e), k, e)
        for k, e in store.items()
        if isinstance(e, dict) and (channel is None or row_channel(k, e) == channel)
    ]
    hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
    if limit is not None:
        hits = hits[:limit]
    return [derive_row(k, e, agent_id) for _, k, e in hits]


class WholeStoreSqlite:
    """PR #58550's SQLite store as the PR wired it into the store layer.

    The table, indexes and PRAGMAs of spec section 10.2 and the row mapping of 10.3; every
    read loads every row (``loadSessionStoreSqlite``: ``JSON.parse`` of each
    ``entry_json`` plus the column overlay, no cache) and every write saves the whole store
    (``BEGIN IMMEDIATE; DELETE FROM sessions; upsert every entry; COMMIT``), as section
    10.4 describes. Normalisation and maintenance, which the PR also ran on every save,
    are left out, so this baseline is, if anything, faster than the PR.

    Args:
        path: The database file.
        agent_id: The agent (for list rows of non-agent keys).
        synchronous: ``NORMAL`` (the PR's setting) or ``FULL``.
    """

    def __init__(self, path: Path, *, agent_id: str = AGENT, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.agent_id = agent_id
        self._conn = apsw.Connection(str(path))
        self._conn.set_busy_timeout(5000)
        self._conn.execute("PRAGMA journal_mode = WAL").fetchall()
        self._conn.execute(
            f"PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000;"
            " PRAGMA cache_size = -16000; PRAGMA temp_store = MEMORY;"
        )
        self._conn.execute(PR_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def load_all(self) -> dict[str, Entry]:
        """Every entry by key, newest first (``loadSessionStoreSqlite``)."""
        rows: list[tuple[Any, ...]] = self._conn.execute(
            "SELECT session_key, session_id, channel, last_channel, last_to, last_account_id,"
            " last_thread_id, label, display_name, status, model, model_provider, total_tokens,"
            " input_tokens, output_tokens, updated_at, entry_json FROM sessions"
            " ORDER BY updated_at DESC"
        ).fetchall()
        store: dict[str, Entry] = {}
        for row in rows:
            try:
                entry = orjson.loads(row[16])
            except orjson.JSONDecodeError:
                entry = {}
            if not isinstance(entry, dict):
                entry = {}
            entry["sessionId"] = row[1]
            entry["updatedAt"] = row[15] if row[15] is not None else now_ms()
            for name, index in _PR_STRING_COLUMNS:
                if row[index]:
                    entry[name] = row[index]
            for name, index in _PR_NUMBER_COLUMNS:
                if row[index] is not None:
                    entry[name] = row[index]
            store[row[0]] = entry
        return store

    @staticmethod
    def _bind(key: str, entry: Entry) -> tuple[Any, ...]:
        thread = entry.get("lastThreadId")
        updated = _int_or_none(entry.get("updatedAt"))
        return (
            key,
            _str_or_none(entry.get("sessionId")) or "",
            updated if updated is not None else now_ms(),
            _int_or_none(entry.get("startedAt")),
            _str_or_none(entry.get("channel")),
            _str_or_none(entry.get("lastChannel")),
            _str_or_none(entry.get("lastTo")),
            _str_or_none(entry.get("lastAccountId")),
            str(thread) if thread is not None else None,
            _str_or_none(entry.get("label")),
            _str_or_none(entry.get("displayName")),
            _str_or_none(entry.get("status")),
            _str_or_none(entry.get("model")),
            _str_or_none(entry.get("modelProvider")),
            _int_or_none(entry.get("totalTokens")),
            _int_or_none(entry.get("inputTokens")),
            _int_or_none(entry.get("outputTokens")),
            None,  # message_count: "reserved", always null in the PR
            0,  # archived: always 0 in the PR
            orjson.dumps(entry).decode(),
        )

    def _write(self, store: dict[str, Entry], *, clear: bool) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if clear:
                conn.execute("DELETE FROM sessions")
            conn.executemany(_PR_UPSERT, [self._bind(k, e) for k, e in store.items()])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def save_all(self, store: dict[str, Entry]) -> None:
        """Replace the table's content with ``store`` (``saveSessionStoreSqlite``)."""
        self._write(store, clear=True)

    def import_json(self, json_path: Path) -> int:
        """``migrateJsonToSqlite``: upsert every entry of ``sessions.json`` in one transaction.

        Returns:
            The number of entries written.
        """
        data = orjson.loads(json_path.read_bytes())
        store = {k: v for k, v in data.items() if isinstance(v, dict)}
        self._write(store, clear=False)
        return len(store)

    def get(self, key: str) -> Entry | None:
        """One entry, found in the whole store loaded for it."""
        return self.load_all().get(key)

    def update(self, key: str, patch: dict[str, Any]) -> Entry | None:
        """Load everything, merge ``patch`` into one entry, save everything."""
        store = self.load_all()
        entry = store.get(key)
        if entry is None:
            return None
        entry.update(patch)
        entry["updatedAt"] = max(sort_time(entry), now_ms())
        self.save_all(store)
        return entry

    def list(self, *, channel: str | None = None, limit: int | None = None) -> list[Any]:
        """Rows newest first, from the whole store loaded for them."""
        return _whole_store_rows(self.load_all(), self.agent_id, channel, limit)

    def count(self) -> int:
        """Number of entries of the whole store loaded for it."""
        return len(self.load_all())


# --- the legacy design: OpenClaw's sessions.json ---------------------------------------------


class LegacyJsonStore:
    """OpenClaw's ``sessions.json`` store as upstream runs it (spec sections 5.1-5.4).

    Reads go through the object cache (valid while the file's mtime and size are unchanged)
    and return a deep clone of the whole store, as ``loadSessionStore`` does; a miss reads,
    parses and normalises the whole file. Writes take ``sessions.json.lock``, re-read the
    file without the cache (``updateSessionStore``), change one entry, and write the whole
    store back atomically (skipped when the text is unchanged). Maintenance, which upstream
    also runs on every save in enforce mode, is left out, so this is if anything faster than
    upstream. This library's own json backend keeps the format and the lock but reads and
    clones only the entry asked for.

    Args:
        path: The ``sessions.json`` file.
        agent_id: The agent (for list rows of non-agent keys).
        durable: fsync the temp file and the directory on each write.
    """

    def __init__(self, path: Path, *, agent_id: str = AGENT, durable: bool = False) -> None:
        self.path = path
        self.agent_id = agent_id
        self.durable = durable
        self._cache: tuple[tuple[int, int], dict[str, Any], bytes] | None = None
        self._lock = LockFile(path)

    def _read(self) -> tuple[tuple[int, int], dict[str, Any], bytes]:
        st = self.path.stat()
        raw = self.path.read_bytes()
        store = parse_store_bytes(raw, self.path)
        for key, value in store.items():
            if isinstance(value, dict):
                store[key] = load_normalize(value)
        return (st.st_mtime_ns, st.st_size), store, raw

    def load(self, *, skip_cache: bool = False) -> dict[str, Any]:
        """The whole store, a deep clone (``loadSessionStore``)."""
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if skip_cache or self._cache is None or self._cache[0] != stamp:
            self._cache = self._read()
        # structuredClone of the whole store on every read, as upstream
        return orjson.loads(orjson.dumps(self._cache[1]))  # type: ignore[no-any-return]

    def _save(self, store: dict[str, Any]) -> None:
        data = dumps_pretty(store)
        if self._cache is not None and data == self._cache[2]:
            return
        atomic_write(self.path, data, mode=0o600, durable=self.durable)
        st = self.path.stat()
        self._cache = ((st.st_mtime_ns, st.st_size), store, data)

    def get(self, key: str) -> Entry | None:
        """One entry, resolved case-insensitively in the whole store loaded for it."""
        store = self.load()
        winner, _ = resolve_key(store, key)
        return None if winner is None else store[winner]

    def update(self, key: str, patch: dict[str, Any]) -> Entry | None:
        """``updateSessionStore``: lock, fresh load, merge one entry, save everything."""
        with self._lock.hold():
            store = self.load(skip_cache=True)
            winner, _ = resolve_key(store, key)
            if winner is None:
                return None
            store[winner] = merge_entry(store[winner], patch)
            self._save(store)
            return store[winner]  # type: ignore[no-any-return]

    def list(self, *, channel: str | None = None, limit: int | None = None) -> list[Any]:
        """``sessions.list``: rows for the whole store loaded for it, sorted, sliced."""
        return _whole_store_rows(self.load(), self.agent_id, channel, limit)

    def count(self) -> int:
        """Entries of the whole store loaded for it."""
        return len(self.load())


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
        if op in ("append", "tail"):
            return "the same .jsonl transcripts: see the json backend"
        if op == "migrate":
            return "the source format: nothing to migrate"
        if op == "open_get":
            return lambda i: _discard(LegacyJsonStore(self.json_path).get(keys[i % n]))
        s = LegacyJsonStore(self.json_path, durable=op == "update_power")
        return _index_op(s, op, keys)


# --- the floor: bare apsw --------------------------------------------------------------------


class BareApsw:
    """The same row I/O as ``SessionStore.get``/``update`` on sqlite, with nothing around it.

    ``get``: the row by primary key, then each of its blob rows by digest (as the store
    reads them, but with no cache), and ``orjson.loads`` of the same bytes the store parses
    (zlib-compressed blobs are decompressed first, as the store does). ``update``: in a
    ``BEGIN IMMEDIATE`` transaction, read the row's ``entry_json``, set the token fields and
    ``updatedAt`` in it, and write it back with the token and time columns: the
    read-modify-write every update needs, without blob decoding for a returned entry. No key
    folding, merging, normalisation or row derivation: the floor the library is compared
    with. It mirrors the storage format and page cache of ``index/sqlite.py``.

    Args:
        path: A ``sessions.sqlite`` written by this library.
        synchronous: ``NORMAL`` or ``FULL`` (as durability normal / power).
    """

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self._conn = apsw.Connection(str(path))
        self._conn.set_busy_timeout(10_000)
        self._conn.execute("PRAGMA journal_mode = WAL").fetchall()
        self._conn.execute(
            f"PRAGMA synchronous = {synchronous}; PRAGMA cache_size = -{PAGE_CACHE_KIB};"
        )
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(blobs)")}
        codec = "codec" if "codec" in columns else "0"
        self._blob = f"SELECT data, {codec} FROM blobs WHERE digest = ?"

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def get(self, key: str) -> Entry | None:
        """Read and parse one row and its blobs."""
        conn = self._conn
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT entry_json, blob_refs FROM sessions WHERE session_key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        entry: Entry = orjson.loads(row[0])
        if row[1]:
            for name, digest in orjson.loads(row[1]).items():
                blob: tuple[Any, ...] = conn.execute(self._blob, (digest,)).fetchone()  # type: ignore[assignment]
                data, codec = blob
                entry[name] = orjson.loads(zlib.decompress(data) if codec == 1 else data)
        return entry

    def update(self, key: str, tokens: int) -> None:
        """Read, change and write back one row in a write transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            found: tuple[Any, ...] = conn.execute(  # type: ignore[assignment]
                "SELECT entry_json FROM sessions WHERE session_key = ?", (key,)
            ).fetchone()
            entry = orjson.loads(found[0])
            now = now_ms()
            entry.update(totalTokens=tokens, inputTokens=tokens, updatedAt=now)
            conn.execute(
                "UPDATE sessions SET total_tokens = ?, input_tokens = ?, updated_at = ?,"
                " row_updated_at = ?, entry_json = ? WHERE session_key = ?",
                (tokens, tokens, now, now, orjson.dumps(entry), key),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


# --- one backend's operations ----------------------------------------------------------------


def _patch(i: int) -> dict[str, Any]:
    """A post-turn token update, different on every call (so every call writes)."""
    return {"inputTokens": 2_000 + i, "outputTokens": 300 + i, "totalTokens": 2_300 + 2 * i}


def _discard(_value: object) -> None:
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
        "get": lambda i: _discard(s.get(keys[i % n])),
        "update": lambda i: _discard(s.update(keys[i % n], _patch(i))),
        "update_power": lambda i: _discard(s.update(keys[i % n], _patch(i))),
        "list50": lambda i: _discard(s.list(limit=50)),
        "list_filtered": lambda i: _discard(s.list(channel=LIST_CHANNEL, limit=50)),
        "list_all": lambda i: _discard(s.list()),
        "count": lambda i: _discard(s.count()),
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
                return lambda i: _discard(handles[i % h].append(_message(i)))
            return lambda i: _discard(handles[i % h].tail(20))
        s = self.store("power" if op == "update_power" else "normal")
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


def _run_ops(
    subject: _StoreOps | _WholeStoreOps | _LegacyOps,
    ops: Sequence[str],
    budget: Budget,
    log: Callable[[str], None],
) -> list[Measurement]:
    out = []
    try:
        for op in ops:
            try:
                fn = subject.timed(op)
            except Exception as exc:  # a backend that cannot even set up reports why
                fn = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
            m = (
                _not_applicable(subject.backend, op, fn)
                if isinstance(fn, str)
                else measure(subject.backend, op, fn, budget)
            )
            _log_measurement(log, m)
            out.append(m)
    finally:
        subject.close()
    return out


def _log_measurement(log: Callable[[str], None], m: Measurement) -> None:
    if m.ok:
        log(
            f"  {m.backend:<12} {OPS.get(m.op, m.op):<32} median {format_duration(m.median_ns):>9}"
            f"  p99 {format_duration(m.p99_ns):>9}  n={m.iterations}"
        )
    else:
        log(f"  {m.backend:<12} {OPS.get(m.op, m.op):<32} n/a: {m.note}")


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
    log: Callable[[str], None] = _quiet,
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


def _run_bare(
    db: Path, keys: Sequence[str], budget: Budget, log: Callable[[str], None]
) -> list[Measurement]:
    out = [_bare_op(db, op, keys, budget) for op in BARE_OPS]
    for m in out:
        _log_measurement(log, m)
    return out


def _bare_op(db: Path, op: str, keys: Sequence[str], budget: Budget) -> Measurement:
    n = len(keys)
    try:
        bare = BareApsw(db, synchronous="FULL" if op == "update_power" else "NORMAL")
    except apsw.Error as exc:
        return _not_applicable("bare-apsw", op, f"failed: {exc}")
    try:
        if op == "get":
            return measure("bare-apsw", op, lambda i: _discard(bare.get(keys[i % n])), budget)
        return measure("bare-apsw", op, lambda i: bare.update(keys[i % n], 2_300 + i), budget)
    finally:
        bare.close()


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
    ``index.sqlite`` with apsw, or this module with apsw for ``whole-store``, whose class
    lives here), and after
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
    import subprocess  # here, not at the top: the probe imports this module (and its cost)

    result = MemoryResult(backend)
    if not Path("/proc/self/status").exists():
        result.note = "needs /proc/self/status (Linux)"
        return result
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as f:
        f.write("\n".join(keys))
        keys_file = f.name
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
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
            env=env,
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
    log: Callable[[str], None] = _quiet,
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


def _run_size(
    size: Size, root: Path, settings: BenchSettings, log: Callable[[str], None]
) -> SizeResult:
    started = time.perf_counter()
    result = SizeResult(size)
    budget = settings.budget
    state_dir = root / "state"
    scratch = root / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    log(f"[{size.label}] generating {size.title} sessions with transcripts in {root}")
    t0 = time.perf_counter()
    generated = generate_state_dir(
        state_dir,
        sessions=size.sessions,
        agents=(AGENT,),
        bloated_ratio=size.bloated_ratio,
        seed=settings.seed,
        transcripts=True,
    )
    result.generate_s = time.perf_counter() - t0
    agent = generated.agents[AGENT]
    result.transcripts = len(agent.transcripts)
    paths = resolve_store_paths(state_dir, AGENT, None)
    result.json_bytes = paths.json_path.stat().st_size
    log(
        f"[{size.label}] generated in {result.generate_s:.1f} s; sessions.json"
        f" {result.json_bytes / 1e6:.1f} MB"
    )

    rng = random.Random(settings.seed)
    all_keys = sorted(agent.entries)
    keys = _sample(all_keys, settings.sample_keys, rng)
    # disjoint transcript keys per backend: appends of one must not change another's files
    pool = _sample(all_keys, min(len(all_keys), 48), rng)
    transcript_keys = {"json": pool[0::3], "sqlite": pool[1::3], "postgres": pool[2::3]}

    # migrations first, from the untouched sessions.json
    log(f"[{size.label}] migration")
    for backend in ("json", "sqlite"):
        subject = _StoreOps(backend, state_dir, keys, (), scratch=scratch)
        result.measurements += _run_ops(subject, ["migrate"], budget, log)
    result.measurements += _run_ops(_LegacyOps(paths.json_path, keys), ["migrate"], budget, log)
    whole_db = root / "whole-store.sqlite"
    whole_ops = _WholeStoreOps(whole_db, paths.json_path, keys, scratch=scratch)
    result.measurements += _run_ops(whole_ops, ["migrate"], budget, log)

    migration = migrate_agent(paths)
    if migration.status != "migrated":
        raise SessionStoreError(
            f"benchmark setup: migration {migration.status}: {migration.message}"
        )
    result.sqlite_bytes = _db_bytes(paths.sqlite_path)
    baseline = WholeStoreSqlite(whole_db)
    try:
        baseline.import_json(paths.json_path)
    finally:
        baseline.close()
    result.whole_store_bytes = _db_bytes(whole_db)

    ops = MEASURE_ORDER
    log(f"[{size.label}] {BACKENDS['legacy']}")
    result.measurements += _run_ops(_LegacyOps(paths.json_path, keys), ops, budget, log)
    for backend in ("json", "sqlite"):
        log(f"[{size.label}] {BACKENDS[backend]}")
        subject = _StoreOps(backend, state_dir, keys, transcript_keys[backend], scratch=scratch)
        result.measurements += _run_ops(subject, ops, budget, log)
    log(f"[{size.label}] {BACKENDS['whole-store']}")
    result.measurements += _run_ops(
        _WholeStoreOps(whole_db, paths.json_path, keys, scratch=scratch), ops, budget, log
    )
    log(f"[{size.label}] {BACKENDS['bare-apsw']}")
    result.measurements += _run_bare(paths.sqlite_path, keys, budget, log)
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
            mem = measure_memory(
                backend,
                location,
                keys,
                gets=settings.memory_gets,
                seconds=settings.memory_budget_s,
            )
            result.memory.append(mem)
            log(
                f"  {backend:<12} {_kib_mb(mem.total_kib)} above the interpreter"
                f" (imports {_kib_mb(mem.imports_kib)}, peak {_kib_mb(mem.peak_kib)})"
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
    """The postgres backend, when a DSN is given (it does not exist yet: reported as n/a)."""
    dsn = settings.postgres_dsn or os.environ.get(PG_DSN_ENV)
    if not dsn:
        result.notes.append(
            f"postgres: not run (no DSN; set {PG_DSN_ENV} once the postgres backend exists)"
        )
        return []
    log(f"[{result.size.label}] postgres")
    with tempfile.TemporaryDirectory(prefix="sessionstore-bench-pg-") as tmp:
        subject = _StoreOps(
            "postgres", Path(tmp), keys, transcript_keys, scratch=Path(tmp), dsn=dsn
        )
        try:
            store = subject.store()
            store.mutate(lambda current: current.update(entries))
        except SessionStoreError as exc:
            subject.close()
            reason = f"unavailable: {' '.join(str(exc).split())}"[:300]
            log(f"  postgres     n/a: {reason}")
            return [_not_applicable("postgres", op, reason) for op in STORE_OPS]
        ops = MEASURE_ORDER
        missing = "migration into postgres is not implemented yet"
        return [
            *_run_ops(subject, ops, settings.budget, log),
            _not_applicable("postgres", "migrate", missing),
        ]


# --- peers -----------------------------------------------------------------------------------


def _peer_adk(settings: BenchSettings, root: Path, log: Callable[[str], None]) -> PeerResult:
    import asyncio  # here, not at the top: asyncio alone adds ~10 MB to the memory probe

    name = "Google ADK DatabaseSessionService (SQLite via aiosqlite)"
    n = settings.peer_sessions
    try:
        sessions_module = importlib.import_module("google.adk.sessions")
        importlib.import_module("sqlalchemy.ext.asyncio")
        importlib.import_module("aiosqlite")
    except ImportError as exc:
        return PeerResult(name, "skipped", f"not installed ({INSTALL_HINT}): {exc}", n)
    log(f"[peers] ADK: generating {n:,} typical sessions")
    state_dir = root / "state"
    generate_state_dir(state_dir, sessions=n, bloated_ratio=0.0, seed=settings.seed)
    migrate_agent(resolve_store_paths(state_dir, AGENT, None))
    result = PeerResult(name, "ok")
    store = open_store(AGENT, state_dir, "sqlite")
    loop = asyncio.new_event_loop()
    service: Any = None
    try:
        rows = store.list().rows
        result.sessions = len(rows)  # cron run keys are never listed, so never compared
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            service = sessions_module.DatabaseSessionService(
                db_url=f"sqlite+aiosqlite:///{root / 'adk.sqlite'}"
            )

            async def create_all() -> None:
                for row in rows:
                    state = {k: v for k, v in row.items() if v is not None}
                    await service.create_session(
                        app_name="openclaw",
                        user_id=AGENT,
                        session_id=str(row["sessionId"]),
                        state=state,
                    )

            log(f"[peers] ADK: creating {len(rows):,} sessions through create_session")
            t0 = time.perf_counter()
            loop.run_until_complete(create_all())
            result.details["adkCreateSeconds"] = round(time.perf_counter() - t0, 1)
            log(f"[peers] ADK: created in {result.details['adkCreateSeconds']} s")
            listed = loop.run_until_complete(
                service.list_sessions(app_name="openclaw", user_id=AGENT)
            )
            result.details["adkListedSessions"] = len(listed.sessions)
            adk = measure(
                "google-adk",
                "list_all",
                lambda i: _discard(
                    loop.run_until_complete(
                        service.list_sessions(app_name="openclaw", user_id=AGENT)
                    )
                ),
                settings.budget,
            )
        ours_all = measure("sqlite", "list_all", lambda i: _discard(store.list()), settings.budget)
        ours_50 = measure(
            "sqlite", "list50", lambda i: _discard(store.list(limit=50)), settings.budget
        )
        result.measurements = [adk, ours_all, ours_50]
        for m in result.measurements:
            _log_measurement(log, m)
        result.note = (
            "ADK's list_sessions returns every session of a user (no limit or order option);"
            " compared with our list() of all rows and our top-50 page"
        )
    except Exception as exc:  # a peer's failure is reported, not fatal to the run
        result.status = "failed"
        result.note = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
    finally:
        if service is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(service.close())
        loop.close()
        store.close()
    return result


def _peer_openai_agents() -> PeerResult:
    name = "OpenAI Agents SDK SQLiteSession"
    try:
        importlib.import_module("sessionstore.adapters.openai_agents")
    except ImportError:
        return PeerResult(
            name,
            "skipped",
            "our adapter (sessionstore.adapters.openai_agents.StoreSession) does not exist yet;"
            " nothing measured",
        )
    try:
        importlib.import_module("agents.memory")
    except ImportError as exc:
        return PeerResult(name, "skipped", f"not installed (pip install openai-agents): {exc}")
    return PeerResult(
        name,
        "skipped",
        "the adapter exists but this comparison is not written yet (add it in"
        " sessionstore.bench._peer_openai_agents)",
    )


def _run_peers(settings: BenchSettings, root: Path, log: Callable[[str], None]) -> list[PeerResult]:
    peers = [_peer_openai_agents()]
    adk_root = root / "peers-adk"
    adk_root.mkdir(parents=True, exist_ok=True)
    try:
        peers.append(_peer_adk(settings, adk_root, log))
    finally:
        if not settings.keep_data:
            shutil.rmtree(adk_root, ignore_errors=True)
    for p in peers:
        if p.status != "ok":
            log(f"[peers] {p.name}: {p.status}: {p.note}")
    return peers


# --- the run ---------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, SQLite/apsw/orjson versions, date and load."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(x, 2) for x in os.getloadavg()]
    orjson_version = getattr(orjson, "__version__", "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryBytes": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": apsw.sqlite_lib_version(),
        "apsw": apsw.apsw_version(),
        "orjson": orjson_version,
        "sessionstore": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadAverage": load,
    }


def _settings_dict(settings: BenchSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["sizes"] = [s.label for s in settings.sizes]
    data["work_dir"] = str(settings.work_dir) if settings.work_dir else None
    data["postgres_dsn"] = "(set)" if settings.postgres_dsn else None  # never write a secret
    return data


def run_benchmark(
    settings: BenchSettings | None = None, *, log: Callable[[str], None] = _quiet
) -> BenchReport:
    """Run every dataset, the peers, and check the targets.

    Args:
        settings: What to run (default: the full run at the default sizes).
        log: Receives one line per step and measurement.

    Returns:
        The report (write it with :func:`write_report`).
    """
    settings = settings or BenchSettings()
    started = time.perf_counter()
    report = BenchReport(
        machine=machine_facts(),
        settings=_settings_dict(settings),
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    owned = settings.work_dir is None
    work = settings.work_dir or Path(tempfile.mkdtemp(prefix="sessionstore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for size in settings.sizes:
            root = work / size.label
            if root.exists():
                shutil.rmtree(root)
            try:
                report.sizes.append(_run_size(size, root, settings, log))
            finally:
                if not settings.keep_data:
                    shutil.rmtree(root, ignore_errors=True)
        if settings.peers:
            report.peers = _run_peers(settings, work, log)
    finally:
        if owned and not settings.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    report.targets = evaluate_targets(report)
    report.seconds = round(time.perf_counter() - started, 1)
    return report


# --- targets ---------------------------------------------------------------------------------

_US: Final = 1_000.0
_MS: Final = 1_000_000.0
_S: Final = 1_000_000_000.0


def evaluate_targets(report: BenchReport) -> list[TargetCheck]:
    """The issue's targets, each computed from the report (never assumed).

    A target whose dataset or measurement is missing is ``not measured``, with the reason.
    """
    checks: list[TargetCheck] = []

    def add(target: str, measured: str | None, met: bool | None, why: str = "") -> None:
        if measured is None or met is None:
            checks.append(TargetCheck(target, why or "not measured", "not measured"))
        else:
            checks.append(TargetCheck(target, measured, "met" if met else "missed"))

    def value(label: str, backend: str, op: str) -> tuple[float | None, str]:
        size = report.size(label)
        if size is None:
            return None, f"size {label} not run"
        m = size.get(backend, op)
        if m is None or m.median_ns is None:
            reason = (m.note or "n/a") if m is not None else "not measured"
            return None, f"{backend} {op}: {reason}"
        return m.median_ns, ""

    def absolute(label: str, op: str, limit_ns: float, text: str) -> None:
        v, why = value(label, "sqlite", op)
        add(
            text, format_duration(v) if v is not None else None, v is not None and v < limit_ns, why
        )

    def ratio(
        label: str, op: str, slower: str, factor: float, text: str, *, at_least: bool
    ) -> None:
        ours, why1 = value(label, "sqlite", op)
        other, why2 = value(label, slower, op)
        if ours is None or other is None:
            add(text, None, None, why1 or why2)
            return
        r = other / ours if at_least else ours / other
        shown = f"{format_ratio(r)} ({format_duration(ours)} vs {format_duration(other)})"
        add(text, shown, r >= factor if at_least else r <= factor)

    absolute("1000b", "open_get", 1 * _MS, "1,000 bloated: open + first get < 1 ms")
    absolute("1000b", "get", 50 * _US, "1,000 bloated: get (full entry) < 50 µs")
    absolute("1000b", "update", 200 * _US, "1,000 bloated: update < 200 µs")
    absolute("1000b", "list50", 500 * _US, "1,000 bloated: list top-50 < 500 µs")
    absolute("1000b", "list_all", 5 * _MS, "1,000 bloated: all rows' metadata < 5 ms")

    size = report.size("1000b")
    mem = size.memory_of("sqlite") if size else None
    if mem is not None and mem.total_kib is not None and mem.data_kib is not None:
        # The store's own memory: what opening it and the work add to the interpreter with
        # its libraries loaded. The total above a bare interpreter is shown beside it;
        # importing orjson and apsw alone costs about 5 MB of it.
        add(
            "1,000 bloated: store memory < 5 MB above the interpreter",
            f"{_kib_mb(mem.data_kib)} (total above a bare interpreter"
            f" {_kib_mb(mem.total_kib)}, of which imports {_kib_mb(mem.imports_kib)})",
            mem.data_kib * 1024 < 5_000_000,
        )
    else:
        add(
            "1,000 bloated: store memory < 5 MB above the interpreter",
            None,
            None,
            "size 1000b not run"
            if size is None
            else (mem.note if mem else "memory not measured") or "n/a",
        )
    if size is not None and size.sqlite_bytes and size.json_bytes:
        share = size.sqlite_bytes / size.json_bytes
        add(
            "1,000 bloated: sessions.sqlite <= 20% of sessions.json",
            f"{share:.1%} ({format_bytes(size.sqlite_bytes)} vs {format_bytes(size.json_bytes)})",
            share <= 0.20,
        )
    else:
        add(
            "1,000 bloated: sessions.sqlite <= 20% of sessions.json",
            None,
            None,
            "size 1000b not run",
        )

    for op, name in (("get", "get"), ("update", "update"), ("list50", "list top-50")):
        ratio(
            "1000b",
            op,
            "legacy",
            1_000,
            f"1,000 bloated: {name} >= 1,000x faster than the legacy json store",
            at_least=True,
        )
    ratio(
        "1000b",
        "list_all",
        "legacy",
        50,
        "1,000 bloated: all rows' metadata >= 50x faster than the legacy json store",
        at_least=True,
    )
    for op in ("get", "update"):
        ratio(
            "1000b",
            op,
            "bare-apsw",
            2,
            f"1,000 bloated: {op} within 2x of bare apsw",
            at_least=False,
        )

    absolute("100000t", "get", 20 * _US, "100,000 typical: get < 20 µs")
    absolute("100000t", "update", 150 * _US, "100,000 typical: update < 150 µs")
    absolute("100000t", "list50", 250 * _US, "100,000 typical: list top-50 < 250 µs")
    absolute("100000t", "count", 25 * _US, "100,000 typical: count < 25 µs")
    for op in ("get", "update", "list50", "count"):
        big, why1 = value("100000t", "sqlite", op)
        small, why2 = value("1000t", "sqlite", op)
        text = f"100,000 typical: {OPS[op]} within 1.5x of 1,000 typical"
        if big is None or small is None:
            add(text, None, None, why1 or why2)
        else:
            add(
                text,
                f"{big / small:.2f}x ({format_duration(big)} vs {format_duration(small)})",
                big / small <= 1.5,
            )

    absolute("1000b", "migrate", 2 * _S, "migration of 1,000 bloated < 2 s")
    absolute("100000t", "migrate", 30 * _S, "migration of 100,000 typical < 30 s")
    return checks


# --- formatting ------------------------------------------------------------------------------


def _sig(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_duration(ns: float | None) -> str:
    """``850 ns``, ``12.3 µs``, ``4.56 ms``, ``1.23 s``; ``n/a`` for None."""
    if ns is None:
        return "n/a"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{_sig(ns / 1e3)} µs"
    if ns < 1_000_000_000:
        return f"{_sig(ns / 1e6)} ms"
    return f"{_sig(ns / 1e9)} s"


def format_ratio(ratio: float) -> str:
    """``3.4x``, ``57x``, ``1,234x``."""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.1f}x"


def format_bytes(size: int | None) -> str:
    """Decimal units: ``56.3 MB``."""
    if size is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{_sig(size / scale)} {unit}"
    return f"{size} B"


def _kib_mb(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib * 1024 / 1e6:.1f} MB"


# --- markdown --------------------------------------------------------------------------------

_TABLE_BACKENDS: Final = ("legacy", "json", "sqlite", "postgres", "whole-store", "bare-apsw")


def _cell(m: Measurement | None, *, few: int = 30) -> str:
    if m is None:
        return "—"
    if not m.ok:
        return f"n/a ({m.note})" if m.note else "n/a"
    text = f"{format_duration(m.median_ns)} / {format_duration(m.p99_ns)}"
    if m.iterations < few:
        text += f" (n={m.iterations})"
    return text


def _speedup(size: SizeResult, op: str, other: str) -> str:
    ours, theirs = size.get("sqlite", op), size.get(other, op)
    if ours is None or theirs is None or not ours.ok or not theirs.ok:
        return "—"
    assert ours.median_ns is not None and theirs.median_ns is not None
    return format_ratio(theirs.median_ns / ours.median_ns)


def _size_section(size: SizeResult) -> list[str]:
    backends = [b for b in _TABLE_BACKENDS if any(m.backend == b for m in size.measurements)]
    lines = [f"## {size.size.title} sessions", ""]
    lines.append(
        f"{size.size.sessions:,} sessions of one agent"
        + (
            " (every entry bloated: `skillsSnapshot` ~35-40 KB + `systemPromptReport`)"
            if size.size.kind == "bloated"
            else " (typical ~1.5 KB entries)"
        )
        + f", {size.transcripts:,} transcripts; generated in {size.generate_s:.1f} s"
        f" (the whole dataset took {size.seconds:.0f} s)."
        " Cells: median / p99 per call; `n=` when fewer than 30 calls fit the budget."
    )
    lines.append("")
    header = ["Operation", *(BACKENDS[b] for b in backends), "sqlite vs legacy"]
    if "whole-store" in backends:
        header.append("sqlite vs whole-store")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for op, label in OPS.items():
        cells = [label, *(_cell(size.get(b, op)) for b in backends), _speedup(size, op, "legacy")]
        if "whole-store" in backends:
            cells.append(_speedup(size, op, "whole-store"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| Backend | File size | Memory above interpreter | of which imports | Peak | Probe |"
    )
    lines.append("|---|---|---|---|---|---|")
    files = {
        "json": size.json_bytes,
        "sqlite": size.sqlite_bytes,
        "whole-store": size.whole_store_bytes,
    }
    for backend, nbytes in files.items():
        mem = size.memory_of(backend)
        share = ""
        if backend != "json" and nbytes and size.json_bytes:
            share = f" ({nbytes / size.json_bytes:.0%} of json)"
        if mem is None:
            mem_cells = ["not measured"] * 3 + [""]
        elif mem.total_kib is None:
            mem_cells = [f"n/a ({mem.note})", "", "", ""]
        else:
            mem_cells = [
                _kib_mb(mem.total_kib),
                _kib_mb(mem.imports_kib),
                _kib_mb(mem.peak_kib),
                f"{mem.gets} gets, {mem.lists} lists, {mem.seconds:.1f} s"
                + (f"; {mem.note}" if mem.note else ""),
            ]
        lines.append(
            f"| {BACKENDS[backend]} | {format_bytes(nbytes)}{share} | "
            + " | ".join(mem_cells)
            + " |"
        )
    cold, ours = size.get("json", "open_get"), size.get("sqlite", "get")
    if cold and ours and cold.median_ns is not None and ours.median_ns is not None:
        lines.append("")
        lines.append(
            "json serves a warm `get` from its in-process copy of the parsed file; a process"
            " whose copy is stale (any other process wrote the file since) pays the cold read,"
            f" *open + first get* ({format_duration(cold.median_ns)}): sqlite's `get` is"
            f" {format_ratio(cold.median_ns / ours.median_ns)} faster than that."
        )
    for note in size.notes:
        lines.append("")
        lines.append(f"Note: {note}")
    lines.append("")
    return lines


def _peers_section(peers: list[PeerResult]) -> list[str]:
    lines = ["## Peers", ""]
    if not peers:
        return [*lines, "Not run (`--no-peers`).", ""]
    for p in peers:
        lines.append(f"### {p.name}")
        lines.append("")
        if p.status != "ok":
            lines.append(f"{p.status.capitalize()}: {p.note}")
            lines.append("")
            continue
        lines.append(f"{p.sessions:,} sessions. {p.note}.")
        if p.details:
            lines.append("")
            lines.append("Setup: " + ", ".join(f"{k} = {v}" for k, v in p.details.items()) + ".")
        lines.append("")
        lines.append("| Backend | Operation | Median / p99 |")
        lines.append("|---|---|---|")
        for m in p.measurements:
            label = "list_sessions (all)" if m.backend == "google-adk" else OPS.get(m.op, m.op)
            lines.append(f"| {m.backend} | {label} | {_cell(m)} |")
        lines.append("")
    return lines


def render_markdown(
    report: BenchReport, *, charts: Sequence[str] = (), chart_note: str = ""
) -> str:
    """``benchmarks.md``: machine, targets, one table per dataset, peers, method, how to rerun.

    Args:
        report: The results.
        charts: Chart file names relative to the markdown file.
        chart_note: Why there are no charts, if there are none.
    """
    m = report.machine
    s = report.settings
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `sessionstore bench` (sessionstore {m.get('sessionstore')}) on"
        f" {m.get('date')}; the run took {report.seconds / 60:.1f} min."
        + (" **Quick run (tiny N): development numbers, not results.**" if s.get("quick") else ""),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m.get('cpu')} ({m.get('cores')} cores) |",
        f"| Memory | {format_bytes(m.get('memoryBytes'))} |",
        f"| OS | {m.get('os')} |",
        f"| Python | {m.get('python')} |",
        f"| SQLite / apsw | {m.get('sqlite')} / {m.get('apsw')} |",
        f"| orjson | {m.get('orjson')} |",
        f"| Load average at start | {', '.join(map(str, m.get('loadAverage') or [])) or '?'} |",
        "",
        "## Targets",
        "",
        "Each target from the issue, checked against the numbers below (medians).",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
    ]
    for t in report.targets:
        lines.append(f"| {t.target} | {t.measured} | {t.status} |")
    lines.append("")
    for size in report.sizes:
        lines += _size_section(size)
    lines += _peers_section(report.peers)
    lines += ["## Charts", ""]
    if charts:
        lines += [f"![{Path(c).stem}]({c})" for c in charts]
    else:
        lines.append(chart_note or "No charts.")
    budget = s.get("budget", {})
    lines += [
        "",
        "## Method",
        "",
        '- **json** is `sessions.json` through `open_store(store_type="json")`: the legacy'
        " design, byte-compatible with OpenClaw. Every write re-reads the file under"
        " `sessions.json.lock`, re-serialises the whole store and replaces the file atomically"
        " (with fsync). Reads are served from an in-process copy of the parsed file validated by"
        " `stat` (like OpenClaw's 45 s cache), so a warm `get` is a lookup plus a copy of one"
        " entry; *open + first get* is the cold read a process pays after any other process"
        " wrote the file.",
        '- **sqlite** is the hot index (`store_type="sqlite"`), migrated from the same'
        ' `sessions.json`; `update (durability power)` opens it with `durability="power"`'
        " (`synchronous=FULL`).",
        "- **whole-store SQLite (PR #58550)** is `sessionstore.bench.WholeStoreSqlite`: the PR's"
        " table, indexes and PRAGMAs, wired as the PR wired it: every operation loads and parses"
        " every row (no cache), every write deletes and re-inserts every row in one transaction."
        " Its migration is the PR's `migrateJsonToSqlite` (no normalisation, no verification);"
        " its transcript operations are not modelled (the `.jsonl` files are the same for"
        " every backend). Normalisation and maintenance, which the PR also ran on every save,"
        " are left out, so it is if anything faster than the PR.",
        "- **bare apsw** is the floor for `get` and `update`, with the store's page cache and"
        " `synchronous` setting: `get` reads the same row by primary key, then its blob rows by"
        " digest (no cache), and `orjson.loads` the same bytes; `update` reads the row's"
        " `entry_json` in a `BEGIN IMMEDIATE` transaction, sets the tokens and `updatedAt` in"
        " it and writes it back with the token and time columns (a read-modify-write, without"
        " decoding blobs for a returned entry).",
        f"- Timing: `time.perf_counter_ns` per call; up to {budget.get('warmup')} warm-up calls;"
        f" the garbage collector paused while sampling; as many calls as fit"
        f" {budget.get('seconds')} s, at least {budget.get('min_iterations')} and at most"
        f" {budget.get('max_iterations')}; median and nearest-rank p99. An operation whose"
        f" {budget.get('min_iterations')} runs would take over {budget.get('op_limit_s')} s is"
        " n/a, as is one that failed; the reason is given.",
        f"- Single-entry operations rotate through {s.get('sample_keys')} keys sampled with seed"
        f" {s.get('seed')}; `update` writes a post-turn token patch (a different one each call);"
        ' `filtered list` is `channel="telegram"`; `transcript append` appends one user'
        " message (and updates the entry's `messageCount`); `tail(20)` reads the last 20"
        " messages. Migration is `sessionstore.migrate.migrate_agent` into a new database"
        " (read, normalise, write, read back and compare every entry, one transaction).",
        "- Memory: a fresh `python -c` per backend reads `VmRSS` from `/proc/self/status` before"
        " any import (the bare interpreter), after the imports (`sessionstore` and the"
        " backend's module: `sessionstore.index.json`, or `sessionstore.index.sqlite` with"
        " apsw; for the whole-store baseline `sessionstore.bench`, where its class lives, which"
        " inflates its imports), and after opening the"
        f" store, up to {s.get('memory_gets')} gets and the lists (10 top-50, 10 filtered, 1 of"
        " all rows); the table shows RSS above the bare interpreter, the imports' share, and the"
        " peak (`VmHWM`). The store-memory target is judged on the store's own memory: what"
        " opening it and the work add to the interpreter with its libraries loaded (the total"
        " minus the imports). MB = 10^6 bytes.",
        "- Absolute times follow the machine's speed at the moment, and on a shared VM it"
        " drifts, even within one run: the O(1) `count` is a gauge, so compare it across the"
        " datasets. Ratios within one dataset are measured minutes apart and are the steadier"
        " figures.",
        "- File sizes: `sessions.json` as generated; `sessions.sqlite` (plus its WAL) right after"
        " migration; the whole-store database after the PR's import.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[bench]'",
        ".venv/bin/python bench/run.py            # or: .venv/bin/sessionstore bench",
        ".venv/bin/python bench/run.py --million  # adds 1,000,000 typical",
        "```",
        "",
        f"This run: sizes {', '.join(s.get('sizes', []))}, seed {s.get('seed')}.",
        "",
    ]
    return "\n".join(lines)


# --- charts ----------------------------------------------------------------------------------

_COLORS: Final = {
    "legacy": "#8c564b",
    "json": "#d62728",
    "sqlite": "#2ca02c",
    "postgres": "#9467bd",
    "whole-store": "#ff7f0e",
    "bare-apsw": "#7f7f7f",
}


def write_charts(report: BenchReport, img_dir: Path) -> tuple[list[Path], str]:
    """PNG charts: latency against N (log-log), memory and file sizes per backend.

    Returns:
        The files written, and why there are none (matplotlib missing, nothing to plot).
    """
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return [], f"Charts skipped: matplotlib is not installed ({INSTALL_HINT})."
    if not report.sizes:
        return [], "No charts: no dataset was run."
    img_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, op in zip(axes, ("get", "update", "list50"), strict=True):
        for backend in ("legacy", "json", "sqlite", "postgres", "whole-store", "bare-apsw"):
            for kind, style in (("bloated", "-o"), ("typical", "--s")):
                points = sorted(
                    (s.size.sessions, m.median_ns / 1e3)
                    for s in report.sizes
                    if s.size.kind == kind
                    for m in [s.get(backend, op)]
                    if m is not None and m.median_ns is not None
                )
                if points:
                    ax.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        style,
                        color=_COLORS[backend],
                        label=f"{backend} ({kind})",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(OPS[op])
        ax.set_xlabel("sessions (N)")
        ax.set_ylabel("median latency (µs)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="small")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path = img_dir / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    labels = [s.size.label for s in report.sizes]

    def mb(kib: int | None) -> float:
        return kib * 1024 / 1e6 if kib is not None else 0.0

    memory_backends = ("json", "sqlite", "whole-store")
    totals = {
        b: [mb(m.total_kib) if (m := s.memory_of(b)) else 0.0 for s in report.sizes]
        for b in memory_backends
    }
    imports = {
        b: [mb(m.imports_kib) if (m := s.memory_of(b)) else 0.0 for s in report.sizes]
        for b in memory_backends
    }
    files = {
        "json": [(s.json_bytes or 0) / 1e6 for s in report.sizes],
        "sqlite": [(s.sqlite_bytes or 0) / 1e6 for s in report.sizes],
        "whole-store": [(s.whole_store_bytes or 0) / 1e6 for s in report.sizes],
    }
    for name, title, series, overlay in (
        (
            "memory.png",
            "RSS above the bare interpreter after open + gets + lists (hatched: imports)",
            totals,
            imports,
        ),
        (
            "file_size.png",
            "Index file size (sessions.json, sessions.sqlite, PR table)",
            files,
            None,
        ),
    ):
        if not any(v for values in series.values() for v in values):
            continue
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / len(series)
        for j, (backend, values) in enumerate(series.items()):
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, values, width, label=BACKENDS[backend], color=_COLORS[backend])
            if overlay is not None:
                ax.bar(xs, overlay[backend], width, fill=False, hatch="//", edgecolor="white")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yscale("log")
        ax.set_ylabel("MB")
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="small")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        path = img_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written, ""


def write_report(report: BenchReport, out_dir: Path, *, charts: bool = True) -> list[Path]:
    """Write ``benchmarks.md``, ``benchmarks.json`` and (optionally) ``img/*.png``.

    Returns:
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    chart_paths: list[Path] = []
    chart_note = "Charts not drawn (`--no-charts`)."
    if charts:
        chart_paths, chart_note = write_charts(report, out_dir / "img")
    json_path = out_dir / "benchmarks.json"
    json_path.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    md_path = out_dir / "benchmarks.md"
    md_path.write_text(
        render_markdown(
            report,
            charts=[p.relative_to(out_dir).as_posix() for p in chart_paths],
            chart_note=chart_note,
        ),
        encoding="utf-8",
    )
    written += [md_path, json_path, *chart_paths]
    return written
