"""Scenario 2: a deterministic crash-point sweep.

For one operation on one backend (``put``, ``update``, a transcript ``append``, a
``migrate``; on json a put or an update is a ``sessions.json`` save), a counting child
first learns the operation's I/O events: SQLite writes, syncs and truncations through the
fault VFS, and ``os.write``/``fsync``/``ftruncate``/``replace``/``rename`` on the store's
files (``sessions.json``, its temp and lock files, the transcript). Then, for every event
N and every action (``fail``: the call raises; ``stop``: the process ends there; ``torn``:
half the bytes are written, then it ends), a fresh copy of the state goes through:

A. the operation with the fault at N; after a ``fail`` the same process drops the fault
   and writes again (the store works once the fault is gone);
B. a recovery (reopen, the next write; a re-run for a migration) that itself stops at a
   random event M of its own;
C. a clean recovery, which must succeed.

After A and after B the state, read from a copy of the files, is the old one or the new
one, never a mix (an acknowledged operation: the new one; a transcript may hold the
unacknowledged record whose index update never came, never the reverse); after C the
index agrees with the transcript and ``store.check()`` reports nothing unresolved. The
starting state is written the way OpenClaw writes it (``generate_state_dir``: gateway
transcripts, absolute ``sessionFile`` paths, mixed-case keys, legacy fields).
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import ops, shims
from .harness import (
    STOP_CODES,
    Acks,
    Figures,
    error_text,
    fresh_dir,
    integrity_problems,
    open_variant,
    read_jsonl,
    spawn,
    timed,
    unresolved,
    workdir,
)
from .ops import Case, View

NAME = "sweep"
TITLE = "crash-point sweep"
VARIANTS = (
    "put:sqlite",
    "put:sqlite-power",
    "put:json",
    "update:sqlite",
    "update:sqlite-power",
    "update:json",
    "append:sqlite",
    "append:sqlite-power",
    "append:json",
    "migrate:sqlite",
    "migrate:sqlite-power",
)
SHORT_RUNS = 3  # short tier: each kind of event's first point, plus this many more
FULL_RUNS = 0  # 0 = every point


# --- children -------------------------------------------------------------------------------


def _names(plan: shims.FaultPlan) -> list[str]:
    """The plan's events, temp-file names shortened (uuids vary from run to run)."""
    return [re.sub(r"\.[0-9a-f-]{32,36}\.tmp$", ".*.tmp", str(e)) for e in plan.log]


def _send_log(acks: Acks, plan: shims.FaultPlan) -> None:
    names = _names(plan)
    for i in range(0, len(names), 40):
        acks.send("log", events=names[i : i + 40])


def _after_error(case: Case) -> Path:
    return case.state.parent / "after-error"


def _operate(acks: Acks, case: Case, plan: shims.FaultPlan) -> None:
    """Child A: the operation under ``plan``; after a fail, the next write without it."""
    shims.install(case.files)
    store = ops.open_for(case)
    shims.arm(plan)
    try:
        ops.apply(case, store, "new")
    except Exception as exc:
        shims.disarm()
        # The state right after the failure, before the next write changes it.
        shutil.copytree(case.files, _after_error(case))
        acks.send("error", **error_text(exc))
        try:
            out = ops.apply(case, store, "new")
        except Exception as again:
            acks.send("next-failed", **error_text(again))
        else:
            acks.send("next", result=str(out)[:100])
        return
    shims.disarm()
    _send_log(acks, plan)
    acks.send("ack")


def _recovery(acks: Acks, case: Case, plan: shims.FaultPlan | None, tag: str) -> None:
    """Child B (with a stop) or C (clean): reopen and write."""
    if plan is not None:
        shims.install(case.files)
        shims.arm(plan)
    out = ops.recover(case, tag)
    shims.disarm()
    if plan is not None:
        _send_log(acks, plan)
    acks.send("ack", result=str(out)[:60])


# --- the sweep (in the parent) --------------------------------------------------------------


@dataclass
class _Sweep:
    case: Case
    template: Path
    scratch: Path
    old: View
    new: View
    log: list[str]
    recovery_events: int
    rnd: random.Random

    def state(self, fig: Figures, where: str, files: Path | None = None) -> str | None:
        """``old`` or ``new``; a failure is recorded (and None returned) for anything else."""
        try:
            seen = ops.view(self.case, self.scratch, files)
        except ValueError as exc:
            fig.fail(f"{where}: {exc}")
            return None
        state = ops.classify(self.case, seen, self.old, self.new)
        if state not in ("old", "new"):
            fig.fail(f"{where}: {state}")
            return None
        return state

    def torn(self, files: Path) -> bool:
        """Whether the transcript in ``files`` has bytes after its last complete line."""
        try:
            return ops.view(self.case, self.scratch, files).torn
        except ValueError:
            return False  # reported by state()


def _count_events(case: Case, template: Path, recovery: bool) -> list[str]:
    """The I/O events of the operation (or of the recovery) on the starting state."""
    ops.restore(case, template)
    plan = shims.FaultPlan()
    child = spawn(_recovery, case, plan, "count") if recovery else spawn(_operate, case, plan)
    child.join(120)
    if child.status != 0 or child.wait_for("ack", 0) is None:
        raise RuntimeError(f"counting run failed ({child.status}): {child.crash or child.records}")
    return [name for rec in child.of("log") for name in rec["events"]]


def _finish(fig: Figures, sw: _Sweep, where: str, acked: bool) -> None:
    """After the clean recovery: old or new, index and transcript agree, check() clean."""
    case = sw.case
    try:
        seen = ops.view(case, sw.scratch)
    except ValueError as exc:
        fig.fail(f"{where}: after recovery: {exc}")
        return
    if case.op == "append":
        added = list(seen.messages[len(sw.old.messages) :])
        if added[:1] == ["new"]:
            added = added[1:]
        elif acked:
            fig.fail(f"{where}: the acknowledged record is missing after recovery")
        if added not in (["recover-C"], ["recover-B", "recover-C"]):
            fig.fail(f"{where}: after recovery the transcript adds {added} to the old records")
    else:
        state = ops.classify(case, seen, sw.old, sw.new)
        if state not in ("old", "new"):
            fig.fail(f"{where}: after recovery: {state}")
        elif acked and state != "new":
            fig.fail(f"{where}: acknowledged, yet the old state came back after recovery")
        if case.op == "migrate" and state != "new":
            fig.fail(f"{where}: the re-run migration does not equal the source")
    # a migrated store is a sqlite store (sqlite-power is a durability of the same files)
    with open_variant(case.state, case.backend) as store:
        for problem in integrity_problems(store):
            fig.fail(f"{where}: {problem}")
        if case.op == "append" and store.store_type == "sqlite":  # json keeps no count
            count = (store.get(case.target) or {}).get("messageCount")
            records, _ = read_jsonl(store.transcript(case.target).path)
            held = sum(1 for r in records if r.get("type") == "message")
            if count != held:
                fig.fail(f"{where}: messageCount {count}, the transcript holds {held}")
        for problem in unresolved(store):
            fig.fail(f"{where}: check(): {problem}")


def _point(fig: Figures, sw: _Sweep, n: int, action: str) -> None:
    case = sw.case
    where = f"{action} at {n} ({sw.log[n - 1]})"
    ops.restore(case, sw.template)
    fresh_dir(_after_error(case)).rmdir()
    child = spawn(_operate, case, shims.FaultPlan(at=n, action=action))
    child.join(120)
    acked = child.wait_for("ack", 0) is not None
    error = child.wait_for("error", 0)
    if child.status not in (0, *STOP_CODES):
        fig.fail(f"{where}: the operation crashed ({child.status}): {child.crash}")
        return
    if error is not None:
        fig.count("raised a typed error" if error["typed"] else "raised an untyped error")
        if not error["typed"]:
            fig.fail(f"{where}: untyped {error['type']}: {error['message']}")
        if sw.state(fig, f"{where}: after the error", _after_error(case)) == "new":
            fig.count("raised, yet applied")
        if case.op == "append" and sw.torn(_after_error(case)):
            fig.fail(f"{where}: the failed append left a partial record")
        if child.wait_for("next", 0) is not None:
            acked = True  # the next write in the same process went through
        else:
            nxt = child.wait_for("next-failed", 0) or {}
            fig.fail(
                f"{where}: with the fault gone, the next write in the same process failed:"
                f" {nxt.get('type')}: {nxt.get('message')}"
            )
    elif action == "fail":
        fig.count("fault absorbed, acknowledged")
    elif acked:
        fig.count("completed before the stop")
    state = sw.state(fig, where)
    if state is not None:
        fig.count(f"state after the fault: {state}")
        if acked and state != "new":
            fig.fail(f"{where}: acknowledged, but the state is the old one")
    # B: a recovery that crashes itself
    m = sw.rnd.randint(1, max(1, sw.recovery_events))
    crasher = spawn(_recovery, case, shims.FaultPlan(at=m, action="stop"), "recover-B")
    crasher.join(120)
    if crasher.status == 0:
        fig.count("recovery done before its own crash point")
    elif crasher.status in STOP_CODES:
        fig.count("recovery crashed itself")
        sw.state(fig, f"{where}, recovery stopped at {m}")
    else:
        fig.fail(f"{where}: the recovery crashed ({crasher.status}): {crasher.crash}")
    # C: a clean recovery
    clean = spawn(_recovery, case, None, "recover-C")
    clean.join(120)
    if clean.status != 0 or clean.wait_for("ack", 0) is None:
        fig.fail(f"{where}: recovery failed ({clean.status}): {clean.crash}")
        return
    fig.acked += 1 + int(acked)
    _finish(fig, sw, where, acked)


def _sample(
    points: list[tuple[int, str]], log: list[str], extra: int, rnd: random.Random
) -> list[tuple[int, str]]:
    """The short tier's points: the first occurrence of every kind of event (layer, kind,
    file) with every action, plus ``extra`` points drawn at random."""
    firsts = {log.index(event) + 1 for event in set(log)}
    chosen = [p for p in points if p[0] in firsts]
    rest = [p for p in points if p[0] not in firsts]
    return sorted(chosen + rnd.sample(rest, min(extra, len(rest))))


def run(variant: str, *, seed: int = 0, runs: int = FULL_RUNS, base: Path | None = None) -> Figures:
    """Sweep the crash points of one operation: every one (``runs=0``), or each kind of
    event's first point plus ``runs`` more drawn with the seed."""
    fig = Figures(NAME, variant, seed)
    with timed(fig), workdir(base) as root:
        case = Case.of(variant, root / "state")
        template = ops.seed(case, seed)
        scratch = root / "scratch"
        old = ops.view(case, scratch)
        log = _count_events(case, template, recovery=False)
        new = ops.view(case, scratch)
        recovery = _count_events(case, template, recovery=True)
        sw = _Sweep(case, template, scratch, old, new, log, len(recovery), random.Random(seed))
        fig.count("I/O events in the operation", len(log))
        points = [
            (n, action)
            for n in range(1, len(log) + 1)
            for action in ("fail", "stop", "torn")
            if action != "torn" or log[n - 1].split(" ")[1] == "write"
        ]
        if runs:
            points = _sample(points, log, runs, sw.rnd)
        for n, action in points:
            fig.runs += 1
            _point(fig, sw, n, action)
        if case.backend != "json" and ops.source_sha(case) != case.sha:
            fig.fail("sessions.json (the migration source) changed")
    return fig
