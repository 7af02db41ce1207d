"""The async facade's cost per call, and the adapters against the frameworks' own backends.

Two measurements, both on one event loop in one process:

- overhead: ``await AsyncSessionStore.get/update`` against the same call on the
  ``SessionStore`` (and against ``asyncio.to_thread``, the other way to offload), per backend;
  on PostgreSQL (with a DSN) twice: on the native twin (psycopg's asyncio pool, no thread)
  and with ``native=False`` (the worker threads);
- adapters: at N sessions, this store through ``StoreSession`` (OpenAI Agents SDK) against
  the SDK's ``SQLiteSession`` and ``SQLAlchemySession``, and through ``StoreSessionService``
  (Google ADK) against ADK's ``DatabaseSessionService``; on SQLite, and when a DSN is given
  on PostgreSQL too, this store (its postgres backend, transcripts in the table) and the
  frameworks' SQLAlchemy backends side by side on the same server (each size in a new
  database beside the DSN's, dropped afterwards). Operations: create a session (with
  its first item/event), append one item/event, read the last 20, list the sessions.

Needs the ``bench`` extra. Run it with ``python bench/adapters.py --out docs``; it writes
``benchmarks-adapters.md`` and ``.json`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import platform
import shutil
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..aio import AsyncSessionStore
from ..store import open_store
from ..version import __version__

__all__ = ["AdapterRow", "OverheadRow", "render", "run_adapters", "run_overhead"]

SAMPLE = 100  # sessions the per-call operations are timed on
HISTORY = 20  # items/events read by "last 20"


@dataclass
class OverheadRow:
    """Per-call time of one store call, sync and through the async facade (microseconds)."""

    backend: str
    call: str
    sync_us: float
    async_us: float
    to_thread_us: float

    @property
    def overhead_us(self) -> float:
        """What the facade adds to the sync call."""
        return self.async_us - self.sync_us


@dataclass
class AdapterRow:
    """One backend at one size: milliseconds per operation (median), None where it cannot."""

    framework: str
    backend: str
    sessions: int
    create_ms: float
    append_ms: float
    last20_ms: float
    list_ms: float | None
    note: str = ""


@dataclass
class Results:
    """Everything one run measured."""

    overhead: list[OverheadRow] = field(default_factory=list)
    adapters: list[AdapterRow] = field(default_factory=list)
    machine: str = ""
    version: str = __version__


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


# --- overhead -------------------------------------------------------------------------------


def run_overhead(root: Path, calls: int = 2000, dsn: str | None = None) -> list[OverheadRow]:
    """Time ``get`` and ``update`` sync, through the facade and through ``to_thread``.

    With ``dsn``, PostgreSQL too (in a throw-away schema): the facade on its native twin
    (``postgres native``) and through the worker threads (``postgres threads``).
    """
    rows = []
    for backend in ("sqlite", "json"):
        rows += asyncio.run(_overhead(root / f"overhead-{backend}", backend, calls))
    if dsn:
        rows += run_postgres_overhead(root / "overhead-postgres", dsn, calls)
    return rows


def run_postgres_overhead(state: Path, dsn: str, calls: int = 2000) -> list[OverheadRow]:
    """The PostgreSQL rows of :func:`run_overhead`: native twin, then worker threads."""
    import os

    import orjson

    from ..config import SETTINGS_FILE
    from .measure import _drop_schema

    schema = f"sessionstore_bench_aio_{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    (state / SETTINGS_FILE).write_bytes(orjson.dumps({"postgres": {"schema": schema}}))
    try:
        return [
            *asyncio.run(_overhead(state, "postgres", calls, dsn=dsn, native=True)),
            *asyncio.run(_overhead(state, "postgres", calls, dsn=dsn, native=False)),
        ]
    finally:
        _drop_schema(dsn, schema)


async def _overhead(
    state: Path, backend: str, calls: int, *, dsn: str | None = None, native: bool = True
) -> list[OverheadRow]:
    store = open_store("main", state, backend, dsn)  # type: ignore[arg-type]
    for i in range(100):
        store.put(f"agent:main:s{i}", {"sessionId": str(uuid.uuid4()), "label": f"l{i}"})
    key = "agent:main:s7"
    face = AsyncSessionStore(store, native=native)
    if backend == "postgres":
        backend = "postgres native" if face.native else "postgres threads"
    ops: list[tuple[str, Callable[[], Any], Callable[[], Awaitable[Any]]]] = [
        ("get", lambda: store.get(key), lambda: face.get(key)),
        (
            "update",
            lambda: store.update(key, {"label": "x"}),
            lambda: face.update(key, {"label": "x"}),
        ),
    ]
    rows = []
    for name, op, aop in ops:
        sync, facade, threaded = [], [], []
        for _ in range(calls):  # interleaved, so drift hits all three alike
            start = time.perf_counter()
            op()
            sync.append(time.perf_counter() - start)
            start = time.perf_counter()
            await aop()
            facade.append(time.perf_counter() - start)
            start = time.perf_counter()
            await asyncio.to_thread(op)
            threaded.append(time.perf_counter() - start)
        rows.append(
            OverheadRow(backend, name, _median_us(sync), _median_us(facade), _median_us(threaded))
        )
    await face.close()
    return rows


# --- adapters -------------------------------------------------------------------------------


@dataclass
class _Target:
    """One backend behind one framework's interface, as the bench drives it."""

    framework: str
    backend: str
    create: Callable[[str], Awaitable[Any]]  # a new session with its first item/event
    append: Callable[[str, int], Awaitable[Any]]
    last20: Callable[[str], Awaitable[Any]]
    listing: Callable[[], Awaitable[Any]] | None
    close: Callable[[], Awaitable[Any]]
    note: str = ""
    # How the sessions that are not timed are made (default: ``create``).
    populate: Callable[[str], Awaitable[Any]] | None = None


def _item(i: int) -> Any:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "x" * 80}


@contextlib.asynccontextmanager
async def _sdk_targets(root: Path, dsn: str | None) -> AsyncIterator[list[_Target]]:
    from agents import SQLiteSession
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    from ..adapters.openai_agents import StoreSession

    targets: list[_Target] = []
    for engine_name, face in _our_stores(root / "sdk-store", dsn):
        ours: dict[str, StoreSession] = {}

        def session(
            sid: str, face: AsyncSessionStore = face, ours: dict[str, StoreSession] = ours
        ) -> StoreSession:
            if sid not in ours:
                ours[sid] = StoreSession(sid, face)
            return ours[sid]

        async def store_list(face: AsyncSessionStore = face) -> Any:
            return await face.list(channel="openai")

        label = f"sessionstore {engine_name} (StoreSession)"
        ours_target = _sdk_target(label, session, face.close)
        ours_target.listing, ours_target.note = store_list, ""
        targets.append(ours_target)
    db = root / "sdk.sqlite"
    sqlite_sessions: dict[str, Any] = {}

    def sqlite_session(sid: str) -> Any:
        if sid not in sqlite_sessions:
            sqlite_sessions[sid] = SQLiteSession(sid, db)
        return sqlite_sessions[sid]

    async def close_sqlite() -> None:
        for s in sqlite_sessions.values():
            s.close()

    async def populate_sqlite(sid: str) -> None:
        # One SQLiteSession per conversation holds its own connections: close the ones
        # not timed, or 10,000 of them run out of file descriptors.
        session = sqlite_sessions.pop(sid, None) or SQLiteSession(sid, db)
        await session.add_items([_item(0)])
        session.close()

    sqlite_target = _sdk_target("SDK SQLiteSession (file)", sqlite_session, close_sqlite)
    sqlite_target.populate = populate_sqlite
    targets.append(sqlite_target)
    urls = [("SDK SQLAlchemySession (SQLite, aiosqlite)", f"sqlite+aiosqlite:///{root}/sa.sqlite")]
    if dsn:
        urls.append(("SDK SQLAlchemySession (PostgreSQL, psycopg)", _sqlalchemy_url(dsn)))
    for label, url in urls:
        engine = create_async_engine(url)
        made: dict[str, Any] = {}

        def sa_session(sid: str, engine: Any = engine, made: dict[str, Any] = made) -> Any:
            if sid not in made:
                made[sid] = SQLAlchemySession(sid, engine=engine, create_tables=True)
            return made[sid]

        targets.append(_sdk_target(label, sa_session, engine.dispose))
    try:
        yield targets
    finally:
        for target in targets:
            await target.close()


def _sdk_target(
    label: str, session: Callable[[str], Any], close: Callable[[], Awaitable[Any]]
) -> _Target:
    async def create(sid: str) -> None:
        await session(sid).add_items([_item(0)])

    async def append(sid: str, i: int) -> None:
        await session(sid).add_items([_item(i)])

    async def last20(sid: str) -> Any:
        return await session(sid).get_items(limit=HISTORY)

    return _Target("openai-agents", label, create, append, last20, None, close, "cannot list")


def _sqlalchemy_url(dsn: str) -> str:
    """SQLAlchemy's URL (psycopg 3 driver) for a conninfo string or URL."""
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql+psycopg://{user}{password}@{host}:{port}/{info.get('dbname', user)}"


@contextlib.asynccontextmanager
async def _adk_targets(root: Path, dsn: str | None) -> AsyncIterator[list[_Target]]:
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import GetSessionConfig
    from google.adk.sessions.database_session_service import DatabaseSessionService
    from google.genai import types

    from ..adapters.adk import StoreSessionService

    app, user = "bench", "user"

    def event(i: int) -> Event:
        item = _item(i)
        return Event(
            invocation_id=f"inv{i}",
            author="user" if item["role"] == "user" else "agent",
            content=types.Content(role="user", parts=[types.Part(text=item["content"])]),
        )

    def target(label: str, service: Any, close: Callable[[], Awaitable[Any]]) -> _Target:
        sessions: dict[str, Any] = {}

        async def create(sid: str) -> None:
            s = await service.create_session(app_name=app, user_id=user, session_id=sid)
            await service.append_event(s, event(0))
            sessions[sid] = s

        async def append(sid: str, i: int) -> None:
            await service.append_event(sessions[sid], event(i))

        async def last20(sid: str) -> Any:
            return await service.get_session(
                app_name=app,
                user_id=user,
                session_id=sid,
                config=GetSessionConfig(num_recent_events=HISTORY),
            )

        async def listing() -> Any:
            return await service.list_sessions(app_name=app, user_id=user)

        async def populate(sid: str) -> None:
            sessions[sid] = await service.create_session(app_name=app, user_id=user, session_id=sid)

        return _Target(
            "google-adk", label, create, append, last20, listing, close, populate=populate
        )

    targets = []
    for list_state in (False, True):
        for engine_name, face in _our_stores(root / f"adk-store-{list_state}", dsn):
            label = f"sessionstore {engine_name}" + (
                ", list_state=True" if list_state else " (StoreSessionService)"
            )
            service = StoreSessionService(face, list_state=list_state)
            targets.append(target(label, service, face.close))
    urls = [
        ("ADK DatabaseSessionService (SQLite, aiosqlite)", f"sqlite+aiosqlite:///{root}/adk.sqlite")
    ]
    if dsn:
        urls.append(("ADK DatabaseSessionService (PostgreSQL, psycopg)", _sqlalchemy_url(dsn)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, url in urls:
            peer = DatabaseSessionService(db_url=url)
            targets.append(target(label, peer, peer.close))
    try:
        yield targets
    finally:
        for t in targets:
            await t.close()


def _our_stores(state_dir: Path, dsn: str | None) -> list[tuple[str, AsyncSessionStore]]:
    """This store on sqlite, and on postgres (in the size's scratch database) with a DSN."""
    stores = [("sqlite", AsyncSessionStore(open_store("main", state_dir, "sqlite")))]
    if dsn:
        # A schema per state dir: the stores of one scratch database never share rows.
        schema = "bench_" + "".join(c if c.isalnum() else "_" for c in state_dir.name.lower())
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "sessionstore.json").write_text(json.dumps({"postgres": {"schema": schema}}))
        stores.append(
            ("postgres", AsyncSessionStore(open_store("main", state_dir, "postgres", dsn=dsn)))
        )
    return stores


def _on_postgres(target: _Target) -> bool:
    return "postgres" in target.backend.lower()


async def _measure(target: _Target, n: int, log: Callable[[str], None]) -> AdapterRow:
    ids = [f"s{i:06d}-{uuid.uuid4().hex[:8]}" for i in range(n)]
    log(f"  {target.framework} / {target.backend}: creating {n:,} sessions")
    sample = ids[-SAMPLE:]  # the last ones made, with every other session already there
    await _timed_each(target.populate or target.create, ids[:-SAMPLE])
    create = await _timed_each(target.create, sample)
    append: list[float] = []
    for i in range(1, HISTORY + 1):
        append += await _timed_each(functools.partial(_append, target, i), sample)
    last20 = await _timed_each(target.last20, sample)
    listing = None
    if target.listing is not None:
        listing = statistics.median(await _timed(target.listing, 5)) * 1e3
    return AdapterRow(
        target.framework,
        target.backend,
        n,
        statistics.median(create) * 1e3,
        statistics.median(append) * 1e3,
        statistics.median(last20) * 1e3,
        listing,
        target.note,
    )


def _append(target: _Target, i: int, sid: str) -> Awaitable[Any]:
    return target.append(sid, i)


async def _timed_each(fn: Callable[[str], Awaitable[Any]], ids: Iterable[str]) -> list[float]:
    out = []
    for sid in ids:
        start = time.perf_counter()
        await fn(sid)
        out.append(time.perf_counter() - start)
    return out


def run_adapters(
    root: Path,
    sizes: Iterable[int] = (1_000, 10_000),
    dsn: str | None = None,
    log: Callable[[str], None] = print,
    *,
    postgres_only: bool = False,
) -> list[AdapterRow]:
    """Measure every target at every size (fresh files and tables for each size).

    Args:
        root: An empty directory for the files of every size.
        sizes: Session counts.
        dsn: PostgreSQL DSN: adds this store and the frameworks' backends on PostgreSQL.
        log: Progress lines.
        postgres_only: Measure only the targets on PostgreSQL (needs ``dsn``).
    """
    if postgres_only and not dsn:
        raise ValueError("postgres_only needs a DSN: pass --dsn postgresql://...")
    rows: list[AdapterRow] = []
    for n in sizes:
        for framework in (_sdk_targets, _adk_targets):
            work = root / f"{framework.__name__}-{n}"
            work.mkdir(parents=True)
            with _scratch_database(dsn) as scratch:
                rows += asyncio.run(_measure_all(framework, work, n, scratch, log, postgres_only))
            shutil.rmtree(work, ignore_errors=True)
    return rows


async def _measure_all(
    framework: Any,
    work: Path,
    n: int,
    dsn: str | None,
    log: Callable[[str], None],
    postgres_only: bool,
) -> list[AdapterRow]:
    async with framework(work, dsn) as targets:
        return [await _measure(t, n, log) for t in targets if _on_postgres(t) or not postgres_only]


@contextlib.contextmanager
def _scratch_database(dsn: str | None) -> Iterator[str | None]:
    """A new, empty database beside the DSN's, dropped afterwards (nothing else touched)."""
    if dsn is None:
        yield None
        return
    import psycopg
    from psycopg import sql

    name = f"sessionstore_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        info["dbname"] = name
        yield psycopg.conninfo.make_conninfo("", **info)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- report ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render(results: Results) -> str:
    """The results as the markdown of docs/benchmarks-adapters.md."""
    out = [
        "# Benchmarks: the async API and the framework adapters",
        "",
        f"Measured by `python bench/adapters.py` (sessionstore {results.version}) on"
        f" {results.machine}. One process, one event loop; medians.",
        "",
        "## Async facade overhead per call",
        "",
        "`await AsyncSessionStore.<call>` against the same call on the `SessionStore`, and"
        " against `await asyncio.to_thread(<sync call>)` (the loop's default executor)."
        " PostgreSQL (with `--dsn`): *postgres native* is the facade on the backend's asyncio"
        " twin (psycopg's async pool, no thread hop), *postgres threads* the same store with"
        " `AsyncSessionStore(store, native=False)`.",
        "",
        "| backend | call | sync µs | async facade µs | overhead µs | to_thread µs |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results.overhead:
        out.append(
            f"| {r.backend} | {r.call} | {r.sync_us:.1f} | {r.async_us:.1f} |"
            f" {r.overhead_us:.1f} | {r.to_thread_us:.1f} |"
        )
    out += [
        "",
        "## Adapters against the frameworks' own backends",
        "",
        f"Milliseconds per operation (median), with N sessions in the backend. *create*: a"
        f" new session with its first item (SDK) or event (ADK), timed on the last {SAMPLE}"
        f" made; *append*: one item/event, {HISTORY} per session on those {SAMPLE};"
        " *last 20*: `get_items(limit=20)` / `get_session(config="
        "GetSessionConfig(num_recent_events=20))`; *list*: every session of the user (ADK"
        " `list_sessions`; the SDK has no listing, this store lists with"
        ' `store.list(channel="openai")`).',
        "",
        "| framework | backend | sessions | create | append | last 20 | list | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for a in results.adapters:
        out.append(
            f"| {a.framework} | {a.backend} | {a.sessions:,} | {_ms(a.create_ms)} |"
            f" {_ms(a.append_ms)} | {_ms(a.last20_ms)} | {_ms(a.list_ms)} | {a.note} |"
        )
    out.append("")
    return "\n".join(out)


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    import os

    return f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"


def merge(paths: Iterable[Path]) -> Results:
    """Several runs' ``.json`` files as one result (a run per size keeps each one short).

    The first run's overhead rows and machine, every run's adapter rows; a row of a later
    run replaces the earlier run's row of the same framework, backend and size (a
    PostgreSQL-only run refreshes those rows and keeps the SQLite ones).
    """
    merged = Results()
    rows: dict[tuple[str, str, int], AdapterRow] = {}
    for path in paths:
        data = json.loads(path.read_text())
        if not merged.overhead and data["overhead"]:
            merged.overhead = [OverheadRow(**r) for r in data["overhead"]]
            merged.machine, merged.version = data["machine"], data["version"]
        for raw in data["adapters"]:
            row = AdapterRow(**raw)
            rows[(row.framework, row.backend, row.sessions)] = row
    # by size, then framework in the order first met; within those, the run order
    frameworks = list(dict.fromkeys(r.framework for r in rows.values()))
    merged.adapters = sorted(
        rows.values(), key=lambda r: (r.sessions, frameworks.index(r.framework))
    )
    return merged


def main(
    out_dir: Path,
    sizes: Iterable[int],
    dsn: str | None,
    overhead_calls: int = 2000,
    *,
    postgres_only: bool = False,
    name: str = "benchmarks-adapters",
) -> Results:
    """Run both measurements and write ``<name>.md``/``.json`` into ``out_dir``.

    With ``postgres_only`` the overhead rows (SQLite and JSON stores) are not measured and
    only the targets on PostgreSQL are; merge the ``.json`` with :func:`merge`.
    """
    results = Results(machine=machine())
    root = Path(tempfile.mkdtemp(prefix="sessionstore-bench-adapters-"))
    try:
        if not postgres_only:
            print("[adapters] async facade overhead")
            results.overhead = run_overhead(root, overhead_calls, dsn)
        print("[adapters] frameworks")
        results.adapters = run_adapters(root, sizes, dsn, postgres_only=postgres_only)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    (out_dir / f"{name}.md").write_text(render(results))
    (out_dir / f"{name}.json").write_text(
        json.dumps(
            {
                "machine": results.machine,
                "version": results.version,
                "overhead": [asdict(r) for r in results.overhead],
                "adapters": [asdict(r) for r in results.adapters],
            },
            indent=2,
        )
        + "\n"
    )
    return results
