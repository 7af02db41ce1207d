"""Scenario 5: 8 processes x 500 mixed operations on 50 sessions, against a model.

Sessions ``s00``-``s09`` are shared: every worker counts hits on them with update
callbacks, marks them with its own field (patches) and appends to their transcripts. The
other 40 are owned, each by one worker, which creates (``put`` with a new generation and
session id), updates (a callback counter), appends to, reads, lists and deletes them. Every
worker also lists the store and runs ``maintain(mode="enforce")``. Each worker checks its
reads against its own model (it alone changes its keys) and acknowledges every call over
its pipe with the call's latency.

The parent replays the acknowledged operations: an owned key ends as its owner's last
acknowledged state, a shared key's hit count is the number of acknowledged hits, each
worker's mark its last acknowledged value, each transcript holds exactly the acknowledged
appends (an owner's in order, the shared ones as a multiset, each worker's in order) and
``messageCount`` counts them. No call may fail ("database is locked" least of all), the
files are sound and ``store.check()`` is clean.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import harness
from .harness import (
    Acks,
    Figures,
    Gate,
    error_text,
    integrity_problems,
    join_all,
    open_variant,
    read_jsonl,
    spawn,
    timed,
    unresolved,
    workdir,
)

NAME = "mixed"
TITLE = "8 processes x 500 mixed operations"
VARIANTS = ("sqlite", "json")
WORKERS = 8
# Operations per worker in the short tier: json writers wait for each other by polling
# sessions.json.lock (issue 11, defect 18), so fewer there.
SHORT_RUNS = {"sqlite": 100, "json": 30}
FULL_RUNS = 500
SESSIONS = 50
SHARED = 10
OPS = ("create", "update", "hit", "mark", "append", "delete", "get", "list", "maintain")
WEIGHTS = (10, 16, 12, 6, 22, 6, 14, 9, 5)
PREFIX = "agent:main:mix:"


def _key(i: int) -> str:
    return f"{PREFIX}s{i:02d}"


def _owned(worker: int, workers: int) -> list[str]:
    return [_key(i) for i in range(SHARED, SESSIONS) if i % workers == worker]


def _setup(state_dir: Path, variant: str) -> None:
    with open_variant(state_dir, variant) as store:
        for i in range(SHARED):
            store.put(_key(i), {"sessionId": f"mix-shared-{i}", "hits": 0})
            store.transcript(_key(i)).append({"role": "system", "content": "start"})


def _worker(
    acks: Acks, gate: Gate, state_dir: Path, variant: str, worker: int, n: int, seed: int
) -> None:
    store = open_variant(state_dir, variant)
    rnd = random.Random(f"{seed}-{worker}")
    owned = _owned(worker, WORKERS)
    shared = [_key(i) for i in range(SHARED)]
    mine: dict[str, dict[str, int] | None] = {k: None for k in owned}  # gen and counter
    generation = 0
    if not gate.wait():
        raise TimeoutError("the start signal never came")
    for i in range(n):
        op = rnd.choices(OPS, WEIGHTS)[0]
        live = [k for k, v in mine.items() if v is not None]
        if op in ("update", "delete") and not live:
            op = "create"
        key = ""
        fields: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            if op == "create":
                key = rnd.choice(owned)
                generation += 1
                entry = {"sessionId": f"mix-w{worker}-g{generation}", "gen": generation, "n": 0}
                store.put(key, {**entry, "owner": worker})
                mine[key] = {"gen": generation, "n": 0}
                fields = {"gen": generation}
            elif op == "update":
                key = rnd.choice(live)
                out = store.update(key, lambda e: {"n": e["n"] + 1})
                state = mine[key]
                assert state is not None
                state["n"] += 1
                if out is None or out.get("n") != state["n"]:
                    acks.send("mismatch", op=op, key=key, got=str(out)[:200], want=state["n"])
            elif op == "hit":
                key = rnd.choice(shared)
                store.update(key, lambda e: {"hits": e["hits"] + 1})
            elif op == "mark":
                key = rnd.choice(shared)
                store.update(key, {f"w{worker}": i})
                fields = {"v": i}
            elif op == "append":
                key = rnd.choice(live) if live and rnd.random() < 0.5 else rnd.choice(shared)
                content = f"w{worker}-{i}"
                entry_id = store.transcript(key).append({"role": "user", "content": content})
                fields = {"content": content, "id": entry_id}
            elif op == "delete":
                key = rnd.choice(live)
                if store.delete(key) is not True:
                    acks.send("mismatch", op=op, key=key, got="False", want="True")
                mine[key] = None
            elif op == "get":
                key = rnd.choice(owned)
                found = store.get(key)
                want = mine[key]
                got = None if found is None else {"gen": found.get("gen"), "n": found.get("n")}
                if got != want:
                    acks.send("mismatch", op=op, key=key, got=str(got), want=str(want))
            elif op == "list":
                rows = {r["key"] for r in store.list().rows}
                want_keys = {k for k, v in mine.items() if v is not None}
                if rows & set(owned) != want_keys or not set(shared) <= rows:
                    acks.send(
                        "mismatch",
                        op=op,
                        key="",
                        got=sorted(rows & set(owned)),
                        want=sorted(want_keys),
                    )
            else:
                store.maintain(mode="enforce")
        except Exception as exc:
            acks.send("error", op=op, key=key, **error_text(exc))
            continue
        ms = (time.perf_counter() - started) * 1000
        acks.send("ack", op=op, key=key, w=worker, ms=round(ms, 3), **fields)
    store.close()


def _model(children: list[harness.Child]) -> tuple[dict[str, Any], dict[str, Counter[str]]]:
    """Replay the acknowledged operations: the expected entries and transcript contents."""
    owned: dict[str, dict[str, Any] | None] = {}
    messages: dict[str, list[str]] = {}  # owned key (current generation) -> contents
    hits: Counter[str] = Counter()
    marks: dict[str, dict[str, int]] = {}
    shared_messages: dict[str, Counter[str]] = {_key(i): Counter() for i in range(SHARED)}
    for child in children:
        worker_messages: dict[str, list[str]] = {}
        for rec in child.of("ack"):
            op, key = rec["op"], rec["key"]
            if op == "create":
                owned[key] = {"gen": rec["gen"], "n": 0, "w": rec["w"]}
                worker_messages[key] = []
            elif op == "update":
                state = owned[key]
                assert state is not None
                state["n"] += 1
            elif op == "delete":
                owned[key] = None
                worker_messages.pop(key, None)
            elif op == "hit":
                hits[key] += 1
            elif op == "mark":
                marks.setdefault(key, {})[f"w{rec['w']}"] = rec["v"]
            elif op == "append":
                if key in shared_messages:
                    shared_messages[key][rec["content"]] += 1
                else:
                    worker_messages[key].append(rec["content"])
        messages.update(worker_messages)
    expected: dict[str, Any] = {}
    for i in range(SHARED):
        key = _key(i)
        expected[key] = {"hits": hits[key], **marks.get(key, {})}
    for key, state in owned.items():
        if state is not None:
            expected[key] = {**state, "messages": messages.get(key, [])}
    return expected, shared_messages


def _check(fig: Figures, state_dir: Path, variant: str, children: list[harness.Child]) -> None:
    expected, shared_messages = _model(children)
    with open_variant(state_dir, variant) as store:
        everything = store.load_all()
        extra = sorted(set(everything) - set(expected))
        missing = sorted(set(expected) - set(everything))
        if extra or missing:
            fig.fail(f"keys differ from the model: extra {extra[:5]}, missing {missing[:5]}")
        for key, want in expected.items():
            entry = everything.get(key)
            if entry is None:
                continue
            records, torn = read_jsonl(store.transcript(key).path)
            contents = [
                str(r["message"].get("content")) for r in records if r.get("type") == "message"
            ]
            if torn:
                fig.fail(f"{key}: the transcript ends in a partial record")
            if key in shared_messages:
                got = {"hits": entry.get("hits")}
                got.update({f: entry[f] for f in entry if f.startswith("w") and f[1:].isdigit()})
                if got != want:
                    fig.fail(f"{key}: {got} != model {want}")
                added = Counter(contents[1:])  # after the "start" record of the setup
                if added != shared_messages[key]:
                    fig.fail(
                        f"{key}: transcript {sum(added.values())} records, model"
                        f" {sum(shared_messages[key].values())}"
                    )
                for worker in range(WORKERS):  # each worker's appends in its order
                    own = [c for c in contents if c.startswith(f"w{worker}-")]
                    if own != sorted(own, key=lambda c: int(c.split("-")[1])):
                        fig.fail(f"{key}: worker {worker}'s appends are out of order")
                count = len(contents)
            else:
                got = {"gen": entry.get("gen"), "n": entry.get("n"), "w": entry.get("owner")}
                if got != {k: want[k] for k in ("gen", "n", "w")}:
                    fig.fail(f"{key}: {got} != model {want}")
                if contents != want["messages"]:
                    fig.fail(f"{key}: transcript {contents[-3:]} != model {want['messages'][-3:]}")
                count = len(contents)
            if store.store_type == "sqlite" and (entry.get("messageCount") or 0) != count:
                fig.fail(f"{key}: messageCount {entry.get('messageCount')}, transcript {count}")
        for problem in integrity_problems(store):
            fig.fail(problem)
        for problem in unresolved(store):
            fig.fail(f"check(): {problem}")


def run(variant: str, *, seed: int = 0, runs: int = FULL_RUNS, base: Path | None = None) -> Figures:
    """8 workers x ``runs`` mixed operations each; the final state must equal the model's."""
    fig = Figures(NAME, variant, seed)
    with timed(fig), workdir(base) as root:
        state_dir = root / f"mixed-{variant}"
        _setup(state_dir, variant)
        gate = Gate()
        children = [spawn(_worker, gate, state_dir, variant, w, runs, seed) for w in range(WORKERS)]
        gate.open()
        join_all(children, timeout=max(120.0, runs * 2.0))
        for child in children:
            if child.hung:
                fig.fail(f"worker {children.index(child)} hung")
            elif child.status != 0:
                fig.fail(f"worker {children.index(child)} crashed ({child.status}): {child.crash}")
            for rec in child.of("ack"):
                fig.timing(rec["op"], rec["ms"])
                fig.timing("all", rec["ms"])
            for rec in child.of("error"):
                if "locked" in rec["message"] and "database" in rec["message"]:
                    fig.count('"database is locked" surfaced')
                fig.count(f"errors: {rec['type']}")
                fig.fail(f"{rec['op']} {rec['key']}: {rec['type']}: {rec['message'][:200]}")
            for rec in child.of("mismatch"):
                fig.fail(f"a read disagreed with the worker's model: {rec}")
        fig.runs = sum(len(c.of("ack")) + len(c.of("error")) for c in children)
        fig.acked = sum(len(c.of("ack")) for c in children)
        _check(fig, state_dir, variant, children)
    return fig
