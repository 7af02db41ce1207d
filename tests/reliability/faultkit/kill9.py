"""Scenario 1: kill -9 of an index writer at random points.

A child opens the store and loops over ``put`` and ``update`` (patches and callbacks, some
entries with a ``skillsSnapshot`` blob) on 24 keys, acknowledging ``<key> <value>`` after
each call returns; values only grow. Kill points alternate between a SIGKILL from the
parent 5-150 ms after the child is ready, and a SIGKILL the child sends itself at a random
I/O event (1-300) of its writes, so kills land inside transactions, lock holds, temp-file
writes and renames by construction. One state dir per variant is reused, so every run
starts from what the previous kill left.

After each kill: the files are sound (``integrity_check``, or ``sessions.json`` parses as
left), every acknowledged value is there (or a later one), no temp or lock file survives
the next write, which is not blocked, and ``store.check()`` reports nothing unresolved.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from . import shims
from .harness import (
    Acks,
    Figures,
    integrity_problems,
    open_variant,
    sessions_dir,
    spawn,
    timed,
    unresolved,
    workdir,
)

NAME = "kill9"
TITLE = "kill -9 of an index writer"
VARIANTS = ("sqlite", "sqlite-power", "json")
SHORT_RUNS = 24
FULL_RUNS = 200
KEYS = 24
STRIDE = 1_000_000  # value = run * STRIDE + i: later writes always have larger values
MAX_EVENT = 300
PAD = "p" * 2000


def _writer(acks: Acks, state_dir: Path, variant: str, run: int, seed: int, kill_at: int) -> None:
    if kill_at:
        shims.install(sessions_dir(state_dir))
    store = open_variant(state_dir, variant)
    rnd = random.Random(seed)
    acks.send("ready")
    if kill_at:
        shims.arm(shims.FaultPlan(at=kill_at, action="kill"))
    i = 0
    while True:
        key = f"agent:main:crash:k{rnd.randrange(KEYS):02d}"
        value = run * STRIDE + i
        op = i % 4
        if op == 0:
            entry: dict[str, Any] = {
                "sessionId": "s-" + key.replace(":", "-"),
                "v": value,
                "run": run,
                "pad": PAD,
            }
            if i % 8 == 0:
                entry["skillsSnapshot"] = {"prompt": PAD, "version": value}
            store.put(key, entry)
        elif op == 1:
            store.update(key, {"v": value, "run": run}, create=True)
        elif op == 2:
            store.update(
                key,
                lambda e, v=value: {"v": v, "run": run, "prev": e.get("v") if e else None},
                create=True,
            )
        else:
            store.update(key, {"v": value, "run": run, "label": f"r{run}"}, create=True)
        acks.send("ack", key=key, v=value)
        i += 1


def _leftovers(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.startswith("sessions.json.") and (p.name.endswith((".tmp", ".lock")))
    )


def _check(
    fig: Figures,
    state_dir: Path,
    variant: str,
    expected: dict[str, int],
    max_tried: int,
    run: int,
) -> None:
    where = f"run {run}"
    directory = sessions_dir(state_dir)
    if variant == "json" and (directory / "sessions.json").exists():
        try:
            orjson.loads((directory / "sessions.json").read_bytes())  # as the kill left it
        except orjson.JSONDecodeError as exc:
            fig.fail(f"{where}: sessions.json does not parse after the kill: {exc}")
            return
    with open_variant(state_dir, variant) as store:
        for problem in integrity_problems(store):
            fig.fail(f"{where}: {problem}")
        everything = store.load_all()
        if store.count() != len(everything):
            fig.fail(f"{where}: count() {store.count()} != {len(everything)} entries")
        for key, value in expected.items():
            entry = everything.get(key)
            if entry is None:
                fig.fail(f"{where}: acknowledged key {key} is gone")
                continue
            stored = entry.get("v")
            if not isinstance(stored, int) or not value <= stored <= max_tried:
                fig.fail(f"{where}: {key} holds {stored}, acknowledged {value}")
            elif entry.get("run") != stored // STRIDE:
                fig.fail(f"{where}: {key} mixes two writes: v={stored} run={entry.get('run')}")
            snapshot = entry.get("skillsSnapshot")
            if snapshot is not None and snapshot.get("prompt") != PAD:
                fig.fail(f"{where}: {key} has a damaged skillsSnapshot")
        # The dead child's lock (if it held one) must not block the next writer.
        store.put("agent:main:crash:probe", {"sessionId": "probe", "v": run, "run": 0})
        if (store.get("agent:main:crash:probe") or {}).get("v") != run:
            fig.fail(f"{where}: the write after the kill was lost")
        left = _leftovers(directory)
        if left:
            fig.fail(f"{where}: left behind after the next write: {left}")
        for problem in unresolved(store):
            fig.fail(f"{where}: check(): {problem}")


def run(variant: str, *, seed: int = 0, runs: int = FULL_RUNS, base: Path | None = None) -> Figures:
    """Kill a writer ``runs`` times; every acknowledged write must survive."""
    fig = Figures(NAME, variant, seed)
    rnd = random.Random(f"{NAME}-{variant}-{seed}")
    with timed(fig), workdir(base) as root:
        state_dir = root / f"kill9-{variant}"
        expected: dict[str, int] = {}
        for point in range(1, runs + 1):
            kill_at = rnd.randint(1, MAX_EVENT) if point % 2 == 0 else 0
            child = spawn(_writer, state_dir, variant, point, rnd.randrange(2**32), kill_at)
            if child.wait_for("ready", 60) is None:
                child.kill()
                child.join()
                fig.fail(f"run {point}: the writer did not start: {child.crash}")
                break
            if kill_at:
                child.join(60)
                fig.count("kills at an I/O event")
            else:
                child.kill_after(rnd.uniform(0.005, 0.150))
                child.join(60)
                fig.count("kills in time")
            if child.status != -9:
                fig.fail(f"run {point}: the writer ended by itself ({child.status}): {child.crash}")
                continue
            acks = child.of("ack")
            fig.runs += 1
            fig.acked += len(acks)
            for rec in acks:
                expected[rec["key"]] = rec["v"]  # values only grow within a run
            _check(fig, state_dir, variant, expected, point * STRIDE + len(acks), point)
    return fig
