"""Scenario 3: a full disk (``RLIMIT_FSIZE`` in a child, SIGXFSZ ignored) for every writer.

Writers: ``put`` and ``update`` on both backends, a transcript ``append`` on both, a
``migrate`` and an ``export``. A counting child first records every write the operation
makes (file, offset, length). Each point then restores the starting state and runs the
operation in a child whose file size limit makes exactly one of those writes the first to
fail: at its offset (nothing of it written, EFBIG) or half-way through it (a short write,
then EFBIG): every distinct first failure, in the full tier.

The call must raise ``StorageFullError`` (for a migration: a ``MigrationError`` caused by
one), the files must be intact (the old state, read from a copy taken right after the
error; no temp file left), and once the limit is lifted the next call in the same process
must work. Then the files are sound and ``store.check()`` reports nothing unresolved.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import orjson

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
from .ops import Case

NAME = "diskfull"
TITLE = "disk full (RLIMIT_FSIZE)"
VARIANTS = (
    "put:sqlite",
    "update:sqlite",
    "append:sqlite",
    "put:json",
    "update:json",
    "append:json",
    "migrate:sqlite",
    "export:sqlite",
)
SHORT_RUNS = 6  # limits per variant in the short tier (the first failure at each file, + random)
FULL_RUNS = 0  # 0 = every distinct first failure
NOT_FULL = "not-storage-full"  # the tag of a typed error that is not StorageFullError


def _record_writes(acks: Acks, case: Case) -> None:
    shims.install(case.state)
    store = ops.open_for(case)
    plan = shims.arm(shims.FaultPlan(kinds=frozenset({"write"})))
    ops.apply(case, store, "new")
    shims.disarm()
    writes = [[e.layer, e.name, e.offset, e.size] for e in plan.log]
    for i in range(0, len(writes), 40):
        acks.send("writes", items=writes[i : i + 40])


def _after_error(case: Case) -> Path:
    return case.state.parent / "after-error"


def _write_under_limit(acks: Acks, case: Case, limit: int) -> None:
    store = ops.open_for(case)
    error = None
    with shims.file_size_limit(limit):
        try:
            ops.apply(case, store, "new")
        except Exception as exc:
            error = exc
    if error is None:
        acks.send("ack")
        return
    acks.send("error", **error_text(error))
    # The limit is lifted: keep the state as the error left it, then call again.
    shutil.copytree(case.files, _after_error(case) / "sessions")
    if case.op == "export":
        shutil.copytree(case.export_path.parent, _after_error(case) / "export")
    try:
        ops.apply(case, store, "new")
    except Exception as again:
        acks.send("next-failed", **error_text(again))
    else:
        acks.send("next")


def _limits(writes: list[list[Any]]) -> list[tuple[int, str]]:
    """One limit per distinct first failing write: (limit, what fails first)."""
    extents = [(int(w[2]), int(w[3]), f"{w[0]} {w[1]}") for w in writes if int(w[2]) >= 0]
    candidates = {0}
    for offset, size, _ in extents:
        candidates.add(offset)
        if size > 1:
            candidates.add(offset + size // 2)
    points: dict[tuple[int, bool], int] = {}
    for limit in sorted(candidates):
        for j, (offset, size, _) in enumerate(extents):
            if offset + size > limit:
                points.setdefault((j, offset < limit), limit)
                break
    out = []
    for (j, partial), limit in sorted(points.items(), key=lambda kv: kv[1]):
        offset, size, name = extents[j]
        how = f"half of {size} bytes" if partial else f"{size} bytes"
        out.append((limit, f"limit {limit}: write {j + 1} ({name} at {offset}, {how})"))
    return out


def _temp_files(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


def _point(
    fig: Figures, case: Case, template: Path, limit: int, where: str, old: ops.View, new: ops.View
) -> None:
    ops.restore(case, template)
    after = _after_error(case)
    if after.exists():
        shutil.rmtree(after)
    child = spawn(_write_under_limit, case, limit)
    child.join(120)
    if child.status != 0:
        fig.fail(f"{where}: the writer crashed ({child.status}): {child.crash}")
        return
    error = child.wait_for("error", 0)
    if error is None:
        fig.count("completed under the limit")
        fig.acked += 1
    else:
        fig.count(f"raised {error['type']}")
        if not error["typed"]:
            fig.fail(f"{where}: untyped {error['type']}: {error['message']}")
        elif "StorageFullError" not in error["chain"]:
            fig.fail(
                f"{where}: raised {' <- '.join(error['chain'])}, not StorageFullError:"
                f" {error['message']}",
                tag=NOT_FULL,
            )
        left = _temp_files(after)
        if left:
            fig.fail(f"{where}: temp files left after the error: {left}")
        scratch = case.state.parent / "scratch"
        files = after / "sessions"
        seen: ops.View | None
        if case.op == "export":
            saved = after / "export" / case.export_path.name
            seen = _export_view(saved) if saved.exists() else ops.View(None)
        else:
            try:
                seen = ops.view(case, scratch, files)
            except ValueError as exc:
                fig.fail(f"{where}: after the error: {exc}")
                seen = None
        if seen is not None and seen.torn:
            fig.fail(f"{where}: the failed append left a partial record")
        if seen is not None:
            state = ops.classify(case, seen, old, new)
            if state == "new":
                fig.count("raised, yet applied")
            elif state != "old":
                fig.fail(f"{where}: after the error the files are not intact: {state}")
        if child.wait_for("next", 0) is None:
            nxt = child.wait_for("next-failed", 0) or {}
            fig.fail(
                f"{where}: the next call after the limit was lifted failed:"
                f" {nxt.get('type')}: {nxt.get('message')}"
            )
            return
        fig.acked += 1
    _finish(fig, case, where, old, new)


def _export_view(path: Path) -> ops.View:
    try:
        return ops.View(orjson.loads(path.read_bytes()))
    except orjson.JSONDecodeError:
        return ops.View({"<does not parse>": {}})


def _finish(fig: Figures, case: Case, where: str, old: ops.View, new: ops.View) -> None:
    scratch = case.state.parent / "scratch"
    try:
        state = ops.classify(case, ops.view(case, scratch), old, new)
    except ValueError as exc:
        state = f"mixed: {exc}"
    if state != "new":
        fig.fail(f"{where}: after the next call the state is {state}, not the new one")
    with open_variant(case.state, case.backend) as store:
        for problem in integrity_problems(store):
            fig.fail(f"{where}: {problem}")
        for problem in unresolved(store):
            fig.fail(f"{where}: check(): {problem}")


def run(variant: str, *, seed: int = 0, runs: int = FULL_RUNS, base: Path | None = None) -> Figures:
    """Fill the disk at every distinct write of one writer (``runs`` > 0: a sample)."""
    fig = Figures(NAME, variant, seed)
    rnd = random.Random(f"{NAME}-{variant}-{seed}")
    with timed(fig), workdir(base) as root:
        case = Case.of(variant, root / "state")
        template = ops.seed(case, seed)
        scratch = fresh_dir(root / "scratch")
        old = ops.view(case, scratch)
        counter = spawn(_record_writes, case)
        counter.join(120)
        if counter.status != 0:
            raise RuntimeError(f"counting run failed ({counter.status}): {counter.crash}")
        writes = [w for rec in counter.of("writes") for w in rec["items"]]
        new = ops.view(case, scratch)
        limits = _limits(writes)
        fig.count("writes in the operation", len(writes))
        fig.count("distinct first failures", len(limits))
        if runs:
            # the first failure in each file, then a seeded sample of the rest
            firsts: dict[str, tuple[int, str]] = {}
            for limit, where in limits:
                firsts.setdefault(where.split("(")[1].split(" at ")[0], (limit, where))
            chosen = sorted(set(firsts.values()))
            rest = [p for p in limits if p not in chosen]
            limits = sorted(chosen + rnd.sample(rest, min(max(0, runs - len(chosen)), len(rest))))
        for limit, where in limits:
            fig.runs += 1
            _point(fig, case, template, limit, where, old, new)
    return fig
