"""Workers, acknowledgement pipes, kill points, checkers and figures for every scenario.

A worker runs in a child made with ``os.fork`` (nothing is open in the parent's stores
while it runs, or the scenario says why). It reports every acknowledgement with
:meth:`Acks.send` *after* the call returned: one ``os.write`` of one JSON line, shorter
than ``PIPE_BUF``, so a kill never tears a record and the parent knows exactly what was
promised. The parent drains the pipe while it waits (:meth:`Child.pump`), so a worker
never blocks on a full pipe and a kill lands in the store's code, not in the reporting.

Kill points are either a SIGKILL from the parent after a delay (:meth:`Child.kill_after`)
or a stop at the N-th I/O event inside the child (``shims.FaultPlan``), which forces the
interesting places deterministically.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import sessionstore
from sessionstore import SessionStore
from sessionstore.keys import canonical_key

from .shims import STOP_EXIT

__all__ = [
    "CRASH_EXIT",
    "STOP_CODES",
    "VARIANTS",
    "Acks",
    "Child",
    "Figures",
    "Gate",
    "complete_transcripts",
    "error_text",
    "fresh_dir",
    "hermetic_environ",
    "integrity_problems",
    "join_all",
    "open_variant",
    "percentiles",
    "read_jsonl",
    "sessions_dir",
    "source_view",
    "spawn",
    "timed",
    "unresolved",
    "workdir",
]

CRASH_EXIT = 70  # a worker raised: it sent a "crash" record with the traceback first
STOP_CODES = (STOP_EXIT, -signal.SIGKILL)  # a child stopped by a fault plan or a kill
VARIANTS = ("sqlite", "sqlite-power", "json")
PIPE_LINE_MAX = 4000  # under PIPE_BUF (4096): one write is atomic
_write = os.write  # captured before a shim may wrap os.write in a child


# --- stores ----------------------------------------------------------------------------------


def open_variant(state_dir: Path, variant: str, **kwargs: Any) -> SessionStore:
    """Open the store of a variant: ``sqlite``, ``sqlite-power`` (synchronous=FULL), ``json``."""
    store_type, _, level = variant.partition("-")
    durability = "power" if level == "power" else "normal"
    return sessionstore.open_store(
        state_dir=state_dir,
        store_type=store_type,  # type: ignore[arg-type]
        durability=durability,  # type: ignore[arg-type]
        **kwargs,
    )


def sessions_dir(state_dir: Path, agent: str = "main") -> Path:
    """``<state>/agents/<agent>/sessions``."""
    return state_dir / "agents" / agent / "sessions"


def hermetic_environ(home: Path) -> None:
    """Drop ``OPENCLAW_*``/``SESSIONSTORE_*`` settings and use a private HOME (scripts)."""
    for name in list(os.environ):
        if name.startswith(("OPENCLAW_", "SESSIONSTORE_")):
            del os.environ[name]
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)


@contextlib.contextmanager
def workdir(base: Path | None) -> Iterator[Path]:
    """``base`` itself, or a temporary directory removed afterwards."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        yield base
        return
    with tempfile.TemporaryDirectory(prefix="faultkit-") as tmp:
        yield Path(tmp)


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path`` (removed first if it exists)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def source_view(state_dir: Path) -> dict[str, Any]:
    """What a migration of ``sessions.json`` must produce, read through the json backend.

    Every canonical key with the entry the json backend resolves for it (the freshest
    mixed-case variant): an independent reading of the source, not the migration's own.
    """
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as store:
        keys = {canonical_key(k) for k in store.load_all()}
        return {key: store.get(key) for key in keys}


def complete_transcripts(state_dir: Path) -> int:
    """Give every entry of ``sessions.json`` that names no existing file a gateway transcript.

    ``generate_state_dir`` writes no transcript for a mixed-case duplicate key, whose
    ``sessionFile`` then names a missing file; the doctor rightly reports that. Scenarios
    that end with a clean ``check()`` start from a state where every transcript exists:
    a pi v3 header and one user/assistant exchange, as a gateway writes them.

    Returns:
        The number of transcripts written.
    """
    directory = sessions_dir(state_dir)
    store = orjson.loads((directory / "sessions.json").read_bytes())
    written = 0
    for entry in store.values():
        sid = entry.get("sessionId")
        if not isinstance(sid, str):
            continue
        named = entry.get("sessionFile")
        path = Path(named) if isinstance(named, str) and named else directory / f"{sid}.jsonl"
        if path.parent != directory or path.exists():
            continue
        lines = [
            {
                "type": "session",
                "version": 3,
                "id": sid,
                "timestamp": "2026-01-05T10:00:00.000Z",
                "cwd": str(state_dir / "workspace"),
            },
            {
                "type": "message",
                "id": "a1b2c3d4",
                "parentId": None,
                "timestamp": "2026-01-05T10:00:01.000Z",
                "message": {"role": "user", "content": [{"type": "text", "text": "hello"}]},
            },
            {
                "type": "message",
                "id": "e5f6a7b8",
                "parentId": "a1b2c3d4",
                "timestamp": "2026-01-05T10:00:02.000Z",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
            },
        ]
        path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        path.chmod(0o600)
        written += 1
    return written


# --- children and acknowledgements -----------------------------------------------------------


class Acks:
    """The child's end of the acknowledgement pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, kind: str, **fields: Any) -> None:
        """Report one record (call it after the acknowledged call returned)."""
        line = orjson.dumps({"k": kind, **fields}) + b"\n"
        if len(line) > PIPE_LINE_MAX:
            raise ValueError(f"ack record too long for one atomic pipe write: {line[:200]!r}")
        _write(self.fd, line)


class Child:
    """A forked worker and the parent's end of its pipe.

    Attributes:
        pid: The child's pid.
        records: Every record received so far, in order.
        status: The exit code once reaped (negative: killed by that signal).
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self._fd: int | None = fd
        self._buf = b""
        self.records: list[dict[str, Any]] = []
        self.status: int | None = None
        self.hung = False

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave a child behind: kill and reap it if it still runs."""
        if self.status is None:
            self.kill()
            self.join(30)

    def pump(self, timeout: float = 0.0) -> bool:
        """Wait up to ``timeout`` seconds for records, read all there are; False at the end."""
        if self._fd is None:
            return False
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        while ready:
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                os.close(self._fd)
                self._fd = None
                return False
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            self.records.extend(orjson.loads(line) for line in lines)
            ready, _, _ = select.select([self._fd], [], [], 0)
        return True

    def drain(self, seconds: float) -> None:
        """Read records for ``seconds`` (or until the pipe closes)."""
        deadline = time.monotonic() + seconds
        while self.pump(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                return

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any] | None:
        """The first record of ``kind``, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((rec for rec in self.records if rec["k"] == kind), None)
            left = deadline - time.monotonic()
            if found is not None or left <= 0 or not self.pump(left):
                return found or next((rec for rec in self.records if rec["k"] == kind), None)

    def kill(self) -> None:
        """SIGKILL the child (if it is still running)."""
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def kill_after(self, delay: float) -> None:
        """A kill point in time: read acknowledgements for ``delay`` seconds, then SIGKILL."""
        self.drain(delay)
        self.kill()

    def join(self, timeout: float = 60.0) -> int:
        """Read the pipe to its end and reap the child; kill it after ``timeout`` seconds.

        A child killed for running past ``timeout`` is marked ``hung``.

        Returns:
            The exit code; negative when a signal ended it (-9 for a kill).
        """
        deadline = time.monotonic() + timeout
        while self.pump(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                if self.hung:
                    break  # killed, yet something still holds the pipe open
                self.hung = True
                self.kill()
                deadline = time.monotonic() + 30
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Every record of ``kind``."""
        return [rec for rec in self.records if rec["k"] == kind]

    @property
    def crash(self) -> str | None:
        """The traceback the worker reported when it raised, if it did."""
        rec = next((r for r in self.records if r["k"] == "crash"), None)
        return None if rec is None else str(rec["error"])


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Child:
    """Run ``fn(acks, *args, **kwargs)`` in a forked child.

    The child ends with ``os._exit``: 0 when ``fn`` returns, :data:`CRASH_EXIT` after
    reporting a ``crash`` record when it raises. No cleanup of the parent's state runs in
    the child (atexit handlers, buffered output, open stores are the parent's).
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(rfd)
            fn(Acks(wfd), *args, **kwargs)
        except BaseException:
            code = CRASH_EXIT
            with contextlib.suppress(BaseException):
                Acks(wfd).send("crash", error=traceback.format_exc()[-3000:])
        finally:
            os._exit(code)
    os.close(wfd)
    return Child(pid, rfd)


def join_all(children: list[Child], timeout: float) -> None:
    """Read every child's pipe until all have ended (each ``join``-ed), within ``timeout``.

    All pipes are drained together, so no worker blocks on a full pipe while the parent
    waits for another one.
    """
    deadline = time.monotonic() + timeout
    running = list(children)
    while running:
        fds = [c._fd for c in running if c._fd is not None]
        if fds:
            select.select(fds, [], [], min(0.2, max(0.0, deadline - time.monotonic())))
        for child in running:
            child.pump(0)
        done = [c for c in running if c._fd is None]
        for child in done:
            child.join(5)
            running.remove(child)
        if time.monotonic() >= deadline:
            for child in running:
                child.join(0)  # kills it, marked hung
            return


class Gate:
    """A start line for several children: each waits until the parent opens it."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()

    def wait(self, timeout: float = 60.0) -> bool:
        """In a child: block until the gate opens; False on timeout."""
        os.close(self._w)  # the child's copy, or the end would never come
        ready, _, _ = select.select([self._r], [], [], timeout)
        return bool(ready)

    def open(self) -> None:
        """In the parent: let every waiting child go."""
        os.close(self._w)
        os.close(self._r)


def error_text(exc: BaseException) -> dict[str, Any]:
    """An exception as an ack record's fields: type, message, typed or not, cause chain."""
    chain = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 5:
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    message = str(exc)[:600].encode("utf-8", "backslashreplace").decode("utf-8")
    return {
        "type": type(exc).__name__,
        "typed": isinstance(exc, sessionstore.SessionStoreError),
        "message": message,  # lone surrogates escaped: it must encode as JSON
        "chain": chain,
    }


# --- checkers -------------------------------------------------------------------------------


def integrity_problems(store: SessionStore) -> list[str]:
    """What is wrong with the index files themselves (empty when they are sound).

    SQLite: ``PRAGMA integrity_check`` and rows referencing a missing blob. JSON:
    ``sessions.json`` (when it exists) parses as an object.
    """
    if store.store_type == "sqlite":
        if not store.paths.sqlite_path.exists():
            return []  # killed before the first write created it: nothing to check
        conn = store.index.connection()  # type: ignore[attr-defined]
        problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        if problems == ["ok"]:
            problems = []
        (orphans,) = conn.execute(
            "SELECT count(*) FROM sessions WHERE blob_refs IS NOT NULL AND EXISTS ("
            " SELECT 1 FROM json_each(sessions.blob_refs) j"
            " WHERE j.value NOT IN (SELECT digest FROM blobs))"
        ).fetchone()
        if orphans:
            problems.append(f"{orphans} rows reference a missing blob")
        return problems
    path = store.paths.json_path
    if not path.exists():
        return []
    try:
        value = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        return [f"sessions.json does not parse: {exc}"]
    return [] if isinstance(value, dict) else ["sessions.json is not an object"]


def unresolved(store: SessionStore) -> list[str]:
    """``store.check()`` findings that remain (``Finding.unresolved``), as text."""
    try:
        findings = store.check()
    except Exception as exc:
        return [f"check() raised {type(exc).__name__}: {exc}"]
    return [f"{f.kind} {f.subject}: {f.message}" for f in findings if f.unresolved]


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bytes]:
    """The complete lines of a transcript, parsed strictly, and the bytes after the last one.

    A complete line that does not parse as a JSON object raises ``ValueError``.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], b""
    complete, newline, torn = data.rpartition(b"\n")
    records = []
    if newline:
        for number, line in enumerate(complete.split(b"\n"), 1):
            value = orjson.loads(line) if line.strip() else None
            if not isinstance(value, dict):
                raise ValueError(f"{path.name} line {number} is not a JSON object: {line[:80]!r}")
            records.append(value)
    return records, torn if newline else data


# --- figures --------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    """n, p50, p90, p99 and max (nearest rank) of ``values``."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))]

    return {
        "n": len(ordered),
        "p50": round(rank(50), 3),
        "p90": round(rank(90), 3),
        "p99": round(rank(99), 3),
        "max": round(ordered[-1], 3),
    }


@dataclass
class Figures:
    """What one scenario run (one variant) did and found.

    Attributes:
        scenario: The scenario's name.
        variant: Backend (and durability) or sub-case.
        seed: The seed everything random was drawn from.
        runs: Kill points, sweep points, operations or examples, as the scenario defines.
        acked: Acknowledged operations checked against the stored state.
        failures: One line per broken promise (empty when everything held).
        counts: Scenario-specific tallies (outcomes, repairs, ...).
        latency_ms: Operation kind -> durations in milliseconds.
        seconds: Wall time of the run.
    """

    scenario: str
    variant: str
    seed: int
    runs: int = 0
    acked: int = 0
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def fail(self, message: str, tag: str = "") -> None:
        """Record a broken promise; a ``tag`` names its kind (``[tag] message``)."""
        self.failures.append(f"[{tag}] {message}" if tag else message)

    def failures_except(self, *tags: str) -> list[str]:
        """The failures without the given tags."""
        return [f for f in self.failures if not f.startswith(tuple(f"[{t}]" for t in tags))]

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a tally."""
        self.counts[name] = self.counts.get(name, 0) + n

    def timing(self, op: str, ms: float) -> None:
        """Record one operation's duration."""
        self.latency_ms.setdefault(op, []).append(ms)

    @property
    def ok(self) -> bool:
        """No broken promise."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures; latencies as percentiles, at most 50 failure lines."""
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "seed": self.seed,
            "runs": self.runs,
            "acked": self.acked,
            "failureCount": len(self.failures),
            "failures": self.failures[:50],
            "counts": dict(sorted(self.counts.items())),
            "latencyMs": {op: percentiles(v) for op, v in sorted(self.latency_ms.items())},
            "seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        """A few lines for people: counts, percentiles and the first failures."""
        head = (
            f"{self.scenario} [{self.variant}] seed={self.seed}: runs={self.runs}"
            f" acked={self.acked} failures={len(self.failures)} ({self.seconds:.1f}s)"
        )
        lines = [head]
        if self.counts:
            lines.append("  " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))
        for op, values in sorted(self.latency_ms.items()):
            p = percentiles(values)
            lines.append(
                f"  {op}: n={p['n']} p50={p.get('p50')}ms p99={p.get('p99')}ms max={p.get('max')}ms"
            )
        lines += [f"  FAIL {line}" for line in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more")
        return "\n".join(lines)


@contextlib.contextmanager
def timed(figures: Figures) -> Iterator[None]:
    """Add the wall time of the block to ``figures.seconds``."""
    start = time.monotonic()
    try:
        yield
    finally:
        figures.seconds += time.monotonic() - start
