"""The whole benchmark run: import times, every dataset, the peers, the targets."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apsw
import orjson

from ..errors import SessionStoreError
from ..version import __version__
from .measure import PG_DSN_ENV, BenchReport, BenchSettings, Scenario, quiet, run_size
from .peers import run_peers
from .responsiveness import IMPORT_STATEMENTS, ImportTime, measure_import
from .scenarios import run_long_lived, run_maintenance_writer, run_writers
from .scenarios_pg import run_pg_writers
from .targets import evaluate_targets, postgres_targets
from .units import format_duration

__all__ = ["machine_facts", "run_benchmark"]


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
    settings: BenchSettings | None = None, *, log: Callable[[str], None] = quiet
) -> BenchReport:
    """Run the import times, every dataset, the peers, and check the targets.

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
    dsn = _dsn(settings)
    if dsn:
        report.machine["postgres"] = _server_version(dsn)
    owned = settings.work_dir is None
    work = settings.work_dir or Path(tempfile.mkdtemp(prefix="sessionstore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if settings.postgres_only and not _dsn(settings):
        raise SessionStoreError(
            f"a postgres-only benchmark needs a server: pass --pg-dsn or set {PG_DSN_ENV}"
        )
    if settings.cli and not settings.postgres_only:
        log("[cli] import times (python -X importtime)")
        report.imports = [
            measure_import(statement, runs=settings.cli_runs) for statement in IMPORT_STATEMENTS
        ]
        for t in report.imports:
            log(f"  {t.statement:<32} {_import_line(t)}")
    try:
        for size in settings.sizes:
            root = work / size.label
            if root.exists():
                shutil.rmtree(root)
            try:
                report.sizes.append(run_size(size, root, settings, log))
            finally:
                if not settings.keep_data:
                    shutil.rmtree(root, ignore_errors=True)
        if settings.peers and not settings.postgres_only:
            report.peers = run_peers(settings, work, log)
        if settings.scenarios:
            report.scenarios = _scenarios(settings, work, log)
    finally:
        if owned and not settings.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    report.targets = (
        postgres_targets(report) if settings.postgres_only else evaluate_targets(report)
    )
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _dsn(settings: BenchSettings) -> str | None:
    return settings.postgres_dsn or os.environ.get(PG_DSN_ENV)


def _server_version(dsn: str) -> str | None:
    from ..index.postgres import load_driver

    psycopg, _ = load_driver()  # psycopg is imported only through the postgres backend
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None  # the postgres rows say why they are n/a
    return str(row[0]) if row else None


def _scenarios(settings: BenchSettings, work: Path, log: Callable[[str], None]) -> list[Scenario]:
    out = []
    runs: list[tuple[str, Callable[[Path], Scenario]]] = []
    if not settings.postgres_only:
        runs += [
            ("writers", lambda d: run_writers(d, sessions=settings.writer_sessions, log=log)),
            (
                "maintenance",
                lambda d: run_maintenance_writer(
                    d, sessions=settings.maintenance_sessions, log=log
                ),
            ),
        ]
    dsn = _dsn(settings)
    if dsn:
        sessions = settings.pg_writer_sessions
        runs.append(("pg-writers", lambda d: run_pg_writers(d, dsn, sessions=sessions, log=log)))
    for name, run in runs:
        root = work / f"scenario-{name}"
        shutil.rmtree(root, ignore_errors=True)
        try:
            out.append(run(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    if settings.postgres_only:
        return out
    if settings.long_lived_updates > 0:
        root = work / "scenario-long-lived"
        try:
            out.append(run_long_lived(root, updates=settings.long_lived_updates, log=log))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    else:
        out.append(Scenario("long_lived", "skipped", note="not asked for (--long-lived-updates 0)"))
    return out


def _import_line(t: ImportTime) -> str:
    if t.median_us is None:
        return f"n/a: {t.note}"
    return f"median {format_duration(t.median_us * 1_000):>9}  {t.modules} modules  n={t.runs}"
