"""Scenario 4: SQLite I/O errors injected through the VFS, transient and permanent.

For each operation (reads: ``get``, ``list``, ``count``, ``load_all``; writes: ``put``,
``update``, ``delete``, a transcript ``append``) a counting child learns how many reads
and how many writes (writes, syncs, truncations) SQLite makes for it on a fresh
connection (whose cache another connection's commit has just invalidated, so the pages
come from the files). Each trial then does the same in a child and fails the N-th read
(or write) once (transient) or from the N-th on (permanent, until the fault is gone).

The call must return the right answer or raise a typed ``SessionStoreError`` whose message
carries the I/O failure (never a wrong answer, never a bare driver error); once the fault
is gone the same store object must work; a write leaves the old state or the new one
(never a mix; acknowledged means new); the database passes ``integrity_check`` and
``store.check()`` reports nothing unresolved.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from sessionstore.files import sha256_hex

from . import ops, shims
from .harness import (
    Acks,
    Figures,
    error_text,
    fresh_dir,
    integrity_problems,
    open_variant,
    spawn,
    timed,
    unresolved,
    workdir,
)
from .ops import PROBE, Case

NAME = "ioerrors"
TITLE = "SQLite I/O errors (VFS)"
READS = ("get", "list", "count", "load_all")
WRITES = ("put", "update", "delete", "append")
VARIANTS = READS + WRITES
BACKEND = "sqlite"  # every variant is an operation on a sqlite store
KINDS = {"read": frozenset({"read"}), "write": shims.WRITE_KINDS}
SHORT_RUNS = 3  # N per (kind, persistence) in the short tier: first, last and a random one
FULL_RUNS = 0  # 0 = every N
MASKED = "masked"  # the tag of a typed error whose message hides the I/O failure
OTHER = ops.HELPERS + "other"  # written by another connection before each trial


def _read(store: Any, op: str, target: str) -> Any:
    if op == "get":
        return store.get(target)
    if op == "list":
        return store.list().rows
    if op == "count":
        return store.count()
    return store.load_all()


def _digest(value: Any) -> str:
    return sha256_hex(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _cold(case: Case) -> Any:
    """A fresh store whose page cache another connection's commit has just invalidated,
    so that the operation reads its pages from the files."""
    store = open_variant(case.state, "sqlite")
    store.count()
    with open_variant(case.state, "sqlite") as other:
        other.put(OTHER, {"sessionId": "other", "updatedAt": 1_700_000_000_000})
    return store


def _count(acks: Acks, case: Case, op: str) -> None:
    shims.install(case.files, os_layer=False)
    store = _cold(case)
    plan = shims.arm(shims.FaultPlan(kinds=KINDS["read"] | KINDS["write"]))
    out = _read(store, op, case.target) if op in READS else ops.apply(case, store, "new")
    shims.disarm()
    reads = sum(1 for e in plan.log if e.kind == "read")
    acks.send("counts", read=reads, write=len(plan.log) - reads, value=_digest(out))


def _trial(acks: Acks, case: Case, op: str, kind: str, n: int, count: int) -> None:
    shims.install(case.files, os_layer=False)
    store = _cold(case)
    plan = shims.arm(shims.FaultPlan(kinds=KINDS[kind], at=n, count=count, action="fail"))
    try:
        out = _read(store, op, case.target) if op in READS else ops.apply(case, store, "new")
    except Exception as exc:
        acks.send("error", faulted=plan.faulted, **error_text(exc))
    else:
        acks.send("result", faulted=plan.faulted, value=_digest(out) if op in READS else "")
    shims.disarm()
    try:  # the fault is gone: the same store object works
        if op in READS:
            acks.send("again", value=_digest(_read(store, op, case.target)))
        else:
            stored = store.put(PROBE, {"sessionId": "probe", "n": n})
            acks.send("again", value=str(stored.get("n")))
    except Exception as exc:
        acks.send("again-failed", **error_text(exc))
    store.close()


def _check_trial(
    fig: Figures,
    case: Case,
    op: str,
    where: str,
    child: Any,
    expected: str,
    old: ops.View,
    new: ops.View,
    scratch: Path,
) -> None:
    error = child.wait_for("error", 0)
    result = child.wait_for("result", 0)
    if error is not None:
        fig.count("typed error" if error["typed"] else "untyped error")
        if not error["typed"]:
            fig.fail(f"{where}: untyped {error['type']}: {error['message']}")
        elif "injected" not in error["message"] and "I/O" not in error["message"]:
            fig.fail(f"{where}: the message hides the I/O failure: {error['message']}", MASKED)
    elif result is not None:
        fig.count("absorbed" if result["faulted"] else "no fault reached")
        fig.acked += 1
        if op in READS and result["value"] != expected:
            fig.fail(f"{where}: a wrong answer under the fault: {result['value'][:120]}")
    again = child.wait_for("again", 0)
    if again is None:
        failed = child.wait_for("again-failed", 0) or {}
        fig.fail(
            f"{where}: with the fault gone, the same store failed:"
            f" {failed.get('type')}: {failed.get('message')}"
        )
    elif op in READS and again["value"] != expected:
        fig.fail(f"{where}: a wrong answer after the fault: {again['value'][:120]}")
    else:
        fig.acked += 1
    if op in WRITES:
        try:
            state = ops.classify(case, ops.view(case, scratch), old, new)
        except ValueError as exc:
            state = f"mixed: {exc}"
        if state not in ("old", "new"):
            fig.fail(f"{where}: {state}")
        elif result is not None and state != "new":
            fig.fail(f"{where}: acknowledged, but the state is the old one")
        elif error is not None and state == "new":
            fig.count("raised, yet applied")
    with open_variant(case.state, "sqlite") as store:
        for problem in integrity_problems(store):
            fig.fail(f"{where}: {problem}")
        for problem in unresolved(store):
            fig.fail(f"{where}: check(): {problem}")


def run(variant: str, *, seed: int = 0, runs: int = FULL_RUNS, base: Path | None = None) -> Figures:
    """Inject transient and permanent read and write errors into one operation."""
    fig = Figures(NAME, variant, seed)
    rnd = random.Random(f"{NAME}-{variant}-{seed}")
    op = variant
    with timed(fig), workdir(base) as root:
        case = Case(op if op in WRITES else "get", "sqlite", root / "state")
        template = ops.seed(case, seed)
        scratch = fresh_dir(root / "scratch")
        old = ops.view(case, scratch) if op in WRITES else ops.View(None)
        counter = spawn(_count, case, op)
        counter.join(120)
        counts = counter.wait_for("counts", 0)
        if counts is None:
            raise RuntimeError(f"counting run failed ({counter.status}): {counter.crash}")
        new = ops.view(case, scratch) if op in WRITES else ops.View(None)
        expected = str(counts["value"])
        for kind in ("read", "write"):
            total = int(counts[kind])
            fig.count(f"{kind}s in the operation", total)
            points = list(range(1, total + 1))
            if runs and len(points) > runs:
                middle = rnd.sample(points[1:-1], max(0, runs - 2))
                points = sorted({points[0], points[-1], *middle})
            for n in points:
                for persistence, count in (("transient", 1), ("permanent", 0)):
                    where = f"{persistence} {kind} error at {kind} {n} of {total}"
                    ops.restore(case, template)
                    child = spawn(_trial, case, op, kind, n, count)
                    child.join(120)
                    fig.runs += 1
                    if child.status != 0:
                        fig.fail(f"{where}: the trial crashed ({child.status}): {child.crash}")
                        continue
                    _check_trial(fig, case, op, where, child, expected, old, new, scratch)
    return fig
