"""Scenario 9: the readers, fuzzed with Hypothesis.

Arbitrary bytes as ``sessions.json``, ``openclaw.json``, a transcript and
``sessions.sqlite``: raw bytes, valid files (written by OpenClaw's generator or by this
library) with bytes flipped, cut or spliced, and structured JSON aimed at the validators.
Each example runs every read-only call on the input in a forked child with a deadline
(``open_store`` with each backend that applies, ``get``, ``list``, ``count``,
``load_all``, ``info``, ``check``, a dry-run migration; ``messages``, ``tail`` and
``entries`` of a transcript): each call returns or raises a ``SessionStoreError``
subclass, nothing hangs or crashes, and the input's bytes and mtime are the same after.

Every run starts with a small corpus of known dangerous inputs (huge numbers where the
config expects durations, a database damaged with SQL, an empty database...): Hypothesis's
own choices depend on which modules are loaded, and a known case must not depend on
chance. Failures are collected rather than raised, so that a run counts them; for each
kind of failure (call and exception type) the shortest input seen is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
from hypothesis import HealthCheck, example, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import sessionstore
from sessionstore.bench.generate import generate_state_dir
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

from .harness import Acks, Figures, error_text, fresh_dir, sessions_dir, spawn, timed, workdir

NAME = "fuzz"
TITLE = "reader fuzzing (Hypothesis)"
VARIANTS = ("sessions.json", "openclaw.json", "transcript", "sessions.sqlite")
BACKEND = "any"  # the variants are input kinds; each uses the backends it applies to
SHORT_RUNS = 60  # examples per input kind in the short tier
FULL_RUNS = 1_000
DEADLINE = 20.0  # seconds for every call on one input, in a child
KEY = "agent:main:main"
WRITTEN = "written"  # the tag of a failure that wrote to its input
WRITTEN_WHAT = "a read wrote to its input"
SESSION_ID = "fuzz-session"
CONFIG_SEED = b"""{
  // openclaw.json, as a person writes it (JSON5)
  agents: { list: [{ id: "main", default: true }] },
  session: {
    storeType: "auto",
    durability: "normal",
    maintainEvery: "1h",
    maintenance: { mode: "warn", pruneAfter: "30d", maxEntries: 500, rotateBytes: "10mb",
                   resetArchiveRetention: "30d", maxDiskBytes: "1gb" },
  },
}
"""


# --- inputs ---------------------------------------------------------------------------------


def _seeds(root: Path) -> dict[str, bytes]:
    """Valid files to mutate, written as OpenClaw (or this library) writes them."""
    # sessions.json: typical entries (a corrupt file is parsed again as JSON5, slowly: keep
    # it small); the database also holds a bloated one (blobs).
    small = generate_state_dir(fresh_dir(root / "seed-json"), sessions=3, bloated_ratio=0, seed=3)
    gen = fresh_dir(root / "seed-gen")
    generated = generate_state_dir(gen, sessions=3, bloated_ratio=0.34, transcripts=True, seed=3)
    agent = generated.agents["main"]
    # The database: sessions.json migrated (a migration record in meta), then one write.
    db_dir = fresh_dir(root / "seed-db")
    sessions_dir(db_dir).mkdir(parents=True)
    shutil.copy2(agent.json_path, sessions_dir(db_dir) / "sessions.json")
    with sessionstore.open_store(state_dir=db_dir, store_type="sqlite") as store:
        store.update(KEY, {"label": "seed"}, create=True)
    db = sessions_dir(db_dir) / "sessions.sqlite"
    return {
        "sessions.json": small.agents["main"].json_path.read_bytes(),
        "openclaw.json": CONFIG_SEED,
        "transcript": agent.transcripts[0].read_bytes(),
        "sessions.sqlite": db.read_bytes(),
    }


def corpus(kind: str, seed_bytes: bytes, root: Path) -> list[bytes]:
    """Inputs every run starts with: known dangerous shapes, so that finding them does not
    depend on chance (Hypothesis's own choices depend on which modules are loaded)."""
    if kind == "openclaw.json":
        nines = b"9" * 400
        return [
            b'{"session": {"maintainEvery": 1e308}}',
            b'{"session": {"maintenance": {"pruneAfter": 1.5e308}}}',
            b'{"session": {"maintenance": {"pruneAfter": "' + nines + b'd"}}}',
            b'{"session": {"maintenance": {"maxDiskBytes": 1e308, "highWaterBytes": "9e999tb"}}}',
            b"{session: {storeType: 'sqlite', maintainEvery: Infinity}}",
        ]
    if kind == "sessions.json":
        return [
            b'{"agent:main:main": {"sessionId": "s", "updatedAt": 1e400}}',
            b'{"agent:main:main": {"sessionId": "s", "updatedAt": 184467440737095516160000}}',
            b'{"agent:main:main": {"sessionId": "../../x", "sessionFile": "/etc/passwd"}}',
            b'{"agent:main:main": {"sessionId": "s", "sessionFile": "/tmp/a\\u0000b.jsonl"}}',
            b'{"agent:main:main": {"sessionId": "s", "skillsSnapshot": "' + b"x" * 5000 + b'"}}',
            b"[]",
            b"null",
            b"\xff\xfe{}",
        ]
    if kind == "transcript":
        header = b'{"type":"session","version":3,"id":"fuzz-session"}\n'
        return [
            header + b'{"type":"message","id":1,"message":{"role":"user","content":"x"}}\n',
            header + b'{"type":"message","id":"a","message":' + b"9" * 400 + b"}\n",
            header + b'{"type":"message","id":"a","parentId":null,"message":{"content":"x"}',
            header + b'{"type":"compaction","id":"b"}\n' * 3,
            b"\n\n\n",
        ]
    # sessions.sqlite: the valid database damaged with SQL, and an empty file
    damages = (
        "UPDATE meta SET value = '{\"sha256\": ' WHERE key = 'migration'",
        "UPDATE sessions SET blob_refs = '{' WHERE blob_refs IS NOT NULL",
        "UPDATE sessions SET entry_json = x'7b' WHERE rowid = (SELECT min(rowid) FROM sessions)",
        "UPDATE sessions SET label = CAST(x'c328' AS TEXT)",
        "UPDATE meta SET value = 'x' WHERE key = 'schema_version'",
        "DELETE FROM blobs",
        "ALTER TABLE blobs RENAME COLUMN refcount TO refs",
    )
    out = [b""]
    for i, sql in enumerate(damages):
        path = fresh_dir(root / f"corpus-{i}") / "sessions.sqlite"
        path.write_bytes(seed_bytes)
        conn = apsw.Connection(str(path))
        conn.execute(sql)
        conn.close()  # the last connection: the WAL is checkpointed into the file
        out.append(path.read_bytes())
    return out


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    if cut is not None and out:
        del out[cut % len(out) :]
    return bytes(out)


def _structured(kind: str) -> st.SearchStrategy[bytes]:
    """JSON shaped like the file, with arbitrary values where the readers look."""
    if kind == "openclaw.json":
        # Durations, sizes and counts are where the validators do arithmetic; the choices
        # are valid half the time, so that parsing gets that far.
        huge = st.one_of(
            st.floats(min_value=1e290, max_value=1.7e308),  # finite, yet not once in ms
            st.integers(300, 400).map(lambda n: "9" * n + "d"),
        )
        number = st.one_of(
            huge,
            st.floats(allow_nan=False),
            st.integers(),
            st.text(alphabet="0123456789.e+-dhmsbkgt ", max_size=14),
            _JSON,
        )

        def choice(*good: str) -> st.SearchStrategy[Any]:
            return st.one_of(st.sampled_from(good), st.sampled_from(good), _JSON)

        limits = ("pruneAfter", "pruneDays", "maxEntries", "rotateBytes")
        limits += ("resetArchiveRetention", "maxDiskBytes", "highWaterBytes")
        maintenance = st.fixed_dictionaries(
            {}, optional={"mode": choice("warn", "enforce"), **dict.fromkeys(limits, number)}
        )
        session = st.fixed_dictionaries(
            {},
            optional={
                "storeType": choice("auto", "json", "sqlite"),
                "durability": choice("normal", "power"),
                "maintainEvery": st.one_of(huge, number),
                "maintenance": st.one_of(maintenance, _JSON),
            },
        )
        doc = session.map(lambda section: {"session": section})
    elif kind == "sessions.json":
        entry = st.dictionaries(
            st.sampled_from(
                (
                    "sessionId",
                    "updatedAt",
                    "sessionFile",
                    "channel",
                    "lastChannel",
                    "label",
                    "messageCount",
                    "skillsSnapshot",
                    "systemPromptReport",
                    "acp",
                    "origin",
                )
            ),
            _JSON,
            max_size=6,
        )
        doc = st.dictionaries(
            st.sampled_from((KEY, "Agent:Main:Main", "global", " ", "x")), entry | _JSON, max_size=3
        )
    else:  # transcript lines
        line = st.one_of(
            _JSON,
            st.fixed_dictionaries({"type": st.just("message"), "id": _JSON, "message": _JSON}),
            st.fixed_dictionaries(
                {"type": st.sampled_from(("session", "compaction")), "id": _JSON}
            ),
        )
        return st.lists(line, max_size=6).map(
            lambda lines: b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        )
    return doc.map(lambda d: json.dumps(d).encode())


def inputs(kind: str, seed_bytes: bytes) -> st.SearchStrategy[bytes]:
    """Raw bytes, a mutated valid file, or (for the JSON inputs) structured JSON."""
    edits = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8)
    cut = st.none() | st.integers(min_value=0)

    def valid_file_mutated(edits: list[tuple[int, int]], cut: int | None) -> bytes:
        return _mutate(seed_bytes, edits, cut)

    mutated = st.builds(valid_file_mutated, edits, cut)
    options = [st.binary(max_size=1024), mutated]
    if kind != "sessions.sqlite":
        options.append(_structured(kind))
    return st.one_of(options)


# --- the readers (in a child) ---------------------------------------------------------------


def _calls(kind: str, state_dir: Path) -> list[tuple[str, Callable[[], Any]]]:
    paths = resolve_store_paths(state_dir, "main")
    calls: list[tuple[str, Callable[[], Any]]] = []

    def store_calls(label: str, opener: Callable[[], Any]) -> None:
        holder: dict[str, Any] = {}

        def opened() -> Any:
            holder["store"] = opener()
            return holder["store"].store_type

        def on_store(fn: Callable[[Any], Any]) -> Callable[[], Any]:
            return lambda: fn(holder["store"]) if "store" in holder else None

        calls.append((f"{label} open_store", opened))
        calls.append((f"{label} get", on_store(lambda s: s.get(KEY))))
        calls.append((f"{label} list", on_store(lambda s: s.list(limit=50).rows)))
        calls.append((f"{label} count", on_store(lambda s: s.count())))
        calls.append((f"{label} load_all", on_store(lambda s: s.load_all())))
        calls.append((f"{label} info", on_store(lambda s: s.info().to_dict())))
        calls.append((f"{label} check", on_store(lambda s: [f.to_dict() for f in s.check()])))
        if kind == "transcript":
            for name, fn in (
                ("messages", lambda t: t.messages()),
                ("tail", lambda t: t.tail(3)),
                ("entries", lambda t: t.entries()),
            ):
                calls.append(
                    (f"{label} transcript.{name}", on_store(lambda s, fn=fn: fn(s.transcript(KEY))))
                )
        calls.append((f"{label} close", on_store(lambda s: s.close())))

    def opener(store_type: Any) -> Callable[[], Any]:
        return lambda: sessionstore.open_store(state_dir=state_dir, store_type=store_type)

    if kind == "sessions.json":
        store_calls("json", opener("json"))
        store_calls("auto", opener("auto"))
        calls.append(("migrate --dry-run", lambda: migrate_agent(paths, dry_run=True).status))
    elif kind == "sessions.sqlite":
        store_calls("sqlite", opener("sqlite"))
        store_calls("auto", opener("auto"))
    elif kind == "openclaw.json":
        store_calls("auto", opener(None))  # the type openclaw.json configures
    else:
        store_calls("sqlite", opener("sqlite"))
    return calls


def _read_everything(acks: Acks, kind: str, state_dir: Path) -> None:
    for name, call in _calls(kind, state_dir):
        try:
            call()
        except Exception as exc:
            acks.send("call", name=name, ok=False, **error_text(exc))
        else:
            acks.send("call", name=name, ok=True)


# --- the scenario ---------------------------------------------------------------------------


class _Bench:
    """Where inputs are laid out, and what a run found."""

    def __init__(self, kind: str, root: Path, fig: Figures) -> None:
        self.kind, self.root, self.fig = kind, root, fig
        self.template = fresh_dir(root / "template")
        if kind == "transcript":
            with sessionstore.open_store(state_dir=self.template, store_type="sqlite") as store:
                store.put(KEY, {"sessionId": SESSION_ID})
        elif kind == "openclaw.json":
            with sessionstore.open_store(state_dir=self.template, store_type="json") as store:
                store.put(KEY, {"sessionId": SESSION_ID})
        self.smallest: dict[str, bytes] = {}
        self.examples = 0

    def input_path(self, state_dir: Path) -> Path:
        files = sessions_dir(state_dir)
        return {
            "sessions.json": files / "sessions.json",
            "sessions.sqlite": files / "sessions.sqlite",
            "openclaw.json": state_dir / "openclaw.json",
            "transcript": files / f"{SESSION_ID}.jsonl",
        }[self.kind]

    def fail(self, what: str, data: bytes) -> None:
        if what not in self.smallest or len(data) < len(self.smallest[what]):
            self.smallest[what] = data

    def example(self, data: bytes) -> None:
        self.examples += 1
        state_dir = Path(tempfile.mkdtemp(dir=self.root, prefix="ex-"))
        try:
            shutil.copytree(self.template, state_dir, dirs_exist_ok=True)
            path = self.input_path(state_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
            with spawn(_read_everything, self.kind, state_dir) as child:
                child.join(DEADLINE)
            if child.hung:
                self.fail("hang", data)
            elif child.status != 0:
                self.fail(f"crash (exit {child.status}): {(child.crash or '')[-200:]}", data)
            for rec in child.of("call"):
                self.fig.acked += 1
                if not rec["ok"]:
                    self.fig.count(f"typed errors: {rec['type']}" if rec["typed"] else "untyped")
                    if not rec["typed"]:
                        self.fail(
                            f"{rec['name']}: untyped {rec['type']}: {rec['message'][:120]}", data
                        )
            if path.read_bytes() != data or os.stat(path).st_mtime_ns != 1_600_000_000_000_000_000:
                self.fail(WRITTEN_WHAT, data)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


def run(
    variant: str,
    *,
    seed: int = 0,
    runs: int = FULL_RUNS,
    base: Path | None = None,
    derandomize: bool = False,
) -> Figures:
    """``runs`` Hypothesis examples of one input kind."""
    fig = Figures(NAME, variant, seed)
    with timed(fig), workdir(base) as root:
        bench = _Bench(variant, root, fig)

        seeds = _seeds(root)
        strategy = inputs(variant, seeds[variant])

        def body(data: bytes) -> None:
            bench.example(data)

        explore = given(strategy)(body)
        for data in corpus(variant, seeds[variant], root):
            explore = example(data)(explore)
        explore = settings(
            max_examples=runs,
            deadline=None,
            database=None,
            derandomize=derandomize,
            suppress_health_check=list(HealthCheck),
        )(explore)
        if not derandomize:
            explore = hypothesis_seed(seed)(explore)
        explore()
        fig.runs = bench.examples
        for what, data in sorted(bench.smallest.items()):
            tag = WRITTEN if what == WRITTEN_WHAT else ""
            fig.fail(f"{what} (shortest input, {len(data)} bytes: {data[:160]!r})", tag)
    return fig
